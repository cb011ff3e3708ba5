"""MT sweep for the tiny family: which preset change makes the mt-en-<x> experts use their source.

For each preset variant it fine-tunes the cached `mixed` into the experts of some directions with the family's own
training code (harness.family.build.Builder.train_member), then measures each on the suite's mt test documents with
its own code, independent of the evaluation engine:
  - XMI (Bugliarello et al., ACL 2020): bits per reference byte, teacher-forced, given a shuffled source minus given
    the real source; the shuffled source is a seeded derangement of the test documents (no document keeps its own);
  - chrF++ (sacrebleu CHRF(word_order=2), corpus level) of greedy outputs for the real prompts minus that of greedy
    outputs for the shuffled prompts, both against the real references;
each with a paired percentile-bootstrap 95% interval over the 48 test documents (`*`: the interval excludes zero).
`init-s0` (untrained) and `mixed` (no MT training) are the negative controls. A variant with the constant MT schedule
is measured at several step counts from one run: with a fixed warm-up and a constant lr, the first n steps of a
longer run are exactly the n-step member (same seed, same batches).

Family build time is EXTRAPOLATED: seconds per step of each kind of batch (pre-training, MT random pairs, MT length
neighbours), timed back to back in interleaved rounds so that load on the shared cores hits each alike, times each
member's steps (harness.family.build.members). An estimate of the training time only, not a measurement;
`babelmerge family build` measures the real thing.

  python benchmarks/mt_sweep.py --directions fr ru                 # every variant on en-fr and en-ru
  python benchmarks/mt_sweep.py --quick                            # v0 and v2 on en-fr only, v2 to 480 steps
  python benchmarks/mt_sweep.py --variants v2 --directions all --all   # the chosen variant on all six + mt-all
  python benchmarks/mt_sweep.py --final                            # the BUILT tiny family: 6 experts, mt-all
  python benchmarks/mt_sweep.py --times                            # extrapolated build time of every variant
Last line: one JSON object with every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import suite as suite_mod  # noqa: E402
from harness.family import build as fb  # noqa: E402
from harness.family.presets import PRESETS  # noqa: E402
from harness.tasks import TaskSpec, task_docs  # noqa: E402

SUITE = Path(__file__).resolve().parents[1] / "suites" / "babel-mini-v1.yaml"
BOOT, SEED = 1000, 1234

# name -> (overrides of the tiny preset's MT fields, step counts measured); v0 is the preset before issue 11.
OLD = dict(lr_mt_scale=0.3, mt_bucket=False, mt_schedule="cosine")
VARIANTS = {
    "v0": ("old tiny: 0.3 lr, random batches, cosine", dict(OLD, steps_mt=120, steps_mt_all=240), [120]),
    "v1": ("full lr, random batches, cosine", dict(OLD, lr_mt_scale=1.0, steps_mt=480, steps_mt_all=960), [480]),
    "v2": ("full lr, length-bucketed, constant", dict(lr_mt_scale=1.0, mt_bucket=True, mt_schedule="constant",
                                                      steps_mt=1440, steps_mt_all=2880), [240, 480, 960, 1440]),
    "v3": ("full lr, length-bucketed, cosine", dict(lr_mt_scale=1.0, mt_bucket=True, mt_schedule="cosine",
                                                    steps_mt=960, steps_mt_all=1920), [960]),
}
MT_ALL_FACTOR = 2  # mt-all checkpoints at this multiple of the experts'


# -- measurement (independent of harness.evaluate) ----------------------------------------------------------------
def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n) with no fixed point (rejection sampling; n >= 2)."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


@torch.no_grad()
def target_bits(model, tok, prompts: list[str], refs: list[str]) -> np.ndarray:
    """-log2 p(' ' + ref | prompt) summed over the reference's tokens, teacher-forced, one row per document -> (n,)."""
    out = []
    for prompt, ref in zip(prompts, refs):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = tok(" " + ref, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + t])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)  # (L-1, V): position i predicts i+1
        tgt = ids[0, len(p):]
        out.append(float(-logp[len(p) - 1:, :].gather(1, tgt[:, None]).sum()) / np.log(2))
    return np.array(out)


