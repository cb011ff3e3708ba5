"""`babelmerge methods bench SPEC` (issue 15.3): a merge method on every scenario: tune its grid on the dev split by
methods.TUNING_RULE, merge with the chosen parameters, score on the test split, write methods/<id>/<scenario>/
method.json (and the test results beside it), print the method's row. Merges and evaluation units reuse the caches
of the rest of the pipeline; a scenario whose record is current is skipped."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from . import analysis, methods, schema, store, validity
from .pipeline import Context, Progress, build_members, eval_units, ref_identity, stage_corpus
from .provenance import code_dirty, git_hash, harness_version, now_utc, packages
from .scenarios import SCENARIO_SET, Scenario, select
from .suite import dev_variant, results_name

RECORD = "method.json"


def _tasks_for(all_tasks, names: list[str]):
    """The suite's built tasks restricted to `names` (documents and lm-eval configs are shared)."""
    return dataclasses.replace(all_tasks, specs=[s for s in all_tasks.specs if s.name in names])


def _current(target: Path, ident: str, tasks) -> schema.ResultsFile | None:
    if not target.exists():
        return None
    try:
        old = schema.ResultsFile.model_validate(store.read_json(target))
    except (ValueError, OSError):
        return None
    want = {s.name: s.version for s in tasks.specs}
    ok = (old.status == "ok" and old.model.identity == ident and old.suite_sha256 == tasks.suite["sha256"]
          and old.tasks == want and old.provenance.limit == tasks.limit)
    return old if ok else None


def evaluate(ctx: Context, name: str, path: Path, ident: str, tasks, target: Path, merge: dict | None = None,
             method: str | None = None, kind: str | None = None) -> tuple[schema.ResultsFile, schema.DocsFile]:
    """One model on the given tasks (cached units), its results and per-document files at `target`; reused when
    current for the model's identity, the suite's hash, the tasks and the limit. kind: the model's kind (default:
    family without a merge, submission with one)."""
    from .evaluate import docs_path, evaluate_to_file, model_info

    res = _current(target, ident, tasks)
    if res is None:
        info = model_info(path, name, kind or ("family" if merge is None else "submission"), identity_=ident,
                          method=method, preset=ctx.preset)
        units: dict = {}  # its missing units, on ctx.executor; merges stay in this process
        eval_units(ctx, [(name, path, info)], tasks, lambda _n, errors, batch: units.update(errors=errors, batch=batch))
        res = evaluate_to_file(path, info, target, tasks, ctx.device, ctx.dtype, ctx.batch_size, ctx.batch_tokens,
                               merge=merge, backend=ctx.backend, log=ctx.detail, dirty=code_dirty(),
                               unit_errors=units.get("errors"), batch=units.get("batch"))
    return res, schema.DocsFile.model_validate(store.read_json(docs_path(target)))


def member_results(ctx: Context, member: str, tasks) -> tuple[schema.ResultsFile, schema.DocsFile]:
    """A family member (the floor or an expert) on the given tasks, results kept in the cache."""
    from .family.build import member_dir
    from .family.presets import PRESETS

    build_members(ctx, [member])
    ident = ref_identity(ctx, methods.REF + member)
    key = store.sha256_obj({"tasks": sorted(s.name for s in tasks.specs), "limit": tasks.limit})[:12]
    target = store.home() / "methods" / "family" / tasks.suite["id"] / f"{member}-{ident[:16]}-{key}.json"
    return evaluate(ctx, member, member_dir(PRESETS[ctx.preset], member), ident, tasks, target)


def scores(ctx: Context, suite: dict, tasks, model: tuple[schema.ResultsFile, schema.DocsFile],
           names: list[str]) -> tuple[list[str], dict[str, float]]:
    """(tasks of `names` live on this split, {live task: normalized score of the model}): the suite's validity rule
    and aggregate (validity.assess, analysis.scored) on the floor and experts scored on the same documents."""
    rule = validity.rule(suite)
    refs = {rule.floor} | {rule.experts[t.split(":")[0]].format(lang=t.split("-")[-1] if t.startswith("mt:") else t[3:],
                                                              pivot=suite["pivot"]) for t in names}
    got = {m: member_results(ctx, m, tasks) for m in sorted(refs)}
    res = {m: r for m, (r, _) in got.items()} | {model[0].model.name: model[0]}
    docs = {m: d for m, (_, d) in got.items()} | {model[0].model.name: model[1]}
    df = analysis.tidy(list(res.values()))
    tv, _ = validity.assess(df, suite, docs)
    s = analysis.scored(df, tv)
    s = s[(s.model == model[0].model.name) & s.task.isin(names) & s.live]
    live = [t for t in names if tv[t].live]
    return live, {t: float(v) for t, v in zip(s.task, s.norm) if v == v}


