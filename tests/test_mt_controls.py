"""The translation arm's controls (issue 11): a seeded derangement for the source-shuffled control, empty and
off-target outputs counted apart, XMI checked against a direct forward pass, and signal judged right both for a
model that ignores its source and for one trained in the test to use it."""

import copy
import random

import numpy as np
import pytest
import torch

from harness import scoring
from harness.suite import load_suite
from harness.tasks import derangement, task_specs

WORDS = "light earth water heaven god day night land sea fish bird tree seed fruit man woman".split()


def test_derangement_has_no_fixed_point_and_is_reproducible():
    for n in range(2, 60):
        for seed in range(5):
            p = derangement(n, seed)
            assert sorted(p) == list(range(n))
            assert all(p[i] != i for i in range(n))
            assert p == derangement(n, seed)
    assert derangement(48, 1) != derangement(48, 2)


def test_empty_and_off_target_are_counted_apart():
    hyps = ["", "  ", "Au commencement Dieu créa", "In the beginning", "Und Gott sprach", "\n"]
    langs = ["", "", "fr", "en", "de", ""]
    empty, off = scoring.output_rates(hyps, langs, "fr")
    assert empty.tolist() == [True, True, False, False, False, True]
    assert off.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    # off-target over the 3 non-empty outputs: 2 of 3; empty: 3 of 6
    assert off[~empty].mean() == pytest.approx(2 / 3) and empty.mean() == pytest.approx(0.5)


class _Corpus:
    """A stand-in for harness.corpus.Corpus: the same test verses in every language (a copy task)."""

    def __init__(self, texts):
        self.texts_ = texts

    def verses(self, lang, split):
        return [{"id": f"1.1.{i}", "text": t} for i, t in enumerate(self.texts_)]


def _sentences(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(n)]


def _suite(n):
    s = copy.deepcopy(load_suite())
    s["languages"], s["tasks"]["mt"]["n"], s["tasks"]["mt"]["max_gen_toks"] = ["en", "de"], n, 24
    return s


def _evaluate(model_dir, suite, texts):
    from harness.evaluate import SuiteTasks, make_lm, run_task, task_rows
    from harness.sources import load_model

    tasks = SuiteTasks.build(suite, _Corpus(texts))
    spec = next(s for s in tasks.specs if s.kind == "mt")
    model, tok = load_model(model_dir, "cpu", "float32")
    d = run_task(make_lm(model, tok, "cpu"), spec, tasks)
    return tasks.docs[spec.name], d, {r["metric"]: r for r in task_rows(spec, d, suite)}, model, tok


def test_xmi_matches_a_direct_forward_pass_and_an_untrained_model_has_no_signal(tiny_models):
    texts = _sentences(24, 0)
    docs, d, rows, model, tok = _evaluate(tiny_models[0], _suite(24), texts)
    assert len(d.hyp_control) == len(d.hyp) == 24 and d.perm == [x["control"] for x in docs]
    assert all(docs[i]["control_prompt"] == docs[j]["prompt"] for i, j in enumerate(d.perm))

    from harness.family.train import mt_prompt

    def direct(src, ref):  # an independent computation, in the family's fine-tuning format: one BOS, the prompt,
        ctx = [tok.bos_token_id] + tok(mt_prompt("en", "de", src), add_special_tokens=False)["input_ids"]
        cont = tok(" " + ref, add_special_tokens=False)["input_ids"]  # then " " + target; one forward pass
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].double(), -1)
        return sum(float(logp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))

    given = np.array([direct(x["src"], x["ref"]) for x in docs])
    shuffled = np.array([direct(docs[x["control"]]["src"], x["ref"]) for x in docs])
    nbytes = np.array([len(x["ref"].encode()) for x in docs], dtype=float)
    assert d.ll_given == pytest.approx(given.tolist(), abs=1e-3) and d.ll_shuffled == pytest.approx(shuffled.tolist(), abs=1e-3)
    want = (given.sum() - shuffled.sum()) / np.log(2) / nbytes.sum()  # H(ref | shuffled) - H(ref | source), bits per byte
    assert rows["xmi"]["value"] == pytest.approx(want, abs=1e-5)
    assert rows["bpb_given_source"]["value"] == pytest.approx(-given.sum() / np.log(2) / nbytes.sum(), abs=1e-5)
    # a random model does not use its source: no signal on XMI, nor on chrF++ against its control
    assert not rows["xmi"]["ci_low"] > 0
    assert not rows["chrf++_over_control"]["ci_low"] > 0
    for m in ("chrf++", "bleu"):
        assert rows[f"{m}_over_control"]["value"] == pytest.approx(rows[m]["value"] - rows[f"{m}_control"]["value"])
        assert rows[f"{m}_over_misaligned"]["value"] == pytest.approx(rows[m]["value"] - rows[f"{m}_misaligned"]["value"])
    assert {"empty_rate", "off_target_rate"} <= set(rows)


def test_a_model_trained_to_copy_its_source_carries_signal(tmp_path, tokenizer_dir):
    """A micro model trained here, in seconds, on the suite's prompt format to copy the source: it uses its
    source, so XMI and chrF++ both beat the shuffled-source control."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from harness.family.train import mt_batches, mt_prompt, train

    tok = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]
    pairs = [([tok.bos_token_id] + enc(mt_prompt("en", "de", s)), enc(" " + s) + [tok.eos_token_id]) for s in _sentences(2000, 1)]
    train(model, mt_batches(pairs, 32, 128, tok.pad_token_id, 0), 300, 3e-3)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(tmp_path / "copy"))
    tok.save_pretrained(str(tmp_path / "copy"))

    _, _, rows, _, _ = _evaluate(tmp_path / "copy", _suite(32), _sentences(32, 2))
    assert rows["xmi"]["ci_low"] > 0, rows["xmi"]
    assert rows["chrf++_over_control"]["ci_low"] > 0, rows["chrf++_over_control"]


def test_suite_mt_version_is_bumped_for_the_controls():
    assert {s.version for s in task_specs(load_suite()) if s.kind == "mt"} == {3}