@torch.no_grad()
def greedy(model, tok, prompts: list[str], max_new: int, batch: int = 48) -> list[str]:
    """Greedy continuations, cut at the first newline or EOS; left-padded batches with explicit positions and a
    key/value cache (each step feeds only the new token)."""
    outs = []
    for s in range(0, len(prompts), batch):
        enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[s:s + batch]]
        w = max(map(len, enc))
        ids = torch.tensor([[tok.pad_token_id] * (w - len(e)) + e for e in enc])
        mask = torch.tensor([[0] * (w - len(e)) + [1] * len(e) for e in enc])
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        gen, done = [], torch.zeros(len(enc), dtype=torch.bool)
        for _ in range(max_new):
            nxt = out.logits[:, -1].argmax(-1)
            gen.append(nxt)
            done |= nxt == tok.eos_token_id
            if done.all():
                break
            mask = torch.cat([mask, torch.ones(len(enc), 1, dtype=mask.dtype)], 1)
            pos = pos[:, -1:] + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                        past_key_values=out.past_key_values, use_cache=True)
        g = torch.stack(gen, 1).tolist()
        for row in g:
            row = row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
            outs.append(tok.decode(row, skip_special_tokens=True).split("\n")[0].strip())
    return outs


def chrf_stats(hyps: list[str], refs: list[str]) -> tuple[object, np.ndarray]:
    """chrF++ sufficient statistics per document -> (metric, (n, k)); a corpus score is f(sum of rows)."""
    from sacrebleu.metrics import CHRF

    m = CHRF(word_order=2)
    return m, np.array(m._extract_corpus_statistics(hyps, [refs]), dtype=float)


def boot_idx(n: int) -> np.ndarray:
    return np.random.default_rng(SEED).integers(n, size=(BOOT, n))


def interval(point: float, reps: np.ndarray) -> dict:
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return {"diff": round(float(point), 4), "lo": round(float(lo), 4), "hi": round(float(hi), 4),
            "signal": bool(lo > 0 or hi < 0)}


def measure(model, tok, docs: list[dict], perm: np.ndarray, max_new: int) -> dict:
    """XMI and chrF++ over the shuffled-source control, each with a paired bootstrap over documents."""
    model.eval()
    prompts = [d["prompt"] for d in docs]
    shuf = [prompts[j] for j in perm]
    refs = [d["ref"] for d in docs]
    nbytes = np.array([len(r.encode()) for r in refs], dtype=float)
    b_real, b_shuf = target_bits(model, tok, prompts, refs), target_bits(model, tok, shuf, refs)
    idx = boot_idx(len(docs))
    xmi = (b_shuf.sum() - b_real.sum()) / nbytes.sum()
    xmi_reps = (b_shuf[idx].sum(1) - b_real[idx].sum(1)) / nbytes[idx].sum(1)
    h_real, h_shuf = greedy(model, tok, prompts, max_new), greedy(model, tok, shuf, max_new)
    metric, s_real = chrf_stats(h_real, refs)
    _, s_shuf = chrf_stats(h_shuf, refs)
    f = metric._compute_f_score
    c_real, c_shuf = f(s_real.sum(0)), f(s_shuf.sum(0))
    c_reps = np.array([f(s_real[i].sum(0)) - f(s_shuf[i].sum(0)) for i in idx])
    return {"bpb_given_source": round(float(b_real.sum() / nbytes.sum()), 4), "xmi": interval(xmi, xmi_reps),
            "chrf": round(float(c_real), 2), "chrf_control": round(float(c_shuf), 2), "chrf_over_control": interval(c_real - c_shuf, c_reps),
            "distinct_outputs": len(set(h_real)), "empty": sum(not h for h in h_real), "example": h_real[0][:80]}


# -- the sweep ------------------------------------------------------------------------------------------------------
def load_docs(builder, targets):
    suite = suite_mod.load_suite(str(SUITE))
    docs = {x: task_docs(TaskSpec(f"mt:en-{x}", "mt", x, suite["tasks"]["mt"]["version"]), suite, builder.corpus)
            for x in targets}
    return suite, docs


