"""Site build at leaderboard scale: a synthetic results set of N submissions (default 10,000) over the
babel-mini family, built side by side with the same build on the real-size set (the baseline). For each set: a
full build from an empty cache, a rebuild with nothing changed, and a rebuild after one new submission (the
incremental path: statistics are cached by the content hash of their inputs, tidy rows and leaderboard cells by
each results file's key, files whose inputs are unchanged are left as they are). Prints a table, then one JSON
object as the last line with build_s, index_bytes and rebuild_one_s, and each build's phases (on large sites the
set-level statistics run in a forked process during the leaderboard, model and methods phases; "statistics (sets,
waited for)" is the time the build then still waits for them).

    python benchmarks/site.py [--n 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))


def _timed_build(n: int, out: Path) -> tuple[float, dict]:
    from harness import site
    from harness.suite import load_suite
    from sitefixtures import family_and_merges

    results, sim, merges = family_and_merges(n, seed=1, evil=False)  # the first n merges of n + 1 are those of n
    # the site's loader names each results file by the sha256 of its bytes as it reads them (pipeline.site_data);
    # here the bytes are the JSON a results file would hold. Reading and validating the files is not timed.
    keys = [hashlib.sha256(r.model_dump_json().encode("utf-8")).hexdigest() for r in results]
    t0 = time.perf_counter()
    site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges, result_keys=keys), out,
               log=lambda *_: None)
    return time.perf_counter() - t0, dict(site.BUILD_STATS)


def build_once(n: int, out: Path) -> dict:
    """Full build into a fresh folder (no cache beside it), the same build again, then one more submission; sizes of the full build."""
    build_s, full = _timed_build(n, out)
    index = out / "index.html"
    pages = sorted(out.glob("leaderboard-*.html"))
    sizes = {"index_bytes": index.stat().st_size, "leaderboard_pages": 1 + len(pages),
             "largest_page_bytes": max([index.stat().st_size] + [p.stat().st_size for p in pages]),
             "model_data_files": len(list((out / "data" / "models").glob("*.js"))),
             "total_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}
    same_s, same = _timed_build(n, out)
    one_s, one = _timed_build(n + 1, out)
    return {"n": n, "build_s": round(build_s, 3), "build_phases_s": full["phases"], "rebuild_one_phases_s": one["phases"],
            **sizes,
            "rebuild_same_s": round(same_s, 3),
            "rebuild_same_files_made": same["files_made"], "rebuild_one_s": round(one_s, 3),
            "rebuild_one_stats_reused": one["stats_hit"], "rebuild_one_files_made": one["files_made"],
            "rebuild_one_models_written": one["models_written"], "rebuild_one_files_reused": one["files_reused"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--baseline-n", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = build_once(args.baseline_n, Path(tmp) / "base")
        big = build_once(args.n, Path(tmp) / "big")
    print(f"{'set':<10} {'submissions':>12} {'build s':>9} {'same s':>8} {'+1 s':>8} {'+1 made':>8} "
          f"{'index bytes':>12} {'pages':>6}")
    for name, r in (("baseline", base), ("scale", big)):
        print(f"{name:<10} {r['n']:>12} {r['build_s']:>9.2f} {r['rebuild_same_s']:>8.2f} "
              f"{r['rebuild_one_s']:>8.2f} {r['rebuild_one_files_made']:>8} {r['index_bytes']:>12} {r['leaderboard_pages']:>6}")
    print(json.dumps({**big, "baseline_n": base["n"], "baseline_build_s": base["build_s"],
                      "baseline_rebuild_one_s": base["rebuild_one_s"], "load_1min": os.getloadavg()[0],
                      "build_s_per_1000": round(big["build_s"] / big["n"] * 1000, 3),
                      "within_targets": big["build_s"] <= 10 and big["index_bytes"] <= 2_000_000 and big["rebuild_one_s"] < 2}))


if __name__ == "__main__":
    main()
