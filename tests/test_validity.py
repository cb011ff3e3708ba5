"""Live tasks (issue 11.5) and the share-of-expert-gain aggregate (issue 12.6) on hand-built result rows; every
expected number is worked out by hand in the test."""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness import analysis, schema, validity
from harness.suite import load_suite

COLS = ["model", "task", "metric", "value", "ci_low", "ci_high", "stderr", "n", "higher_is_better"]


def _suite(order=None):
    s = {"id": "t", "languages": ["en", "de"], "pivot": "en", "seed": 7, "validity": copy.deepcopy(load_suite()["validity"])}
    if order:
        by = {c["metric"]: c for c in s["validity"]["mt"]["metrics"]}
        s["validity"]["mt"]["metrics"] = [by[m] for m in order]
    return s


def _df(rows):
    df = pd.DataFrame(rows, columns=COLS)
    df["task_kind"] = df["task"].str.split(":").str[0]
    df["kind"], df["arm"], df["method"] = "family", None, None
    return df


def _r(model, task, metric, value, lo=None, hi=None, hib=True):
    return (model, task, metric, value, lo, hi, None, 48, hib)


def _family(chrf_over=(6.0, 4.0, 8.0), xmi=(0.2, 0.1, 0.3), lm_ci=(2.0, 1.9, 2.1), extra=()):
    """init-s0, mono-en, mono-de, mt-en-de: bpb 8 for init-s0, 2 for the experts; chrF++ 5 vs 30, XMI 0 vs 0.2."""
    rows = []
    for l in ("en", "de"):
        rows += [_r("init-s0", f"lm:{l}", "bits_per_byte", 8.0, 7.9, 8.1, False),
                 _r(f"mono-{l}", f"lm:{l}", "bits_per_byte", *lm_ci, False)]
    t = "mt:en-de"
    rows += [_r("init-s0", t, "chrf++", 5.0, 3, 7), _r("init-s0", t, "chrf++_over_control", 0.0, -1, 1),
             _r("init-s0", t, "xmi", 0.0, -0.01, 0.01), _r("mt-en-de", t, "chrf++", 30.0, 28, 32),
             _r("mt-en-de", t, "chrf++_over_control", *chrf_over), _r("mt-en-de", t, "xmi", *xmi),
             _r("mt-en-de", t, "chrf++_control", 24.0, 22, 26), _r("mt-en-de", t, "bpb_given_source", 3.0, 2.9, 3.1, False),
             _r("mt-en-de", t, "bpb_shuffled_source", 3.2, 3.1, 3.3, False)]
    return _df(rows + list(extra))


def test_expert_within_its_control_is_not_live():
    tasks, table = validity.assess(_family(chrf_over=(1.0, -0.5, 2.5), xmi=(0.01, -0.02, 0.04)), _suite())
    tv = tasks["mt:en-de"]
    assert not tv.live and tv.reason == "below its shuffled-source control" == validity.DEAD_MT
    assert [r["metric"] for r in table if r["task"] == "mt:en-de"] == ["chrf++", "xmi"]
    assert not any(r["live"] for r in table if r["task"] == "mt:en-de")
    assert tasks["lm:en"].live and tasks["lm:de"].live


def test_chrf_first_then_xmi():
    both = validity.assess(_family(), _suite())[0]["mt:en-de"]
    assert both.live and both.metric == "chrf++" and (both.floor_value, both.expert_value) == (5.0, 30.0)
    only_xmi = validity.assess(_family(chrf_over=(1.0, -0.5, 2.5)), _suite())[0]["mt:en-de"]
    assert only_xmi.live and only_xmi.metric == "xmi" and (only_xmi.floor_value, only_xmi.expert_value) == (0.0, 0.2)
    # the order is the suite's: with XMI listed first, XMI wins even where chrF++ carries signal too
    reordered = validity.assess(_family(), _suite(order=["xmi", "chrf++"]))[0]["mt:en-de"]
    assert reordered.metric == "xmi"