def calibrate(builder, n: int = 10, rounds: int = 3) -> dict[str, float]:
    """Seconds per training step of each kind the family runs, timed back to back on copies of mixed in `rounds`
    interleaved rounds of n steps (so load changes hit every kind alike): pre-training windows, MT batches of random
    pairs, MT batches of length neighbours (all six directions' pool)."""
    from transformers import LlamaForCausalLM

    from harness.family.train import lm_batches, mt_batches, train
    p, pad = builder.preset, builder.tokenizer().pad_token_id
    pairs = builder.mt_pairs(fb.TARGETS)
    kinds = {"pretrain": lm_batches([builder.stream(lang) for lang in fb.corpus_mod.LANGUAGES], p.seq_len, p.batch, 0),
             "mt_random": mt_batches(pairs, p.batch, 2 * p.seq_len, pad, 0),
             "mt_bucket": mt_batches(pairs, p.batch, 2 * p.seq_len, pad, 0, bucket=True)}
    model = LlamaForCausalLM.from_pretrained(str(fb.member_dir(p, "mixed")), dtype=torch.float32)
    train(model, kinds["pretrain"], 1, p.lr)  # warm-up, not timed
    total = dict.fromkeys(kinds, 0.0)
    for _ in range(rounds):
        for kind, batches in kinds.items():
            t = time.perf_counter()
            train(model, batches, n, p.lr)
            total[kind] += time.perf_counter() - t
    return {k: v / (n * rounds) for k, v in total.items()}


def family_time(preset, cal: dict[str, float]) -> float:
    """Seconds for every member of `preset` at the calibrated speeds: pre-training and cpt at cal["pretrain"], MT
    members at cal["mt_bucket"] or cal["mt_random"] per the preset's batching."""
    mt = cal["mt_bucket" if preset.mt_bucket else "mt_random"]
    return sum(m.steps * (mt if m.arm == "mt" else cal["pretrain"]) for m in fb.members(preset))


def run_member(label, preset, builder, name, steps, docs, perm, max_new, log) -> tuple[list[dict], float]:
    """Fine-tune one MT member of `preset`, measuring it at each step count in `steps` -> (rows, s/step)."""
    m = next(m for m in fb.members(preset) if m.name == name)
    targets = [x for x in m.langs if x in docs]
    rows, eval_s = [], [0.0]

    def at(n, model):
        if n not in steps:
            return
        t = time.perf_counter()
        for x in targets:
            r = measure(model, builder.tokenizer(), docs[x], perm[x], max_new)
            rows.append({"variant": label, "model": name, "direction": f"en-{x}", "steps": n, **r})
            log(fmt_row(rows[-1]))
        model.train()
        eval_s[0] += time.perf_counter() - t

    builder.preset = preset
    _, stats = builder.train_member(m, on_step=at)
    s_per_step = (stats["wall_s"] - eval_s[0]) / m.steps
    for r in rows:
        r["s_per_step"] = round(s_per_step, 4)
    return rows, s_per_step


def fmt_iv(d, f="+.3f"):
    return f"{d['diff']:{f}} [{d['lo']:{f}},{d['hi']:{f}}]{'*' if d['signal'] else ' '}"


def fmt_row(r):
    c = r["chrf_over_control"]
    return (f"{r['variant'][:44]:44s} {r['model']:9s} {r['direction']:6s} {str(r.get('steps', '-')):>5s}  "
            f"XMI {fmt_iv(r['xmi'])}  chrF++ {r['chrf']:5.2f} vs {r['chrf_control']:5.2f}: {fmt_iv(c, '+.2f')}  "
            f"distinct {r['distinct_outputs']}/48 empty {r['empty']}")


