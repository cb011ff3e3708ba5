"""Published results are data: a second machine (an empty cache, training with different float noise) reuses
every stored result by identity and rewrites none; only a new submission's work is done; `reproduce` measures
the drift against the stated tolerances and fails beyond them."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from harness import reproduce
from harness.submissions import SUBMISSIONS_DIR

FIRST = ["ref-linear-mono-en-ru"]
NEW = "ref-slerp-mt-fr-es"


def _digests(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


def _ctx(tmp_path, lines, **kw):
    from harness.pipeline import Context

    return Context(preset="micro", limit=4, submissions_dir=tmp_path / "subs", references_dir=tmp_path / "refs",
                   out=tmp_path / "site", log=lambda *a: lines.append(" ".join(map(str, a))), **kw)


def _noisy_train(monkeypatch, scale: float):
    """Training as on another machine: the same recipe, weights off by float noise far below every tolerance."""
    from harness.family import build

    real = build.train

    def train(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * scale * p.abs().mean())
        return out

    monkeypatch.setattr(build, "train", train)


@pytest.mark.slow
def test_second_machine_rewrites_nothing_and_reproduces(tmp_path, monkeypatch, micro_world):
    from conftest import seed_home

    from harness import pipeline

    (tmp_path / "subs").mkdir()
    for s in FIRST:
        shutil.copytree(SUBMISSIONS_DIR / s, tmp_path / "subs" / s, ignore=shutil.ignore_patterns("results"))
    monkeypatch.setenv("BABELMERGE_HOME", str(seed_home(micro_world, tmp_path / "home1")))  # the first machine trained
    lines: list[str] = []
    assert pipeline.run(_ctx(tmp_path, lines)) == []
    published = _digests(tmp_path / "subs", tmp_path / "refs")
    assert len([p for p in published if p.endswith("babel-mini-v2+micro.json")]) == 27

    # another machine: empty cache, float noise in training, and nothing new: nothing is trained or rewritten
    monkeypatch.setenv("BABELMERGE_HOME", str(tmp_path / "home2"))
    _noisy_train(monkeypatch, 1e-6)
    lines = []
    assert pipeline.run(_ctx(tmp_path, lines)) == []
    text = "\n".join(lines)
    assert "[family] no member needed" in text and "evaluating 0 on" in text, text
    assert not (tmp_path / "home2" / "family" / "babel-mini-micro" / "members" / "mono-en").exists()
    assert _digests(tmp_path / "subs", tmp_path / "refs") == published
    drift = [l for l in lines if l.startswith("[reproduce]")]
    assert len(drift) == 1 and "within tolerance" in drift[0], drift

    # a new submission: exactly its constituents' ancestry is trained (with the noise), the old files stay as they were
    shutil.copytree(SUBMISSIONS_DIR / NEW, tmp_path / "subs" / NEW, ignore=shutil.ignore_patterns("results"))
    lines = []
    assert pipeline.run(_ctx(tmp_path, lines)) == []
    built = {p.name for p in (tmp_path / "home2" / "family" / "babel-mini-micro" / "members").iterdir()}
    assert built == {"init-s0", "mixed", "mt-en-fr", "mt-en-es"}, built
    after = _digests(tmp_path / "subs", tmp_path / "refs")
    assert {k: v for k, v in after.items() if k in published} == published
    assert {Path(k).name for k in set(after) - set(published) if "/results/" in k} == {
        "babel-mini-v2+micro.json", "babel-mini-v2+micro.docs.json", "similarity+micro.json", "neurons+micro.json"}

    # reproduce on the noisy machine: the retrained merge reproduces within tolerance, exit status 0
    lines = []
    ctx = _ctx(tmp_path, lines)
    assert reproduce.run(ctx, sample=3, log=ctx.log)
    assert any("every metric within tolerance" in l for l in lines), lines
    # a published number moved beyond its tolerance is caught
    f = tmp_path / "refs" / "babel-mini" / "init-s0" / "results" / "babel-mini-v2+micro.json"
    res = json.loads(f.read_text())
    row = next(r for r in res["rows"] if r["task"] == "lm:en")
    row["value"] += 2 * reproduce.TOLERANCES["bits_per_byte"]
    f.write_text(json.dumps(res))
    lines = []
    assert not reproduce.run(_ctx(tmp_path, lines), sample=1)
    assert any(l.startswith("bits_per_byte") and "BEYOND" in l for l in lines), lines


def test_tolerances_cover_every_published_metric():
    """Every metric a results or similarity file can carry for the diagnostics reproduce checks has a tolerance."""
    from harness import scoring

    assert {"bits_per_byte", "off_target_rate", *scoring.metrics("13a")} <= set(reproduce.TOLERANCES)
    assert set(reproduce.CKA_METRICS) <= set(reproduce.TOLERANCES)
    assert all(v > 0 for v in reproduce.TOLERANCES.values())


def test_every_translation_row_has_a_tolerance(tiny_models):
    """Every row an mt task writes (scores, controls, differences, XMI, rates) is checked against a tolerance,
    the one of the score it derives from."""
    from harness import scoring
    from harness.evaluate import task_rows
    from harness.schema import TaskDocs
    from harness.suite import load_suite
    from harness.tasks import task_specs

    suite = load_suite()
    spec = next(s for s in task_specs(suite) if s.kind == "mt")
    hyps, refs = ["Im Anfang", "", "Und Gott sprach"], ["Im Anfang schuf Gott", "Und es ward Licht", "Und Gott sprach"]
    mets = scoring.metrics("13a")
    st = lambda hs, rs: {m: scoring.sentence_stats(x, hs, rs).tolist() for m, x in mets.items()}
    d = TaskDocs(ids=["a", "b", "c"], hyp=hyps, lang=["de", "", "de"], stats=st(hyps, refs), perm=[1, 2, 0],
                 signatures={m: "sig" for m in mets}, hyp_control=hyps[::-1], stats_control=st(hyps[::-1], refs),
                 stats_misaligned=st(hyps, refs[1:] + refs[:1]), ll_given=[-3.0, -4.0, -5.0], ll_shuffled=[-4.0, -4.5, -6.0],
                 tgt_bytes=[20, 17, 15])
    metrics = {r["metric"] for r in task_rows(spec, d, suite)}
    assert {"chrf++_over_control", "bleu_misaligned", "xmi", "bpb_given_source", "empty_rate"} <= metrics
    assert all(reproduce.tolerance(m) is not None for m in metrics), [m for m in metrics if reproduce.tolerance(m) is None]
    assert reproduce.tolerance("chrf++_over_misaligned") == reproduce.TOLERANCES["chrf++"]
