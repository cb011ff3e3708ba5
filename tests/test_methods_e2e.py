"""Issue 15.7 end to end: the example method (examples/methods/, registered with mergekit's decorator) benchmarked
by `babelmerge methods bench` on the micro preset and two scenarios, then its row on the built site; a second bench
reuses every record."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import schema

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "methods" / "sign-agree.yaml"
SCENARIOS = "mono-en-ru,mt-fr-es"


def _run(args, home):
    env = {**os.environ, "BABELMERGE_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900, cwd=REPO)


def test_bench_example_method_on_micro(tmp_path, micro_world):
    from conftest import seed_home

    home, mdir, out = seed_home(micro_world, tmp_path / "home"), tmp_path / "methods", tmp_path / "site"
    common = ["--preset", "micro", "--limit", "4", "--methods-dir", str(mdir)]
    first = _run(["methods", "bench", str(SPEC), "--scenarios", SCENARIOS, *common], home)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "methods-bench-micro.log").write_text(first.stdout + "\n--- stderr ---\n" + first.stderr)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    assert "[methods] row sign-agree:" in first.stdout
    recs = {}
    for sc in SCENARIOS.split(","):
        r = schema.MethodScenarioFile.model_validate(json.loads((mdir / "sign-agree" / sc / "method.json").read_text()))
        recs[sc] = r
        assert r.status == "ok" and r.preset == "micro" and r.limit == 4
        assert len(r.points) == 2 and r.tuning["grid_size"] == 2 and r.chosen in (0, 1)
        assert all(p.identity for p in r.points)  # both points merged on dev
        assert (mdir / "sign-agree" / sc / r.results).is_file()
        res = schema.ResultsFile.model_validate(json.loads((mdir / "sign-agree" / sc / r.results).read_text()))
        assert {row.task for row in res.rows} == set(r.tasks) and res.provenance.merge["extra_identity"]
    lm = recs["mono-en-ru"]
    assert lm.tasks == ["lm:en", "lm:ru"] and set(lm.live) == {"lm:en", "lm:ru"} and lm.score is not None
    chosen = lm.points[lm.chosen]
    assert chosen.dev_score == max(p.dev_score for p in lm.points)  # the tuning rule: best mean dev score
    assert recs["mt-fr-es"].tasks == ["mt:en-fr", "mt:en-es"]

    again = _run(["methods", "bench", str(SPEC), "--scenarios", SCENARIOS, *common, "-v"], home)  # -v: every merge and unit
    assert again.returncode == 0 and "[merge]" not in again.stdout and "[evaluate]" not in again.stdout

    (tmp_path / "none").mkdir()
    built = _run(["site", "build", "--preset", "micro", "--methods-dir", str(mdir), "--submissions", str(tmp_path / "none"),
                  "--references", str(tmp_path / "refs"), "--out", str(out)], home)
    assert built.returncode == 0, built.stderr[-3000:]
    board = (out / "methods-leaderboard.html").read_text()
    assert 'href="method/sign-agree.html"' in board and f"{lm.score:.1f}" in board
    page = (out / "method" / "sign-agree.html").read_text()
    assert "sign_agree_mean" in page and "mono-en-ru" in page and "mt-fr-es" in page
    assert "sign-agree" in (out / "data" / "methods.csv").read_text()
