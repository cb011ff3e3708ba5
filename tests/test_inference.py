"""Set-level inference (issue 12.1-12.3): the constituent set is the unit, arms are never pooled, the grid's power."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness import inference, rankstats, replication


def _merge_table(k: int, n_sets: int = 12, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """k identical merges per (set, method): gap = 0.5 * x + noise, two methods; set diagnostics x."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n_sets)
    rows = []
    for i in range(n_sets):
        for method, shift in (("linear", 0.0), ("ties d0.5", -0.3)):
            y = 0.5 * x[i] + shift + rng.normal(0, 0.3)
            rows += [{"merge": f"s{i}-{method}-{j}", "set": f"s{i}", "method": method, "arm": "lm", "unit": "bits_per_byte",
                      "gap": y, "n_tasks": 2} for j in range(k)]
    sdiag = pd.DataFrame({"cka_linear:all": x}, index=[f"s{i}" for i in range(n_sets)])
    return pd.DataFrame(rows), sdiag


def _rows(corr, method):
    return corr[(corr.diagnostic == "cka_linear:all") & (corr.method == method)].iloc[0]


def test_interval_does_not_shrink_with_merges_per_set():
    """Merges within a set are identical: 1 or 8 copies per set give the same n, estimate and interval, per method
    and pooled; a merge-level bootstrap (the old analysis) would narrow with the copies."""
    out = {}
    for k in (1, 8):
        mg, sdiag = _merge_table(k)
        out[k] = inference.correlations(inference.set_points(mg), sdiag, seed=0)
    for method in ("linear", "ties d0.5", inference.POOLED):
        a, b = _rows(out[1], method), _rows(out[8], method)
        assert a.n == b.n == 12
        assert (a.rho, a.rho_lo, a.rho_hi) == pytest.approx((b.rho, b.rho_lo, b.rho_hi))
    assert _rows(out[8], inference.POOLED).merges == 8 * _rows(out[1], inference.POOLED).merges
    mg8, sdiag = _merge_table(8)
    lin = mg8[mg8.method == "linear"]
    naive = rankstats.correlate(sdiag.loc[lin["set"], "cka_linear:all"].to_numpy(), lin.gap.to_numpy(), 0)
    one = _rows(out[1], "linear")
    assert naive["rho_hi"] - naive["rho_lo"] < 0.6 * (one.rho_hi - one.rho_lo)


def test_pooled_rho_is_the_mean_of_per_method_spearman():
    mg, sdiag = _merge_table(1)
    corr = inference.correlations(inference.set_points(mg), sdiag, seed=0)
    pts = inference.set_points(mg).pivot_table(index="set", columns="method", values="gap")
    x = sdiag["cka_linear:all"].loc[pts.index]
    want = np.mean([stats.spearmanr(x, pts[m]).statistic for m in ("linear", "ties d0.5")])
    assert _rows(corr, inference.POOLED).rho == pytest.approx(want)
    assert _rows(corr, "linear").rho == pytest.approx(stats.spearmanr(x, pts["linear"]).statistic)


def test_too_few_sets_get_no_correlation():
    mg, sdiag = _merge_table(1, n_sets=inference.MIN_SETS - 1)
    assert inference.correlations(inference.set_points(mg), sdiag, seed=0).empty


def test_arms_are_never_pooled():
    """A merge with a monolingual and a translation expert gets one gap per arm, each in its own unit."""
    from harness.validity import TaskValidity

    def tv(task, metric, hib, floor, expert):
        return TaskValidity(task=task, kind=task[:2], language=task[-2:], expert="", live=True, metric=metric,
                            higher_is_better=hib, signal=None, floor_value=floor, expert_value=expert, reason="")

    tasks = {"lm:de": tv("lm:de", "bits_per_byte", False, 8.0, 2.5), "mt:en-de": tv("mt:en-de", "chrf++", True, 5.0, 30.0)}
    df = pd.DataFrame([("m", "lm:de", "bits_per_byte", 3.0), ("mono-de", "lm:de", "bits_per_byte", 2.5),
                       ("m", "mt:en-de", "chrf++", 20.0), ("mt-en-de", "mt:en-de", "chrf++", 30.0)],
                      columns=["model", "task", "metric", "value"]).assign(method="linear")
    merges = {"m": ["family:babel-mini/mono-de", "family:babel-mini/mt-en-de"]}
    per_task = inference.merge_task_gaps(df, merges, tasks).set_index("task")
    assert per_task.loc["lm:de", "share"] == pytest.approx(100 * (8.0 - 3.0) / (8.0 - 2.5))  # share of the expert's gain kept
    assert per_task.loc["mt:en-de", "share"] == pytest.approx(100 * (20.0 - 5.0) / (30.0 - 5.0))
    arms = inference.merge_arm_gaps(per_task.reset_index()).set_index("arm")
    assert arms.loc["lm", "gap"] == pytest.approx(-0.5) and arms.loc["lm", "unit"] == "bits_per_byte"
    assert arms.loc["mt", "gap"] == pytest.approx(-10.0) and arms.loc["mt", "unit"] == "chrf++"


