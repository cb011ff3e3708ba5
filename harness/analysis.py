"""Merge gaps, the documented aggregate, and the correlation between constituents' representational
similarity (CKA) and merge gaps across merges (the question of Aycock et al. 2026 and Gain et al. 2026)."""

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


def normalized(metric: str, value):
    """The 0-100 per-task score of the aggregate: chrF++ as is, 100 * (1 - bpb / 8) for bits per byte.
    value: a float or a numpy array of them."""
    if metric == "bits_per_byte":
        return 100.0 * (1.0 - value / 8.0)
    return value


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per model, the babel score (mean normalized primary score over tasks), the mean
    bits per byte and chrF++, and one column per task; sorted best first."""
    p = primary(df).copy()
    p["norm"] = [normalized(m, v) for m, v in zip(p["metric"], p["value"])]
    wide = p.pivot_table(index="model", columns="task", values="value")
    out = pd.DataFrame({
        "babel_score": p.groupby("model")["norm"].mean(),
        "mean_bpb": p[p.task_kind == "lm"].groupby("model")["value"].mean(),
        "mean_chrf": p[p.task_kind == "mt"].groupby("model")["value"].mean(),
    }).join(wide)
    meta = df.drop_duplicates("model").set_index("model")[["kind", "arm", "method"]]
    return out.join(meta).sort_values("babel_score", ascending=False)


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