def _merge(ctx: Context, rec: dict, extra: dict | None):
    """The merged checkpoint of a recipe (mergekit through merge.run_recipe, cached by identity)."""
    from . import merge as merge_mod

    path = store.home() / "methods" / "recipes" / f"{store.sha256_obj(rec)[:24]}.yml"
    if not path.exists():
        import yaml

        store.atomic_write_text(path, yaml.safe_dump(rec, sort_keys=False))
    build_members(ctx, [r.split("/")[-1] for r in merge_mod.model_refs(rec) if r.startswith("family:")])
    return merge_mod.run_recipe(path, ctx.preset, ctx.suite["seed"], ctx.device, ctx.detail,
                                identity_of=lambda r: ref_identity(ctx, r), extra_identity=extra)


def record_current(target: Path, want: dict) -> schema.MethodScenarioFile | None:
    """The stored record when it was made from the same spec, scenario, suites, preset and limit."""
    if not target.exists():
        return None
    try:
        old = schema.MethodScenarioFile.model_validate(store.read_json(target))
    except (ValueError, OSError):
        return None
    have = old.model_dump(mode="json")
    return old if old.status == "ok" and all(have.get(k) == v for k, v in want.items()) else None


def bench_scenario(ctx: Context, spec: schema.MethodSpec, sha: str, extra: dict | None, sc: Scenario, dev: dict,
                   dev_all, test_all, out: Path, submission: str | None = None) -> schema.MethodScenarioFile:
    """Tune, merge, score one scenario; write its record."""
    from .merge import MergeError
    from .sources import ModelFault

    points_all = methods.grid(spec)
    idx = methods.sample(len(points_all), ctx.suite["seed"])
    names = list(sc.tasks)
    dev_tasks, test_tasks = _tasks_for(dev_all, names), _tasks_for(test_all, names)
    points = []
    for i in idx:
        g, m = points_all[i]
        rec = methods.recipe(spec, sc, g, m)
        p = schema.GridPoint(parameters=g, model_parameters=m, recipe=rec)
        if len(idx) > 1:
            try:
                path, prov = _merge(ctx, rec, extra)
                p.identity = prov["identity"]
                target = store.home() / "methods" / "dev" / f"{prov['identity'][:24]}-{dev['sha256'][:12]}-{ctx.limit or 'all'}.json"
                got = evaluate(ctx, f"{spec.id}@{sc.id}#{i}", path, prov["identity"], dev_tasks, target, merge=prov, method=spec.id)
                _, p.dev = scores(ctx, dev, dev_tasks, got, names)
                p.dev_score = sum(p.dev.values()) / len(p.dev) if p.dev else None
            except (MergeError, ModelFault, FileNotFoundError, ValueError) as e:
                p.error = str(e).splitlines()[0]
            ctx.detail(f"[methods] {sc.id} point {i}: {g | m}: dev {p.dev_score}")
        points.append(p)
    chosen = methods.choose([p.dev_score if p.error is None else None for p in points])
    base = dict(method=spec.id, spec_sha256=sha, scenario=sc.id, scenario_set=SCENARIO_SET, group=sc.group,
                category=sc.category, constituents=list(sc.constituents), base=sc.base, suite=ctx.suite["id"],
                suite_sha256=ctx.suite["sha256"], dev_suite_sha256=dev["sha256"], preset=ctx.preset, limit=ctx.limit,
                tuning={"rule": methods.TUNING_RULE, "budget": methods.TUNE_BUDGET, "seed": ctx.suite["seed"],
                        "grid_size": len(points_all), "sampled": idx},
                points=points, chosen=chosen, tasks=names, submission=submission, provenance=_provenance(ctx))
    t = out / "results" / results_name(ctx.suite, ctx.preset)
    try:
        path, prov = _merge(ctx, points[chosen].recipe, extra)
        points[chosen].identity = prov["identity"]
        got = evaluate(ctx, f"{spec.id}@{sc.id}", path, prov["identity"], test_tasks, t, merge=prov, method=spec.id)
        live, test = scores(ctx, ctx.suite, test_tasks, got, names)
        score = sum(test.values()) / len(test) if test else None
        f = schema.MethodScenarioFile(**base, results=str(t.relative_to(out)), live=live, test=test, score=score)
    except (MergeError, ModelFault, FileNotFoundError, ValueError) as e:
        f = schema.MethodScenarioFile(**base, live=[], status="failed", error=str(e).splitlines()[0])
    store.write_json(out / RECORD, f.model_dump(mode="json"))
    return f


