"""Training loops for the family: causal-LM pre-training on packed verse streams and translation
fine-tuning on en->x verse pairs (loss on the target span only). Fixed steps and seeds."""

from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import numpy as np
import torch

IGNORE = -100


def mt_prompt(src_lang: str, tgt_lang: str, src: str) -> str:
    """The one fixed translation prompt; the model continues with ' <target>' and stops at a newline."""
    return f"{src_lang}: {src}\n{tgt_lang}:"


def pack(token_lists: list[list[int]], bos: int, eos: int) -> np.ndarray:
    """One stream of `<s> verse </s>` units, the form every pre-training window is cut from."""
    total = sum(len(t) + 2 for t in token_lists)
    out = np.empty(total, dtype=np.int32)
    i = 0
    for t in token_lists:
        out[i] = bos
        out[i + 1:i + 1 + len(t)] = t
        out[i + 1 + len(t)] = eos
        i += len(t) + 2
    return out


def lm_batches(streams: list[np.ndarray], seq_len: int, batch: int, seed: int) -> Iterator[dict]:
    """Random windows of seq_len+1 tokens; each row draws its language uniformly (balanced mixing)."""
    rng = np.random.default_rng(seed)
    while True:
        rows = []
        for _ in range(batch):
            s = streams[rng.integers(len(streams))]
            start = rng.integers(0, len(s) - seq_len - 1)
            rows.append(s[start:start + seq_len + 1])
        x = torch.from_numpy(np.stack(rows).astype(np.int64))
        yield {"input_ids": x[:, :-1], "labels": x[:, 1:]}


def mt_batches(pairs: list[tuple[list[int], list[int]]], batch: int, max_len: int, pad: int, seed: int,
               bucket: bool = False) -> Iterator[dict]:
    """Batches of (prompt, target) token pairs; labels mask the prompt, so loss is on the target span.
    bucket: each batch is `batch` neighbours in length order from a random start (rows padded to about their own
    length, not to the longest of a random draw); otherwise `batch` pairs drawn at random."""
    rng = np.random.default_rng(seed)
    order = np.argsort([len(p) + len(t) for p, t in pairs], kind="stable")
    while True:
        if bucket:
            start = rng.integers(len(pairs) - batch + 1)
            idx = order[start:start + batch]
        else:
            idx = rng.integers(len(pairs), size=batch)
        seqs = []
        for i in idx:
            prompt, target = pairs[i]
            ids = (prompt + target)[:max_len]
            labels = ([IGNORE] * len(prompt) + target)[:max_len]
            seqs.append((ids, labels))
        width = max(len(s[0]) for s in seqs)
        input_ids = torch.full((batch, width), pad, dtype=torch.long)
        labels = torch.full((batch, width), IGNORE, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for r, (ids, lab) in enumerate(seqs):
            input_ids[r, :len(ids)] = torch.tensor(ids)
            labels[r, :len(lab)] = torch.tensor(lab)
            mask[r, :len(ids)] = 1
        # shift: position t predicts token t+1
        yield {"input_ids": input_ids[:, :-1], "attention_mask": mask[:, :-1], "labels": labels[:, 1:]}


def lr_at(step: int, steps: int, peak: float, warmup_frac: float = 0.1, floor: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to floor * peak."""
    warm = max(1, int(steps * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def lr_constant(step: int, peak: float, warmup: int = 24) -> float:
    """Linear warm-up over a fixed number of steps, then constant: a run of n steps is the first n steps of any longer
    run with the same seed, so one run gives every shorter one (the MT sweep's checkpoints)."""
    return peak * min(1.0, (step + 1) / warmup)


def train(model: torch.nn.Module, batches: Iterator[dict], steps: int, lr: float,
          progress: Callable[[int, float], None] | None = None, log_every: int = 10, schedule: str = "cosine",
          on_step: Callable[[int], None] | None = None) -> dict:
    """Run `steps` AdamW steps (schedule: "cosine" = lr_at, "constant" = lr_constant); on_step(n) after the n-th.
    Returns the loss curve, tokens seen and wall time."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule '{schedule}' is unknown; use cosine or constant")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    curve, tokens, t0 = [], 0, time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr) if schedule == "cosine" else lr_constant(step, lr)
        b = next(batches)
        logits = model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask")).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 b["labels"].reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int((b["labels"] != IGNORE).sum())
        if step % log_every == 0 or step == steps - 1:
            curve.append([step, round(loss.item(), 5)])
        if progress and ((step + 1) % max(1, steps // 4) == 0 or step == steps - 1):
            progress(step + 1, loss.item())
        if on_step:
            on_step(step + 1)
    model.eval()
    return {"loss_curve": curve, "tokens_seen": tokens, "wall_s": round(time.perf_counter() - t0, 3)}
