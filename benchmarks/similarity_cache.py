"""`babelmerge similarity` cold and warm: the first run over the reference grid (fresh similarity cache, no
stored similarity or neuron files) against a rerun with nothing new, side by side in one process. The family
and merged checkpoints must already be built in $BABELMERGE_HOME (`babelmerge run` does it); they are
linked, not rebuilt. Prints both logs' summaries, then one JSON object as the last line.

    python benchmarks/similarity_cache.py [--merges N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merges", type=int, default=0, help="only the first N reference merges (0: all)")
    a = ap.parse_args()
    from harness import store

    real = store.home()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        home.mkdir()
        for part in ("corpus", "family", "merges"):
            if not (real / part).exists():
                sys.exit(f"{real / part} is missing: run `babelmerge run` first")
            os.symlink(real / part, home / part)
        os.environ["BABELMERGE_HOME"] = str(home)
        from harness import pipeline, submissions

        subs = sorted(p.parent for p in submissions.SUBMISSIONS_DIR.glob("*/submission.yaml"))
        subs = subs[:a.merges] if a.merges else subs
        (tmp / "subs").mkdir()
        for s in subs:
            shutil.copytree(s, tmp / "subs" / s.name, ignore=shutil.ignore_patterns("similarity*.json", "neurons*.json"))
        shutil.copytree(submissions.REFERENCES_DIR, tmp / "refs", ignore=shutil.ignore_patterns("neurons*.json"))
        ctx = pipeline.Context(submissions_dir=tmp / "subs", references_dir=tmp / "refs", log=lambda *_: None)
        corp = pipeline.stage_corpus(ctx)
        merged = pipeline.stage_merges(ctx)
        runs = []
        for label in ("first", "rerun"):
            t0 = time.perf_counter()
            stats = pipeline.stage_similarity(ctx, merged, corp)
            runs.append({"s": time.perf_counter() - t0, "computed": stats["computed"]})
            print(f"[similarity-bench] {label}: {runs[-1]['s']:.1f}s, {stats['computed']} computations", flush=True)
    first, rerun = runs
    print(json.dumps({"merges": len(subs), "first_s": round(first["s"], 2), "rerun_s": round(rerun["s"], 2),
                      "rerun_ratio": round(rerun["s"] / first["s"], 4), "first_computed": first["computed"],
                      "rerun_computed": rerun["computed"]}))


if __name__ == "__main__":
    main()