def bench(ctx: Context, spec_path: Path, scenario_ids: list[str] | None = None,
          root: Path = methods.METHODS_DIR, submission=None) -> list[schema.MethodScenarioFile]:
    """Benchmark one method spec on the scenarios (all by default); one progress line per scenario; returns the
    records (current ones reused). submission (submissions.Loaded, kind: method with a spec that passed the gate):
    the method is benchmarked under the submission's id, and a spec with a module is refused (no submitted code)."""
    from .evaluate import SuiteTasks

    spec = methods.spec_or_raise(spec_path)
    if submission is not None:
        if spec.module is not None:
            raise methods.MethodError(f"{spec_path}: module: a submission never carries code that is run; name a "
                                      "mergekit built-in")
        spec = spec.model_copy(update={"id": submission.id})
    extra = methods.register_module(spec, spec_path)
    sha = methods.spec_sha256(spec, spec_path)
    dev = dev_variant(ctx.suite)
    chosen = [s for s in select(scenario_ids) if methods.applies(spec, s)]
    skipped = len(select(scenario_ids)) - len(chosen)
    ctx.log(f"[methods] {spec.id}: {spec.merge_method}, {len(methods.grid(spec))} grid point(s), "
            f"{len(chosen)} scenario(s) of {SCENARIO_SET}" + (f" ({skipped} not applicable)" if skipped else "")
            + f", preset {ctx.preset}; tuning: {methods.TUNING_RULE}")
    origin = {} if submission is None else {"submission": submission.id, "kind": "submission, reproduced here"}
    store.write_json(root / spec.id / "spec.json", {**spec.model_dump(mode="json"), "spec_sha256": sha, **(extra or {}),
                                                    **origin})
    corp = stage_corpus(ctx)
    built = {}
    prog = Progress(ctx, "methods", len(chosen), every=0.0)
    out = []
    for sc in chosen:
        d = root / spec.id / sc.id
        want = {"spec_sha256": sha, "scenario_set": SCENARIO_SET, "constituents": list(sc.constituents), "base": sc.base,
                "suite_sha256": ctx.suite["sha256"], "dev_suite_sha256": dev["sha256"], "preset": ctx.preset,
                "limit": ctx.limit}
        rec = record_current(d / RECORD, want)
        if rec is None:
            if not built:
                built["dev"] = SuiteTasks.build(dev, corp, ctx.limit)
                built["test"] = SuiteTasks.build(ctx.suite, corp, ctx.limit)
            rec = bench_scenario(ctx, spec, sha, extra, sc, dev, built["dev"], built["test"], d,
                                 None if submission is None else submission.id)
        out.append(rec)
        prog.step(f"{sc.id}: {_fmt(rec.score)}" + (f" FAILED: {rec.error}" if rec.status == "failed" else ""))
    prog.end(f"{spec.id}: {sum(r.status == 'ok' for r in out)} of {len(out)} scenario(s) scored")
    ctx.log(row_line(spec.id, out))
    return out