def test_interval_touching_zero_is_no_signal():
    assert not validity.carries_signal({"ci_low": 0.0}) and validity.carries_signal({"ci_low": 1e-9})
    assert not validity.carries_signal(None) and not validity.carries_signal({"ci_low": None})


def test_lm_expert_must_beat_the_floor():
    tasks, _ = validity.assess(_family(lm_ci=(7.95, 7.8, 8.1)), _suite())
    assert not tasks["lm:en"].live and "not below init-s0" in tasks["lm:en"].reason


def test_missing_expert_is_not_live():
    df = _family()
    tasks, _ = validity.assess(df[df.model != "mono-de"], _suite())
    assert not tasks["lm:de"].live and tasks["lm:de"].reason == "no stored bits_per_byte for mono-de"


def test_lm_uses_the_paired_comparison_when_documents_exist():
    # Documents vary a lot in difficulty (wide unpaired interval), but the expert is better on every one of them by
    # 0.5 nats per 10 bytes: the paired interval of floor - expert lies above zero, the expert's own interval does not.
    rng = np.random.default_rng(0)
    ll_floor = -rng.uniform(5, 60, 50)
    nb = np.full(50, 10)
    docs = {m: schema.DocsFile(suite="t", suite_sha256="0", model_sha256="0", tasks={"lm:en": schema.TaskDocs(
        ids=[str(i) for i in range(50)], ll=list(ll), bytes=nb.tolist())}) for m, ll in
        (("init-s0", ll_floor), ("mono-en", ll_floor + 0.5))}
    bpb = lambda ll: -ll.sum() / math.log(2) / nb.sum()
    f, e = bpb(ll_floor), bpb(ll_floor + 0.5)
    df = _family(lm_ci=(e, e - 1.0, e + 1.0))
    df.loc[(df.model == "init-s0") & (df.task == "lm:en"), "value"] = f
    assert f - (e + 1.0) < 0  # the unpaired rule would call it dead
    tasks, table = validity.assess(df, _suite(), docs)
    row = next(r for r in table if r["task"] == "lm:en")
    assert tasks["lm:en"].live and row["interval"] == "paired bootstrap over documents"
    assert row["difference"] == pytest.approx(0.5 / math.log(2) / 10)  # 0.5 nats per 10 bytes
    assert row["diff_ci_low"] == pytest.approx(row["diff_ci_high"]) == pytest.approx(0.5 / math.log(2) / 10)
    assert not validity.assess(df, _suite())[0]["lm:en"].live


def test_normalized_golden_values():
    # bits per byte: floor 8, expert 2 -> a gain of 6 bits per byte
    assert analysis.normalized(2.0, 8.0, 2.0, False) == pytest.approx(100.0)
    assert analysis.normalized(8.0, 8.0, 2.0, False) == pytest.approx(0.0)
    assert analysis.normalized(5.0, 8.0, 2.0, False) == pytest.approx(50.0)     # 3 of the 6
    assert analysis.normalized(9.5, 8.0, 2.0, False) == pytest.approx(-25.0)    # 1.5 worse than untrained
    assert analysis.normalized(16.2, 8.0, 2.0, False) == pytest.approx(-820 / 6)  # no lower bound
    # chrF++: floor 5, expert 30 -> a gain of 25 points
    assert analysis.normalized(30.0, 5.0, 30.0, True) == pytest.approx(100.0)
    assert analysis.normalized(5.0, 5.0, 30.0, True) == pytest.approx(0.0)
    assert analysis.normalized(17.5, 5.0, 30.0, True) == pytest.approx(50.0)
    assert analysis.normalized(0.0, 5.0, 30.0, True) == pytest.approx(-20.0)
    np.testing.assert_allclose(analysis.normalized(np.array([2.0, 8.0]), 8.0, 2.0, False), [100.0, 0.0])
    with pytest.raises(ValueError):
        analysis.normalized(3.0, 2.0, 8.0, False)  # an expert worse than the floor has no scale


