"""Hub-scale CKA: two models' hidden states over a parallel probe (FLORES+ dev sentences), streamed in token
minibatches in bfloat16 into per-layer minibatch CKA accumulators (Nguyen et al., ICLR 2021), so memory does not
grow with the number of probe tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from .cka import MinibatchCKA


def flores_probe(data, languages: list[str], n: int, split: str = "dev") -> list[str]:
    """The first n sentences (by id) of each language's FLORES+ split, language by language: a parallel probe
    whose sha256s land in data.read (harness/data.py)."""
    from ..tasks.flores import _by_id

    return [r["text"] for lang in languages for r in _by_id(data.rows("flores_plus", lang, split))[:n]]


def token_batches(lengths: list[int], tokens: int) -> list[list[int]]:
    """Consecutive sequence indices grouped so each group holds at most `tokens` tokens (a longer sequence is a
    group of its own). Pure: the same probe always gives the same minibatches."""
    groups, cur, used = [], [], 0
    for i, n in enumerate(lengths):
        if cur and used + n > tokens:
            groups.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    return groups + ([cur] if cur else [])


def _hidden(model, seqs: list[list[int]], device: str) -> list[torch.Tensor]:
    """Every hidden state of a right-padded batch, the rows of real tokens after each sequence's first (its start
    token), in the model's dtype: (tokens, width) per layer."""
    width = max(len(q) for q in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for r, q in enumerate(seqs):
        ids[r, :len(q)], mask[r, 1:len(q)] = torch.tensor(q), True
    out = model(input_ids=ids.to(device), output_hidden_states=True)
    keep = mask.to(device)
    return [h[keep] for h in out.hidden_states]


@torch.no_grad()
def stream_cka(model_a, model_b, seqs: list[list[int]], device: str = "cpu", tokens: int = 1024) -> Iterator[MinibatchCKA]:
    """Linear minibatch CKA between every matching layer of two models sharing a tokenizer, over token-id
    sequences (each starting with its start token, which is left out). Yields the accumulator after each
    minibatch; the last one holds the result (`.result()`, one value per hidden-state layer, 0 = embeddings).
    Causal attention: right padding never changes the real tokens' states, so the pad mask is not needed."""
    acc = MinibatchCKA()
    for group in token_batches([len(q) - 1 for q in seqs], tokens):
        batch = [seqs[i] for i in group]
        acc.update(_hidden(model_a, batch, device), _hidden(model_b, batch, device))
        yield acc


def pair_cka(path_a, path_b, data, languages: list[str], n: int, device: str = "cpu", dtype: str = "bfloat16",
             tokens: int = 1024, log=lambda *_: None) -> dict:
    """Per-layer streamed linear minibatch CKA between two checkpoints on the first n FLORES+ dev sentences of each
    language, with what produced it (the data files' sha256s, the weights' sha256s, versions, git commit). The two
    must share a tokenizer (the same vocabulary): CKA compares the same tokens."""
    import time

    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from .. import identity, provenance
    from .compute import start_token

    t0 = time.perf_counter()
    toks = [PreTrainedTokenizerFast.from_pretrained(str(p)) for p in (path_a, path_b)]
    if toks[0].get_vocab() != toks[1].get_vocab():
        raise ValueError(f"{path_b}: its tokenizer differs from {path_a}'s; CKA needs both models to read the same tokens")
    texts = flores_probe(data, languages, n)
    tok = toks[0]
    seqs = [[start_token(tok)] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    load = lambda p: AutoModelForCausalLM.from_pretrained(str(p), use_safetensors=True, trust_remote_code=False,
                                                          dtype=getattr(torch, dtype)).to(device).eval()
    a, b = load(path_a), load(path_b)
    acc = None
    for acc in stream_cka(a, b, seqs, device, tokens):
        log(f"[cka] {acc.batches} minibatches")
    return {"metric": "cka_linear_minibatch", "values": acc.result(), "layers": "0 = embeddings output",
            "probe": {"data": "flores_plus", "split": "dev", "languages": languages, "n_per_language": n,
                      "sentences": len(texts), "tokens": sum(len(q) - 1 for q in seqs), "minibatch_tokens": tokens,
                      "minibatches": acc.batches},
            "models": {"a": str(path_a), "b": str(path_b), "a_sha256": identity.model_hash(Path(path_a)),
                       "b_sha256": identity.model_hash(Path(path_b))},
            "provenance": {"data": data.provenance(), "git": provenance.git_hash(), "packages": provenance.packages(),
                           "device": device, "dtype": dtype, "created_utc": provenance.now_utc(),
                           "wall_s": round(time.perf_counter() - t0, 3)}}
