"""Language-model scoring throughput on the babel-mini lm:* tasks, side by side in one process:
the babelmerge lm-eval backend, lm-eval's stock `hf` backend, and a bare torch forward loop over the same
tokens (the floor). Prints a table, then one JSON object as the last line.

    python benchmarks/eval_throughput.py [--preset tiny] [--member mixed] [--repeats 3] [--device auto]
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


def lm_docs(suite, corp):
    from harness.tasks import task_docs, task_specs

    specs = [s for s in task_specs(suite) if s.kind == "lm"]
    return specs, {s.name: task_docs(s, suite, corp) for s in specs}


def run_lm_eval(lm, specs, docs, suite):
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    from harness.tasks import lm_eval_configs

    td = TaskManager(include_defaults=False).load([c for s in specs for c in lm_eval_configs(s, suite, docs[s.name])])
    t0 = time.perf_counter()
    out = evaluator.evaluate(lm, td, bootstrap_iters=0, log_samples=False)
    dt = time.perf_counter() - t0
    return dt, {s.name: out["results"][s.lm_eval_name]["bits_per_byte,none"] for s in specs}


@torch.no_grad()
def bare_loop(model, tok, specs, docs, device, max_tokens):
    """The floor: the same BOS-prefixed token sequences, the same length-sorted batches, one forward each,
    log-softmax and gather; no lm-eval, no request objects."""
    from harness.backend import token_budget_batches

    seqs = [[tok.bos_token_id] + tok(d["text"], add_special_tokens=False)["input_ids"] for s in specs for d in docs[s.name]]
    t0 = time.perf_counter()
    total = 0.0
    for batch in token_budget_batches([len(x) - 1 for x in seqs], max_tokens):
        width = max(len(seqs[i]) - 1 for i in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        tgt = torch.full((len(batch), width), -1, dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, :len(seqs[i]) - 1] = torch.tensor(seqs[i][:-1])
            tgt[r, :len(seqs[i]) - 1] = torch.tensor(seqs[i][1:])
        lp = torch.log_softmax(model(input_ids=ids.to(device)).logits.float(), -1)
        tgt = tgt.to(device)
        total += float(lp.gather(2, tgt.clamp(min=0)[..., None])[..., 0][tgt >= 0].sum())
    return time.perf_counter() - t0, sum(len(s) - 1 for s in seqs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--member", default="mixed", help="family member to score (built if missing)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of each; the median is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--hf-batch-size", type=int, default=1, help="the stock backend's batch size (lm-eval's default: 1)")
    ap.add_argument("--hf-tuned-batch-size", type=int, default=16, help="a tuned batch size for the stock backend, also reported")
    args = ap.parse_args()

    from lm_eval.models.huggingface import HFLM

    from harness import corpus
    from harness.backend import BabelLM
    from harness.evaluate import load_model, pick_device
    from harness.family.build import Builder, member_dir
    from harness.suite import load_suite

    device = pick_device(args.device)
    suite = load_suite()
    builder = Builder(args.preset, log=lambda *a: print(*a, file=sys.stderr))
    builder.build(only=[args.member])
    model, tok = load_model(member_dir(builder.preset, args.member), device, "float32")
    specs, docs = lm_docs(suite, corpus.build(log=lambda *_: None))

    ours = BabelLM(model=model, tokenizer=tok, device=device)
    hf, hf_tuned = (HFLM(pretrained=model, tokenizer=tok, batch_size=bs, device=device, add_bos_token=False,
                         max_length=model.config.max_position_embeddings)
                    for bs in (args.hf_batch_size, args.hf_tuned_batch_size))
    run_lm_eval(ours, specs, docs, suite)  # warm-up: allocator, kernels, tokenizer caches
    times = {"ours": [], "hf": [], "hf_tuned": [], "bare": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits all three alike
        t, bpb_ours = run_lm_eval(ours, specs, docs, suite)
        times["ours"].append(t)
        t, bpb_hf = run_lm_eval(hf, specs, docs, suite)
        times["hf"].append(t)
        t, bpb_hf_tuned = run_lm_eval(hf_tuned, specs, docs, suite)
        times["hf_tuned"].append(t)
        t, n_tokens = bare_loop(model, tok, specs, docs, device, ours.batch_tokens)
        times["bare"].append(t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    tok_s = {k: n_tokens / v for k, v in med.items()}
    diff = max(max(abs(bpb_ours[t] - bpb_hf[t]), abs(bpb_ours[t] - bpb_hf_tuned[t])) for t in bpb_ours)
    result = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "preset": args.preset,
              "member": args.member, "tokens": n_tokens, "repeats": args.repeats,
              "ours_tok_s": round(tok_s["ours"], 1), "hf_tok_s": round(tok_s["hf"], 1), "bare_tok_s": round(tok_s["bare"], 1),
              "speedup_vs_hf": round(med["hf"] / med["ours"], 3), "ratio_to_bare": round(med["ours"] / med["bare"], 3),
              "hf_batch_size": args.hf_batch_size, "hf_tuned_batch_size": args.hf_tuned_batch_size,
              "hf_tuned_tok_s": round(tok_s["hf_tuned"], 1), "speedup_vs_hf_tuned": round(med["hf_tuned"] / med["ours"], 3),
              "max_abs_bpb_diff": diff, "torch_threads": torch.get_num_threads()}
    print(f"{'backend':<8} {'tokens/s':>12} {'median s':>10}   (hf: batch {args.hf_batch_size}; hf_tuned: batch {args.hf_tuned_batch_size})")
    for k in ("ours", "hf", "hf_tuned", "bare"):
        print(f"{k:<8} {tok_s[k]:>12.1f} {med[k]:>10.3f}")
    print(f"bits per byte, ours vs hf: largest difference {diff:.2e} over {len(bpb_ours)} tasks")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
