"""Issue 15.6 end to end: `babelmerge run`'s method step on the micro preset and two scenarios benchmarks both forms
of a kind: method submission: a mergekit built-in with a grid (tuned, merged and scored here, under the submission's
id) and one checkpoint per scenario with sha256 (scored as given, one row marked "checkpoints, not reproduced");
a second pass reuses every record; the built site shows both rows and every per-merge link resolves."""

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from harness import methodbench, schema, store
from harness.scenarios import scenarios

SCENARIOS = ["mono-en-ru", "mono-en-de"]  # four small members to train: init-s0, mono-en, mono-ru, mono-de
MANIFEST = {"id": "xx", "title": "A method", "authors": ["Ada"], "contact": "ada@example.org", "method": "mine",
            "kind": "method", "license": "CC-BY-4.0"}


def _grid_submission(subs: Path) -> None:
    d = subs / "sub-grid"
    d.mkdir(parents=True)
    (d / "submission.yaml").write_text(yaml.safe_dump({**MANIFEST, "id": "sub-grid", "method_spec": "method.yaml"}))
    (d / "method.yaml").write_text(yaml.safe_dump({  # the spec's own id is not used: the row is the submission's id
        "id": "linear", "title": "Task arithmetic, two lambdas", "authors": ["Ada"], "merge_method": "task_arithmetic",
        "parameters": {"lambda": [0.5, 1.0]}, "model_parameters": {"weight": 1.0}}))


def _checkpoint_submission(ctx, subs: Path) -> dict[str, str]:
    """One linear merge of mono-en and mono-ru, saved as safetensors with its config and tokenizer, given for every
    scenario (validation needs all 55; the run is restricted to two)."""
    merged, _ = methodbench._merge(ctx, {"merge_method": "linear", "dtype": "float32", "models": [
        {"model": "family:babel-mini/mono-en", "parameters": {"weight": 0.5}},
        {"model": "family:babel-mini/mono-ru", "parameters": {"weight": 0.5}}]}, None)
    d = subs / "sub-ckpt"
    (d / "merge").mkdir(parents=True)
    for f in merged.iterdir():
        if f.suffix in (".safetensors", ".json") and f.name != "babelmerge-merge.json":
            shutil.copy(f, d / "merge" / f.name)
    sha = {f.name: store.sha256_file(f) for f in sorted((d / "merge").glob("*.safetensors"))}
    (d / "submission.yaml").write_text(yaml.safe_dump({**MANIFEST, "id": "sub-ckpt", "checkpoints": {
        s.id: {"path": "merge", "sha256": dict(sha)} for s in scenarios()}}))  # a copy each: no YAML alias
    return sha


def _hrefs_resolve(out: Path) -> int:
    """Every relative href/src of every built page names a file of the site; returns how many were checked."""
    n = 0
    for page in out.rglob("*.html"):
        for ref in re.findall(r'(?:href|src)="([^"#?]+)', page.read_text()):
            if re.match(r"[a-z]+:", ref):
                continue
            assert (page.parent / unquote(ref)).resolve().is_file(), f"{page.relative_to(out)}: {ref}"
            n += 1
    return n


