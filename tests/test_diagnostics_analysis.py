"""The diagnostics analysis on constructed tables whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from harness import analysis


def sim_rows(merge, cons, cka_by_layer, cosine=0.5, barrier=0.1):
    rows = []
    a, b = cons
    for layer, v in enumerate(cka_by_layer):
        for metric in ("cka_linear", "cka_debiased", "cka_rbf"):
            rows.append({"merge": merge, "metric": metric, "a": a, "b": b, "relation": "constituents", "layer": layer, "value": v})
    for g in ("all", "embeddings", "lower", "middle", "upper", "head"):
        rows.append({"merge": merge, "metric": "task_cosine", "a": a, "b": b, "relation": "constituents", "group": g, "value": cosine})
        rows.append({"merge": merge, "metric": "sign_conflict", "a": a, "b": b, "relation": "constituents", "group": g, "value": 0.3})
    rows.append({"merge": merge, "metric": "loss_barrier", "a": a, "b": b, "relation": "constituents", "value": barrier})
    return rows


def test_merge_diagnostics_groups_layers_and_fills_two_member_sets():
    sim = pd.DataFrame(sim_rows("m1", ["x", "y"], [0.9, 0.8, 0.6, 0.5, 0.2]))
    d = analysis.merge_diagnostics(sim)
    assert d.loc["m1", "cka_linear:embeddings"] == pytest.approx(0.9)
    assert d.loc["m1", "cka_linear:lower"] == pytest.approx(0.7)      # blocks 1-2 of 4 (layers 1, 2)
    assert d.loc["m1", "cka_linear:upper"] == pytest.approx(0.2)
    assert d.loc["m1", "cka_linear:all"] == pytest.approx(0.6)
    assert d.loc["m1", "task_cosine:head"] == pytest.approx(0.5)
    assert d.loc["m1", "sign_conflict_set:all"] == pytest.approx(0.3)  # two task vectors: the set rate is the pair rate
    assert d.loc["m1", "loss_barrier:all"] == pytest.approx(0.1)


def _merges(n, rng):
    cka = rng.uniform(0.3, 0.95, n)
    rows, gaps = [], []
    langs = ["de", "fr", "es", "it", "ru", "ar"]
    merges = {}
    for i in range(n):
        m = f"m{i}"
        l1, l2 = langs[i % 6], langs[(i + 1) % 6]
        merges[m] = [f"family:babel-mini/cpt-{l1}", f"family:babel-mini/cpt-{l2}"]
        rows += sim_rows(m, [f"cpt-{l1}", f"cpt-{l2}"], [cka[i]] * 5, cosine=rng.uniform(-1, 1), barrier=rng.uniform(0, 1))
        for lang, expert in ((l1, f"cpt-{l1}"), (l2, f"cpt-{l2}")):
            gap = -40 * (1 - cka[i]) + rng.normal(0, 0.5)   # the gap is a function of CKA
            gaps.append({"merge": m, "task": f"lm:{lang}", "task_kind": "lm", "language": lang, "reference": "expert",
                         "ref_model": expert, "rel_gap_pct": gap, "gap": gap})
            gaps.append({"merge": m, "task": f"lm:{lang}", "task_kind": "lm", "language": lang, "reference": "mixed",
                         "ref_model": "mixed", "rel_gap_pct": rng.normal(), "gap": 0.0})
    return pd.DataFrame(rows), pd.DataFrame(gaps), merges


def test_leave_one_language_out_beats_the_mean_when_the_gap_follows_the_diagnostics():
    sim, gaps, merges = _merges(36, np.random.default_rng(1))
    res = analysis.leave_one_language_out(gaps, analysis.merge_diagnostics(sim), sim, "lm")
    assert {r["language"] for r in res["rows"]} == {"de", "fr", "es", "it", "ru", "ar"}
    assert res["mae"] < 0.5 * res["baseline_mae"]
    assert res["spearman"] > 0.9


def test_neuron_movement_labels_relations():
    rows = []
    for model, v in (("mixed", 0.2), ("mt-en-fr", 0.3)):
        for lang in ("fr", "es", "ru"):
            rows.append({"model": model, "metric": "span_ap_target", "layer": 1, "language": lang, "value": v + (0.1 if lang == "ru" else 0), "units": 8})
    mv = analysis.neuron_movement(pd.DataFrame(rows), ["fr", "es", "ru"])
    rel = dict(zip(mv.language, mv.relation))
    assert rel == {"fr": "supervised", "es": "related", "ru": "unsupervised"}
    assert mv.delta.tolist() == pytest.approx([0.1, 0.1, 0.1])
