"""Peak memory of streamed minibatch CKA (harness/similarity/cka.py: MinibatchCKA; Nguyen et al., ICLR 2021) on a
7B-shaped layer stream, against the number of probe tokens N.

Measured: each N runs in its own child process; every minibatch carries two models' activations at all 33
hidden-state layers of a Llama-2-7B-shaped model (embeddings + 32 blocks, width 4096) in bfloat16, freshly
allocated per minibatch as a forward pass would return them (random rows drawn from a fixed pool: memory depends
on shapes, not values); the accumulators are updated and the minibatch dropped, as similarity/stream.py does with
real forward passes. Peak = the child's peak resident set size (getrusage ru_maxrss) minus its resident size just
before the stream starts (after torch and the pool are loaded). One torch thread.

Computed (not measured), from the shapes: what holding every layer's activations of both models for all N tokens
would take (the in-memory formulation); the transient of one minibatch; and the bf16 weights of a Llama-2-7B-shaped
model (vocabulary 32,000, width 4,096, MLP 11,008, 32 blocks, untied head), which a real run holds twice (two
models loaded by `babelmerge cka` / `diagnostics`) on top of the stream.

    python benchmarks/cka_stream.py [--tokens 512 2048 8192] [--batch 32] [--layers 33] [--width 4096]

The defaults keep the run to a few minutes on 2 shared cores; the stream's own default minibatch is 1024 tokens
(`--tokens` of `babelmerge cka`), whose Grams cost about 280 GFLOP per minibatch here: run with `--batch 1024
--tokens 2048 8192 32768` on a free machine for that figure."""

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

POOL = 4096  # rows of the random pool activations are drawn from

LLAMA2_7B = {"vocab": 32000, "hidden": 4096, "intermediate": 11008, "layers": 32}


def llama_params(vocab: int, hidden: int, intermediate: int, layers: int) -> int:
    """Parameters of a LLaMA-style model with full multi-head attention and an untied head: embeddings and head
    2 V H; per block q, k, v, o (4 H^2), gate, up, down (3 H I), two RMSNorm weights (2 H); the final norm (H)."""
    return 2 * vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden) + hidden


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(tokens: int, batch: int, layers: int, width: int, seed: int) -> dict:
    import torch

    from harness.similarity.cka import MinibatchCKA

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(POOL, width, generator=g)
    acc = MinibatchCKA()
    before = _rss_mb()
    t0 = time.perf_counter()
    for s in range(0, tokens, batch):
        b = min(batch, tokens - s)
        rows = torch.randint(0, POOL, (b,), generator=g)
        # a shared component (rows) plus a layer- and model-specific one: fresh bf16 tensors every minibatch
        xs = [(pool[rows] + pool[(rows + 2 * l + 1) % POOL]).to(torch.bfloat16) for l in range(layers)]
        ys = [(pool[rows] + pool[(rows + 2 * l + 2) % POOL]).to(torch.bfloat16) for l in range(layers)]
        acc.update(xs, ys)
        del xs, ys
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    vals = acc.result()
    return {"tokens": tokens, "s": wall, "peak_mb": max(0.0, peak - before), "batches": acc.batches,
            "cka_first": vals[0], "cka_last": vals[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[512, 2048, 8192])
    ap.add_argument("--batch", type=int, default=32)
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
        r["in_memory_mb"] = 2 * a.layers * t * a.width * 2 / 2**20  # computed: both models, every layer, bf16
        rows.append(r)
    one_batch = 2 * a.layers * a.batch * a.width * 2 / 2**20
    params = llama_params(**LLAMA2_7B)
    print("measured: peak RSS above the pre-stream size; computed: in-memory activations (both models, all layers, bf16)")
    print(f"{'tokens':>8}{'batches':>9}{'seconds':>10}{'peak MB':>10}{'in-memory MB':>14}")
    for r in rows:
        print(f"{r['tokens']:>8}{r['batches']:>9}{r['s']:>10.1f}{r['peak_mb']:>10.0f}{r['in_memory_mb']:>14.0f}")
    print(f"computed: one minibatch of both models' activations {one_batch:.1f} MB (bf16); at the stream's default 1024 "
          f"tokens {2 * a.layers * 1024 * a.width * 2 / 2**20:.0f} MB")
    print(f"computed: Llama-2-7B-shaped weights {params:,} parameters = {2 * params / 1e9:.2f} GB in bf16 "
          f"({2 * params / 2**30:.2f} GiB); two models loaded {4 * params / 1e9:.2f} GB")
    print(json.dumps({"batch": a.batch, "layers": a.layers, "width": a.width, "threads": 1,
                      "one_batch_bf16_mb": round(one_batch, 1),
                      "llama2_7b": {**LLAMA2_7B, "params": params, "bf16_bytes": 2 * params, "computed": True},
                      "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
