"""Merge gaps (sign convention, expert lookup), the aggregate, and the CKA-versus-gap correlation."""

import math

import numpy as np
import pandas as pd
import pytest

from harness import analysis


def _df(rows):
    df = pd.DataFrame(rows, columns=["model", "task", "language", "metric", "value"])
    df["task_kind"] = df["task"].str.split(":").str[0]
    df["kind"], df["arm"], df["method"] = "family", None, None
    return df


def test_expert_lookup():
    cons = ["family:babel-mini/mono-en", "family:babel-mini/mono-ru-s1", "family:babel-mini/mt-en-de"]
    assert analysis.expert_for(cons, "lm", "ru") == "mono-ru-s1"
    assert analysis.expert_for(cons, "lm", "de") is None
    assert analysis.expert_for(cons, "mt", "de") == "mt-en-de"
    assert analysis.expert_for(cons, "mt", "ru") is None


def test_gap_sign_convention():
    df = _df([("m", "lm:de", "de", "bits_per_byte", 2.5), ("mono-de", "lm:de", "de", "bits_per_byte", 2.0),
              ("mixed", "lm:de", "de", "bits_per_byte", 2.4),
              ("m", "mt:en-de", "de", "chrf++", 30.0), ("mt-en-de", "mt:en-de", "de", "chrf++", 40.0)])
    g = analysis.merge_gaps(df, {"m": ["family:babel-mini/mono-de", "family:babel-mini/mt-en-de"]})
    row = lambda t, r: g[(g.task == t) & (g.reference == r)].iloc[0]
    assert row("lm:de", "expert").gap == pytest.approx(-0.5)      # higher bpb: worse, negative
    assert row("lm:de", "expert").rel_gap_pct == pytest.approx(-25.0)
    assert row("lm:de", "mixed").gap == pytest.approx(-0.1)
    assert row("mt:en-de", "expert").gap == pytest.approx(-10.0)  # lower chrF: worse, negative
    assert row("mt:en-de", "expert").rel_gap_pct == pytest.approx(-25.0)
    assert g[g.task == "mt:en-de"].reference.tolist() == ["expert"]  # no mixed row without a mixed score


def test_aggregate_rule():
    """Share of the expert's gain over init-s0, live tasks only: lm:en floor 8, expert 2; mt:en-de floor 5, expert 30."""
    from harness import validity
    from harness.suite import load_suite

    df = _df([("init-s0", "lm:en", "en", "bits_per_byte", 8.0), ("mono-en", "lm:en", "en", "bits_per_byte", 2.0),
              ("init-s0", "mt:en-de", "de", "chrf++", 5.0), ("mt-en-de", "mt:en-de", "de", "chrf++", 30.0),
              ("a", "lm:en", "en", "bits_per_byte", 2.0), ("a", "mt:en-de", "de", "chrf++", 10.0),
              ("b", "lm:en", "en", "bits_per_byte", 5.0), ("b", "mt:en-de", "de", "chrf++", 30.0)])
    df["ci_low"], df["ci_high"], df["stderr"], df["n"], df["higher_is_better"] = df["value"], df["value"], 0.0, 5, df.metric != "bits_per_byte"
    sig = _df([(m, "mt:en-de", "de", "chrf++_over_control", 3.0) for m in ("mt-en-de", "a", "b")])
    sig["ci_low"], sig["ci_high"], sig["stderr"], sig["n"], sig["higher_is_better"] = 1.0, 5.0, 1.0, 5, True
    df = pd.concat([df, sig], ignore_index=True)
    suite = {"id": "t", "languages": ["en", "de"], "pivot": "en", "seed": 1, "validity": load_suite()["validity"]}
    tasks, _ = validity.assess(df, suite)
    assert [t for t, tv in tasks.items() if tv.live] == ["lm:en", "mt:en-de"]  # lm:de has no results: not live
    board = analysis.leaderboard(df, tasks)
    assert board.loc["a", "babel_score"] == pytest.approx((100.0 + 20.0) / 2)  # 5 of the 25 chrF++ points
    assert board.loc["b", "babel_score"] == pytest.approx((50.0 + 100.0) / 2)
    order = list(board.index)
    assert order.index("b") < order.index("a") and order[-1] == "init-s0" and board.loc["init-s0", "babel_score"] == 0.0


