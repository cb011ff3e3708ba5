"""Merge gaps, the documented aggregate (issue 12.6: over live tasks, the share of the expert's gain over the
untrained floor that a model keeps), and the correlation between constituents' representational similarity (CKA)
and merge gaps across merges (the question of Aycock et al. 2026 and Gain et al. 2026)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from . import schema

PRIMARY = {"lm": "bits_per_byte", "mt": "chrf++"}


def tidy(results: list[schema.ResultsFile]) -> pd.DataFrame:
    """One row per (model, task, metric) with the model's metadata."""
    rows = []
    for r in results:
        for row in r.rows:
            rows.append({"model": r.model.name, "kind": r.model.kind, "arm": r.model.arm, "method": r.model.method,
                         "status": r.status, **row.model_dump()})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["task_kind"] = df["task"].str.split(":").str[0]
    return df


def primary(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["metric"] == df["task_kind"].map(PRIMARY)]


def normalized(value, floor: float, expert: float, higher_is_better: bool):
    """The aggregate's per-task score: the share, in percent, of the expert's gain over the untrained floor that
    the model keeps. 100 * (floor - value) / (floor - expert) for bits per byte, 100 * (value - floor) /
    (expert - floor) for higher-is-better metrics: 100 = the expert, 0 = the floor, negative = worse than the
    floor (unbounded below). value: a float or a numpy array; the expert must beat the floor (a live task)."""
    gain = (expert - floor) if higher_is_better else (floor - expert)
    if not gain > 0:
        raise ValueError(f"normalized: the expert ({expert}) does not beat the floor ({floor}); only live tasks are normalized")
    return 100.0 * ((value - floor) if higher_is_better else (floor - value)) / gain