@pytest.mark.slow
def test_run_benchmarks_both_method_submission_forms(tmp_path, micro_world):
    from conftest import seed_home

    from harness.pipeline import Context, stage_site

    seed_home(micro_world, Path(os.environ["BABELMERGE_HOME"]))  # this test's own home (conftest), the family built

    subs, mdir, log = tmp_path / "subs", tmp_path / "methods", []
    subs.mkdir()
    t0 = time.perf_counter()
    mark = lambda what: log.append(f"[test] {what} at {time.perf_counter() - t0:.1f}s")
    ctx = Context(preset="micro", limit=4, submissions_dir=subs, references_dir=tmp_path / "refs", methods_dir=mdir,
                  out=tmp_path / "site", device="cpu", log=log.append, err=log.append, verbose=True)
    _grid_submission(subs)
    sha = _checkpoint_submission(ctx, subs)
    (mdir / "specs").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parent.parent / "methods" / "specs" / "linear.yaml", mdir / "specs")

    mark("submissions made")
    failed = methodbench.stage_submissions(ctx, SCENARIOS)
    mark("method step done")
    text = "\n".join(map(str, log))
    (Path(__file__).resolve().parent.parent / "test-artifacts").mkdir(exist_ok=True)
    (Path(__file__).resolve().parent.parent / "test-artifacts" / "method-submissions-micro.log").write_text(text)
    assert failed == [], text[-3000:]
    assert "[methods] row sub-grid:" in text and "[methods] row sub-ckpt:" in text
    assert not (mdir / "linear").exists()  # the spec's id never names the folder: a submission cannot take a method's

    for sc in SCENARIOS:
        g = schema.MethodScenarioFile.model_validate(json.loads((mdir / "sub-grid" / sc / "method.json").read_text()))
        assert g.method == "sub-grid" and g.submission == "sub-grid" and g.reproduced and g.status == "ok"
        assert g.tuning["grid_size"] == 2 and len(g.points) == 2 and all(p.identity for p in g.points)
        c = schema.MethodScenarioFile.model_validate(json.loads((mdir / "sub-ckpt" / sc / "method.json").read_text()))
        assert c.method == "sub-ckpt" and not c.reproduced and c.status == "ok" and c.checkpoint == sha
        assert c.points == [] and c.chosen is None and c.dev_suite_sha256 is None and c.tuning["grid_size"] == 0
        res = schema.ResultsFile.model_validate(json.loads((mdir / "sub-ckpt" / sc / c.results).read_text()))
        assert res.model.kind == "submission" and res.model.weights == sha and res.model.identity == store.sha256_obj(sha)
        assert {r.task for r in res.rows} == set(c.tasks) and res.provenance.merge is None
    ck = schema.MethodScenarioFile.model_validate(json.loads((mdir / "sub-ckpt" / "mono-en-ru" / "method.json").read_text()))
    assert ck.live == ["lm:en", "lm:ru"] and ck.score is not None and ck.score == sum(ck.test.values()) / 2
    spec = json.loads((mdir / "sub-grid" / "spec.json").read_text())
    assert spec["id"] == "sub-grid" and spec["submission"] == "sub-grid" and "module" not in {k for k, v in spec.items() if v}

    log.clear()  # a second pass: every record current, nothing merged or evaluated
    assert methodbench.stage_submissions(ctx, SCENARIOS) == []
    assert not any(str(x).startswith(("[merge]", "[evaluate]")) for x in log), log

    t1 = time.perf_counter()
    stage_site(ctx)
    timing = f"site build {time.perf_counter() - t1:.1f}s; whole test {time.perf_counter() - t0:.1f}s"
    with open(Path(__file__).resolve().parent.parent / "test-artifacts" / "method-submissions-micro.log", "a") as fh:
        fh.write(f"\n[test] {timing}\n")
    out = tmp_path / "site"
    board = (out / "methods-leaderboard.html").read_text()
    assert 'href="method/sub-grid.html"' in board and 'href="method/sub-ckpt.html"' in board
    row = re.search(r'<tr><th scope="row"><a href="method/sub-ckpt\.html">.*?</tr>', board, re.S).group(0)
    assert "checkpoints, not reproduced" in row
    page = (out / "method" / "sub-ckpt.html").read_text()
    assert "checkpoints, not reproduced" in page and sha["model.safetensors"][:12] in page
    for m in ("sub-grid", "sub-ckpt"):
        links = re.findall(r'href="([^"]+\.json)"', (out / "method" / f"{m}.html").read_text())
        assert len({x for x in links if "/results/" in x}) == len(SCENARIOS), links
    assert _hrefs_resolve(out) > 0


def test_a_submission_cannot_take_a_maintainers_method_id(tmp_path):
    from harness.pipeline import Context
    from harness.submissions import Loaded

    mdir = tmp_path / "methods"
    (mdir / "specs").mkdir(parents=True)
    (mdir / "specs" / "ties.yaml").write_text("id: ties\n")
    (mdir / "mine" / "spec.json").parent.mkdir()
    store.write_json(mdir / "mine" / "spec.json", {"id": "mine"})  # benchmarked from a spec, not from a submission
    ctx = Context(methods_dir=mdir, submissions_dir=tmp_path, log=lambda *_: None)
    m = schema.Submission.model_validate({**MANIFEST, "method_spec": "method.yaml"})
    for taken in ("ties", "specs", "mine"):
        got = methodbench._claim(ctx, Loaded(tmp_path / taken, m.model_copy(update={"id": taken})))
        assert got and f"id: '{taken}'" in got and "choose another id" in got and "\n" not in got
    assert methodbench._claim(ctx, Loaded(tmp_path / "free", m.model_copy(update={"id": "free"}))) is None


def test_run_calls_the_method_step_and_counts_its_failures(tmp_path, monkeypatch):
    """`babelmerge run` calls the method step after evaluation; its failures fail the run."""
    from harness import pipeline

    calls = []
    for name in ("stage_corpus", "stage_family", "stage_merges", "stage_similarity", "stage_analyze"):
        monkeypatch.setattr(pipeline, name, lambda *a, _n=name, **k: calls.append(_n))
    monkeypatch.setattr(pipeline, "stale", lambda ctx: {"evaluate": [], "neurons": [], "similarity": [], "need": []})
    monkeypatch.setattr(pipeline, "plan", lambda ctx: [])
    monkeypatch.setattr(pipeline, "stage_evaluate", lambda ctx: calls.append("stage_evaluate") or [])
    monkeypatch.setattr(pipeline, "stage_site", lambda ctx: calls.append("stage_site") or tmp_path / "index.html")
    monkeypatch.setattr(methodbench, "stage_submissions", lambda ctx: calls.append("methods") or ["sub@mono-en-ru"])
    ctx = pipeline.Context(submissions_dir=tmp_path, references_dir=tmp_path, reproduce=0, log=lambda *_: None)
    assert pipeline.run(ctx) == ["sub@mono-en-ru"]
    assert calls.index("methods") == calls.index("stage_evaluate") + 1 and calls[-1] == "stage_site"