def test_paired_vs_expert_from_docs():
    from harness import schema

    ids = [str(i) for i in range(40)]
    rng = __import__("numpy").random.default_rng(0)
    ll_e = (-rng.uniform(50, 60, 40)).tolist()
    nb = [40] * 40
    docs = {"mono-de": schema.DocsFile(suite="s", suite_sha256="0", model_sha256="1",
                                       tasks={"lm:de": schema.TaskDocs(ids=ids, ll=ll_e, bytes=nb)}),
            "m": schema.DocsFile(suite="s", suite_sha256="0", model_sha256="2",
                                 tasks={"lm:de": schema.TaskDocs(ids=ids, ll=[x - 10 for x in ll_e], bytes=nb)})}
    out = analysis.paired_vs_expert(docs, {"m": ["family:babel-mini/mono-de"]}, {"seed": 1})
    row = out.iloc[0]
    assert row.expert == "mono-de" and row.delta < 0 and row.ci_high < 0 and row.p_value < 0.01
    expected = -10 * 40 / math.log(2) / (40 * 40)  # 10 nats per doc more, over 40 bytes per doc
    assert row.delta == pytest.approx(expected)


def _random_results(seed: int):
    """A small tidy frame with what the vectorised merge gaps must get right: constituent order (two lm experts for
    one language), missing and NaN scores, a zero reference, a repeated row, a distractor metric."""
    import numpy as np

    rng = np.random.default_rng(seed)
    members = ["mono-en", "mono-en-s1", "mono-de", "cpt-de", "mt-en-de", "mt-en-ru", "mixed", "mt-all"]
    tasks = [("lm:en", "en", "bits_per_byte"), ("lm:de", "de", "bits_per_byte"), ("mt:en-de", "de", "chrf++"),
             ("mt:en-ru", "ru", "chrf++")]
    merges = {f"m{i}": [f"family:babel-mini/{c}" for c in rng.choice(members[:6], size=rng.integers(2, 4), replace=False)]
              for i in range(25)}
    rows = []
    for model in members + list(merges):
        for task, lang, metric in tasks:
            if rng.random() < 0.15:
                continue                                   # no score stored
            v = float(np.round(rng.uniform(0, 3 if task.startswith("lm") else 50), 1))
            rows.append((model, task, lang, metric, math.nan if rng.random() < 0.05 else v))
            rows.append((model, task, lang, "other", rng.uniform()))
    rows.append(("mixed", "lm:de", "de", "bits_per_byte", 0.0))  # a zero reference: no relative gap
    rows.append(next(r for r in rows if r[0] in merges and r[3] != "other"))  # a repeated row: the last one counts
    rows.append(next(r for r in rows if r[0] == "mixed" and r[3] != "other")[:4] + (1.5,))
    return _df(rows), merges


def _gap_loop(df, merges, references=("mixed", "mt-all")):
    """The merge gaps as the definition reads, one (merge, task, reference) at a time."""
    p = df[df["metric"] == df["task_kind"].map(analysis.PRIMARY)]
    val = {(m, t): v for m, t, v in zip(p["model"], p["task"], p["value"])}
    lang = dict(zip(p["task"], p["language"]))
    tasks_of = {}
    for m, t in zip(p["model"], p["task"]):
        tasks_of.setdefault(m, []).append(t)
    rows = []
    for merge, cons in merges.items():
        for task in sorted(tasks_of.get(merge, [])):
            kind = task.split(":")[0]
            for ref_kind, ref in [("expert", analysis.expert_for(cons, kind, lang[task]))] + [(r, r) for r in references]:
                if ref is None or (ref, task) not in val:
                    continue
                mv, rv = val[(merge, task)], val[(ref, task)]
                gap = mv - rv if kind == "mt" else rv - mv
                rows.append({"merge": merge, "task": task, "task_kind": kind, "language": lang[task], "reference": ref_kind,
                             "ref_model": ref, "merge_value": mv, "ref_value": rv, "gap": gap,
                             "rel_gap_pct": 100.0 * gap / abs(rv) if rv else math.nan})
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_gaps_equal_the_loop(seed):
    df, merges = _random_results(seed)
    expected = _gap_loop(df, merges)
    pd.testing.assert_frame_equal(analysis.merge_gaps(df, merges), pd.DataFrame(expected))
    got = analysis.merge_gap_records(df, merges)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.keys() == e.keys() and all(g[k] == e[k] or (g[k] != g[k] and e[k] != e[k]) for k in g)


