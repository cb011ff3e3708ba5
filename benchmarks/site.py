"""Site build at leaderboard scale: a synthetic results set of N submissions (default 10,000) over the
babel-mini family, built side by side with the same build on the real-size set (the baseline). Prints a
table, then one JSON object as the last line with build_s and index_bytes.

    python benchmarks/site.py [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))


def build_once(n: int, out: Path) -> dict:
    from harness import site
    from harness.suite import load_suite
    from sitefixtures import family_and_merges

    results, sim, merges = family_and_merges(n, seed=1, evil=False)
    t0 = time.perf_counter()
    index = site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges), out,
                       log=lambda *_: None)
    build_s = time.perf_counter() - t0
    pages = sorted(out.glob("leaderboard-*.html"))
    return {"n": n, "build_s": round(build_s, 3), "index_bytes": index.stat().st_size,
            "leaderboard_pages": 1 + len(pages), "largest_page_bytes": max([index.stat().st_size] + [p.stat().st_size for p in pages]),
            "model_pages": len(list((out / "models").glob("*.html"))),
            "total_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--baseline-n", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = build_once(args.baseline_n, Path(tmp) / "base")
        big = build_once(args.n, Path(tmp) / "big")
    print(f"{'set':<10} {'submissions':>12} {'build s':>9} {'index bytes':>12} {'pages':>6} {'model pages':>12}")
    for name, r in (("baseline", base), ("scale", big)):
        print(f"{name:<10} {r['n']:>12} {r['build_s']:>9.2f} {r['index_bytes']:>12} {r['leaderboard_pages']:>6} {r['model_pages']:>12}")
    print(json.dumps({**big, "baseline_n": base["n"], "baseline_build_s": base["build_s"],
                      "build_s_per_1000": round(big["build_s"] / big["n"] * 1000, 3),
                      "within_targets": big["build_s"] <= 10 and big["index_bytes"] <= 2_000_000}))


if __name__ == "__main__":
    main()