def _provenance(ctx: Context) -> dict:
    return {"harness_version": harness_version(), "git": git_hash(), "dirty": code_dirty(),
            "packages": {k: v for k, v in packages().items() if k in ("mergekit", "torch", "lm_eval", "lm-eval", "sacrebleu", "transformers")},
            "device": ctx.device, "seed": ctx.suite["seed"], "created_utc": now_utc()}


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def row_line(method: str, recs: list[schema.MethodScenarioFile]) -> str:
    """The method's row: mean normalized test score over its scored scenarios, and per category."""
    got = [r for r in recs if r.score is not None]
    cats: dict[str, list[float]] = {}
    for r in got:
        cats.setdefault(r.category, []).append(r.score)
    mean = sum(r.score for r in got) / len(got) if got else None
    per = ", ".join(f"{c} {_fmt(sum(v) / len(v))} (n={len(v)})" for c, v in cats.items())
    line = f"[methods] row {method}: mean normalized score {_fmt(mean)} over {len(got)} scenario(s); {per}"
    from . import methodboard

    bd = methodboard.breakdown_lines(methodboard.translation_breakdown(methodboard.table(got), seed=0))
    return line + "".join(f"\n[methods] translation {b}" for b in bd)


# -- kind: method submissions, from `babelmerge run` (issue 15.6) ---------------------------------------------------
NOT_REPRODUCED = "checkpoints, not reproduced"
NO_TUNING = ("none: the submitter's own checkpoint for each scenario, evaluated as given on the test split (checkpoints, "
             "not reproduced: neither merged nor tuned here)")


def checkpoints_sha256(m: schema.Submission) -> str:
    """What a checkpoint-form method's records are reused for: every scenario's declared weight hashes."""
    return store.sha256_obj({"checkpoints": {k: v.sha256 for k, v in sorted(m.checkpoints.items())}})


def checkpoint_scenario(ctx: Context, sub, sha: str, sc: Scenario, test_all, out: Path) -> schema.MethodScenarioFile:
    """One scenario's submitted checkpoint, scored like any submitted checkpoint (identity: the content hash of its
    declared sha256s; the gate checked the files against them, and the results' weight hashes must agree); its
    record says reproduced: False and holds no tuning."""
    from .evaluate import docs_path
    from .identity import checkpoint_identity
    from .sources import ModelFault

    ck = sub.manifest.checkpoints[sc.id]
    names = list(sc.tasks)
    test_tasks = _tasks_for(test_all, names)
    base = dict(method=sub.id, spec_sha256=sha, scenario=sc.id, scenario_set=SCENARIO_SET, group=sc.group,
                category=sc.category, constituents=list(sc.constituents), base=sc.base, suite=ctx.suite["id"],
                suite_sha256=ctx.suite["sha256"], dev_suite_sha256=None, preset=ctx.preset, limit=ctx.limit,
                tuning={"rule": NO_TUNING, "budget": 0, "grid_size": 0, "sampled": []}, points=[], chosen=None,
                tasks=names, reproduced=False, checkpoint=dict(ck.sha256), submission=sub.id, provenance=_provenance(ctx))
    t = out / "results" / results_name(ctx.suite, ctx.preset)
    try:
        path = sub.folder / ck.path  # inspected by the gate: inside the submission, safetensors only, sha256 as declared
        res, docs = evaluate(ctx, f"{sub.id}@{sc.id}", path, checkpoint_identity(ck.sha256), test_tasks, t,
                             method=sub.id, kind="submission")
        if res.model.weights != dict(ck.sha256):
            for f in (t, docs_path(t)):
                f.unlink(missing_ok=True)
            raise ValueError(f"{path}: checkpoints.{sc.id}.sha256: the files differ from the declared sha256; declare "
                             "the hashes sha256sum prints")
        live, test = scores(ctx, ctx.suite, test_tasks, (res, docs), names)
        score = sum(test.values()) / len(test) if test else None
        f = schema.MethodScenarioFile(**base, results=str(t.relative_to(out)), live=live, test=test, score=score)
    except (ModelFault, FileNotFoundError, ValueError) as e:
        f = schema.MethodScenarioFile(**base, live=[], status="failed", error=str(e).splitlines()[0])
    store.write_json(out / RECORD, f.model_dump(mode="json"))
    return f


