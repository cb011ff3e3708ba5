"""Peak memory of streamed minibatch CKA (harness/similarity/cka.py: MinibatchCKA; Nguyen et al., ICLR 2021) on a
7B-shaped layer stream, against the number of probe tokens. Each minibatch carries two models' activations at all
33 hidden-state layers of a LLaMA-7B-shaped model (embeddings + 32 blocks, width 4096) in bfloat16, random with a
shared component (random weights stand in for a real model: memory depends on shapes, not values); the
accumulators are updated and the batch dropped, as similarity/stream.py does with real forward passes. Each token
count runs in its own child process; peak = peak resident set size above the size just before the stream.
Also printed: what holding every layer's activations for both models would take (the in-memory formulation).

    python benchmarks/cka_stream.py [--tokens 1024 4096 8192] [--batch 256] [--layers 33] [--width 4096]
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


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(tokens: int, batch: int, layers: int, width: int, seed: int) -> dict:
    import torch

    from harness.similarity.cka import MinibatchCKA

    g = torch.Generator().manual_seed(seed)
    acc = MinibatchCKA()
    before = _rss_mb()
    t0 = time.perf_counter()
    for s in range(0, tokens, batch):
        b = min(batch, tokens - s)
        z = torch.randn(b, width, generator=g)
        xs = [(z + torch.randn(b, width, generator=g)).to(torch.bfloat16) for _ in range(layers)]
        ys = [(z + torch.randn(b, width, generator=g)).to(torch.bfloat16) for _ in range(layers)]
        acc.update(xs, ys)
        del xs, ys, z
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    vals = acc.result()
    return {"tokens": tokens, "s": wall, "peak_mb": max(0.0, peak - before), "batches": acc.batches,
            "cka_first": vals[0], "cka_last": vals[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--layers", type=int, default=33)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.batch, a.layers, a.width, a.seed)))
        return
    rows = []
    for t in a.tokens:
        print(f"[cka-stream] {t} tokens, minibatch {a.batch}, {a.layers} layers x {a.width} bf16 ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", str(t), "--batch", str(a.batch), "--layers", str(a.layers),
                              "--width", str(a.width), "--seed", str(a.seed)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["in_memory_mb"] = 2 * a.layers * t * a.width * 2 / 2**20  # both models, every layer, bf16
        rows.append(r)
    print(f"{'tokens':>8}{'batches':>9}{'seconds':>10}{'peak MB':>10}{'in-memory MB':>14}")
    for r in rows:
        print(f"{r['tokens']:>8}{r['batches']:>9}{r['s']:>10.1f}{r['peak_mb']:>10.0f}{r['in_memory_mb']:>14.0f}")
    one_batch = 2 * a.layers * a.batch * a.width * 2 / 2**20
    print(json.dumps({"batch": a.batch, "layers": a.layers, "width": a.width, "one_batch_bf16_mb": round(one_batch, 1),
                      "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