def scored(df: pd.DataFrame, tasks: dict) -> pd.DataFrame:
    """One row per (model, task) on the task's shown metric (validity.TaskValidity.metric): its value, whether
    the task is live, whether the model's own score carries signal against its control (mt: True or False, None
    where the model has no control row stored; None for lm), whether it is credited, and the normalized score,
    live tasks only. A translation score not shown to carry signal of its own (interval including zero, or no
    control stored) counts at most 0 (the floor): a score that does not depend on the source earns no credit.
    tasks: task -> TaskValidity."""
    cols = ["model", "task", "task_kind", "metric", "value", "stderr", "live", "signal", "credited", "norm"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    metric_of = {t: tv.metric for t, tv in tasks.items()}
    signal_of = {t: tv.signal for t, tv in tasks.items() if tv.signal}
    s = df[df["metric"] == df["task"].map(metric_of)].dropna(subset=["value"])
    s = s[["model", "task", "task_kind", "metric", "value", "stderr"]].drop_duplicates(["model", "task"]).reset_index(drop=True)
    sig = df[df["metric"] == df["task"].map(signal_of)]
    sig = dict(zip(zip(sig["model"], sig["task"]), (pd.to_numeric(sig["ci_low"], errors="coerce") > 0).tolist()))
    s["live"] = [tasks[t].live for t in s["task"]]
    s["signal"] = [sig.get((m, t)) for m, t in zip(s["model"], s["task"])]
    s["credited"] = [t not in signal_of or g is True for t, g in zip(s["task"], s["signal"])]
    s["norm"] = math.nan
    for task, g in s[s["live"]].groupby("task"):
        tv = tasks[task]
        norm = normalized(g["value"].to_numpy(dtype=float), tv.floor_value, tv.expert_value, tv.higher_is_better)
        s.loc[g.index, "norm"] = np.where(g["credited"].to_numpy(dtype=bool), norm, np.minimum(norm, 0.0))
    return s[cols]


def leaderboard(df: pd.DataFrame, tasks: dict) -> pd.DataFrame:
    """Wide table: one row per model; the babel score (mean normalized score over the live tasks it has), the
    number of live tasks behind it, mean bits per byte over live lm tasks and mean chrF++ over the live mt tasks
    whose metric is chrF++, and one column per task (its shown metric, live or not); best first, models without
    a live score last. tasks: task -> validity.TaskValidity."""
    s = scored(df, tasks)
    if s.empty:
        return pd.DataFrame(columns=["babel_score", "n_live", "mean_bpb", "mean_chrf"])
    live = s[s.live]
    wide = s.pivot_table(index="model", columns="task", values="value")
    out = pd.DataFrame({
        "babel_score": live.groupby("model")["norm"].mean(),
        "n_live": live.groupby("model")["norm"].count(),
        "mean_bpb": live[live.metric == "bits_per_byte"].groupby("model")["value"].mean(),
        "mean_chrf": live[live.metric == "chrf++"].groupby("model")["value"].mean(),
    }, index=wide.index).join(wide)
    out["n_live"] = out["n_live"].fillna(0).astype(int)
    meta = df.drop_duplicates("model").set_index("model")[["kind", "arm", "method"]]
    return out.join(meta).sort_values("babel_score", ascending=False, na_position="last", kind="stable")


def home_language(member: str) -> str | None:
    """The language a family member is an expert in: mono-<l>, mono-<l>-s1, cpt-<l>, mt-en-<x>."""
    name = member.split("/")[-1]
    parts = name.split("-")
    if parts[0] in ("mono", "cpt") and len(parts) >= 2:
        return parts[1]
    if parts[0] == "mt" and len(parts) == 3:
        return parts[2]
    return None


def expert_for(constituents: list[str], task_kind: str, language: str) -> str | None:
    """The constituent that is the expert for this task kind and language, if the merge has one."""
    for c in constituents:
        name = c.split("/")[-1]
        is_mt = name.startswith("mt-")
        if home_language(name) == language and is_mt == (task_kind == "mt"):
            return name
    return None


def merge_gaps(df: pd.DataFrame, merges: dict[str, list[str]], references=("mixed", "mt-all")) -> pd.DataFrame:
    """merge_gap_records as a DataFrame."""
    return pd.DataFrame(merge_gap_records(df, merges, references))


def merge_gap_records(df: pd.DataFrame, merges: dict[str, list[str]], references=("mixed", "mt-all")) -> list[dict]:
    """Gap of each merge on each task's primary metric against its constituent expert and each reference.

    gap = merge - reference for higher-is-better metrics and reference - merge for bits per byte, so a
    negative gap always means the merge is worse; rel_gap_pct = 100 * gap / |reference|.
    merges: merge name -> constituent references.
    """
    p = primary(df)
    val = dict(zip(zip(p["model"], p["task"]), p["value"]))
    lang_of = dict(zip(p["task"], p["language"]))
    tasks_of: dict[str, list[str]] = {}
    for model, task in zip(p["model"], p["task"]):
        tasks_of.setdefault(model, []).append(task)
    rows = []
    for merge, constituents in merges.items():
        for task in sorted(tasks_of.get(merge, [])):
            kind, lang = task.split(":")[0], lang_of[task]
            mv = val[(merge, task)]
            refs = [("expert", expert_for(constituents, kind, lang))] + [(r, r) for r in references]
            for ref_kind, ref in refs:
                if ref is None or (ref, task) not in val:
                    continue
                rv = val[(ref, task)]
                gap = (mv - rv) if kind == "mt" else (rv - mv)
                rows.append({"merge": merge, "task": task, "task_kind": kind, "language": lang, "reference": ref_kind,
                             "ref_model": ref, "merge_value": mv, "ref_value": rv, "gap": gap,
                             "rel_gap_pct": 100.0 * gap / abs(rv) if rv else math.nan})
    return rows


def constituent_cka(sim: pd.DataFrame) -> pd.Series:
    """Per merge: mean linear CKA over layers and constituent pairs."""
    s = sim[(sim.relation == "constituents") & (sim.metric == "cka_linear")]
    return s.groupby("merge")["value"].mean()


def cka_vs_gap(gaps: pd.DataFrame, sim: pd.DataFrame, seed: int = 0) -> dict:
    """Spearman correlation across merges between constituents' mean CKA and the mean relative gap to the
    constituent experts (each merge one point), with the fitted line (fit_with_band)."""
    g = gaps[gaps.reference == "expert"].groupby("merge")["rel_gap_pct"].mean() if not gaps.empty else pd.Series(dtype=float)
    c = constituent_cka(sim) if not sim.empty else pd.Series(dtype=float)
    points = pd.DataFrame({"cka": c, "gap": g}).dropna()
    fit = fit_with_band(points["cka"].to_numpy(), points["gap"].to_numpy(), seed)
    return {"n": int(len(points)), "points": points.reset_index(names="merge").to_dict("records"),
            "spearman_rho": fit["rho"], "p_value": fit["p_value"], "slope": fit["slope"], "intercept": fit["intercept"],
            "rho_lo": fit["rho_lo"], "rho_hi": fit["rho_hi"]}


def fit_with_band(x: np.ndarray, y: np.ndarray, seed: int, n_boot: int | None = None) -> dict:
    """Least-squares line, its 95% bootstrap band (resampling merges), Spearman's rho with a bootstrap
    interval and scipy's p-value. 1000 resamples up to 1000 merges, 100 beyond (the interval is then narrow)."""
    n_boot = n_boot or (1000 if len(x) <= 1000 else 100)
    out = {"n": int(len(x)), "slope": None, "intercept": None, "band": [], "rho": None, "rho_lo": None, "rho_hi": None,
           "p_value": None}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    slope, intercept = np.polyfit(x, y, 1)
    rho, pv = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    grid = np.linspace(x.min(), x.max(), 12)
    preds, rhos = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            continue
        b, a = np.polyfit(x[i], y[i], 1)
        preds.append(a + b * grid)
        rhos.append(stats.spearmanr(x[i], y[i]).statistic)
    preds = np.array(preds)
    out.update(slope=float(slope), intercept=float(intercept), rho=float(rho), p_value=float(pv),
               rho_lo=float(np.nanpercentile(rhos, 2.5)), rho_hi=float(np.nanpercentile(rhos, 97.5)),
               band=[(float(g), float(lo), float(hi)) for g, lo, hi in
                     zip(grid, np.percentile(preds, 2.5, 0), np.percentile(preds, 97.5, 0))])
    return out


def _boot_primary(task_kind: str, d: schema.TaskDocs, idx: np.ndarray, suite: dict, language: str) -> tuple[float, np.ndarray]:
    """The primary score of one task and its bootstrap samples, from per-document statistics."""
    from . import scoring
    from .evaluate import bleu_tokenizer

    if task_kind == "lm":
        ll, nb = np.asarray(d.ll), np.asarray(d.bytes, dtype=np.float64)
        return scoring.bits_per_byte(ll, nb), scoring.bits_per_byte_boot(ll, nb, idx)
    metric = scoring.metrics(bleu_tokenizer(suite, language))["chrf++"]
    st = np.asarray(d.stats["chrf++"])
    return scoring.corpus_from_stats(metric, st), scoring.corpus_boot(metric, st, idx)


def paired_vs_expert(docs: dict[str, schema.DocsFile], merges: dict[str, list[str]], suite: dict) -> pd.DataFrame:
    """Paired bootstrap (Koehn 2004) of merge minus constituent expert on each task's primary metric, both
    resampled on the same documents; oriented like merge_gaps (negative: the merge is worse).
    docs: model name -> its per-document file."""
    from . import scoring

    rows = []
    for merge, constituents in merges.items():
        if merge not in docs:
            continue
        for task, d in docs[merge].tasks.items():
            kind, lang = task.split(":")[0], task.split("-")[-1] if task.startswith("mt:") else task.split(":")[1]
            expert = expert_for(constituents, kind, lang)
            if expert is None or expert not in docs or task not in docs[expert].tasks:
                continue
            e = docs[expert].tasks[task]
            if e.ids != d.ids:
                continue  # scored on other documents (a different limit): no paired comparison
            idx = scoring.bootstrap_indices(len(d.ids), suite["seed"])
            mv, mb = _boot_primary(kind, d, idx, suite, lang)
            ev, eb = _boot_primary(kind, e, idx, suite, lang)
            a, b, obs = (mb, eb, mv - ev) if kind == "mt" else (eb, mb, ev - mv)
            rows.append({"merge": merge, "task": task, "language": lang, "expert": expert,
                         **scoring.paired_delta(a, b, obs)})
    return pd.DataFrame(rows)


# ---- every diagnostic against every gap (issue: similarity and neuron diagnostics) ---------------------------

REFERENCES = ("expert", "mixed", "mt-all")


def merge_diagnostics(sim: pd.DataFrame) -> pd.DataFrame:
    """One row per merge, one column per diagnostic '<metric>:<group>' (mean over constituent pairs, and over the
    group's layers): CKA variants per hidden-state group (embeddings, lower, middle, upper) and 'all'; weight-space
    metrics per parameter group; loss barrier and neuron-set Jaccard ('all'); sign conflict across the whole set
    (pairwise for two constituents); and 'cka_linear_merge:all', the merge's mean CKA to its constituents."""
    from .similarity.groups import hidden_group

    if sim.empty:
        return pd.DataFrame()
    sim = sim.reindex(columns=list(sim.columns) + [k for k in ("group", "layer", "layer_b", "alpha") if k not in sim.columns])
    cols = {}
    c = sim[sim.relation == "constituents"]
    cka = c[c.metric.isin(["cka_linear", "cka_debiased", "cka_rbf"])].copy()
    if not cka.empty:
        n_layers = cka.groupby("merge")["layer"].transform("max").astype(int) + 1
        cka["group"] = [hidden_group(int(l), int(n)) for l, n in zip(cka["layer"], n_layers)]
        for (metric, group), g in cka.groupby(["metric", "group"]):
            cols[f"{metric}:{group}"] = g.groupby("merge")["value"].mean()
        for metric, g in cka.groupby("metric"):
            cols[f"{metric}:all"] = g.groupby("merge")["value"].mean()
    w = c[c.metric.isin(["task_cosine", "sign_conflict", "sign_conflict_trim"])]
    for (metric, group), g in w.groupby(["metric", "group"]):
        cols[f"{metric}:{group}"] = g.groupby("merge")["value"].mean()
    for metric in ("loss_barrier", "neuron_jaccard_lape", "neuron_jaccard_ap"):
        g = c[c.metric == metric]
        if not g.empty:
            cols[f"{metric}:all"] = g.groupby("merge")["value"].mean()
    s = sim[sim.relation == "constituent-set"]
    for metric, pair_metric in (("sign_conflict_set", "sign_conflict"), ("sign_conflict_set_trim", "sign_conflict_trim")):
        for group in w["group"].dropna().unique() if not w.empty else []:
            pair = cols.get(f"{pair_metric}:{group}", pd.Series(dtype=float))
            two = pair[pair.index.isin(c.groupby("merge")["a"].nunique().loc[lambda v: v == 1].index)]
            setv = s[(s.metric == metric) & (s.group == group)].groupby("merge")["value"].mean()
            cols[f"{metric}:{group}"] = pd.concat([setv, two[~two.index.isin(setv.index)]])
    m = sim[(sim.relation == "merge-constituent") & (sim.metric == "cka_linear")]
    if not m.empty:
        cols["cka_linear_merge:all"] = m.groupby("merge")["value"].mean()
    return pd.DataFrame(cols).sort_index(axis=1)


def merge_languages(constituents: list[str]) -> list[str]:
    """The languages the constituents are experts in, sorted and distinct."""
    return sorted({l for l in (home_language(c) for c in constituents) if l})


def merge_covariates(merges: dict[str, list[str]]) -> pd.DataFrame:
    """Per merge: mean URIEL distance and script mismatch between its constituents' languages."""
    from .languages import set_covariates

    return pd.DataFrame({m: set_covariates(merge_languages(c)) for m, c in merges.items()}).T


def gap_by_reference(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per merge (rows) and reference (columns): the mean relative gap in percent over the merge's tasks."""
    if gaps.empty:
        return pd.DataFrame()
    return gaps.groupby(["merge", "reference"])["rel_gap_pct"].mean().unstack()


def diagnostic_correlations(diag: pd.DataFrame, gapref: pd.DataFrame, covariates: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Tidy: one row per (diagnostic, reference) with Spearman and Kendall, 95% bootstrap intervals,
    permutation p-values, and the Spearman correlation partial on URIEL distance and script mismatch
    (over the merges whose constituents span at least two languages)."""
    from . import rankstats

    rows = []
    for ref in [r for r in REFERENCES if r in gapref.columns]:
        for d in diag.columns:
            pts = pd.DataFrame({"x": diag[d], "y": gapref[ref]}).join(covariates).dropna(subset=["x", "y"])
            res = rankstats.correlate(pts.x.to_numpy(), pts.y.to_numpy(), seed)
            cov = pts.dropna()
            part = rankstats.partial_correlate(cov.x.to_numpy(), cov.y.to_numpy(),
                                               cov[["uriel_distance", "script_mismatch"]].to_numpy(), seed) if len(cov) >= 6 else {}
            metric, group = d.split(":")
            rows.append({"diagnostic": d, "metric": metric, "group": group, "reference": ref, **res,
                         "partial_n": len(cov), **{k: part.get(k) for k in ("partial_rho", "partial_lo", "partial_hi", "partial_p")}})
    out = pd.DataFrame(rows)
    num = [c for c in out.columns if c not in ("diagnostic", "metric", "group", "reference")]
    return out.astype({c: float for c in num}) if not out.empty else out


LOLO_FEATURES = ("cka_linear:all", "cka_debiased:all", "cka_rbf:all", "task_cosine:all", "sign_conflict_trim:all",
                 "loss_barrier:all", "neuron_jaccard_ap:all", "expert_cka")


def leave_one_language_out(gaps: pd.DataFrame, diag: pd.DataFrame, sim: pd.DataFrame, alpha: float = 1.0) -> dict:
    """Predict each (merge, task) gap to its constituent expert from diagnostics alone (the merge's LOLO_FEATURES,
    with expert_cka the merge's mean CKA to that expert) by ridge regression on standardised features, trained
    on every other language and scored on the held-out one. Reports the held-out mean absolute error beside that
    of predicting the training mean, per language and pooled."""
    g = gaps[gaps.reference == "expert"][["merge", "task", "language", "ref_model", "rel_gap_pct"]].dropna()
    if g.empty or diag.empty:
        return {"rows": [], "mae": None, "baseline_mae": None, "n": 0}
    mc = sim[(sim.relation == "merge-constituent") & (sim.metric == "cka_linear")] if not sim.empty else sim
    ecka = mc.groupby(["merge", "b"])["value"].mean() if not mc.empty else pd.Series(dtype=float)
    g = g.join(diag, on="merge")
    g["expert_cka"] = [ecka.get((m, e), np.nan) for m, e in zip(g["merge"], g["ref_model"])]
    feats = [f for f in LOLO_FEATURES if f in g.columns and g[f].notna().mean() > 0.5]
    g = g.dropna(subset=feats)
    rows, preds = [], []
    for lang in sorted(g.language.unique()):
        train, test = g[g.language != lang], g[g.language == lang]
        if len(train) < len(feats) + 2:
            continue
        mu, sd = train[feats].mean(), train[feats].std().replace(0, 1)
        xt = ((train[feats] - mu) / sd).to_numpy()
        ym = train.rel_gap_pct.mean()
        beta = np.linalg.solve(xt.T @ xt + alpha * np.eye(len(feats)), xt.T @ (train.rel_gap_pct.to_numpy() - ym))
        pred = ((test[feats] - mu) / sd).to_numpy() @ beta + ym
        err, base = np.abs(pred - test.rel_gap_pct.to_numpy()), np.abs(ym - test.rel_gap_pct.to_numpy())
        rows.append({"language": lang, "n": len(test), "mae": float(err.mean()), "baseline_mae": float(base.mean())})
        preds += list(zip(test.rel_gap_pct, pred))
    if not rows:
        return {"rows": [], "mae": None, "baseline_mae": None, "n": 0}
    n = sum(r["n"] for r in rows)
    actual, predicted = np.array(preds).T
    return {"rows": rows, "features": feats, "n": n, "alpha": alpha,
            "mae": sum(r["mae"] * r["n"] for r in rows) / n, "baseline_mae": sum(r["baseline_mae"] * r["n"] for r in rows) / n,
            "spearman": float(stats.spearmanr(actual, predicted).statistic) if np.ptp(predicted) > 0 else None}


def neuron_layers(neurons: pd.DataFrame) -> pd.DataFrame:
    """Per model and layer: language-specific units summed over languages, and as a share of the layer's units,
    for LAPE and AP (the per-layer histogram)."""
    n = neurons[neurons.metric.isin(["lape_count", "ap_count"])]
    out = n.groupby(["model", "metric", "layer"]).agg(count=("value", "sum"), units=("units", "first")).reset_index()
    out["share"] = out["count"] / out["units"]
    return out


def neuron_movement(neurons: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """How selectivity moves from `mixed` to each `mt-en-<x>`: for every target x and language l, the change in
    mean span-conditioned AP (source and target spans) and in LAPE neurons, with l's relation to x
    (supervised, related, unsupervised)."""
    from .languages import relation

    piv = neurons[neurons.metric.isin(["span_ap_source", "span_ap_target", "lape_count", "ap_mean"])]
    agg = piv.groupby(["model", "metric", "language"]).agg(value=("value", "mean"), total=("value", "sum"))
    rows = []
    for x in targets:
        model = f"mt-en-{x}"
        for (metric, lang), r in agg.loc[model].iterrows() if model in agg.index.get_level_values(0) else []:
            if ("mixed", metric, lang) not in agg.index:
                continue
            col = "total" if metric == "lape_count" else "value"
            before, after = agg.loc[("mixed", metric, lang), col], r[col]
            rows.append({"model": model, "target": x, "language": lang, "relation": relation(lang, x), "metric": metric,
                         "mixed": float(before), "finetuned": float(after), "delta": float(after - before)})
    return pd.DataFrame(rows)


def diagnostics_tables(gaps: pd.DataFrame, sim: pd.DataFrame, merges: dict[str, list[str]], neurons: pd.DataFrame,
                       suite: dict) -> dict:
    """The tidy tables of the diagnostics analysis, derived from stored rows (the site shows them, `analyze`
    prints them): per-merge diagnostics, gaps by reference, covariates, correlations, the leave-one-language-out
    predictor, neuron counts by layer and the mixed -> mt-en-<x> movement."""
    diag = merge_diagnostics(sim)
    gapref = gap_by_reference(gaps)
    cov = merge_covariates(merges) if merges else pd.DataFrame(columns=["uriel_distance", "script_mismatch"])
    corr = diagnostic_correlations(diag, gapref, cov, suite["seed"]) if not diag.empty and not gapref.empty else pd.DataFrame()
    lolo = leave_one_language_out(gaps, diag, sim) if not gaps.empty else {"rows": [], "mae": None, "n": 0}
    targets = [l for l in suite["languages"] if l != "en"]
    layers = neuron_layers(neurons) if not neurons.empty else pd.DataFrame()
    movement = neuron_movement(neurons, targets) if not neurons.empty else pd.DataFrame()
    return {"diagnostics": diag, "gap_by_reference": gapref, "covariates": cov, "correlations": corr, "lolo": lolo,
            "neuron_layers": layers, "neuron_movement": movement}


def replication(df: pd.DataFrame, gaps: pd.DataFrame, merges: dict[str, list[str]], tables: dict, corr: dict) -> list[dict]:
    """The seeds' findings (DESIGN section 1) checked on the stored results, one row each: the finding, what was
    measured, the figure, and whether it holds here ('yes', 'no', 'partly' or 'n/a' without the data)."""
    from .languages import GENUS

    rows = []
    p = primary(df) if not df.empty else df

    def add(finding, measure, figure, holds):
        rows.append({"finding": finding, "measure": measure, "figure": figure, "holds": holds})

    val = dict(zip(zip(p["model"], p["task"]), p["value"])) if not p.empty else {}
    langs = sorted({home_language(m) for m in p["model"].unique() if str(m).startswith("mono-") and not str(m).endswith("-s1")} - {None}) if not p.empty else []
    own = [l for l in langs if (f"mono-{l}", f"lm:{l}") in val]
    if own:
        best = [l for l in own if val[(f"mono-{l}", f"lm:{l}")] <= min(val.get((f"mono-{k}", f"lm:{l}"), math.inf) for k in own)]
        add("Monolingual models are strongest in their own language", "mono-<l> has the lowest bpb on lm:<l> among mono models",
            f"{len(best)} of {len(own)} languages", "yes" if len(best) == len(own) else ("partly" if best else "no"))
    g = gaps[(gaps.reference == "expert") & gaps["merge"].map(lambda m: all("/mono-" in c for c in merges.get(m, [])))] if not gaps.empty else gaps
    if not g.empty:
        m = g.rel_gap_pct.mean()
        add("Merges of monolingual models collapse", "mean relative bpb gap of mono merges to their experts",
            f"{m:+.1f}% over {g['merge'].nunique()} merges ({(g.rel_gap_pct < 0).mean():.0%} of gaps negative)", "yes" if m < -5 else ("partly" if m < 0 else "no"))
        # matched comparison: an independent-init merge against the same-init merge of the same method and languages
        key = lambda x: (x.split("-mono-")[0], tuple(merge_languages(merges[x])))
        per = g.groupby("merge").rel_gap_pct.mean()
        indep, same = {}, {}
        for x, v in per.items():
            (indep if any(c.endswith("-s1") for c in merges[x]) else same).setdefault(key(x), []).append(v)
        matched = [k for k in indep if k in same]
        if matched:
            a, b = np.mean([np.mean(indep[k]) for k in matched]), np.mean([np.mean(same[k]) for k in matched])
            add("... more so with independent initialisations", "mean gap to experts: merges with an init-s1 member vs the same-init merge of the same method and languages",
                f"{a:+.1f}% vs {b:+.1f}% ({len(matched)} matched: {', '.join(f'{k[0]} {chr(43).join(k[1])}' for k in matched)})",
                "yes" if a < b else "no")
    if not p.empty and merges:
        lm = p[p.task_kind == "lm"].groupby("model")["value"].mean()
        if "mixed" in lm:
            ms = lm[lm.index.isin(list(merges))]
            beaten = int((ms > lm["mixed"]).sum())
            add("mixed beats every merge", "mean bpb over languages: mixed vs each merge",
                f"mixed {lm['mixed']:.3f}; best merge {ms.min():.3f}; mixed better than {beaten} of {len(ms)}", "yes" if beaten == len(ms) else "no")
    t = gaps[(gaps.reference == "expert") & (gaps.task_kind == "mt")] if not gaps.empty else gaps
    if not t.empty:
        div = t.language.map(lambda l: GENUS.get(l) not in ("Germanic", "Romance"))
        a, b = t[~div].rel_gap_pct.mean(), t[div].rel_gap_pct.mean()
        add("Translation merges lose more for divergent targets", "mean relative chrF++ gap to the mt-en-x expert: related (de fr es it) vs divergent (ru ar)",
            f"related {a:+.1f}%, divergent {b:+.1f}% (absolute: {t[~div].gap.mean():+.2f} vs {t[div].gap.mean():+.2f} chrF++)",
            "yes" if b < a else "no")
    layers = tables.get("neuron_layers", pd.DataFrame())
    if not layers.empty:
        fam = layers[(layers.metric == "ap_count") & ~layers.model.isin(list(merges)) & ~layers.model.str.startswith("init-")]
        share = fam.groupby("layer")["share"].mean()
        from .similarity.groups import hidden_group

        n = int(share.index.max()) + 1
        by = share.groupby([hidden_group(int(l), n) for l in share.index]).mean()
        edges = max(by.get("embeddings", 0), by.get("upper", 0))
        add("Language-specific units concentrate in the embeddings and upper layers", "share of AP-selective units by group, trained family members",
            ", ".join(f"{k} {100 * v:.1f}%" for k, v in by.items()), "yes" if edges > by.get("middle", math.inf) and edges >= by.get("lower", 0) else
            ("partly" if edges > by.get("middle", math.inf) else "no"))
    mv = tables.get("neuron_movement", pd.DataFrame())
    if not mv.empty:
        d = mv[mv.metric == "span_ap_target"].groupby("relation")["delta"].mean()
        add("Fine-tuning makes selectivity less exclusive for supervised/related languages, more isolated for unsupervised",
            "mean change of target-span AP from mixed to mt-en-x, by relation to x", ", ".join(f"{k} {v:+.4f}" for k, v in d.items()),
            "yes" if d.get("supervised", 0) < 0 and d.get("related", 0) < 0 and d.get("unsupervised", 0) > 0 else "no")
    if corr.get("spearman_rho") is not None:
        add("Representational similarity predicts the merge gap", "Spearman(mean constituent linear CKA, mean gap to expert)",
            f"rho {corr['spearman_rho']:+.3f} [{corr['rho_lo']:.2f}, {corr['rho_hi']:.2f}], n = {corr['n']}",
            "yes" if corr["rho_lo"] > 0 else "no")
    return rows
