"""`babelmerge run`: corpus -> family -> merges -> evaluation -> similarity -> analysis -> site, each stage
skipping work whose inputs have not changed."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import analysis, corpus as corpus_mod, merge as merge_mod, schema, site, store, submissions
from .family.build import FAMILY, Builder, member_dir, members, model_hash
from .family.presets import PRESETS
from .provenance import git_hash, harness_version, packages
from .suite import load_suite, results_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@dataclass
class Context:
    suite_name: str = "babel-mini-v1"
    preset: str | None = None
    submissions_dir: Path = submissions.SUBMISSIONS_DIR
    references_dir: Path = submissions.REFERENCES_DIR
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
    suite: dict = field(init=False)
    refused: list[str] = field(init=False, default_factory=list)  # the gate's problem lines, one per problem
    _subs: list | None = field(init=False, default=None, repr=False)

    def __post_init__(self):
        from .evaluate import pick_device

        self.suite = load_suite(self.suite_name)
        self.preset = self.preset or self.suite["family"]["preset"]
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset '{self.preset}'; choose one of {', '.join(PRESETS)}")
        self.device = pick_device(self.device)
        self.dtype = self.dtype or self.suite["evaluation"]["dtype"]

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
            self._subs = [s for s in g.accepted if self.suite["id"] in s.manifest.suites]
        return self._subs


def stage_corpus(ctx: Context) -> corpus_mod.Corpus:
    return corpus_mod.build(log=ctx.log)


def stage_family(ctx: Context, corp: corpus_mod.Corpus | None = None) -> dict:
    return Builder(ctx.preset, log=ctx.log, corpus=corp).build()


def stage_merges(ctx: Context) -> dict[str, tuple[Path | None, dict | None]]:
    """Checkpoint folder (and merge provenance) of every submission; (None, {"error": line}) for one that
    cannot be merged or whose checkpoint is refused."""
    from .merge import MergeError
    from .safety import UnsafeCheckpoint, inspect_checkpoint

    out = {}
    for s in ctx.subs():
        try:
            if s.manifest.kind == "recipe":
                out[s.id] = merge_mod.run_recipe(s.folder / s.manifest.recipe, ctx.preset, ctx.suite["seed"], ctx.device, ctx.log)
            else:
                ck = s.manifest.checkpoint
                if ck.path is not None:  # inspected by the gate
                    path = s.folder / ck.path
                else:
                    path = merge_mod.hub_checkpoint(ck.hub)
                    inspect_checkpoint(path, path, ck.sha256)
                out[s.id] = (path, None)
        except (MergeError, UnsafeCheckpoint, FileNotFoundError, ValueError) as e:
            ctx.log(f"[merge] {s.id}: FAILED: {e}")
            out[s.id] = (None, {"error": str(e).splitlines()[0]})
    ctx.log(f"[merge] {sum(1 for p, _ in out.values() if p is not None)} of {len(out)} submissions ready")
    return out


def _models(ctx: Context, merged: dict) -> list[tuple[str, Path, Path, dict]]:
    """(name, checkpoint, results path, ModelInfo extras) for every family member and submission."""
    preset = PRESETS[ctx.preset]
    items = []
    for m in members(preset):
        items.append((m.name, member_dir(preset, m.name), ctx.references_dir / FAMILY / m.name / "results" / ctx.results_name,
                      {"kind": "family", "family": FAMILY, "preset": ctx.preset, "arm": m.arm, "method": "trained",
                       "base_model": f"family:{FAMILY}/{m.parent}" if m.parent else None}))
    for s in ctx.subs():
        path, prov = merged[s.id]
        if path is None:
            continue
        items.append((s.id, path, s.results_path(ctx.results_name),
                      {"kind": "submission", "family": FAMILY, "preset": ctx.preset, "arm": s.manifest.arm,
                       "method": s.manifest.method, "constituents": s.manifest.constituents, "base_model": s.manifest.base_model}))
    return items


def stage_evaluate(ctx: Context, merged: dict, corp: corpus_mod.Corpus, items: list | None = None) -> list[str]:
    """Evaluate every model whose stored result is not current. Returns the names of the models that failed
    (each recorded as a failed results file with its reason); the others go on."""
    from .evaluate import ModelFault, SuiteTasks, evaluate_to_file, is_current, model_info

    items = items if items is not None else _models(ctx, merged)
    failed = [sid for sid, (path, prov) in merged.items() if path is None]
    for sid in failed:
        _record_failure(ctx, sid, merged[sid][1]["error"])
    todo = []
    for name, path, rpath, extra in items:
        try:
            info = model_info(path, name, **extra)
        except FileNotFoundError as e:
            todo.append((name, path, rpath, None, str(e)))
            continue
        if not is_current(rpath, info, ctx.suite, ctx.limit):
            todo.append((name, path, rpath, info, None))
    ctx.log(f"[evaluate] {len(items) - len(todo)} of {len(items)} models current; evaluating {len(todo)} on {ctx.device}")
    if not todo:
        return failed
    tasks = SuiteTasks.build(ctx.suite, corp, ctx.limit)
    for i, (name, path, rpath, info, error) in enumerate(todo, 1):
        t0 = time.perf_counter()
        if info is None:
            ctx.log(f"[evaluate] ({i}/{len(todo)}) {name}: FAILED: {error}")
            failed.append(name)
            continue
        try:
            res = evaluate_to_file(path, info, rpath, tasks, ctx.device, ctx.dtype, ctx.batch_size, ctx.batch_tokens,
                                   merge=merged.get(name, (None, None))[1], backend=ctx.backend, log=ctx.log)
        except ModelFault as e:
            ctx.log(f"[evaluate] ({i}/{len(todo)}) {name}: FAILED: {e}")
            failed.append(name)
            continue
        p = analysis.primary(analysis.tidy([res]))
        ctx.log(f"[evaluate] ({i}/{len(todo)}) {name}: mean bpb {p[p.task_kind == 'lm'].value.mean():.3f}, "
                f"mean chrF++ {p[p.task_kind == 'mt'].value.mean():.2f} ({time.perf_counter() - t0:.1f}s)")
    return failed


def _record_failure(ctx: Context, sid: str, error: str) -> None:
    """A submission that never reached evaluation (its merge failed, its checkpoint was refused)."""
    from .evaluate import _provenance

    s = next(x for x in ctx.subs() if x.id == sid)
    info = schema.ModelInfo(name=sid, kind="submission", sha256="", weights={}, arm=s.manifest.arm, method=s.manifest.method,
                            constituents=s.manifest.constituents, base_model=s.manifest.base_model)
    res = schema.ResultsFile(suite=ctx.suite["id"], suite_sha256=ctx.suite["sha256"], tasks={}, model=info, status="failed",
                             error=error, rows=[], provenance=_provenance(ctx.device, ctx.dtype, None, ctx.backend,
                                                                         time.perf_counter(), ctx.limit, None, ctx.suite))
    store.write_json(s.results_path(ctx.results_name), res.model_dump(mode="json"))


def external_items(ctx: Context, models: list[str], out_dir: Path) -> list[tuple]:
    """(name, checkpoint, results path, extras) for checkpoints given on the command line."""
    from .sources import resolve_model

    items = []
    for ref in models:
        path = resolve_model(ref)
        name = path.name if Path(ref).exists() else ref.replace("/", "--").replace("@", "-")
        items.append((name, path, out_dir / name / "results" / ctx.results_name, {"kind": "external", "method": "external"}))
    return items


def stage_similarity(ctx: Context, merged: dict, corp: corpus_mod.Corpus) -> dict:
    """Neuron statistics for every model, and similarity rows (CKA, neuron overlap, weight space, loss path)
    for every merge whose constituents are family members; everything cached by model hash and probe."""
    from .family.build import resolve
    from .similarity.compute import DIAG_VERSION, PROBE_VERSION, SimilarityCache, build_probe, merge_similarity_rows, neuron_summary

    t_start = time.perf_counter()
    cache = SimilarityCache(build_probe(corp, ctx.suite["languages"]), "cpu" if ctx.device == "cpu" else ctx.device)
    prov = {"harness": harness_version(), "git": git_hash(), "device": cache.device, "torch": packages()["torch"]}
    sets: dict[str, dict] = {}
    shas: dict[Path, str] = {}  # checkpoint folder -> hash: each checkpoint hashed once per run

    def sha_of(path: Path) -> str:
        if path not in shas:
            shas[path] = model_hash(path)
        return shas[path]

    items = _models(ctx, merged)
    for i, (name, path, rpath, _extra) in enumerate(items, 1):
        target = rpath.parent / ctx.neurons_name
        try:
            sha = sha_of(path)
        except FileNotFoundError:
            continue
        if target.exists():
            old = schema.NeuronFile.model_validate(store.read_json(target))
            if old.model_sha256 == sha and old.probe_sha256 == cache.sha and old.diagnostics == DIAG_VERSION:
                sets[name] = old.sets
                continue
        t0 = time.perf_counter()
        try:
            rows, sets[name] = neuron_summary(cache.arrays(sha, path), cache.probe)
        except ValueError as e:
            ctx.log(f"[similarity] {name}: no neuron statistics: {e}")
            continue
        f = schema.NeuronFile(model=name, model_sha256=sha, probe=PROBE_VERSION, probe_sha256=cache.sha, diagnostics=DIAG_VERSION,
                              provenance=prov, rows=[schema.NeuronRow(**r) for r in rows], sets=sets[name])
        store.write_json(target, f.model_dump(mode="json"))
        ctx.log(f"[similarity] ({i}/{len(items)}) {name}: neuron statistics ({time.perf_counter() - t0:.1f}s)")

    preset = PRESETS[ctx.preset]
    parents = {m.name: m.parent for m in members(preset)}
    subs = [s for s in ctx.subs() if merged[s.id][0] is not None]
    for i, s in enumerate(subs, 1):
        path = merged[s.id][0]
        if not all(c.startswith("family:") for c in s.manifest.constituents):
            continue  # hub constituents: their activations on the probe are not computed here yet
        target = s.results_path(ctx.similarity_name)
        cons = [(c.split("/")[-1], sha_of(resolve(c, ctx.preset)), resolve(c, ctx.preset)) for c in s.manifest.constituents]
        me = (s.id, sha_of(path), path)
        if target.exists():
            old = schema.SimilarityFile.model_validate(store.read_json(target))
            old_shas = {r.a_sha256 for r in old.rows} | {r.b_sha256 for r in old.rows}
            if old.probe_sha256 == cache.sha and old.diagnostics == DIAG_VERSION and old_shas == {me[1]} | {c[1] for c in cons}:
                continue
        bases = {}
        for name, _sha, _p in cons:
            base = s.manifest.base_model or (f"family:{FAMILY}/{parents[name]}" if parents.get(name) else None)
            if base is None or not base.startswith("family:"):
                bases = None
                break
            bp = resolve(base, ctx.preset)
            bases[name] = (sha_of(bp), bp)
        t0 = time.perf_counter()
        rows = merge_similarity_rows(cache, me, cons, bases, sets, preset.layers)
        f = schema.SimilarityFile(probe=PROBE_VERSION, probe_sha256=cache.sha, diagnostics=DIAG_VERSION, provenance=prov,
                                  rows=[schema.SimilarityRow(**r) for r in rows])
        store.write_json(target, f.model_dump(mode="json", exclude_none=True))
        ctx.log(f"[similarity] ({i}/{len(subs)}) {s.id}: {len(rows)} rows ({time.perf_counter() - t0:.1f}s)")
    wall = time.perf_counter() - t_start
    ctx.log(f"[similarity] done in {wall:.1f}s ({cache.computed} model passes or pair computations run, the rest cached)")
    return {"wall_s": wall, "computed": cache.computed}


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
    results, sim, merges = load_tables(ctx)
    df = analysis.tidy(results)
    gaps = analysis.merge_gaps(df, merges)
    corr = analysis.cka_vs_gap(gaps, sim, ctx.suite["seed"])
    tables = analysis.diagnostics_tables(gaps, sim, merges, load_neurons(ctx), ctx.suite)
    rho = corr["spearman_rho"]
    paired = analysis.paired_vs_expert(load_docs(ctx, results), merges, ctx.suite)
    shown = "n/a" if rho is None else f"{rho:.3f} [{corr['rho_lo']:.2f}, {corr['rho_hi']:.2f}]"
    ctx.log(f"[analyze] {len(merges)} merges; Spearman(constituent CKA, gap to expert) = {shown} over n = {corr['n']}")
    if not paired.empty:
        worse = int(((paired.ci_high < 0)).sum())
        ctx.log(f"[analyze] paired bootstrap: {worse} of {len(paired)} (merge, task) pairs significantly below their expert (95%)")
    c = tables["correlations"]
    if not c.empty:
        top = c[c.reference == "expert"].dropna(subset=["rho"]).assign(a=lambda d: d.rho.abs()).sort_values("a", ascending=False)
        for r in top.head(5).itertuples():
            ctx.log(f"[analyze] {r.diagnostic:<28} vs gap to expert: rho {r.rho:+.3f} [{r.rho_lo:+.2f}, {r.rho_hi:+.2f}] "
                    f"p_perm {r.rho_p:.3f}, tau {r.tau:+.3f} (n = {int(r.n)}); partial rho {_fmt(r.partial_rho)} (n = {int(r.partial_n)})")
    for r in analysis.replication(df, gaps, merges, tables, corr):
        ctx.log(f"[analyze] replication: {r['finding']}: {r['figure']} -> {r['holds']}")
    lolo = tables["lolo"]
    if lolo.get("mae") is not None:
        ctx.log(f"[analyze] leave-one-language-out gap predictor: held-out MAE {lolo['mae']:.2f} points "
                f"(predicting the training mean: {lolo['baseline_mae']:.2f}) over {lolo['n']} (merge, task) gaps")
    return {"df": df, "gaps": gaps, "corr": corr, "sim": sim, "merges": merges, "paired": paired, **tables}


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
    return site.SiteData(suite=ctx.suite, results=results, similarity=sim, merges=merges, manifests=manifests,
                         docs=load_docs(ctx, results), neurons=load_neurons(ctx))


def stage_site(ctx: Context) -> Path:
    return site.build(site_data(ctx), ctx.out, log=ctx.log)


def run(ctx: Context) -> list[str]:
    t0 = time.perf_counter()
    ctx.log(f"[run] suite {ctx.suite['id']}, preset {ctx.preset}, device {ctx.device}")
    stage = lambda i, name: ctx.log(f"[run] stage {i}/7: {name} ({time.perf_counter() - t0:.1f}s elapsed)")
    stage(1, "corpus")
    corp = stage_corpus(ctx)
    stage(2, "family")
    stage_family(ctx, corp)
    stage(3, "merge")
    merged = stage_merges(ctx)
    stage(4, "evaluate")
    failed = stage_evaluate(ctx, merged, corp)
    stage(5, "similarity")
    stage_similarity(ctx, merged, corp)
    stage(6, "analyze")
    stage_analyze(ctx)
    stage(7, "site")
    path = stage_site(ctx)
    ctx.log(f"[run] done in {time.perf_counter() - t0:.1f}s; open file://{path.resolve()}")
    if failed:
        ctx.log(f"[run] {len(failed)} model(s) failed: {', '.join(failed)}")
    return failed