def test_leaderboard_counts_live_tasks_only_and_caps_scores_without_signal():
    t = "mt:en-de"
    extra = [_r("a", "lm:en", "bits_per_byte", 5.0, 4.9, 5.1, False), _r("a", "lm:de", "bits_per_byte", 2.0, 1.9, 2.1, False),
             _r("a", t, "chrf++", 17.5), _r("a", t, "chrf++_over_control", 3.0, 1.0, 5.0),
             _r("b", "lm:en", "bits_per_byte", 2.0, 1.9, 2.1, False), _r("b", "lm:de", "bits_per_byte", 9.5, 9.4, 9.6, False),
             _r("b", t, "chrf++", 30.0), _r("b", t, "chrf++_over_control", 1.0, -1.0, 3.0),
             _r("c", t, "chrf++", 30.0)]  # c: results from before the control existed
    df = _family(extra=extra)
    tasks, _ = validity.assess(df, _suite())
    board = analysis.leaderboard(df, tasks)
    # a: lm:en 50, lm:de 100, mt 50 (carries signal) -> 200 / 3
    assert board.loc["a", "babel_score"] == pytest.approx(200 / 3)
    # b: lm:en 100, lm:de -25, mt 100 but without signal of its own -> at most 0 -> 75 / 3
    assert board.loc["b", "babel_score"] == pytest.approx(25.0)
    assert board.loc["mt-en-de", "babel_score"] == pytest.approx(100.0)  # the mt expert only has mt scores
    assert board.loc["c", "babel_score"] == 0.0  # no control stored: not shown to carry signal, at most 0
    s = analysis.scored(df, tasks).set_index(["model", "task"])
    assert s.loc[("b", t), "signal"] is False and s.loc[("c", t), "signal"] is None and s.loc[("a", t), "signal"] is True
    assert board.loc["init-s0", "babel_score"] == pytest.approx(0.0)
    assert board.loc["a", "n_live"] == 3 and board.loc["a", "mean_chrf"] == 17.5
    # with mt:en-de dead, only the lm tasks count: a (50 + 100) / 2 = 75, b (100 - 25) / 2 = 37.5
    dead = _family(chrf_over=(1.0, -0.5, 2.5), xmi=(0.01, -0.02, 0.04), extra=extra)
    tasks, _ = validity.assess(dead, _suite())
    board = analysis.leaderboard(dead, tasks)
    assert board.loc["a", "babel_score"] == pytest.approx(75.0) and board.loc["b", "babel_score"] == pytest.approx(37.5)
    assert board.loc["a", "n_live"] == 2 and math.isnan(board.loc["mt-en-de", "babel_score"])
    assert board.index[-1] == "mt-en-de"  # no live score: last
    assert board.loc["b", t] == 30.0  # the dead task's score is still there to show


def test_xmi_resamples_per_document_statistics():
    # two documents: given-source log-likelihoods -10 and -20 nats, shuffled -12 and -26, 10 and 20 bytes
    d = SimpleNamespace(ll_given=[-10.0, -20.0], ll_shuffled=[-12.0, -26.0], tgt_bytes=[10, 20])
    out = validity.xmi_boot(d, np.array([[0, 1], [0, 0], [1, 1]]))
    np.testing.assert_allclose(out, [8 / math.log(2) / 30, 2 / math.log(2) / 10, 6 / math.log(2) / 20])
    assert validity.xmi_boot(SimpleNamespace(ll=[-1.0]), np.array([[0]])) is None


def test_bad_validity_block_is_one_line():
    s = _suite()
    s["validity"]["mt"]["metrics"] = [{"metric": "chrf++"}]
    with pytest.raises(ValueError) as e:
        validity.rule(s)
    assert "\n" not in str(e.value) and str(e.value).startswith("suites/t.yaml: validity.mt.metrics[0]:")
