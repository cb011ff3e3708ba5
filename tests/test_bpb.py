"""Bits per byte through lm-eval equals a hand computation from the model's logits."""

import math

import torch

from harness.evaluate import load_model, run_tasks
from harness.tasks import TaskSpec, lm_eval_config

DOCS = [{"id": "1.1.1", "text": "In the beginning God created the heaven and the earth."},
        {"id": "1.1.2", "text": "В начале сотворил Бог небо и землю."},
        {"id": "1.1.3", "text": "في البدء خلق الله السموات والارض."}]
SUITE = {"tasks": {"lm": {"version": 1}}}


def hand_bpb(model, tok, texts):
    nll_bits, n_bytes = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            inp = torch.tensor([[tok.bos_token_id] + ids])
            logp = torch.log_softmax(model(input_ids=inp).logits[0].double(), dim=-1)
            ll = sum(float(logp[t, ids[t]]) for t in range(len(ids)))  # position t predicts token t (after BOS)
            nll_bits += -ll / math.log(2)
            n_bytes += len(text.encode("utf-8"))
    return nll_bits / n_bytes


def test_bits_per_byte_matches_hand_computation(tiny_models):
    from lm_eval.tasks import TaskManager

    model, tok = load_model(tiny_models[0], "cpu", "float32")
    spec = TaskSpec("lm:x", "lm", "x", 1)
    task_dict = TaskManager(include_defaults=False).load([lm_eval_config(spec, SUITE, DOCS)])
    rows = run_tasks(model, tok, [spec], task_dict, SUITE, "cpu", batch_size=2)
    assert rows[0]["metric"] == "bits_per_byte" and rows[0]["n"] == len(DOCS)
    expected = hand_bpb(model, tok, [d["text"] for d in DOCS])
    assert abs(rows[0]["value"] - expected) < 1e-5
    # and the value is not that of a uniform model: the check can tell models apart
    uniform = sum(len(tok(d["text"], add_special_tokens=False)["input_ids"]) for d in DOCS) * math.log2(len(tok)) / sum(
        len(d["text"].encode()) for d in DOCS)
    assert abs(expected - uniform) > 0.05