def reuse_mixed(builder) -> None:
    """Build init-s0 and mixed unless built ones have the same spec and model config (the preset's MT fields do not
    change them, but they are part of every member's cache key)."""
    for name in ("init-s0", "mixed"):
        d = fb.member_dir(builder.preset, name)
        spec = dataclasses.asdict(next(m for m in fb.members(builder.preset) if m.name == name))
        ok = (d / "member.json").exists()
        if ok:
            info = fb.store.read_json(d / "member.json")
            ok = json.loads(json.dumps(spec)) == info["spec"] and all(
                info["config"].get(k) == v for k, v in builder.preset.model_config().items())
        if not ok:
            builder.build(["mixed"])
            return


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--directions", nargs="*", default=["fr", "ru"], help="targets x (or 'all') of the experts to train")
    ap.add_argument("--variants", nargs="*", default=None, help=f"of {', '.join(VARIANTS)}; default all")
    ap.add_argument("--all", action="store_true", help="also train mt-all (measured on all six directions)")
    ap.add_argument("--steps", nargs="*", type=int, default=None, help="expert step counts to measure (default: the variant's)")
    ap.add_argument("--all-steps", nargs="*", type=int, default=None,
                    help=f"mt-all step counts to measure (default: {MT_ALL_FACTOR} x the experts')")
    ap.add_argument("--quick", action="store_true", help="v0 and v2 (to 480 steps) on en-fr only")
    ap.add_argument("--final", action="store_true", help="measure the BUILT tiny family: six experts and mt-all")
    ap.add_argument("--times", action="store_true",
                    help="only calibrate and print every variant's extrapolated family build time (no training)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    builder = fb.Builder("tiny", log=lambda *_: None)
    tiny = builder.preset
    if a.times:
        reuse_mixed(builder)
        cal = calibrate(builder)
        log("s/step, " + ", ".join(f"{k} {v:.3f}" for k, v in cal.items()) + f" ({a.threads} thread(s))")
        times = {}
        for key, (desc, over, steps) in VARIANTS.items():
            for n in steps:
                for n_all in sorted({MT_ALL_FACTOR * n, 3 * n}):
                    p = dataclasses.replace(tiny, **dict(over, steps_mt=n, steps_mt_all=n_all))
                    times[f"{key}@{n}/{n_all}"] = round(family_time(p, cal), 1)
                    log(f"  {key}@{n}/{n_all:<5d} {desc:38s} {times[f'{key}@{n}/{n_all}'] / 60:5.1f} min (extrapolated)")
        log(json.dumps({"family_build_s_extrapolated": times, "s_per_step": cal, "threads": a.threads}))
        return 0
    targets = list(fb.TARGETS) if a.final or a.directions == ["all"] else (["fr"] if a.quick else a.directions)
    measured = list(fb.TARGETS) if a.all or a.final else targets
    suite, docs = load_docs(builder, measured)
    perm = {x: derangement(len(docs[x]), SEED + fb.TARGETS.index(x)) for x in measured}
    max_new = suite["tasks"]["mt"]["max_gen_toks"]
    from transformers import LlamaForCausalLM

    rows = []
    built = ["init-s0", "mixed"] + ([f"mt-en-{x}" for x in targets] + ["mt-all"] if a.final else [])
    if not a.final:
        reuse_mixed(builder)
    for name in built:
        model = LlamaForCausalLM.from_pretrained(str(fb.member_dir(tiny, name)), dtype=torch.float32)
        for x in measured if name in ("init-s0", "mixed", "mt-all") else [name.split("-")[-1]]:
            rows.append({"variant": "built" if a.final else "control", "model": name, "direction": f"en-{x}",
                         **measure(model, builder.tokenizer(), docs[x], perm[x], max_new)})
            log(fmt_row(rows[-1]))
    times = {}
    if not a.final:
        keys = ["v0", "v2"] if a.quick else [k for k in VARIANTS if not a.variants or k in a.variants]
        cal = calibrate(builder)
        log("s/step, " + ", ".join(f"{k} {v:.3f}" for k, v in cal.items()) + f" ({a.threads} thread(s))")
        for key in keys:
            desc, over, steps = VARIANTS[key]
            steps = a.steps or ([n for n in steps if n <= 480] if a.quick else steps)
            all_steps = a.all_steps or [MT_ALL_FACTOR * n for n in steps]
            preset = dataclasses.replace(tiny, **dict(over, steps_mt=max(steps), steps_mt_all=max(all_steps)))
            speed = {}
            for x in targets:
                r, speed[f"mt-en-{x}"] = run_member(f"{key}: {desc}", preset, builder, f"mt-en-{x}", steps,
                                                    docs, perm, max_new, log)
                rows += r
            if a.all:
                r, speed["mt-all"] = run_member(f"{key}: {desc}", preset, builder, "mt-all", all_steps,
                                                docs, perm, max_new, log)
                rows += r
            for n in steps:
                for n_all in (all_steps if a.all else [MT_ALL_FACTOR * n]):
                    p = dataclasses.replace(preset, steps_mt=n, steps_mt_all=n_all)
                    times[f"{key}@{n}/{n_all}"] = round(family_time(p, cal), 1)
        builder.preset = tiny
        log(f"\nfamily build time, EXTRAPOLATED from the calibrated s/step on {a.threads} thread(s) "
            f"(variant@expert steps/mt-all steps; training steps only):")
        for k, t in times.items():
            log(f"  {k:10s} {t / 60:5.1f} min")
    log("\n* = 95% paired-bootstrap interval over the 48 test documents excludes zero")
    log(json.dumps({"rows": rows, "family_build_s_extrapolated": times, "threads": a.threads,
                    "s_per_step": cal if not a.final else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
