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


def load_causal_lm(path, device: str = "cpu", dtype: str = "bfloat16"):
    """A local causal LM from safetensors only, never with remote code, in `dtype`, in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False,
                                                dtype=getattr(torch, dtype)).to(device).eval()


def shared_tokenizer(paths: list):
    """The tokenizer of the first checkpoint, after checking that every other one has the same vocabulary: CKA and
    the neuron overlap compare the same tokens."""
    from transformers import PreTrainedTokenizerFast

    toks = [PreTrainedTokenizerFast.from_pretrained(str(p)) for p in paths]
    for p, t in zip(paths[1:], toks[1:]):
        if t.get_vocab() != toks[0].get_vocab():
            raise ValueError(f"{p}: its tokenizer differs from {paths[0]}'s; CKA needs both models to read the same tokens")
    return toks[0]


def probe_sequences(tok, texts: list[str]) -> list[list[int]]:
    """Each text as token ids after the start token (compute.start_token), no other special tokens."""
    from .compute import start_token

    return [[start_token(tok)] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def pair_cka(path_a, path_b, data, languages: list[str], n: int, device: str = "cpu", dtype: str = "bfloat16",
             tokens: int = 1024, log=lambda *_: None) -> dict:
    """Per-layer streamed linear minibatch CKA between two checkpoints on the first n FLORES+ dev sentences of each
    language, with what produced it (the data files' sha256s, the weights' sha256s, versions, git commit). The two
    must share a tokenizer (the same vocabulary): CKA compares the same tokens."""
    import time

    from .. import identity, provenance

    t0 = time.perf_counter()
    tok = shared_tokenizer([path_a, path_b])
    texts = flores_probe(data, languages, n)
    seqs = probe_sequences(tok, texts)
    a, b = load_causal_lm(path_a, device, dtype), load_causal_lm(path_b, device, dtype)
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


@torch.no_grad()
def gate_activity(model, seqs_by_lang: list[list[list[int]]], device: str = "cpu", tokens: int = 1024):
    """LAPE's counts for any gated-MLP model, streamed: over_zero (langs, L, N), how often each gate neuron is
    active (act(x W_gate) > 0) on each language's tokens (start tokens left out), and tokens (langs,). Memory is
    the counts plus one minibatch, whatever the number of probe tokens."""
    import numpy as np

    from .compute import _gates, gate_hooks

    L = len(_gates(model))
    N = model.model.layers[0].mlp.gate_proj.out_features
    over_zero = torch.zeros(len(seqs_by_lang), L, N, dtype=torch.float64, device=device)
    counts = np.zeros(len(seqs_by_lang))
    captured: list[torch.Tensor] = []
    hooks = gate_hooks(model, captured)
    try:
        for li, seqs in enumerate(seqs_by_lang):
            for group in token_batches([len(q) - 1 for q in seqs], tokens):
                batch = [seqs[i] for i in group]
                width = max(len(q) for q in batch)
                ids = torch.zeros(len(batch), width, dtype=torch.long)
                keep = torch.zeros(len(batch), width, dtype=torch.bool)
                for r, q in enumerate(batch):
                    ids[r, :len(q)], keep[r, 1:len(q)] = torch.tensor(q), True
                captured.clear()
                model(input_ids=ids.to(device))
                keep = keep.to(device)
                for layer, g in enumerate(captured):
                    over_zero[li, layer] += (g[keep] > 0).sum(0).double()
                counts[li] += int(keep.sum())
    finally:
        for h in hooks:
            h.remove()
    return over_zero.cpu().numpy(), counts


def lape_mask(model, seqs_by_lang: list[list[list[int]]], device: str = "cpu", tokens: int = 1024):
    """LAPE language-specific neurons (harness/similarity/neurons.py) of a loaded gated-MLP model from streamed gate
    counts: a boolean mask (langs, L, N) and the tokens counted per language (langs,)."""
    from . import neurons

    over_zero, counts = gate_activity(model, seqs_by_lang, device, tokens)
    return neurons.lape_neurons(over_zero / counts[:, None, None]), counts


def language_neurons(path, data, languages: list[str], n: int, device: str = "cpu", dtype: str = "bfloat16",
                     tokens: int = 1024) -> dict:
    """LAPE language-specific neurons (Tang et al. 2024; harness/similarity/neurons.py) of one gated-MLP checkpoint
    on the first n FLORES+ dev sentences of each language: per layer and language the count of specific neurons,
    the neuron sets, and what produced them."""
    import time

    from transformers import PreTrainedTokenizerFast

    from .. import identity, provenance
    from . import neurons

    t0 = time.perf_counter()
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    seqs = [probe_sequences(tok, flores_probe(data, [lang], n)) for lang in languages]
    mask, counts = lape_mask(load_causal_lm(path, device, dtype), seqs, device, tokens)
    L, N = mask.shape[1:]
    rows = [{"metric": "lape_count", "layer": layer + 1, "language": lang, "value": int(mask[li, layer].sum()), "units": N}
            for li, lang in enumerate(languages) for layer in range(L)]
    sets = {lang: [[int(l) + 1, int(i)] for l, i in zip(*mask[li].nonzero())] for li, lang in enumerate(languages)}
    return {"method": "lape", "rows": rows, "sets": sets, "tokens": dict(zip(languages, counts.astype(int).tolist())),
            "model": {"path": str(path), "sha256": identity.model_hash(Path(path))},
            "probe": {"data": "flores_plus", "split": "dev", "languages": languages, "n_per_language": n},
            "provenance": {"data": data.provenance(), "git": provenance.git_hash(), "packages": provenance.packages(),
                           "lape": [neurons.LAPE_TOP_RATE, neurons.LAPE_FILTER_RATE, neurons.LAPE_BAR_RATE],
                           "device": device, "dtype": dtype, "created_utc": provenance.now_utc(),
                           "wall_s": round(time.perf_counter() - t0, 3)}}