def test_experts_of_equals_expert_for():
    _, merges = _random_results(4)
    keys = [("lm", "en"), ("lm", "de"), ("mt", "de"), ("mt", "ru")]
    table = analysis.experts_of(merges, keys)
    assert table.tolist() == [[analysis.expert_for(c, k, l) for k, l in keys] for c in merges.values()]


def test_value_table_keeps_the_last_row():
    df = _df([("a", "lm:en", "en", "bits_per_byte", 1.0), ("a", "lm:en", "en", "bits_per_byte", 2.0),
              ("b", "lm:en", "en", "other", 3.0), ("b", "mt:en-de", "de", "chrf++", math.nan)])
    index, val, has = analysis.value_table(df, {"lm:en": "bits_per_byte", "mt:en-de": "chrf++", "lm:de": "bits_per_byte"})
    assert val[index["a"]].tolist()[0] == 2.0 and has[index["a"]].tolist() == [True, False, False]
    assert has[index["b"]].tolist() == [False, True, False] and math.isnan(val[index["b"], 1])


def test_fit_with_band_matches_a_fit_per_resample():
    """The vectorised band and rho interval equal np.polyfit and scipy's Spearman run on each resample."""
    from scipy import stats as sstats

    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    x[:5] = x[0]  # ties
    got = analysis.fit_with_band(x, y, seed=11, n_boot=300)
    draw_rng = np.random.default_rng(11)
    draws = [draw_rng.integers(0, 40, 40) for _ in range(300)]
    grid = np.linspace(x.min(), x.max(), 12)
    preds = np.array([np.polyval(np.polyfit(x[i], y[i], 1), grid) for i in draws])
    rhos = [sstats.spearmanr(x[i], y[i]).statistic for i in draws]
    band = np.array(got["band"])
    assert np.allclose(band[:, 0], grid)
    assert np.allclose(band[:, 1], np.percentile(preds, 2.5, 0), rtol=0, atol=1e-10)
    assert np.allclose(band[:, 2], np.percentile(preds, 97.5, 0), rtol=0, atol=1e-10)
    assert abs(got["rho_lo"] - np.percentile(rhos, 2.5)) < 1e-12 and abs(got["rho_hi"] - np.percentile(rhos, 97.5)) < 1e-12
    assert abs(got["rho"] - sstats.spearmanr(x, y).statistic) < 1e-15


def test_group_means_do_not_depend_on_the_other_groups():
    """A key's mean is the same to the bit alone or among other keys' rows (what lets a rebuild keep every other
    model's leaderboard row), skips NaN, and agrees with pandas' grouped mean to rounding."""
    rng = np.random.default_rng(4)
    keys = pd.Series(rng.choice([f"m{i:03d}" for i in range(300)], 5000), name="model")
    values = pd.Series(rng.normal(3, 2, 5000) * 10.0 ** rng.integers(-3, 4, 5000))
    values[rng.random(5000) < 0.05] = np.nan
    keys[:3], values[:3] = "only-nan", np.nan
    got = analysis.group_means(keys, values)
    want = values.groupby(keys).mean()
    assert list(got.index) == sorted(set(keys)) and got.index.name == "model"
    assert np.isnan(got["only-nan"]) and np.allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)
    for k in got.index[::17]:
        alone = analysis.group_means(keys[keys == k], values[keys == k])
        assert alone.index.tolist() == [k] and (alone[k] == got[k] or np.isnan(got[k]))
