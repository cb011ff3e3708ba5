"""Language typology the partial correlations control for: URIEL distances from lang2vec's shipped arrays."""

import numpy as np
import pytest

from harness import languages


def test_uriel_vectors_exist_for_every_suite_language():
    for lang in languages.ISO3:
        v = languages.uriel_vector(lang)
        assert v.ndim == 1 and v.size > 100 and np.all((v >= 0) & (v <= 1))


def test_distance_is_a_cosine_distance():
    assert languages.typological_distance("en", "en") == pytest.approx(0.0, abs=1e-12)
    assert languages.typological_distance("fr", "ar") == pytest.approx(languages.typological_distance("ar", "fr"))
    u, v = languages.uriel_vector("de"), languages.uriel_vector("ru")
    assert languages.typological_distance("de", "ru") == pytest.approx(1 - np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))
    # a sanity law of typology: English is closer to German than to Arabic
    assert languages.typological_distance("en", "de") < languages.typological_distance("en", "ar")


def test_relations_and_covariates():
    assert languages.relation("fr", "fr") == "supervised"
    assert languages.relation("es", "fr") == "related"
    assert languages.relation("ru", "fr") == "unsupervised"
    cov = languages.set_covariates(["en", "ru", "en"])
    assert cov["script_mismatch"] == 1.0
    assert cov["uriel_distance"] == pytest.approx(languages.typological_distance("en", "ru"))
    assert np.isnan(languages.set_covariates(["en"])["uriel_distance"])


def test_unknown_language_is_named():
    with pytest.raises(KeyError, match="xx"):
        languages.uriel_vector("xx")


def test_lang2vec_module_is_never_imported(tmp_path):
    """An installed entry point puts its scripts folder first on sys.path, where lang2vec's console script
    `lang2vec.py` shadows the package. A poisoned `lang2vec.py` first on sys.path must never run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "lang2vec.py").write_text("raise SystemExit('lang2vec.py was imported')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])\n"
            "from harness import languages, analysis, pipeline\n"
            "d = languages.typological_distance('en', 'ar')\n"
            "assert 'lang2vec' not in sys.modules, 'lang2vec imported'\n"
            "print(round(d, 6))")
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(repo)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONSAFEPATH": ""}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 0 < float(out.stdout.split()[-1]) < 1
