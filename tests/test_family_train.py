"""The family's MT training inputs: length-bucketed batches and the constant schedule's prefix property."""

import numpy as np
import torch

from harness.family.train import IGNORE, lr_at, lr_constant, mt_batches, train


def _pairs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [(list(rng.integers(3, 50, size=rng.integers(2, 20))), list(rng.integers(3, 50, size=rng.integers(1, 30))))
            for _ in range(n)]


def test_bucketed_batches_are_length_neighbours_with_the_prompt_masked():
    pairs = _pairs()
    lengths = np.sort([len(p) + len(t) for p, t in pairs])
    it = mt_batches(pairs, 8, 1000, 0, seed=3, bucket=True)
    for _ in range(20):
        b = next(it)
        lab = (b["labels"] != IGNORE).numpy()  # shifted by one: the last target token is labelled at length - 2
        rows = np.array([np.nonzero(r)[0].max() + 2 for r in lab])
        # eight consecutive entries of the sorted lengths: the window [min, max] holds at most 8 + ties around it
        lo, hi = rows.min(), rows.max()
        assert ((lengths >= lo) & (lengths <= hi)).sum() >= 8
        inside = ((lengths > lo) & (lengths < hi)).sum()
        assert inside <= 6
        assert b["input_ids"].shape[1] == hi - 1
    random_widths = [next(mt_batches(pairs, 8, 1000, 0, seed=s))["input_ids"].shape[1] for s in range(20)]
    bucket_pad = [(1 - b["attention_mask"].float().mean()).item() for b in
                  (next(mt_batches(pairs, 8, 1000, 0, seed=s, bucket=True)) for s in range(20))]
    assert max(bucket_pad) < 0.25 and np.mean(random_widths) > 30


def test_labels_cover_the_target_only():
    pairs = [([5, 6, 7], [8, 9])]
    b = next(mt_batches(pairs, 1, 100, 0, seed=0, bucket=True))
    # sequence 5 6 7 8 9: positions predicting 8 and 9 are labelled, the prompt is ignored
    assert b["labels"][0].tolist() == [IGNORE, IGNORE, 8, 9]


def test_constant_schedule_warms_up_then_holds():
    assert lr_constant(0, 1.0, warmup=4) == 0.25 and lr_constant(3, 1.0, warmup=4) == 1.0
    assert lr_constant(10_000, 1.0, warmup=4) == 1.0
    assert lr_at(99, 100, 1.0) < 0.2  # the cosine schedule decays instead


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128))


def test_constant_schedule_n_steps_is_the_prefix_of_a_longer_run():
    pairs = _pairs(50)
    short, long = _model(), _model()
    train(short, mt_batches(pairs, 4, 64, 0, seed=1, bucket=True), 5, 1e-2, schedule="constant")
    snap = {}
    train(long, mt_batches(pairs, 4, 64, 0, seed=1, bucket=True), 9, 1e-2, schedule="constant",
          on_step=lambda n: n == 5 and snap.update({k: v.clone() for k, v in long.state_dict().items()}))
    assert all(torch.equal(snap[k], v) for k, v in short.state_dict().items())
    # the cosine schedule has no such property: its lr at step 4 depends on the run's length
    assert lr_at(4, 5, 1.0) != lr_at(4, 9, 1.0)
