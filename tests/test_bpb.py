"""Bits per byte through lm-eval, with our backend and with lm-eval's stock one, equals a hand computation
from the model's logits."""

import math

import pytest
import torch

from harness.evaluate import SuiteTasks, load_model, make_lm, run_task, task_rows
from harness.tasks import TaskSpec, lm_eval_configs

DOCS = [{"id": "1.1.1", "text": "In the beginning God created the heaven and the earth."},
        {"id": "1.1.2", "text": "В начале сотворил Бог небо и землю."},
        {"id": "1.1.3", "text": "في البدء خلق الله السموات والارض."},
        {"id": "1.1.4", "text": "Au commencement."}]
SUITE = {"tasks": {"lm": {"version": 1}}, "seed": 7}


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


def lm_tasks(docs):
    from lm_eval.tasks import TaskManager

    spec = TaskSpec("lm:x", "lm", "x", 1)
    td = TaskManager(include_defaults=False).load(lm_eval_configs(spec, SUITE, docs))
    return spec, SuiteTasks(SUITE, [spec], {spec.name: docs}, {spec.name: td}, None)


@pytest.mark.parametrize("backend", ["babelmerge", "hf"])
def test_bits_per_byte_matches_hand_computation(tiny_models, backend):
    model, tok = load_model(tiny_models[0], "cpu", "float32")
    spec, tasks = lm_tasks(DOCS)
    d = run_task(make_lm(model, tok, "cpu", backend, batch_size=2, batch_tokens=40), spec, tasks)
    rows = task_rows(spec, d, SUITE)
    assert rows[0]["metric"] == "bits_per_byte" and rows[0]["n"] == len(DOCS)
    expected = hand_bpb(model, tok, [x["text"] for x in DOCS])
    assert abs(rows[0]["value"] - expected) < 1e-5
    assert rows[0]["ci_low"] <= rows[0]["value"] <= rows[0]["ci_high"]
    # and the value is not that of a uniform model: the check can tell models apart
    uniform = sum(len(tok(x["text"], add_special_tokens=False)["input_ids"]) for x in DOCS) * math.log2(len(tok)) / sum(
        len(x["text"].encode()) for x in DOCS)
    assert abs(expected - uniform) > 0.05


def test_long_documents_roll_over_windows(tiny_models):
    """Documents longer than the context are scored in disjoint rolling windows: same total as lm-eval's hf."""
    model, tok = load_model(tiny_models[0], "cpu", "float32")
    long_docs = [{"id": "x", "text": " ".join(x["text"] for x in DOCS) * 6}]
    spec, tasks = lm_tasks(long_docs)
    model.config.max_position_embeddings = 64  # force several windows
    ours = task_rows(spec, run_task(make_lm(model, tok, "cpu", "babelmerge"), spec, tasks), SUITE)[0]["value"]
    stock = task_rows(spec, run_task(make_lm(model, tok, "cpu", "hf"), spec, tasks), SUITE)[0]["value"]
    assert abs(ours - stock) < 1e-5
