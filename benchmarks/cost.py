"""A cost model on paper (issue 17.5): forward-pass FLOPs and GPU-hours per submission, per model size and suite,
and how many submissions a day N GPUs absorb.

FLOPs follow Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", section 2.1): a forward pass costs about
2 N + 2 n_layer n_ctx d_model FLOPs per token, N the non-embedding parameters. Scored tokens (log-likelihoods,
prompts) run at one model FLOPs utilisation, decoded tokens (one token per step, bound by memory bandwidth) at a
lower one; both are assumptions printed with the table, as are the tokens per document. Peak: NVIDIA H100 SXM,
989 TFLOP/s dense bf16 (NVIDIA H100 datasheet). Model shapes: the babel-mini presets (harness/family/presets.py)
and the Qwen2.5 model cards (0.5B: 24 layers, d 896, 0.36B non-embedding; 3B: 36 layers, d 2048, 2.77B; 7B:
28 layers, d 3584, 6.53B).

    python benchmarks/cost.py [--gpus 8] [--mfu-score 0.4] [--mfu-decode 0.05] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEAK_FLOPS = 989e12  # H100 SXM dense bf16


def preset_model(name: str) -> dict:
    """Non-embedding parameters, layers and width of a babel-mini preset (LLaMA blocks: attention 4 d^2, gated MLP 3 d f)."""
    from harness.family.presets import PRESETS

    p = PRESETS[name]
    return {"n": p.layers * (4 * p.hidden ** 2 + 3 * p.hidden * p.ffn), "layers": p.layers, "d": p.hidden}


MODELS = {"babel-mini tiny": None, "Qwen2.5-0.5B": {"n": 0.36e9, "layers": 24, "d": 896},
          "Qwen2.5-3B": {"n": 2.77e9, "layers": 36, "d": 2048}, "Qwen2.5-7B": {"n": 6.53e9, "layers": 28, "d": 3584}}


def suite_tokens() -> dict[str, dict]:
    """Per suite, per submission: (scored tokens, decoded tokens, typical context) under stated per-document sizes.
    babel-mini-v2: 7 x 200 lm verses (~40 tokens); 6 x 48 mt documents, each a prompt (~45 tokens) decoded twice
    (real and shuffled source, ~40 tokens out, at most 96) and two teacher-forced references (~85 tokens).
    flores-plus-v1: 15 languages x 1,012 devtest sentences (~35 tokens) for lm; 28 directions x 1,012, zero-shot
    (~80-token prompts) and 3-shot (~300), each decoded twice (~40 out) and teacher-forced twice.
    belebele-v1: 15 x 900 questions, 4 choices scored with the passage (~250 tokens each)."""
    mini_mt = 6 * 48
    fl_mt = 28 * 1012
    return {
        "babel-mini-v2": {"score": 7 * 200 * 40 + mini_mt * (2 * 45 + 2 * 85), "decode": mini_mt * 2 * 40, "ctx": 128},
        "flores-plus-v1": {"score": 15 * 1012 * 35 + fl_mt * (2 * 80 + 2 * 115) + fl_mt * (2 * 300 + 2 * 335),
                           "decode": 2 * fl_mt * 2 * 40, "ctx": 400},
        "belebele-v1": {"score": 15 * 900 * 4 * 250, "decode": 0, "ctx": 250},
    }


def flops_per_token(m: dict, ctx: int) -> float:
    return 2 * m["n"] + 2 * m["layers"] * ctx * m["d"]


def table(mfu_score: float, mfu_decode: float, gpus: int) -> list[dict]:
    rows = []
    for name, m in MODELS.items():
        m = m or preset_model("tiny")
        for suite, t in suite_tokens().items():
            f_score = t["score"] * flops_per_token(m, t["ctx"])
            f_decode = t["decode"] * flops_per_token(m, t["ctx"])
            hours = (f_score / (PEAK_FLOPS * mfu_score) + f_decode / (PEAK_FLOPS * mfu_decode)) / 3600
            rows.append({"model": name, "suite": suite, "tflops": (f_score + f_decode) / 1e12, "gpu_hours": hours,
                         "per_day": gpus * 24 / hours if hours > 0 else float("inf")})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--mfu-score", type=float, default=0.4, help="utilisation while scoring and prefilling")
    ap.add_argument("--mfu-decode", type=float, default=0.05, help="utilisation while decoding one token a step")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = table(a.mfu_score, a.mfu_decode, a.gpus)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"H100 bf16 peak {PEAK_FLOPS / 1e12:.0f} TFLOP/s; utilisation {a.mfu_score:.0%} scoring, {a.mfu_decode:.0%} decoding; "
          f"{a.gpus} GPUs; forward passes of one submission's evaluation only (every control's extra pass included); loading, "
          "merging and similarity probes are not counted: a lower bound, and at tiny scale those overheads dominate")
    print(f"| model | suite | forward TFLOPs | GPU-hours / submission | submissions / day on {a.gpus} GPUs |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['suite']} | {r['tflops']:,.3g} | {r['gpu_hours']:.3g} | {r['per_day']:,.0f} |")


if __name__ == "__main__":
    main()
