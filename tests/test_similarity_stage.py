"""The similarity stage's compute layer on real (tiny, random) checkpoints: one probe pass per model, every
pair diagnostic, the cache, and the orientation of asymmetric rows."""

import numpy as np
import pytest
import torch

from harness import store
from harness.similarity import cka
from harness.similarity.compute import (PROBE_SPEC, Probe, SimilarityCache, merge_similarity_rows, neuron_summary,
                                        probe_model)
from harness.identity import model_hash

LANGS = ["en", "de", "ru"]
TEXT = {"en": "In the beginning was the word", "de": "Im Anfang war das Wort", "ru": "В начале было Слово"}


def small_probe() -> Probe:
    cka_texts = [f"{TEXT[l]} {i}" for l in LANGS for i in range(3)]
    neuron_texts = [f"{TEXT[l]} ({i})" for l in LANGS for i in range(4)]
    labels = [l for l in LANGS for _ in range(4)]
    mt = [(x, f"{TEXT['en']} {i}", f"{TEXT[x]} {i}") for x in ("de", "ru") for i in range(4)]
    return Probe(LANGS, cka_texts, neuron_texts, labels, mt, [TEXT[l] for l in LANGS])


@pytest.fixture
def three(tiny_models):
    return [(p.name, model_hash(p), p) for p in tiny_models]


def test_probe_arrays_have_the_documented_shapes(three):
    probe = small_probe()
    a = probe_model(three[0][2], probe)
    layers, n_tok, width = a["hidden"].shape
    assert layers == 3 and width == 32          # embeddings + 2 blocks
    assert a["over_zero"].shape == (3, 2, 64) and a["tokens"].sum() > 0
    assert np.all(a["over_zero"] <= a["tokens"][:, None, None])
    assert a["text_gate"].shape == (12, 2, 64) and a["span_src"].shape == (8, 2, 64)
    assert np.all(np.isfinite(a["dev_ll"])) and np.all(a["dev_ll"] < 0)
    rows, sets = neuron_summary(a, probe)
    assert {r["metric"] for r in rows} >= {"lape_count", "ap_count", "ap_mean", "span_ap_source", "span_ap_target"}
    assert set(sets) == {"lape", "ap"}
    # AP's top 1% per language of the model's units (32 embedding dims + 2 x 64 gate neurons)
    assert all(len(v) == round(0.01 * (32 + 128)) for v in sets["ap"].values())


def test_rows_cache_and_orientation(three):
    probe = small_probe()
    cache = SimilarityCache(probe)
    merge, cons = three[0], three[1:]
    bases = {c[0]: (merge[1], merge[2]) for c in cons}  # any base will do: m0 plays the pretrained base
    rows = merge_similarity_rows(cache, merge, cons, bases=bases, n_blocks=2)
    metrics = {r["metric"] for r in rows}
    assert metrics >= {"cka_linear", "cka_debiased", "cka_rbf", "cka_linear_matrix", "task_cosine", "sign_conflict",
                       "sign_conflict_trim", "path_bpb", "loss_barrier"}
    first = cache.computed
    assert first > 0

    # the cached RBF value is RBF CKA on the probe's fixed token subsample
    xa, xb = cache.arrays(cons[0][1], cons[0][2])["hidden"], cache.arrays(cons[1][1], cons[1][2])["hidden"]
    idx = np.sort(np.random.default_rng(PROBE_SPEC["seed"]).choice(xa.shape[1], min(PROBE_SPEC["rbf_tokens"], xa.shape[1]), replace=False))
    for layer in range(3):
        want = cka.rbf_cka(torch.from_numpy(xa[layer][idx]), torch.from_numpy(xb[layer][idx]))
        got = next(r["value"] for r in rows if r["metric"] == "cka_rbf" and r["relation"] == "constituents" and r["layer"] == layer)
        assert got == pytest.approx(want, abs=1e-9)

    # the layer x layer matrix is oriented a-layer by b-layer whichever way the cache sorted the pair
    m = cka.linear_cka_matrix([torch.from_numpy(x) for x in xa], [torch.from_numpy(x) for x in xb]).numpy()
    for r in rows:
        if r["metric"] == "cka_linear_matrix":
            assert (r["a"], r["b"]) == (cons[0][0], cons[1][0])
            assert r["value"] == pytest.approx(m[r["layer"], r["layer_b"]], abs=1e-9)

    # the path starts at a and ends at b: its ends are the two models' own dev bits per byte
    from harness.scoring import bits_per_byte
    path = sorted((r["alpha"], r["value"]) for r in rows if r["metric"] == "path_bpb")
    assert len(path) == 11
    own = lambda c: bits_per_byte(cache.arrays(c[1], c[2])["dev_ll"], cache.arrays(c[1], c[2])["dev_bytes"])
    assert path[0][1] == pytest.approx(own(cons[0]), rel=1e-6)
    assert path[-1][1] == pytest.approx(own(cons[1]), rel=1e-6)
    barrier = next(r["value"] for r in rows if r["metric"] == "loss_barrier")
    (a0, l0), (a1, l1) = path[0], path[-1]
    assert barrier == pytest.approx(max(v - (l0 + (l1 - l0) * (a - a0)) for a, v in path), abs=1e-9)

    # a fresh cache object over the same home computes nothing and gives the same rows
    again = SimilarityCache(probe)
    assert merge_similarity_rows(again, merge, cons, bases=bases, n_blocks=2) == rows
    assert again.computed == 0
    assert (store.home() / "similarity").exists()
