"""Greedy generation throughput on the babel-mini mt:* tasks (real and source-shuffled prompts, as the
evaluation runs them), side by side in one process: the babelmerge lm-eval backend against lm-eval's stock
`hf` backend at its default settings (batch 1, torch's threads) and tuned (a large batch and the thread count
our backend picks for decoding), all through lm-eval's `generate_until`, outputs required identical. Prints a table, then one JSON object as the last line.

    python benchmarks/generation.py [--model PATH | --member mixed --preset tiny] [--limit 16] [--repeats 3]

Tokens per second = generated tokens (the outputs re-encoded, plus one stop token per output that stopped
before max_gen_toks) / wall seconds of lm-eval's evaluate over every mt task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402


def mt_generation_tasks(suite, corp, limit):
    """The generation half of every mt task (2 x limit prompts each), as lm-eval task dicts."""
    from lm_eval.tasks import TaskManager

    from harness.tasks import lm_eval_configs, task_docs, task_specs

    specs = [s for s in task_specs(suite) if s.kind == "mt"]
    cfgs = [lm_eval_configs(s, suite, task_docs(s, suite, corp, limit))[0] for s in specs]  # [0]: the generation half
    return specs, TaskManager(include_defaults=False).load(cfgs)


def run(lm, specs, task_dict):
    """(seconds, outputs in task and document order) of one lm-eval evaluate over the tasks."""
    from lm_eval import evaluator

    t0 = time.perf_counter()
    out = evaluator.evaluate(lm, task_dict, bootstrap_iters=0, log_samples=True)
    dt = time.perf_counter() - t0
    texts = []
    for s in specs:
        for r in sorted(out["samples"][s.lm_eval_name], key=lambda r: r["doc_id"]):
            x = r["resps"][0]
            texts.append(x if isinstance(x, str) else x[0])
    return dt, texts


def generated_tokens(tok, texts, max_new):
    n = 0
    for t in texts:
        k = len(tok(t, add_special_tokens=False)["input_ids"])
        n += k + (1 if k < max_new else 0)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a Hugging Face causal-LM folder (default: the family member below)")
    ap.add_argument("--member", default="mixed", help="family member to use when --model is not given (built if missing)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--limit", type=int, default=16, help="test verses per mt task (each gives a real and a shuffled prompt)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of each; the median is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ours-batch-size", type=int, default=64, help="our backend's generation rows (the evaluation's default)")
    ap.add_argument("--hf-batch-size", type=int, default=1, help="the stock backend's batch size (lm-eval's default: 1)")
    ap.add_argument("--hf-tuned-batch-size", type=int, default=64, help="a tuned batch size for the stock backend")
    args = ap.parse_args()

    from lm_eval.models.huggingface import HFLM

    from harness import corpus
    from harness.backend import BabelLM, decode_threads, torch_threads
    from harness.evaluate import load_model, pick_device
    from harness.suite import load_suite

    device = pick_device(args.device)
    suite = load_suite()
    if args.model:
        path, what = args.model, args.model
    else:
        from harness.family.build import Builder, member_dir

        builder = Builder(args.preset, log=lambda *a: print(*a, file=sys.stderr))
        builder.build(only=[args.member])
        path, what = member_dir(builder.preset, args.member), f"{args.member} ({args.preset})"
    model, tok = load_model(path, device, "float32")
    specs, task_dict = mt_generation_tasks(suite, corpus.build(log=lambda *_: None), args.limit)
    max_new = suite["tasks"]["mt"]["max_gen_toks"]

    lms = {"ours": BabelLM(model=model, tokenizer=tok, device=device, gen_batch_size=args.ours_batch_size)}
    for name, bs in (("hf", args.hf_batch_size), ("hf_tuned", args.hf_tuned_batch_size)):
        lms[name] = HFLM(pretrained=model, tokenizer=tok, batch_size=bs, device=device, add_bos_token=False,
                         max_length=model.config.max_position_embeddings)
    tuned_threads = decode_threads(model, device, args.hf_tuned_batch_size)
    threads = {"ours": None, "hf": None, "hf_tuned": tuned_threads}  # None: torch's setting (ours picks its own)
    run(lms["ours"], specs, task_dict)  # warm-up: allocator, kernels, tokenizer caches
    times: dict[str, list[float]] = {k: [] for k in lms}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every backend alike
        for name, lm in lms.items():
            with torch_threads(threads[name]):
                t, outputs[name] = run(lm, specs, task_dict)
            times[name].append(t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    n_tok = generated_tokens(tok, outputs["ours"], max_new)
    tok_s = {k: n_tok / v for k, v in med.items()}
    same = {k: sum(a == b for a, b in zip(outputs["ours"], outputs[k])) for k in ("hf", "hf_tuned")}
    identical = all(outputs[k] == outputs["ours"] for k in ("hf", "hf_tuned"))
    result = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "model": str(what),
              "limit": args.limit, "tasks": len(specs), "prompts": len(outputs["ours"]), "generated_tokens": n_tok,
              "max_gen_toks": max_new, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
              "ours_decode_threads": decode_threads(model, device, min(args.ours_batch_size, 12 * args.limit)),
              "hf_tuned_threads": tuned_threads,
              "ours_batch_size": args.ours_batch_size, "hf_batch_size": args.hf_batch_size,
              "hf_tuned_batch_size": args.hf_tuned_batch_size,
              "ours_tok_s": round(tok_s["ours"], 1), "hf_tok_s": round(tok_s["hf"], 1),
              "hf_tuned_tok_s": round(tok_s["hf_tuned"], 1),
              "speedup_vs_hf": round(med["hf"] / med["ours"], 3), "speedup_vs_hf_tuned": round(med["hf_tuned"] / med["ours"], 3),
              "identical_outputs": identical, "same_as_hf": same["hf"], "same_as_hf_tuned": same["hf_tuned"],
              "empty_outputs": sum(not t.strip() for t in outputs["ours"])}
    print(f"{'backend':<9} {'batch':>6} {'tokens/s':>10} {'median s':>9}   ({n_tok} generated tokens, {len(outputs['ours'])} prompts)")
    for k, bs in (("ours", args.ours_batch_size), ("hf", args.hf_batch_size), ("hf_tuned", args.hf_tuned_batch_size)):
        print(f"{k:<9} {bs:>6} {tok_s[k]:>10.1f} {med[k]:>9.3f}")
    print(f"identical outputs: {identical} (hf: {same['hf']}/{len(outputs['ours'])}, hf_tuned: {same['hf_tuned']}/{len(outputs['ours'])})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
