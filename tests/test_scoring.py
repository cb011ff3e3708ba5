"""Translation scores equal sacrebleu's own command-line tool on the same files; intervals and paired
tests behave as bootstrap statistics must; off-target detection works offline."""

import subprocess
import sys

import numpy as np
import pytest

from harness import scoring

REFS = {
    "de": ["Im Anfang schuf Gott die Himmel und die Erde.", "Und Gott sprach: Es werde Licht! und es ward Licht.",
           "Und Gott sah das Licht, daß es gut war."],
    "ru": ["В начале сотворил Бог небо и землю.", "И сказал Бог: да будет свет. И стал свет.",
           "И увидел Бог свет, что он хорош."],
    "zh": ["起初，神创造天地。", "神说：要有光，就有了光。", "神看光是好的。"],
}
HYPS = {
    "de": ["Im Anfang schuf Gott Himmel und Erde.", "Gott sprach: Licht werde, und Licht ward.", "Und er sah es war gut"],
    "ru": ["В начале Бог сотворил небо и землю.", "И сказал Бог: будет свет.", ""],
    "zh": ["起初神创造了天地。", "神说要有光。", "光是好的。"],
}


def cli_score(tmp_path, hyps, refs, args):
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
                          *args, "-w", "6", "-b"], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.parametrize("lang,tok", [("de", "13a"), ("ru", "13a"), ("zh", "zh")])
def test_scores_match_sacrebleu_cli(tmp_path, lang, tok):
    mets = scoring.metrics(tok)
    chrf = scoring.corpus_from_stats(mets["chrf++"], scoring.sentence_stats(mets["chrf++"], HYPS[lang], REFS[lang]))
    bleu = scoring.corpus_from_stats(mets["bleu"], scoring.sentence_stats(mets["bleu"], HYPS[lang], REFS[lang]))
    assert chrf == pytest.approx(cli_score(tmp_path, HYPS[lang], REFS[lang], ["-m", "chrf", "--chrf-word-order", "2"]), abs=1e-5)
    assert bleu == pytest.approx(cli_score(tmp_path, HYPS[lang], REFS[lang], ["-m", "bleu", "-tok", tok]), abs=1e-5)
    assert 0 < chrf < 100


def test_signature_names_the_tokenizer():
    from harness.evaluate import bleu_tokenizer

    suite = {"tasks": {"mt": {"bleu_tokenize": {"default": "13a", "zh": "zh", "ja": "ja-mecab"}}}}
    assert bleu_tokenizer(suite, "de") == "13a" and bleu_tokenizer(suite, "zh") == "zh"
    m = scoring.metrics("zh")["bleu"]
    scoring.sentence_stats(m, HYPS["zh"], REFS["zh"])
    assert "tok:zh" in str(m.get_signature())


def test_bootstrap_interval_brackets_the_score_and_is_seeded():
    rng = np.random.default_rng(0)
    ll, nb = -rng.uniform(50, 100, 200), rng.integers(100, 200, 200).astype(float)
    idx = scoring.bootstrap_indices(200, seed=3)
    lo, hi, sd = scoring.interval(scoring.bits_per_byte_boot(ll, nb, idx))
    assert lo < scoring.bits_per_byte(ll, nb) < hi and sd > 0
    assert (scoring.bootstrap_indices(200, seed=3) == idx).all()
    assert not (scoring.bootstrap_indices(200, seed=4) == idx).all()


def test_paired_delta():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 1000)
    same = scoring.paired_delta(a, a.copy(), 0.0)
    assert same["ci_low"] == same["ci_high"] == 0.0
    clear = scoring.paired_delta(a + 5.0, a, 5.0)
    assert clear["ci_low"] > 0 and clear["p_value"] < 0.01
    noisy = scoring.paired_delta(a + 0.01, rng.normal(0, 1, 1000), 0.01)
    assert noisy["p_value"] > 0.05


def test_off_target_detection_offline():
    langs = scoring.detect_languages(["Im Anfang schuf Gott die Himmel und die Erde.", "В начале сотворил Бог небо и землю.",
                                      "في البدء خلق الله السموات والارض.", ""])
    assert langs == ["de", "ru", "ar", ""]


@pytest.mark.parametrize("eps_smoothing", [False, True])
def test_chrf_of_every_resample_is_sacrebleus(eps_smoothing):
    """scoring.corpus_boot's vectorised chrF++ equals sacrebleu's own score of each resample to the last bit,
    including orders with no hypothesis or reference n-grams and resamples of empty outputs."""
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=2, eps_smoothing=eps_smoothing)
    rng = np.random.default_rng(3)
    hyp = rng.integers(0, 40, size=(60, metric.order))
    ref = rng.integers(1, 40, size=(60, metric.order))
    hyp[:6] = 0  # empty outputs
    ref[10:12, -2:] = 0  # no reference word n-grams of the higher orders
    match = np.minimum(hyp, ref) * rng.uniform(0, 1, size=hyp.shape) // 1
    stats = np.stack([hyp, ref, match], axis=2).reshape(60, -1).astype(np.float64)
    idx = np.vstack([rng.integers(0, 60, size=(200, 60)), np.zeros((1, 60), int), np.arange(60)[None]])
    expected = np.array([metric._compute_score_from_stats(stats[i].sum(0).tolist()).score for i in idx])
    assert np.array_equal(scoring.corpus_boot(metric, stats, idx), expected)


def test_resample_sums_equal_summing_each_resample():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 500, size=(80, 18)).astype(np.float64)
    idx = rng.integers(0, 80, size=(300, 80))
    assert np.array_equal(scoring.resample_sums(counts, idx), np.stack([counts[i].sum(0) for i in idx]))
    frac = rng.normal(size=(80, 3))  # not counts: summed row by row, as before
    assert np.array_equal(scoring.resample_sums(frac, idx), np.stack([frac[i].sum(0) for i in idx]))