def bench_checkpoints(ctx: Context, sub, scenario_ids: list[str] | None = None,
                      root: Path = methods.METHODS_DIR) -> list[schema.MethodScenarioFile]:
    """A checkpoint-form kind: method submission on the scenarios (all by default): records under
    root/<submission id>/, grouped as one method row marked "checkpoints, not reproduced"; current records reused."""
    from .evaluate import SuiteTasks

    m = sub.manifest
    sha = checkpoints_sha256(m)
    chosen = select(scenario_ids)
    ctx.log(f"[methods] {sub.id}: {len(chosen)} submitted checkpoint(s) of {SCENARIO_SET}, preset {ctx.preset} "
            f"({NOT_REPRODUCED})")
    store.write_json(root / sub.id / "spec.json", {"id": sub.id, "title": m.title, "authors": m.authors, "method": m.method,
                                                   "method_family": m.method_family, "license": m.license,
                                                   "kind": NOT_REPRODUCED, "submission": sub.id, "spec_sha256": sha})
    corp, test_all = stage_corpus(ctx), None
    prog = Progress(ctx, "methods", len(chosen), every=0.0)
    out = []
    for sc in chosen:
        d = root / sub.id / sc.id
        want = {"spec_sha256": sha, "scenario_set": SCENARIO_SET, "constituents": list(sc.constituents), "base": sc.base,
                "suite_sha256": ctx.suite["sha256"], "preset": ctx.preset, "limit": ctx.limit, "reproduced": False}
        rec = record_current(d / RECORD, want)
        if rec is None:
            test_all = test_all or SuiteTasks.build(ctx.suite, corp, ctx.limit)
            rec = checkpoint_scenario(ctx, sub, sha, sc, test_all, d)
        out.append(rec)
        prog.step(f"{sc.id}: {_fmt(rec.score)}" + (f" FAILED: {rec.error}" if rec.status == "failed" else ""))
    prog.end(f"{sub.id}: {sum(r.status == 'ok' for r in out)} of {len(out)} scenario(s) scored")
    ctx.log(row_line(sub.id, out))
    return out


def _claim(ctx: Context, sub) -> str | None:
    """A submission's method id is its own id; it may not take the folder of a maintainers' method (methods/specs/
    <id>.yaml, or a methods/<id>/ benchmarked from a spec outside submissions/): one line, or None."""
    from .validation import line

    taken = {"specs"} | {f.stem for f in methods.spec_files(ctx.methods_dir / "specs")}
    spec = ctx.methods_dir / sub.id / "spec.json"
    other = spec.is_file() and store.read_json(spec).get("submission") != sub.id
    if sub.id in taken or other:
        return line(f"{sub.folder / 'submission.yaml'}: id: '{sub.id}' is the id of a method the maintainers benchmark "
                    f"({ctx.methods_dir / sub.id}); choose another id")
    return None


def method_submissions(ctx: Context) -> list:
    """The kind: method submissions of this suite that pass the gate (submissions.Loaded); refused ones are named
    on `ctx.err` once (with the rest of the run's refusals)."""
    from . import submissions
    from .validation import read_manifest

    ctx.subs()  # the gate over every submission, once per run: refusals are named there
    names = []
    for d in submissions.folders(ctx.submissions_dir):
        if d.is_symlink() or (ctx.only is not None and d.name not in ctx.only):
            continue
        m, _ = read_manifest(d)
        if m is not None and m.kind == "method":
            names.append(d.name)
    if not names:
        return []
    g = submissions.gate(ctx.submissions_dir, names)
    for ln in g.lines:
        if ln not in ctx.refused:
            ctx.err(ln)
            ctx.refused.append(ln)
    return [s for s in g.accepted if ctx.suite["id"] in s.manifest.suites]


def stage_submissions(ctx: Context, scenario_ids: list[str] | None = None) -> list[str]:
    """`babelmerge run`'s method step: every kind: method submission that passes the gate, on the scenarios (all by
    default), into ctx.methods_dir/<submission id>/: a mergekit built-in with a grid through `bench` (the spec from
    the submission, never a module), a checkpoint set through `bench_checkpoints`. Returns what failed
    (<id> or <id>@<scenario>); the other submissions go on."""
    failed = []
    for s in method_submissions(ctx):
        problem = _claim(ctx, s)
        if problem:
            ctx.err(problem)
            failed.append(s.id)
            continue
        try:
            if s.manifest.method_spec is not None:
                recs = bench(ctx, s.folder / s.manifest.method_spec, scenario_ids, ctx.methods_dir, submission=s)
            else:
                recs = bench_checkpoints(ctx, s, scenario_ids, ctx.methods_dir)
        except methods.MethodError as e:
            ctx.err(str(e))
            failed.append(s.id)
            continue
        failed += [f"{s.id}@{r.scenario}" for r in recs if r.status == "failed"]
    return failed
