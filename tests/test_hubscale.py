"""Diagnostics for real architectures (issue 16.5): gate activations through forward hooks on any gated MLP
(Qwen2, Gemma2 here), and streamed minibatch CKA whose result matches the in-memory computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.similarity import cka
from harness.similarity.compute import _forward, start_token
from harness.similarity.stream import stream_cka, token_batches
from realdata import make_arch_model

ACT = {"qwen2": F.silu, "gemma2": lambda x: F.gelu(x, approximate="tanh")}


@pytest.fixture(scope="module", params=["qwen2", "gemma2"])
def arch_model(request, tmp_path_factory, tokenizer_dir):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    path = make_arch_model(tmp_path_factory.mktemp(request.param) / "m", tokenizer_dir, request.param, seed=3)
    return request.param, AutoModelForCausalLM.from_pretrained(str(path)).eval(), PreTrainedTokenizerFast.from_pretrained(str(path))


def test_gate_activations_by_hand(arch_model):
    """The hooked gate activations equal act(x W_gate^T) computed by hand from each MLP's input."""
    arch, model, tok = arch_model
    inputs = []
    pre = [l.mlp.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) for l in model.model.layers]
    seqs = [[start_token(tok)] + tok(t, add_special_tokens=False)["input_ids"] for t in ("In the beginning", "Im Anfang war")]
    try:
        got = list(_forward(model, seqs, "cpu", batch=2))
    finally:
        for h in pre:
            h.remove()
    assert len(got) == 2 and len(got[0][2]) == model.config.num_hidden_layers
    for layer, block in enumerate(model.model.layers):
        want = ACT[arch](inputs[layer] @ block.mlp.gate_proj.weight.T)
        for r, q in enumerate(seqs):
            g = got[r][2][layer]
            assert g.shape == (len(q), model.config.intermediate_size)
            torch.testing.assert_close(g, want[r, :len(q)].float(), rtol=1e-5, atol=1e-6)
    assert (got[0][2][0] < 0).any()  # SiLU/GELU go below zero: 'active' (> 0) is a real threshold


def test_start_token_falls_back_to_eos():
    class Tok:
        bos_token_id, eos_token_id = None, 7

    assert start_token(Tok()) == 7
    Tok.eos_token_id = None
    with pytest.raises(ValueError, match="neither a BOS nor an EOS"):
        start_token(Tok())


def test_token_batches():
    assert token_batches([3, 3, 3, 9, 1], 6) == [[0, 1], [2], [3], [4]]
    assert token_batches([], 6) == []


def test_streamed_minibatch_cka_matches_in_memory(tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(str(make_arch_model(tmp_path / "a", tokenizer_dir, "qwen2", seed=4))).eval()
    b = AutoModelForCausalLM.from_pretrained(str(make_arch_model(tmp_path / "b", tokenizer_dir, "qwen2", seed=5))).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [[1] + torch.randint(3, 250, (int(n),), generator=g).tolist() for n in torch.randint(8, 20, (12,), generator=g)]
    *_, acc = stream_cka(a, b, seqs, tokens=40)
    streamed = acc.result()
    # independently: all hidden states in memory, sequence by sequence, then minibatch CKA over the same blocks
    with torch.no_grad():
        ha = [a(input_ids=torch.tensor([q]), output_hidden_states=True).hidden_states for q in seqs]
        hb = [b(input_ids=torch.tensor([q]), output_hidden_states=True).hidden_states for q in seqs]
    groups = token_batches([len(q) - 1 for q in seqs], 40)
    assert acc.batches == len(groups) > 2
    for layer in range(len(streamed)):
        kl = kk = ll = 0.0
        for grp in groups:
            x = torch.cat([ha[i][layer][0, 1:] for i in grp]).double()
            y = torch.cat([hb[i][layer][0, 1:] for i in grp]).double()
            k, l = x @ x.T, y @ y.T
            kl, kk, ll = kl + cka.hsic_unbiased(k, l), kk + cka.hsic_unbiased(k, k), ll + cka.hsic_unbiased(l, l)
        assert streamed[layer] == pytest.approx(float(kl / torch.sqrt(kk * ll)), rel=1e-4)
    assert all(-1 <= v <= 1 for v in streamed)
    # a model against itself: 1 at every layer
    *_, same = stream_cka(a, a, seqs, tokens=40)
    assert same.result() == pytest.approx([1.0] * len(streamed), abs=1e-9)


def test_streamed_gate_activity_matches_per_sequence(arch_model):
    """LAPE counts streamed in padded minibatches equal those counted sequence by sequence (gates checked by hand
    above), for Qwen2 and Gemma2."""
    import numpy as np

    from harness.similarity import neurons
    from harness.similarity.stream import gate_activity

    _, model, tok = arch_model
    texts = [["In the beginning God created", "And the earth was without form", "Let there be light"],
             ["Im Anfang schuf Gott", "Und die Erde war wüst und leer"]]
    seqs = [[[start_token(tok)] + tok(t, add_special_tokens=False)["input_ids"] for t in lang] for lang in texts]
    over_zero, counts = gate_activity(model, seqs, tokens=12)
    want = np.zeros_like(over_zero)
    for li, lang in enumerate(seqs):
        for _, _, gs, _ in _forward(model, lang, "cpu", batch=1):
            want[li] += np.stack([(g[1:] > 0).sum(0).numpy() for g in gs])
    np.testing.assert_array_equal(over_zero, want)
    assert counts.tolist() == [sum(len(q) - 1 for q in lang) for lang in seqs]
    mask = neurons.lape_neurons(over_zero / counts[:, None, None])
    assert mask.shape == over_zero.shape and mask.any()
