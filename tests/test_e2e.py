"""End to end through the installed `babelmerge` entry point (README command 1, as a new user runs it: the
scripts folder first on sys.path, where lang2vec's `lang2vec.py` lives): `run` on the micro preset, from the
corpus to the site (the corpus and the micro family come built from the session's micro_world; CI's last step
runs the same command cold); then a warm rerun that reuses every cached step while the gate refuses eight
hostile submissions added beside the valid ones."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import schema, site
from harness.submissions import SUBMISSIONS_DIR

pytestmark = pytest.mark.slow
SUBSET = ["ref-linear-mono-en-ru", "ref-linear-mono-en-ru-s1", "ref-ties-mt-all-d0.5", "ref-slerp-mt-fr-es"]
REPO = Path(__file__).resolve().parent.parent
BABELMERGE = Path(sys.executable).parent / "babelmerge"  # the installed console script, not `python -m`
ARTIFACTS = REPO / "test-artifacts"


def _run(args, env_home):
    env = {**os.environ, "BABELMERGE_HOME": str(env_home), "PYTHONPATH": str(REPO)}  # this checkout's harness
    env.pop("PYTHONSAFEPATH", None)  # it would hide a shadowing script in the scripts folder
    return subprocess.run([str(BABELMERGE), *args], capture_output=True, text=True, env=env, timeout=1800)


def test_run_micro_end_to_end(tmp_path, tiny_models, micro_world):
    from conftest import seed_home

    assert BABELMERGE.is_file(), f"{BABELMERGE}: the entry point is not installed; run scripts/setup.sh"
    subs, refs, out, home = tmp_path / "subs", tmp_path / "refs", tmp_path / "site", tmp_path / "home"
    subs.mkdir()
    seed_home(micro_world, home)
    for s in SUBSET:
        shutil.copytree(SUBMISSIONS_DIR / s, subs / s)
    args = ["run", "--preset", "micro", "--limit", "4", "--submissions", str(subs), "--references", str(refs), "--out", str(out)]
    first = _run(args, home)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "e2e-run-micro.log").write_text(first.stdout + "\n--- stderr ---\n" + first.stderr)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    for stage in range(1, 8):
        assert f"stage {stage}/7" in first.stdout

    # every model has a valid result file with all 13 tasks; merges have similarity rows
    family = sorted(refs.glob("babel-mini/*/results/babel-mini-v2+micro.json"))
    assert len(family) == 26
    for s in SUBSET:
        res = schema.ResultsFile.model_validate(json.loads((subs / s / "results" / "babel-mini-v2+micro.json").read_text()))
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
    moved = schema.SimilarityFile.model_validate(json.loads((refs / "babel-mini" / "movement+micro.json").read_text()))
    far = {r.a: r.value for r in moved.rows if r.group == "all"}
    assert len(far) == 25 and all(v > 0 for v in far.values())  # every member but init-s0, against its own init
    assert {r.b for r in moved.rows if r.a == "mono-en-s1"} == {"init-s1"}
    assert "ref-ties-mt-all-d0.5" in (out / "index.html").read_text()
    assert "Spearman" in (out / "analysis.html").read_text()
    assert site.model_data(out, "ref-ties-mt-all-d0.5")["status"] == "ok"
    docs = schema.DocsFile.model_validate(json.loads((subs / SUBSET[0] / "results" / "babel-mini-v2+micro.docs.json").read_text()))
    assert len(docs.tasks) == 13

    # warm rerun with eight hostile submissions beside the valid ones: nothing is retrained, re-merged or
    # re-evaluated; each hostile one is named on one line, nothing is read, merged or written for it, exit 1
    from test_gate import CLASSES, LINE, make_hostile

    outside = home / "family" / "babel-mini-micro" / "members" / "mono-en"
    assert (outside / "config.json").is_file()
    marker = tmp_path / "PWNED"
    make_hostile(subs, tmp_path, tiny_models[0], outside, marker)
    mtimes = {p: p.stat().st_mtime_ns for p in refs.rglob("*.json")}
    merges = {p: p.stat().st_mtime_ns for p in (home / "merges").rglob("*")}
    hostile = {p: p.lstat().st_mtime_ns for n in CLASSES for p in [subs / n, *(subs / n).rglob("*")]}
    second = _run(args, home)
    (ARTIFACTS / "e2e-run-micro-warm-hostile.log").write_text(second.stdout + "\n--- stderr ---\n" + second.stderr)
    assert second.returncode == 1, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    refused = [x for x in second.stderr.splitlines() if x.startswith(str(subs))]
    assert len(refused) == len(CLASSES) and all(LINE.match(x) for x in refused), refused
    for name, (shown, words) in CLASSES.items():
        assert sum(x.startswith(f"{subs}/{shown}") and words.format(outside=outside) in x for x in refused) == 1, name
    assert "evaluating 0 on" in second.stdout
    assert "(0 model passes or pair computations run, the rest cached)" in second.stdout
    assert "building" not in second.stdout and "[merge] ref-" not in second.stdout
    assert {p: p.stat().st_mtime_ns for p in refs.rglob("*.json")} == mtimes
    assert {p: p.stat().st_mtime_ns for p in (home / "merges").rglob("*")} == merges
    assert {p: p.lstat().st_mtime_ns for n in CLASSES for p in [subs / n, *(subs / n).rglob("*")]} == hostile
    assert not marker.exists() and "hostile" not in (out / "index.html").read_text().lower()
