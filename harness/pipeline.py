"""`babelmerge run`: corpus -> family -> merges -> evaluation -> similarity -> analysis -> site, each stage
skipping work whose inputs have not changed."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import analysis, corpus as corpus_mod, identity, merge as merge_mod, inference, schema, site, sitecache, store, submissions
from .family.build import FAMILY, Builder, member_dir, members
from .family.presets import PRESETS
from .provenance import git_hash, harness_version, packages
from .suite import load_suite, results_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@dataclass
class Context:
    suite_name: str = "babel-mini-v2"
    preset: str | None = None
    submissions_dir: Path = submissions.SUBMISSIONS_DIR
    references_dir: Path = submissions.REFERENCES_DIR
    methods_dir: Path = submissions.REPO / "methods"   # methods/<id>/<scenario>/method.json (babelmerge methods bench)
    out: Path = site.DEFAULT_OUT
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None         # generation rows (auto when None)
    batch_tokens: int | None = None       # scoring token budget per forward pass (auto when None)
    backend: str = "babelmerge"           # or "hf", lm-eval's stock backend
    limit: int | None = None
    only: list[str] | None = None          # submission ids to restrict to
    log: callable = print
    err: callable = field(default=lambda line: print(line, file=sys.stderr, flush=True))  # refusal lines
    verbose: bool = False                  # -v: per-unit detail lines and third-party output
    allow_dirty: bool = False              # write published results from uncommitted code (marked dirty)
    from_scratch: bool = False             # ignore stored results and caches: recompute everything
    reproduce: int = 1                     # units recomputed by run's closing reproduce pass (0: none)
    data: str | None = None                # suites on local data: --data DIR (else $BABELMERGE_DATA)
    languages: str | None = None           # --languages deu_Latn,fra_Latn: a subset of the suite's languages
    tensor_parallel: int | None = None     # --backend vllm: tensor_parallel_size
    data_parallel: int | None = None       # --backend vllm: data_parallel_size
    executor: str = "local"                # where evaluation units and probe passes run (harness/executors.py)
    ray_address: str | None = None         # --executor ray: the cluster to join (None: this process's or a new local one)
    suite: dict = field(init=False)
    refused: list[str] = field(init=False, default_factory=list)  # the gate's problem lines, one per problem
    _subs: list | None = field(init=False, default=None, repr=False)
    _corpus: object = field(init=False, default=None, repr=False)
    _builder: object = field(init=False, default=None, repr=False)
    _plan: list | None = field(init=False, default=None, repr=False)
    _made: dict = field(init=False, default_factory=dict, repr=False)
    _built: set = field(init=False, default_factory=set, repr=False)
    _data: object = field(init=False, default=None, repr=False)

    def detail(self, *args) -> None:
        """A line shown with -v only."""
        if self.verbose:
            self.log(*args)

    def __post_init__(self):
        from .evaluate import pick_device

        self.suite = load_suite(self.suite_name)
        if self.languages:
            from .data import parse_languages
            from .suite import with_languages

            self.suite = with_languages(self.suite, parse_languages(self.languages, self.suite["languages"]))
        self.preset = self.preset or (self.suite.get("family") or {}).get("preset", "tiny")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset '{self.preset}'; choose one of {', '.join(PRESETS)}")
        self.device = pick_device(self.device)
        self.dtype = self.dtype or self.suite["evaluation"]["dtype"]
        from . import executors

        if self.executor not in executors.EXECUTORS:
            raise ValueError(f"--executor {self.executor}: unknown; choose one of {', '.join(sorted(executors.EXECUTORS))}")
        if self.ray_address and self.executor != "ray":
            raise ValueError(f"--ray-address {self.ray_address}: only with --executor ray")
        if self.executor == "ray":
            executors.ray_module()  # a missing ray is said now, not after the stages before evaluation

    @property
    def results_name(self) -> str:
        return results_name(self.suite, self.preset)

    @property
    def similarity_name(self) -> str:
        return results_name(self.suite, self.preset, stem="similarity")

    @property
    def neurons_name(self) -> str:
        return results_name(self.suite, self.preset, stem="neurons")

    def subs(self) -> list[submissions.Loaded]:
        """The submissions of this suite that pass the gate (`babelmerge validate`'s checks, once per run); each
        refused one's problem lines go to `err` once and into `refused`, and nothing else of it is read."""
        if self._subs is None:
            g = submissions.gate(self.submissions_dir, self.only)
            self.refused = g.lines
            for line in self.refused:
                self.err(line)
            # a kind: method submission is a method row, not a model: `methods bench` reads it, not the model stages
            self._subs = [s for s in g.accepted if self.suite["id"] in s.manifest.suites and s.manifest.kind != "method"]
        return self._subs


def stage_source(ctx: Context):
    """What the suite's documents come from: the local data folder for suites on real data, else the corpus."""
    if "data" not in ctx.suite:
        return stage_corpus(ctx)
    if ctx._data is None:
        from .data import open_data

        ctx._data = open_data(ctx.suite, ctx.data)
    return ctx._data


def stage_corpus(ctx: Context) -> corpus_mod.Corpus:
    if ctx._corpus is None:
        ctx._corpus = corpus_mod.build(log=ctx.detail)
    return ctx._corpus


class Progress:
    """One progress line per stage: counts, elapsed time and an estimate of what is left. On a terminal the
    line is redrawn in place; elsewhere it is printed at most every `every` seconds, and once at the end."""

    def __init__(self, ctx: Context, stage: str, total: int, every: float = 60.0):
        self.ctx, self.stage, self.total, self.every = ctx, stage, total, every
        self.t0 = self.last = time.perf_counter()
        self.done = 0
        self.tty = ctx.log is print and sys.stdout.isatty() and not ctx.verbose

    def step(self, what: str = "") -> None:
        self.done += 1
        now = time.perf_counter()
        if self.done < self.total and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        el = now - self.t0
        left = el / self.done * (self.total - self.done)
        line = f"[{self.stage}] {self.done}/{self.total} {what}, {el:.0f}s elapsed, about {left:.0f}s left"
        if self.tty:
            print("\r" + line[:150].ljust(150), end="", flush=True)
        elif self.done < self.total:
            self.ctx.log(line)

    def end(self, line: str) -> None:
        if self.tty and self.done:
            print("\r" + " " * 150 + "\r", end="", flush=True)
        self.ctx.log(f"[{self.stage}] {line} ({time.perf_counter() - self.t0:.1f}s)")


# -- what each model is, and making its checkpoint on demand ---------------------------------------------
@dataclass
class Model:
    """One model of the run: its identity (harness/identity.py), where its results go; its checkpoint is only
    made (trained, merged, fetched) when some stale result needs it."""

    name: str
    identity: str | None             # None: it has none (error says why)
    rpath: Path
    extra: dict
    member: str | None = None         # family member name
    sub: submissions.Loaded | None = None
    path: Path | None = None          # a given checkpoint (external models)
    error: str | None = None


def builder(ctx: Context) -> Builder:
    if ctx._builder is None:
        ctx._builder = Builder(ctx.preset, log=ctx.detail, corpus=stage_corpus(ctx))
    return ctx._builder


def ref_identity(ctx: Context, ref: str) -> str:
    """A recipe's model reference -> identity: a family member by recipe, a hub model by its pinned revision
    (an immutable commit: its content); any other reference was refused by the gate."""
    prefix = f"family:{FAMILY}/"
    if ref.startswith(prefix):
        return builder(ctx).identity(ref[len(prefix):])
    if schema.HUB_REF.match(ref):
        return store.sha256_obj({"hub": ref})
    raise ValueError(f"recipe model '{ref}': not a family member or a pinned hub id; run `babelmerge validate`")


def submission_identity(ctx: Context, s: submissions.Loaded) -> str:
    """A recipe merge by its recipe (no merging, no training); a checkpoint by its declared content hashes,
    which are checked against the files before the checkpoint is ever loaded."""
    if s.manifest.kind == "recipe":
        recipe = merge_mod.read_recipe(s.folder / s.manifest.recipe)
        return merge_mod.recipe_identity(recipe, ctx.suite["seed"], lambda r: ref_identity(ctx, r))
    return identity.checkpoint_identity(s.manifest.checkpoint.sha256)


def plan(ctx: Context) -> list[Model]:
    """Every family member and submission of the run, with identities; nothing is trained or merged here."""
    if ctx._plan is not None:
        return ctx._plan
    preset = PRESETS[ctx.preset]
    out = []
    for m in members(preset):
        out.append(Model(m.name, builder(ctx).identity(m.name),
                         ctx.references_dir / FAMILY / m.name / "results" / ctx.results_name,
                         {"kind": "family", "family": FAMILY, "preset": ctx.preset, "arm": m.arm, "method": "trained",
                          "base_model": f"family:{FAMILY}/{m.parent}" if m.parent else None}, member=m.name))
    for s in ctx.subs():
        extra = {"kind": "submission", "family": FAMILY, "preset": ctx.preset, "arm": s.manifest.arm,
                 "method": s.manifest.method, "constituents": s.manifest.constituents, "base_model": s.manifest.base_model}
        try:
            ident, err = submission_identity(ctx, s), None
        except (FileNotFoundError, ValueError, KeyError, OSError) as e:
            ident, err = None, str(e).splitlines()[0]
        out.append(Model(s.id, ident, s.results_path(ctx.results_name), extra, sub=s, error=err))
    ctx._plan = out
    return out


def by_name(ctx: Context) -> dict[str, Model]:
    return {m.name: m for m in plan(ctx)}


def build_members(ctx: Context, names: list[str]) -> None:
    """Train the family members named (and their ancestors) that are not built yet."""
    todo = [n for n in names if n not in ctx._built]
    if todo:
        builder(ctx).build(todo)
        ctx._built.update(todo)


def make(ctx: Context, m: Model) -> tuple[Path | None, dict | None]:
    """The model's checkpoint folder and merge provenance, made on demand (cached per run); (None, {"error"})
    for a submission that cannot be merged or whose checkpoint is refused."""
    from .merge import MergeError
    from .safety import UnsafeCheckpoint, inspect_checkpoint

    if m.name in ctx._made:
        return ctx._made[m.name]
    if m.path is not None:
        made = (m.path, None)
    elif m.member is not None:
        build_members(ctx, [m.member])
        made = (member_dir(PRESETS[ctx.preset], m.member), None)
    else:
        s = m.sub
        try:
            if m.error:
                raise ValueError(m.error)
            if s.manifest.kind == "recipe":
                recipe = merge_mod.read_recipe(s.folder / s.manifest.recipe)
                build_members(ctx, [r.split("/")[-1] for r in merge_mod.model_refs(recipe) if r.startswith("family:")])
                made = merge_mod.run_recipe(s.folder / s.manifest.recipe, ctx.preset, ctx.suite["seed"], ctx.device,
                                            ctx.detail, identity_of=lambda r: ref_identity(ctx, r))
            else:
                ck = s.manifest.checkpoint
                if ck.path is not None:  # inspected by the gate
                    path = s.folder / ck.path
                else:
                    path = merge_mod.hub_checkpoint(ck.hub)
                    inspect_checkpoint(path, path, ck.sha256)
                made = (path, None)
        except (MergeError, UnsafeCheckpoint, FileNotFoundError, ValueError) as e:
            ctx.log(f"[merge] {s.id}: FAILED: {e}")
            made = (None, {"error": str(e).splitlines()[0]})
    ctx._made[m.name] = made
    return made


# -- what is stale --------------------------------------------------------------------------------------
def eval_stale(ctx: Context, models: list[Model], data: dict | None = None) -> list[Model]:
    from .evaluate import is_current

    return [m for m in models if ctx.from_scratch or m.identity is None
            or not is_current(m.rpath, m.identity, ctx.suite, ctx.limit, data)]


def neurons_current(ctx: Context, m: Model, probe_sha: str) -> dict | None:
    """The stored neuron sets when the model's neuron file is current (same identity, probe, diagnostics)."""
    from .similarity.compute import DIAG_VERSION

    target = m.rpath.parent / ctx.neurons_name
    if ctx.from_scratch or m.identity is None or not target.exists():
        return None
    old = schema.NeuronFile.model_validate(store.read_json(target))
    if old.model_identity == m.identity and old.probe_sha256 == probe_sha and old.diagnostics == DIAG_VERSION:
        return old.sets
    return None


def sim_models(ctx: Context, m: Model) -> tuple[list[Model], dict[str, Model] | None] | None:
    """A merge's constituents and, per constituent, the base its task vector is taken against (None when some
    base is not a family member); None when the merge has a constituent outside the family."""
    if m.sub is None or not all(c.startswith("family:") for c in m.sub.manifest.constituents):
        return None
    names = by_name(ctx)
    parents = {x.name: x.parent for x in members(PRESETS[ctx.preset])}
    cons = [names[c.split("/")[-1]] for c in m.sub.manifest.constituents]
    bases = {}
    for c in cons:
        base = m.sub.manifest.base_model or (f"family:{FAMILY}/{parents[c.name]}" if parents.get(c.name) else None)
        if base is None or not base.startswith("family:"):
            return cons, None
        bases[c.name] = names[base.split("/")[-1]]
    return cons, bases


def sim_current(ctx: Context, m: Model, probe_sha: str) -> bool:
    from .similarity.compute import DIAG_VERSION

    target = m.sub.results_path(ctx.similarity_name)
    if ctx.from_scratch or m.identity is None or not target.exists():
        return False
    cons, _ = sim_models(ctx, m)
    old = schema.SimilarityFile.model_validate(store.read_json(target))
    want = {m.name: m.identity} | {c.name: c.identity for c in cons}
    return old.probe_sha256 == probe_sha and old.diagnostics == DIAG_VERSION and old.identities == want


def stale(ctx: Context) -> dict[str, list[Model]]:
    """What this run must compute: models to evaluate, models needing neuron statistics, merges needing
    similarity rows; and the models whose checkpoints that takes."""
    from .similarity.compute import build_probe

    models = [m for m in plan(ctx)]
    probe_sha = build_probe(stage_corpus(ctx), ctx.suite["languages"]).sha
    ev = eval_stale(ctx, models)
    ne = [m for m in models if m.identity is not None and neurons_current(ctx, m, probe_sha) is None]
    pairs = [m for m in models if m.sub is not None and m.identity is not None and sim_models(ctx, m) is not None
             and not sim_current(ctx, m, probe_sha)]
    need: dict[str, Model] = {m.name: m for m in ev + ne if m.identity is not None}
    if not movement_current(ctx):
        need.update({m.name: m for m in models if m.member is not None})
    for m in pairs:
        cons, bases = sim_models(ctx, m)
        for x in [m, *cons, *(bases or {}).values()]:
            need[x.name] = x
    return {"evaluate": ev, "neurons": ne, "similarity": pairs, "need": list(need.values())}


# -- stages ------------------------------------------------------------------------------------------------
def stage_family(ctx: Context, corp: corpus_mod.Corpus | None = None, needed: list[Model] | None = None) -> list[str]:
    """Train the family members that stale results need (all of them when `needed` is None)."""
    stage_corpus(ctx) if corp is None else setattr(ctx, "_corpus", corp)
    names = [m.name for m in members(PRESETS[ctx.preset])] if needed is None else []
    for m in needed or []:
        if m.member is not None:
            names.append(m.member)
        elif m.sub is not None and m.sub.manifest.kind == "recipe" and m.error is None:
            recipe = merge_mod.read_recipe(m.sub.folder / m.sub.manifest.recipe)
            names += [r.split("/")[-1] for r in merge_mod.model_refs(recipe) if r.startswith("family:")]
    names = list(dict.fromkeys(names))
    if names:
        b = builder(ctx)
        todo = [x for x in members(PRESETS[ctx.preset]) if x.name in b.closure(names) and not b.cached(x)]
        prog = Progress(ctx, "family", len(todo))
        for x in todo:
            build_members(ctx, [x.name])
            prog.step(x.name)
        build_members(ctx, names)
        prog.end(f"{len(names)} member(s) needed, {len(todo)} trained")
    else:
        ctx.log("[family] no member needed: every stored result is current for its recipe identity")
    return names


def stage_merges(ctx: Context, needed: list[Model] | None = None) -> dict[str, tuple[Path | None, dict | None]]:
    """Checkpoint folder (and merge provenance) of every submission (or those in `needed`); (None, {"error": line})
    for one that cannot be merged or whose checkpoint is refused."""
    subs = [m for m in plan(ctx) if m.sub is not None]
    todo = subs if needed is None else [m for m in subs if m.name in {x.name for x in needed}]
    prog = Progress(ctx, "merge", len(todo))
    out = {}
    for m in todo:
        out[m.name] = make(ctx, m)
        prog.step(m.name)
    prog.end(f"{sum(1 for p, _ in out.values() if p is not None)} of {len(todo)} submissions ready"
             + ("" if needed is None else f" ({len(subs) - len(todo)} not needed: their results are current)"))
    return out


def guard(ctx: Context, path: Path) -> bool:
    """Before writing a results file: refuse to write into the repository's submissions/ or references/ from a
    tree with uncommitted code changes unless --allow-dirty. Returns whether the result is to be marked dirty."""
    from .provenance import REPO, code_dirty

    p = Path(path).resolve()
    published = any(p.is_relative_to((REPO / d).resolve()) for d in ("submissions", "references"))
    if not published or not code_dirty():
        return False
    if not ctx.allow_dirty:
        raise DirtyTree(f"{path}: refusing to write a published result from a tree with uncommitted changes to "
                        "harness/, suites/ or pyproject.toml; commit them first, or pass --allow-dirty (the result is marked dirty)")
    return True


class DirtyTree(ValueError):
    """Publishable results from uncommitted code: one line."""


def eval_units(ctx: Context, models: list[tuple[str, Path, schema.ModelInfo]], tasks, finish) -> None:
    """Compute the missing (model, task) units of `models` (name, checkpoint, info) on ctx.executor (harness/
    executors.py; merges and assembly stay here). finish(name, {task: reason of a failed unit}, batch_info) is
    called for each model as soon as its last unit is done (at once for one with none missing). Two models with the
    same weights share their units: each is computed once."""
    from . import executors
    from .evaluate import compute_unit, unit_dir, unit_file

    local = ctx.executor == "local"
    device = ctx.device if local else "auto"  # on Ray: the worker's own device (a GPU where the task was given one)
    units, left, owner = [], {}, {}
    for name, path, info in models:
        udir = unit_dir(info.sha256, tasks.suite, tasks.limit, tasks.key)
        left[name] = [{}, None, 0]  # failed units, batch_info, units to go
        for spec in tasks.specs:
            f = unit_file(udir, spec)
            if f.exists():
                continue
            if str(f) not in owner:
                args = (path, name, info.sha256, f, spec, tasks if local else tasks.one(spec), device, ctx.dtype,
                        ctx.batch_size, ctx.batch_tokens, ctx.backend, (ctx.tensor_parallel, ctx.data_parallel))
                units.append(executors.Unit((f,), compute_unit, args, label=f"{name} {spec.name}", group=name))
            owner.setdefault(str(f), []).append((name, spec.name))
            left[name][2] += 1
    for name, (errors, batch, n) in left.items():
        if n == 0:
            finish(name, errors, batch)

    def done(o: executors.Outcome) -> None:
        if o.ok and not o.cached:
            ctx.detail(f"[evaluate]     {o.unit.label} ({o.seconds:.1f}s)")
        elif not o.ok:
            ctx.detail(f"[evaluate]     {o.unit.label}: FAILED: {o.reason}")
        for name, task in owner[str(o.unit.outputs[0])]:
            st = left[name]
            st[2] -= 1
            if o.ok:
                st[1] = o.value or st[1]
            else:
                st[0][task] = o.reason
            if st[2] == 0:
                finish(name, st[0], st[1])

    executors.run(ctx.executor, units, done, address=ctx.ray_address, verbose=ctx.verbose)


def stage_evaluate(ctx: Context, merged: dict | None = None, corp: corpus_mod.Corpus | None = None,
                   items: list | None = None) -> list[str]:
    """Evaluate every model whose stored result is not current for its identity. Returns the names of the models
    that failed (each recorded as a failed results file with its reason); the others go on."""
    from .evaluate import ModelFault, SuiteTasks, evaluate_to_file, model_info

    if corp is not None:
        ctx._corpus = corp
    for name, made in (merged or {}).items():
        ctx._made.setdefault(name, made)
    models = items if items is not None else plan(ctx)
    tasks = None
    if "data" in ctx.suite:  # a result on local data is current only for the same files' bytes: read them first
        tasks = SuiteTasks.build(ctx.suite, stage_source(ctx), ctx.limit)
    todo = eval_stale(ctx, models, tasks.data if tasks else None)
    failed = []
    ctx.log(f"[evaluate] {len(models) - len(todo)} of {len(models)} models current; evaluating {len(todo)} on {ctx.device}")
    if not todo:
        return failed
    tasks = tasks or SuiteTasks.build(ctx.suite, stage_source(ctx), ctx.limit)
    prog = Progress(ctx, "evaluate", len(todo))
    ready, index, t0 = {}, {m.name: i for i, m in enumerate(todo, 1)}, time.perf_counter()
    for m in todo:
        path, prov = make(ctx, m)
        if path is None:  # its merge failed or its checkpoint was refused: recorded, not evaluated
            _record_failure(ctx, m, prov["error"])
            failed.append(m.name)
            prog.step(m.name)
            continue
        try:
            ready[m.name] = (m, path, prov, model_info(path, m.name, identity_=m.identity, **m.extra), guard(ctx, m.rpath))
        except (ModelFault, FileNotFoundError) as e:
            ctx.log(f"[evaluate] ({index[m.name]}/{len(todo)}) {m.name}: FAILED: {e}")
            failed.append(m.name)
            prog.step(m.name)

    def finish(name: str, errors: dict, batch: dict | None) -> None:
        m, path, prov, info, dirty = ready[name]
        i = index[name]
        try:
            res = evaluate_to_file(path, info, m.rpath, tasks, ctx.device, ctx.dtype, ctx.batch_size, ctx.batch_tokens,
                                   merge=prov, backend=ctx.backend, log=ctx.detail, dirty=dirty,
                                   parallel=(ctx.tensor_parallel, ctx.data_parallel), unit_errors=errors, batch=batch)
        except (ModelFault, FileNotFoundError) as e:
            ctx.log(f"[evaluate] ({i}/{len(todo)}) {m.name}: FAILED: {e}")
            failed.append(m.name)
            prog.step(m.name)
            return
        p = analysis.primary(analysis.tidy([res]))
        ctx.detail(f"[evaluate] ({i}/{len(todo)}) {m.name}: mean bpb {p[p.task_kind == 'lm'].value.mean():.3f}, "
                   f"mean chrF++ {p[p.task_kind == 'mt'].value.mean():.2f} ({time.perf_counter() - t0:.1f}s elapsed)")
        prog.step(m.name)

    eval_units(ctx, [(name, r[1], r[3]) for name, r in ready.items()], tasks, finish)
    prog.end(f"{len(todo) - len(failed)} of {len(todo)} evaluated, {len(failed)} failed"
             + ("" if ctx.executor == "local" else f" (units on {ctx.executor})"))
    return failed


def _record_failure(ctx: Context, m: Model, error: str) -> None:
    """A submission that never reached evaluation (its merge failed, its checkpoint was refused). An unchanged
    failure is not written again."""
    from .evaluate import _provenance

    s = m.sub
    path = s.results_path(ctx.results_name)
    if path.exists():
        old = store.read_json(path)
        if old.get("status") == "failed" and old.get("error") == error and old.get("suite_sha256") == ctx.suite["sha256"]:
            return
    dirty = guard(ctx, path)
    info = schema.ModelInfo(name=s.id, kind="submission", identity=m.identity, sha256="", weights={}, arm=s.manifest.arm,
                            method=s.manifest.method, constituents=s.manifest.constituents, base_model=s.manifest.base_model)
    res = schema.ResultsFile(suite=ctx.suite["id"], suite_sha256=ctx.suite["sha256"], tasks={}, model=info, status="failed",
                             error=error, rows=[], provenance=_provenance(ctx.device, ctx.dtype, None, ctx.backend,
                                                                         time.perf_counter(), ctx.limit, None, ctx.suite, dirty))
    store.write_json(path, res.model_dump(mode="json"))


def external_items(ctx: Context, models: list[str], out_dir: Path) -> list[Model]:
    """Models for checkpoints given on the command line, identified by content."""
    from .sources import resolve_model

    items = []
    for ref in models:
        path = resolve_model(ref)
        name = path.name if Path(ref).exists() else ref.replace("/", "--").replace("@", "-")
        try:
            ident, err = identity.model_hash(path), None
        except FileNotFoundError as e:
            ident, err = None, str(e)
        items.append(Model(name, ident, out_dir / name / "results" / ctx.results_name,
                           {"kind": "external", "method": "external"}, path=path, error=err))
    return items


def stage_similarity(ctx: Context, merged: dict | None = None, corp: corpus_mod.Corpus | None = None) -> dict:
    """Neuron statistics for every model, and similarity rows (CKA, neuron overlap, weight space, loss path)
    for every merge whose constituents are family members; reused when the identities, probe and diagnostics
    match, and computed from checkpoints (cached by weight hash and probe) otherwise."""
    from .similarity.compute import (DIAG_VERSION, PROBE_VERSION, SimilarityCache, build_probe, merge_similarity_rows,
                                     neuron_summary)

    if corp is not None:
        ctx._corpus = corp
    for name, made in (merged or {}).items():
        ctx._made.setdefault(name, made)
    t_start = time.perf_counter()
    cache = SimilarityCache(build_probe(stage_corpus(ctx), ctx.suite["languages"]), "cpu" if ctx.device == "cpu" else ctx.device)
    prov = {"harness": harness_version(), "git": git_hash(), "device": cache.device, "torch": packages()["torch"]}
    sets: dict[str, dict] = {}

    def sha_of(m: Model) -> tuple[str, Path] | None:
        path = make(ctx, m)[0]
        return None if path is None else (cache.sha_of(path), path)

    models = [m for m in plan(ctx) if m.identity is not None]
    todo = []
    for m in models:
        old = neurons_current(ctx, m, cache.sha)
        if old is not None:
            sets[m.name] = old
        else:
            todo.append(m)
    pairs = [m for m in models if m.sub is not None and sim_models(ctx, m) is not None and not sim_current(ctx, m, cache.sha)]
    probed = {m.name: m for m in todo} | {x.name: x for m in pairs for x in [m, *sim_models(ctx, m)[0]]}
    prog = Progress(ctx, "similarity", len(todo) + len(pairs) + len(probed))
    bad = probe_passes(ctx, cache, [(name, sha_of(x)) for name, x in probed.items()], prog)
    for m in todo:
        t0 = time.perf_counter()
        got = sha_of(m)
        if got is None:
            prog.step(m.name)
            continue
        sha, path = got
        if sha in bad:
            ctx.log(f"[similarity] {m.name}: no neuron statistics: {bad[sha]}")
            prog.step(m.name)
            continue
        try:
            rows, sets[m.name] = neuron_summary(cache.arrays(sha, path), cache.probe)
        except ValueError as e:
            ctx.log(f"[similarity] {m.name}: no neuron statistics: {e}")
            prog.step(m.name)
            continue
        target = m.rpath.parent / ctx.neurons_name
        p = {**prov, "dirty": guard(ctx, target)}
        f = schema.NeuronFile(model=m.name, model_identity=m.identity, model_sha256=sha, probe=PROBE_VERSION,
                              probe_sha256=cache.sha, diagnostics=DIAG_VERSION, provenance=p,
                              rows=[schema.NeuronRow(**r) for r in rows], sets=sets[m.name])
        store.write_json(target, f.model_dump(mode="json"))
        ctx.detail(f"[similarity] {m.name}: neuron statistics ({time.perf_counter() - t0:.1f}s)")
        prog.step(m.name)

    for m in pairs:
        cons, bases = sim_models(ctx, m)
        me, cs = sha_of(m), [sha_of(c) for c in cons]
        if me is None or any(c is None for c in cs):
            prog.step(m.name)
            continue
        if any(x[0] in bad for x in [me, *cs]):
            ctx.log(f"[similarity] {m.name}: no similarity rows: {next(bad[x[0]] for x in [me, *cs] if x[0] in bad)}")
            prog.step(m.name)
            continue
        b = None if bases is None else {n: sha_of(x) for n, x in bases.items()}
        t0 = time.perf_counter()
        rows = merge_similarity_rows(cache, (m.name, *me), [(c.name, *x) for c, x in zip(cons, cs)], b, sets,
                                     PRESETS[ctx.preset].layers)
        target = m.sub.results_path(ctx.similarity_name)
        f = schema.SimilarityFile(probe=PROBE_VERSION, probe_sha256=cache.sha, diagnostics=DIAG_VERSION,
                                  identities={m.name: m.identity} | {c.name: c.identity for c in cons},
                                  provenance={**prov, "dirty": guard(ctx, target)}, rows=[schema.SimilarityRow(**r) for r in rows])
        store.write_json(target, f.model_dump(mode="json", exclude_none=True))
        ctx.detail(f"[similarity] {m.name}: {len(rows)} rows ({time.perf_counter() - t0:.1f}s)")
        prog.step(m.name)
    moved = stage_movement(ctx, cache, prov)
    wall = time.perf_counter() - t_start
    prog.end(("movement from init recomputed; " if moved else "") + f"{len(models) - len(todo)} of {len(models)} neuron files current, {len(pairs)} merge(s) recomputed "
             f"({cache.computed} model passes or pair computations run, the rest cached)")
    return {"wall_s": wall, "computed": cache.computed}


def probe_passes(ctx: Context, cache, models: list[tuple[str, tuple[str, Path] | None]], prog: Progress) -> dict[str, str]:
    """One probe pass per model (name, (weight sha, checkpoint) or None) whose arrays are not cached, on
    ctx.executor (harness/executors.py); returns {sha: reason} for the passes that failed."""
    from . import executors
    from .similarity.compute import probe_unit

    device = ("cpu" if ctx.device == "cpu" else ctx.device) if ctx.executor == "local" else "auto"
    units, seen = [], set()
    for name, got in models:
        if got is None or got[0] in seen or cache.model_file(got[0]).exists():
            prog.step(name)
            continue
        seen.add(got[0])
        units.append(executors.Unit((cache.model_file(got[0]),), probe_unit, (got[1], got[0], cache.probe, device),
                                    label=name, group=name))
    bad = {}

    def done(o: executors.Outcome) -> None:
        sha = o.unit.args[1]
        if not o.ok:
            bad[sha] = o.reason
        elif not o.cached:
            cache.computed += 1
            ctx.detail(f"[similarity] {o.unit.label}: probe pass ({o.seconds:.1f}s)")
        prog.step(o.unit.label)

    executors.run(ctx.executor, units, done, address=ctx.ray_address, verbose=ctx.verbose)
    return bad


def movement_path(ctx: Context) -> Path:
    return ctx.references_dir / FAMILY / results_name(ctx.suite, ctx.preset, stem="movement")


def init_of(member: str) -> str:
    """The random initialisation a family member descends from: init-s1 for the -s1 members, init-s0 otherwise."""
    return "init-s1" if member.endswith("-s1") else "init-s0"


def movement_current(ctx: Context) -> bool:
    """Whether the stored distances from initialisation are for this family's member identities."""
    from .similarity.compute import DIAG_VERSION

    p = movement_path(ctx)
    if ctx.from_scratch or not p.exists():
        return False
    old = schema.SimilarityFile.model_validate(store.read_json(p))
    want = {m.name: m.identity for m in plan(ctx) if m.member is not None}
    return old.diagnostics == DIAG_VERSION and old.identities == want


def stage_movement(ctx: Context, cache, prov: dict) -> bool:
    """How far each trained family member moved from its initialisation (similarity.weights.relative_distance),
    per layer group, in one file beside the family's results; reused while the member identities match."""
    from .similarity.compute import DIAG_VERSION, PROBE_VERSION, _weights
    from .similarity.weights import relative_distance

    if movement_current(ctx):
        return False
    fam = {m.name: m for m in plan(ctx) if m.member is not None}
    if "init-s0" not in fam:
        return False
    n_blocks = PRESETS[ctx.preset].layers
    paths = {n: make(ctx, m)[0] for n, m in fam.items()}
    shas = {n: cache.sha_of(p) for n, p in paths.items()}
    rows = []
    for name in sorted(fam):
        init = "init-s0" if name == "init-s1" else init_of(name)
        if name == "init-s0" or init not in fam:
            continue
        for group, v in relative_distance(_weights(paths[name]), _weights(paths[init]), n_blocks).items():
            rows.append(schema.SimilarityRow(metric="rel_distance", a=name, b=init, a_sha256=shas[name], b_sha256=shas[init],
                                             relation="member-init", group=group, value=v, probe=PROBE_VERSION))
    target = movement_path(ctx)
    f = schema.SimilarityFile(probe=PROBE_VERSION, probe_sha256=cache.sha, diagnostics=DIAG_VERSION,
                              identities={n: m.identity for n, m in fam.items()},
                              provenance={**prov, "dirty": guard(ctx, target)}, rows=rows)
    store.write_json(target, f.model_dump(mode="json", exclude_none=True))
    return True


def load_movement(ctx: Context) -> pd.DataFrame:
    """The stored distances from initialisation (empty when none is stored)."""
    p = movement_path(ctx)
    if not p.exists():
        return pd.DataFrame(columns=["a", "b", "group", "value"])
    return pd.DataFrame([r.model_dump() for r in schema.SimilarityFile.model_validate(store.read_json(p)).rows])


def load_docs(ctx: Context, results: list[schema.ResultsFile]) -> dict[str, schema.DocsFile]:
    """Per-document files beside the results of merges and family members, by model name."""
    from .evaluate import docs_path

    out = {}
    for f in sorted(ctx.references_dir.glob(f"*/*/results/{ctx.results_name}")) + [
            s.results_path(ctx.results_name) for s in ctx.subs() if s.results_path(ctx.results_name).exists()]:
        d = docs_path(f)
        if d.exists():
            doc = schema.DocsFile.model_validate(store.read_json(d))
            name = f.parent.parent.name
            out[name] = doc
    return out


def load_tables(ctx: Context) -> tuple[list[schema.ResultsFile], pd.DataFrame, dict[str, list[str]]]:
    """Everything the analysis and site read: results, similarity rows, merge constituents."""
    subs = ctx.subs()
    results = submissions.all_results(ctx.results_name, subs, ctx.references_dir)
    merges = {s.id: s.manifest.constituents for s in subs if s.results_path(ctx.results_name).exists()}
    sims = []
    for s in subs:
        f = s.results_path(ctx.similarity_name)
        if f.exists():
            for r in schema.SimilarityFile.model_validate(store.read_json(f)).rows:
                sims.append({"merge": s.id, **r.model_dump()})
    return results, pd.DataFrame(sims), merges


def load_neurons(ctx: Context) -> pd.DataFrame:
    """Every model's per-layer neuron rows, with the model's name."""
    rows = []
    for f in sorted(ctx.references_dir.glob(f"*/*/results/{ctx.neurons_name}")) + [
            s.results_path(ctx.neurons_name) for s in ctx.subs() if s.results_path(ctx.neurons_name).exists()]:
        nf = schema.NeuronFile.model_validate(store.read_json(f))
        rows += [{"model": nf.model, **r.model_dump()} for r in nf.rows]
    return pd.DataFrame(rows)


def stage_analyze(ctx: Context) -> dict:
    """The analysis tables (report.build), summarised in a few lines: per arm the set-level headline, the
    strongest per-method correlations, the power of the grid, and the replication table, verdict first."""
    from . import report

    results, sim, merges = load_tables(ctx)
    df = analysis.tidy(results)
    docs = load_docs(ctx, results)
    # the set-level correlations and power simulations go through the site's memo (site/_build.cache): the site
    # build that follows takes them from there instead of computing them again, and a rerun computes only what changed
    memo = sitecache.Memo(site.stats_folder(ctx.out) / "memo.pkl", sitecache.code_digest(*site.STATS_CODE))
    out = report.build(df, docs, merges, sim, load_neurons(ctx), load_movement(ctx), ctx.suite, memo=memo)
    memo.save()
    paired = analysis.paired_vs_expert(docs, merges, ctx.suite)
    n_sets = out["set_points"]["set"].nunique() if not out["set_points"].empty else 0
    ctx.log(f"[analyze] {len(merges)} merges over {n_sets} constituent sets (the unit of every correlation below)")
    for h in out["headline"]:
        ctx.log(f"[analyze] {h['arm']} arm: Spearman(constituent linear CKA, gap to expert), pooled over methods: "
                f"{h['rho']:+.3f} [{h['lo']:+.2f}, {h['hi']:+.2f}], n = {h['n']} sets ({h['merges']} merges): {h['verdict']}")
    for p in out["power"]:
        ctx.detail(f"[analyze] power: {p['arm']} {p['method']}: {p['n_sets']} sets detect |rho| >= {p['detectable_rho']} at 80%")
    if not paired.empty:
        worse = int(((paired.ci_high < 0)).sum())
        ctx.log(f"[analyze] paired bootstrap: {worse} of {len(paired)} (merge, task) pairs significantly below their expert (95%)")
    c = out["set_correlations"]
    if not c.empty:
        top = c[c.method != inference.POOLED].dropna(subset=["rho"]).assign(a=lambda d: d.rho.abs()).sort_values("a", ascending=False)
        for r in top.head(5).itertuples():
            ctx.detail(f"[analyze] {r.arm} {r.method:<16} {r.diagnostic:<28} rho {r.rho:+.3f} [{r.rho_lo:+.2f}, {r.rho_hi:+.2f}] "
                       f"p_perm {r.rho_p:.3f} (n = {int(r.n)} sets)")
    for r in out["replication"]:
        ctx.log(f"[analyze] {r['verdict']:>12}: {r['finding']}: {_fmt(r['estimate'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}], "
                f"n = {r['n']} ({r['unit']})")
    for arm, lolo in out["lolo"].items():
        if lolo.get("mae") is not None:
            ctx.detail(f"[analyze] {arm} gap predictor (leave one language out): held-out MAE {lolo['mae']:.3f} "
                       f"(predicting the training mean: {lolo['baseline_mae']:.3f}) over {lolo['n']} (merge, task) gaps")
    return {"df": df, "sim": sim, "merges": merges, "paired": paired, **out}


def _fmt(v) -> str:
    return "n/a" if v is None or v != v else f"{v:+.3f}"


def site_data(ctx: Context) -> site.SiteData:
    """What the site reads: stored results, per-document statistics, similarity rows, manifests and recipes."""
    results, sim, merges = load_tables(ctx)
    manifests = {}
    for s in ctx.subs():
        m = s.manifest.model_dump(mode="json")
        m["recipe_text"] = (s.folder / s.manifest.recipe).read_text(encoding="utf-8") if s.manifest.recipe else ""
        manifests[s.id] = m
    from . import methodboard

    recs, specs = methodboard.load(ctx.methods_dir, ctx.suite["sha256"], ctx.preset)
    # each results file's sha256 names it in the site's incremental cache (the files were read just above)
    paths = submissions.results_paths(ctx.results_name, ctx.subs(), ctx.references_dir)
    keys = [store.sha256_file(p) for p in paths] if len(paths) == len(results) else None
    return site.SiteData(suite=ctx.suite, results=results, similarity=sim, merges=merges, manifests=manifests,
                         docs=load_docs(ctx, results), neurons=load_neurons(ctx), movement=load_movement(ctx),
                         method_records=recs, method_specs=specs, methods_dir=ctx.methods_dir, result_keys=keys)


def stage_site(ctx: Context) -> Path:
    return site.build(site_data(ctx), ctx.out, log=ctx.log)


def fresh_cache(ctx: Context) -> Path:
    """--from-scratch: an empty cache root under the current one, so nothing cached is reused."""
    import shutil

    root = store.home() / "from-scratch"
    shutil.rmtree(root, ignore_errors=True)
    os.environ["BABELMERGE_HOME"] = str(root)
    return store.home()


def run(ctx: Context) -> list[str]:
    """Every stage in order. Only work that stale results need is done: on a checkout whose stored results are
    all current for their identities nothing is trained, merged, evaluated or probed. Ends with a short
    reproduce pass (one drift line). Returns the names of failed models ("reproduce" when drift is beyond
    tolerance)."""
    from . import methodbench, reproduce

    t0 = time.perf_counter()
    if ctx.from_scratch:
        ctx.log(f"[run] --from-scratch: every stored result is recomputed, with an empty cache at {fresh_cache(ctx)}")
    ctx.log(f"[run] suite {ctx.suite['id']}, preset {ctx.preset}, device {ctx.device}")
    times: dict[str, float] = {}
    last = [time.perf_counter()]

    def stage(i, name):
        now = time.perf_counter()
        if i > 1:
            times[STAGES[i - 2]] = now - last[0]
        last[0] = now
        ctx.log(f"[run] stage {i}/7: {name} ({now - t0:.1f}s elapsed)")

    stage(1, "corpus")
    stage_corpus(ctx)
    stage(2, "family")
    todo = stale(ctx)
    ctx.log(f"[run] {len(plan(ctx)) - len(todo['evaluate'])} of {len(plan(ctx))} models have current results; "
            f"{len(todo['evaluate'])} to evaluate, {len(todo['neurons'])} neuron files and {len(todo['similarity'])} "
            f"merge diagnostics to compute")
    stage_family(ctx, needed=todo["need"])
    stage(3, "merge")
    stage_merges(ctx, needed=todo["need"])
    stage(4, "evaluate")
    failed = stage_evaluate(ctx)
    failed += methodbench.stage_submissions(ctx)  # kind: method submissions, benchmarked as methods
    stage(5, "similarity")
    stage_similarity(ctx)
    stage(6, "analyze")
    stage_analyze(ctx)
    stage(7, "site")
    path = stage_site(ctx)
    times["site"] = time.perf_counter() - last[0]
    if ctx.reproduce and not ctx.from_scratch:
        t1 = time.perf_counter()
        if not reproduce.quick(ctx, log=ctx.log):
            failed.append("reproduce")
        times["reproduce"] = time.perf_counter() - t1
    ctx.log("[run] stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    ctx.log(f"[run] done in {time.perf_counter() - t0:.1f}s; open file://{path.resolve()}")
    if failed:
        ctx.log(f"[run] {len(failed)} failed: {', '.join(failed)}")
    return failed


STAGES = ("corpus", "family", "merge", "evaluate", "similarity", "analyze", "site")
