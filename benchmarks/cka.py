"""All-layer linear CKA for one model pair: ours (feature space, O(n p q) time, O(p q) memory) against the
naive Gram formulation (n x n kernels, Kornblith et al. 2019's reference), side by side. Each method runs
in its own child process on the same seeded activations (13 layers, the `base` preset's 12 blocks plus
embeddings), so its peak memory is its own: peak resident set size above the process's size just before
the computation. Prints a table, then one JSON object as the last line.

    python benchmarks/cka.py [--tokens 16384] [--width 512] [--layers 13]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def activations(tokens: int, width: int, layers: int, seed: int):
    """Two models' activations: a shared latent drifting with depth, each model's own rotation and noise.
    float32, as hidden states are stored; (layers, tokens, width) each."""
    import torch

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(tokens, width, generator=g)
    ra = torch.linalg.qr(torch.randn(width, width, generator=g))[0]
    rb = torch.linalg.qr(torch.randn(width, width, generator=g))[0]
    xs, ys = [], []
    for _ in range(layers):
        z = 0.9 * z + 0.45 * torch.randn(tokens, width, generator=g)
        xs.append(z @ ra + 0.5 * torch.randn(tokens, width, generator=g))
        ys.append(z @ rb + 0.5 * torch.randn(tokens, width, generator=g))
    return xs, ys


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(method: str, tokens: int, width: int, layers: int, seed: int) -> dict:
    import torch

    from harness.similarity.cka import gram_linear_cka, layerwise

    torch.set_num_threads(torch.get_num_threads())
    xs, ys = activations(tokens, width, layers, seed)
    before = _rss_mb()
    t0 = time.perf_counter()
    values = layerwise(xs, ys) if method == "ours" else [gram_linear_cka(x, y) for x, y in zip(xs, ys)]
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"s": wall, "peak_mb": max(0.0, peak - before), "values": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", choices=["ours", "gram"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.tokens, a.width, a.layers, a.seed)))
        return
    res = {}
    for method in ("ours", "gram"):
        print(f"[cka-bench] {method}: {a.layers} layers, {a.tokens} tokens x width {a.width} ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", method, "--tokens", str(a.tokens), "--width", str(a.width),
                              "--layers", str(a.layers), "--seed", str(a.seed)], capture_output=True, text=True, check=True)
        res[method] = json.loads(out.stdout.strip().splitlines()[-1])
    diff = max(abs(u - v) for u, v in zip(res["ours"]["values"], res["gram"]["values"]))
    print(f"{'method':<8}{'seconds':>10}{'peak MB':>10}")
    for m in ("ours", "gram"):
        print(f"{m:<8}{res[m]['s']:>10.2f}{res[m]['peak_mb']:>10.0f}")
    print(f"max |ours - gram| over layers: {diff:.2e}")
    print(json.dumps({"tokens": a.tokens, "width": a.width, "layers": a.layers,
                      "ours_s": round(res["ours"]["s"], 3), "gram_s": round(res["gram"]["s"], 3),
                      "speedup": round(res["gram"]["s"] / res["ours"]["s"], 2),
                      "ours_peak_mb": round(res["ours"]["peak_mb"], 1), "gram_peak_mb": round(res["gram"]["peak_mb"], 1),
                      "memory_ratio": round(res["gram"]["peak_mb"] / max(res["ours"]["peak_mb"], 1e-9), 1),
                      "max_abs_diff": diff}))


if __name__ == "__main__":
    main()