def test_detectable_rho_matches_the_fisher_approximation():
    """Simulated power against Fisher's z with Spearman's variance 1.06 / (n - 3) (Fieller, Hartley and Pearson 1957)."""
    for n in (15, 40):
        z = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(1.06 / (n - 3))
        assert rankstats.detectable_rho(n, seed=1) == pytest.approx(math.tanh(z), abs=0.07)
    assert rankstats.detectable_rho(60) < rankstats.detectable_rho(20)


def test_verdicts_follow_the_interval():
    assert replication.verdict(0.1, 0.4, +1) == "holds"
    assert replication.verdict(-0.4, -0.1, -1) == "holds"
    assert replication.verdict(-0.1, 0.4, +1) == "not detected"
    assert replication.verdict(-0.4, -0.1, +1) == "contradicted"
    assert replication.verdict(None, None, +1) == "n/a"


def test_divergent_targets_is_one_point_per_mixed_set():
    """Within-set differences (divergent minus related target) averaged over the set's merges, bootstrap over sets."""
    rows = []
    for r, d, diff in (("de", "ru", -3.0), ("fr", "ar", -5.0), ("es", "ru", -4.0), ("it", "ar", -2.0)):
        s = f"mt-en-{r}+mt-en-{d}"
        for j, noise in enumerate((0.5, -0.5)):
            rows += [{"merge": f"{s}-{j}", "set": s, "arm": "mt", "language": r, "gap": -1.0},
                     {"merge": f"{s}-{j}", "set": s, "arm": "mt", "language": d, "gap": -1.0 + diff + noise}]
    rows += [{"merge": "x", "set": "mt-en-fr+mt-en-es", "arm": "mt", "language": l, "gap": -9.0} for l in ("fr", "es")]
    row = replication.divergent_targets(pd.DataFrame(rows), seed=0)
    assert row["n"] == 4 and row["estimate"] == pytest.approx(-3.5) and row["verdict"] == "holds"


def _task_gap_loop(df, merges, tasks):
    """merge_task_gaps as its definition reads, one (merge, task) at a time."""
    from harness.analysis import expert_for, normalized

    val = {(m, t, k): v for m, t, k, v in zip(df["model"], df["task"], df["metric"], df["value"])}
    method = df.drop_duplicates("model").set_index("model")["method"].to_dict()
    rows = []
    for merge, cons in merges.items():
        for task, tv in tasks.items():
            kind, rest = task.split(":")
            e = expert_for(cons, kind, rest.split("-")[-1])
            if not tv.live or e is None or (merge, task, tv.metric) not in val or (e, task, tv.metric) not in val:
                continue
            mv, ev = val[(merge, task, tv.metric)], val[(e, task, tv.metric)]
            if mv != mv or ev != ev:
                continue
            rows.append({"merge": merge, "set": inference.set_key(cons), "method": inference.method_label(merge, str(method.get(merge))),
                         "arm": kind, "task": task, "language": task.split("-")[-1] if kind == "mt" else task[3:],
                         "unit": tv.metric, "gap": (mv - ev) if tv.higher_is_better else (ev - mv),
                         "share": float(normalized(mv, tv.floor_value, tv.expert_value, tv.higher_is_better))})
    return pd.DataFrame(rows, columns=["merge", "set", "method", "arm", "task", "language", "unit", "gap", "share"])


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_task_gaps_and_own_share_equal_the_loop(seed):
    from harness.analysis import expert_for, scored
    from harness.validity import TaskValidity
    from test_analysis import _random_results

    df, merges = _random_results(seed)
    df["method"] = ["linear" if m.startswith("m") and m[1:].isdigit() and int(m[1:]) % 2 else "ties" for m in df["model"]]
    df["stderr"], df["ci_low"] = 0.1, 1.0
    tv = lambda t, metric, hib, live: TaskValidity(task=t, kind=t[:2], language=t[-2:], expert="", live=live, metric=metric,
                                                   higher_is_better=hib, signal=None, floor_value=8.0 if not hib else 1.0,
                                                   expert_value=0.5 if not hib else 60.0, reason="")
    tasks = {"lm:en": tv("lm:en", "bits_per_byte", False, True), "mt:en-de": tv("mt:en-de", "chrf++", True, True),
             "lm:de": tv("lm:de", "bits_per_byte", False, False), "mt:en-ru": tv("mt:en-ru", "chrf++", True, True)}
    pd.testing.assert_frame_equal(inference.merge_task_gaps(df, merges, tasks), _task_gap_loop(df, merges, tasks))
    s = scored(df[df.model.isin(list(merges))], tasks)
    keep = [live and expert_for(merges[m], t.split(":")[0], t.split("-")[-1] if t.startswith("mt") else t[3:]) is not None
            for m, t, live in zip(s.model, s.task, s.live)]
    pd.testing.assert_series_equal(inference.own_share(df, merges, tasks), s[keep].groupby("model")["norm"].mean())


def test_replication_groups_targets_as_the_grid_does():
    from harness import grid

    assert replication.RELATED == grid.RELATED and replication.DIVERGENT == grid.DIVERGENT
