"""Set-level inference over merges (issue 12): the constituent set is the independent unit, arms are never pooled.

Many merges share a constituent set, and every pair diagnostic (CKA, neuron overlap, task-vector cosine, sign
conflict, loss barrier) is a property of the set, not of the merge. So each correlation takes one point per set:
per merge method, the mean gap of that method's merges on the set; across methods, the mean of the per-method
rank correlations over the sets all of them cover, with a cluster bootstrap over sets (rankstats.stratified_spearman).
The gap is in the arm's own unit: bits per byte for the language-modelling arm, the task's shown translation metric
(validity.TaskValidity.metric, chrF++ on the published suite) for the translation arm; never a mean of the two."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from . import rankstats

ARMS = {"lm": "bits per byte", "mt": "translation metric"}
MIN_SETS = 5          # a method on fewer sets gets no correlation of its own (and stays out of the pooled one)
POOLED = "all methods"


def short(ref: str) -> str:
    """A constituent reference's member name: family:babel-mini/mono-en -> mono-en."""
    return ref.split("/")[-1]


def set_key(constituents: list[str]) -> str:
    """The constituent set of a merge, order-free: 'mono-en+mono-ru'."""
    return "+".join(sorted({short(c) for c in constituents}))


def method_label(merge: str, method: str) -> str:
    """The method configuration a merge belongs to: its mergekit method and, where its id names one, the lambda or
    density that tells configurations of one method apart (ref-task-arithmetic-cpt-all-l0.5 -> task_arithmetic l0.5)."""
    m = re.search(r"-([ld])([0-9.]+)$", merge)
    return f"{method} {m.group(1)}{m.group(2)}" if m else method


def expert_of(constituents: list[str], task: str) -> str | None:
    """The constituent that is the expert for a task: mono-/cpt- members for lm:<l>, mt-en-<x> for mt:en-<x>."""
    from .analysis import expert_for

    kind, rest = task.split(":")
    return expert_for(constituents, kind, rest.split("-")[-1])


def merge_task_gaps(df: pd.DataFrame, merges: dict[str, list[str]], tasks: dict) -> pd.DataFrame:
    """One row per (merge, live task where the merge has a constituent expert): the gap to that expert on the task's
    shown metric, oriented so that negative is worse (expert - merge for bits per byte, merge - expert for
    higher-is-better metrics), and the share of the task's expert gain over the untrained floor that the merge keeps
    (analysis.normalized; comparable across languages whose experts differ in level). tasks: task ->
    validity.TaskValidity. Rows: merges in their order, each merge's tasks in the order of `tasks`.
    Columns: merge, set, method, arm, task, language, unit, gap, share."""
    from .analysis import experts_of, normalized, value_table

    cols = ["merge", "set", "method", "arm", "task", "language", "unit", "gap", "share"]
    live = [(t, tv) for t, tv in tasks.items() if tv.live]
    if df.empty or not merges or not live:
        return pd.DataFrame(columns=cols)
    index, val, has = value_table(df, {t: tv.metric for t, tv in live})
    names = list(merges)
    experts = experts_of(merges, [_expert_key(t) for t, _ in live])                 # (merges, live tasks)
    mi = np.array([index.get(m, -1) for m in names], dtype=np.intp)
    parts = []
    for j, (task, tv) in enumerate(live):
        ei = np.array([index.get(e, -1) if e is not None else -1 for e in experts[:, j]], dtype=np.intp)
        ok = (mi >= 0) & (ei >= 0)
        ok[ok] = has[mi[ok], j] & has[ei[ok], j]
        sel = np.flatnonzero(ok)
        mv, ev = val[mi[sel], j], val[ei[sel], j]
        sel, mv, ev = sel[(mv == mv) & (ev == ev)], mv[(mv == mv) & (ev == ev)], ev[(mv == mv) & (ev == ev)]
        if not len(sel):
            continue
        share = (np.full(len(sel), np.nan) if tv.floor_value is None or tv.expert_value is None else
                 normalized(mv, tv.floor_value, tv.expert_value, tv.higher_is_better))
        parts.append(pd.DataFrame({"_m": sel, "_t": j, "task": task, "gap": (mv - ev) if tv.higher_is_better else (ev - mv),
                                   "share": share}))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True).sort_values(["_m", "_t"], kind="stable")
    m = out["_m"].to_numpy()
    sets = _set_keys(merges)
    method = _first_of_model(df, "method")
    arm = {t: t.split(":")[0] for t, _ in live}
    lang = {t: t.split("-")[-1] if t.startswith("mt:") else t[3:] for t, _ in live}
    unit = {t: tv.metric for t, tv in live}
    task = out["task"].tolist()
    return pd.DataFrame({"merge": np.array(names, dtype=object)[m], "set": np.array(sets, dtype=object)[m],
                         "method": np.array([method_label(n, str(method.get(n))) for n in names], dtype=object)[m],
                         "arm": [arm[t] for t in task], "task": task, "language": [lang[t] for t in task],
                         "unit": [unit[t] for t in task], "gap": out["gap"].to_numpy(), "share": out["share"].to_numpy()},
                        columns=cols)


def _expert_key(task: str) -> tuple[str, str]:
    """The (task kind, language) expert_of passes to analysis.expert_for for a task."""
    kind, rest = task.split(":")
    return kind, rest.split("-")[-1]


def _set_keys(merges: dict[str, list[str]]) -> list[str]:
    """set_key of every merge, in order, once per distinct constituent list."""
    memo: dict[tuple, str] = {}
    out = []
    for c in merges.values():
        k = tuple(c)
        if k not in memo:
            memo[k] = set_key(c)
        out.append(memo[k])
    return out


def _first_of_model(df: pd.DataFrame, column: str) -> dict:
    """model -> `column` on its first row (df.drop_duplicates('model') without hashing every row's name)."""
    codes, models = pd.factorize(df["model"])
    _, first = np.unique(codes, return_index=True)          # codes number the models in order of first appearance
    return dict(zip(list(models), df[column].iloc[first].tolist()))


def _share(value: float, tv) -> float:
    from .analysis import normalized

    if tv.floor_value is None or tv.expert_value is None:
        return float("nan")
    return float(normalized(value, tv.floor_value, tv.expert_value, tv.higher_is_better))


def merge_arm_gaps(task_gaps: pd.DataFrame) -> pd.DataFrame:
    """One row per (merge, arm): the mean of merge_task_gaps over the arm's tasks, in the arm's unit (never a mean
    across arms). Columns: merge, set, method, arm, unit, gap, n_tasks."""
    cols = ["merge", "set", "method", "arm", "unit", "gap", "n_tasks"]
    if task_gaps.empty:
        return pd.DataFrame(columns=cols)
    g = task_gaps.groupby(["merge", "set", "method", "arm"])
    out = g.agg(gap=("gap", "mean"), n_tasks=("gap", "count")).reset_index()
    units: list[set] = [set() for _ in range(len(out))]
    for i, u in zip(g.ngroup().to_numpy(), task_gaps["unit"].tolist()):  # ngroup numbers groups in agg's order
        units[i].add(u)
    out["unit"] = ["/".join(sorted(u)) for u in units]
    return out[cols]


def own_share(df: pd.DataFrame, merges: dict[str, list[str]], tasks: dict, scored_rows: pd.DataFrame | None = None) -> pd.Series:
    """Per merge: the mean, over the live tasks where it has a constituent expert, of analysis.scored's normalized
    score (the share of the expert's gain over the untrained floor it keeps, 100 = the expert, 0 = the floor).
    scored_rows: analysis.scored(df, tasks) where the caller has it (each row depends on its own model only)."""
    from .analysis import experts_of, scored

    s = (scored(df, tasks) if scored_rows is None else scored_rows) if not df.empty else pd.DataFrame()
    if s.empty:
        return pd.Series(dtype=float)
    s = s[s.model.isin(list(merges))]
    if s.empty:
        return pd.Series(dtype=float)
    tcode, tnames = pd.factorize(s["task"])
    mcode, mnames = pd.factorize(s["model"])
    order = {m: i for i, m in enumerate(merges)}
    experts = experts_of(merges, [_expert_key(t) for t in tnames])                  # (merges, tasks of s)
    has = np.array([[e is not None for e in row] for row in experts], dtype=bool).reshape(experts.shape)
    pos = np.array([order[m] for m in mnames], dtype=np.intp)
    s = s[s.live.to_numpy(dtype=bool) & has[pos[mcode], tcode]]
    return s.groupby("model")["norm"].mean()


SET_DIAGNOSTIC = re.compile(r"^(cka_linear|cka_debiased|cka_rbf|neuron_jaccard_lape|neuron_jaccard_ap|task_cosine|"
                            r"sign_conflict|sign_conflict_trim|sign_conflict_set|sign_conflict_set_trim|loss_barrier):")


def set_diagnostics(diag: pd.DataFrame, merges: dict[str, list[str]]) -> pd.DataFrame:
    """One row per constituent set: the mean over its merges of every pair diagnostic (analysis.merge_diagnostics'
    columns that describe the constituents, not the merge: the merge-to-constituent CKA is left out)."""
    if diag.empty:
        return pd.DataFrame()
    cols = [c for c in diag.columns if SET_DIAGNOSTIC.match(c)]
    d = diag[cols].copy()
    key = dict(zip(merges, _set_keys(merges)))
    d["set"] = [key.get(m) for m in d.index.tolist()]
    g = d.dropna(subset=["set"]).groupby("set")
    lo, hi = g.min(), g.max()
    # where every merge of a set holds the same value (a property of the constituents), that value itself: a mean of
    # k equal floats can differ from it in the last bit, and would change with every new merge of the set
    return g.mean().where(lo != hi, lo)


def set_points(mgaps: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, method, set): the mean gap over that method's merges of the set, and how many merges."""
    if mgaps.empty:
        return pd.DataFrame(columns=["arm", "method", "set", "gap", "merges"])
    return (mgaps.groupby(["arm", "method", "set"]).agg(gap=("gap", "mean"), merges=("merge", "count")).reset_index())


def _call(fn, *args):
    """fn(*args): the memo of a caller that keeps no cache (a site build passes sitecache.Memo)."""
    return fn(*args)


def correlations(points: pd.DataFrame, sdiag: pd.DataFrame, seed: int, covariates: pd.DataFrame | None = None,
                 memo=_call) -> pd.DataFrame:
    """Tidy: per arm and diagnostic, one row per method with at least MIN_SETS sets (Spearman over sets, bootstrap
    interval over sets, permutation p-value, and the partial rho on the set's covariates where given), and one
    pooled row over those methods ('all methods': rankstats.stratified_spearman over the sets they all cover).
    n is always the number of independent constituent sets. memo(fn, *args) calls each correlation (a cache
    keeps those whose points are unchanged)."""
    rows = []
    if points.empty or sdiag.empty:
        return pd.DataFrame(rows)
    for arm, pa in points.groupby("arm"):
        wide = pa.pivot_table(index="set", columns="method", values="gap")   # sets sorted
        count = pa.pivot_table(index="set", columns="method", values="merges", aggfunc="sum").reindex(wide.index)
        methods = [m for m in wide.columns if wide[m].notna().sum() >= MIN_SETS]
        diag = sdiag.reindex(wide.index)   # a set without points has no y; one without diagnostics no x
        cov = covariates.reindex(wide.index).to_numpy(dtype=float) if covariates is not None else None
        has_cov = ~np.isnan(cov).any(axis=1) if cov is not None else None
        for d in sdiag.columns:
            xv = diag[d].to_numpy(dtype=float)
            for m in methods:
                yv = wide[m].to_numpy(dtype=float)
                ok = ~np.isnan(xv) & ~np.isnan(yv)
                c = memo(rankstats.correlate, xv[ok], yv[ok], seed)
                part = {}
                if cov is not None and (ok & has_cov).sum() >= 6:
                    okc = ok & has_cov
                    part = memo(rankstats.partial_correlate, xv[okc], yv[okc], cov[okc], seed)
                rows.append({"arm": arm, "diagnostic": d, "method": m, "n": c["n"],
                             "merges": int(count[m].to_numpy(dtype=float)[ok].sum()),
                             **{k: c[k] for k in ("rho", "rho_lo", "rho_hi", "rho_p", "tau", "tau_lo", "tau_hi", "tau_p")},
                             **{k: part.get(k) for k in ("partial_rho", "partial_lo", "partial_hi", "partial_p")}})
            if len(methods) >= 2:
                ys = wide[methods].to_numpy(dtype=float).T
                ok = ~np.isnan(xv) & ~np.isnan(ys).any(axis=0)
                if ok.sum() >= MIN_SETS:
                    s = memo(rankstats.stratified_spearman, xv[ok], ys[:, ok], seed)
                    rows.append({"arm": arm, "diagnostic": d, "method": POOLED, "n": s["n"],
                                 "merges": int(np.nansum(count[methods].to_numpy(dtype=float)[ok])),
                                 **{k: s[k] for k in ("rho", "rho_lo", "rho_hi", "rho_p")}, "strata": s["strata"]})
    out = pd.DataFrame(rows)
    num = [c for c in out.columns if c not in ("arm", "diagnostic", "method")]
    return out.astype({c: float for c in num}) if not out.empty else out


def detected(lo, hi, p=None) -> str:
    """'detected' when the 95% interval excludes zero and, where a permutation p-value is given, p < 0.05 too;
    else 'not detected'. The two can disagree when most sets tie on the diagnostic (a loss barrier of zero for
    most pairs): the percentile bootstrap of a rank correlation is then unreliable, and the claim is not made."""
    if lo is None or hi is None or lo != lo or hi != hi:
        return "n/a"
    if not (lo > 0 or hi < 0):
        return "not detected"
    if p is not None and p == p and p >= 0.05:
        return "not detected (interval and permutation test disagree)"
    return "detected"


def power_table(points: pd.DataFrame, seed: int, memo=_call) -> list[dict]:
    """Per arm and method with at least MIN_SETS sets: n of sets and the smallest population Spearman correlation
    the set-level test detects at 80% power (two-sided, 5%), by simulation (rankstats.detectable_rho)."""
    out = []
    if points.empty:
        return out
    for (arm, m), g in points.groupby(["arm", "method"]):
        n = int(g["gap"].notna().sum())
        if n >= MIN_SETS:
            out.append({"arm": arm, "method": m, "n_sets": n, "detectable_rho": memo(rankstats.detectable_rho, n, seed)})
    return out


def set_covariates(merges: dict[str, list[str]], per_merge: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per constituent set: the mean URIEL distance and script mismatch of its experts' languages.
    per_merge: analysis.merge_covariates(merges) where the caller has it."""
    from .analysis import merge_covariates

    cov = merge_covariates(merges) if per_merge is None else per_merge
    if cov.empty:
        return cov
    key = dict(zip(merges, _set_keys(merges)))
    return cov.assign(set=[key[m] for m in cov.index]).groupby("set").first()


def headline(corr: pd.DataFrame, diagnostic: str = "cka_linear:all") -> list[dict]:
    """The site's headline rows: per arm, the pooled set-level correlation of a diagnostic with the gap."""
    if corr.empty:
        return []
    h = corr[(corr.diagnostic == diagnostic) & (corr.method == POOLED)]
    return [{"arm": r.arm, "rho": r.rho, "lo": r.rho_lo, "hi": r.rho_hi, "p": r.rho_p, "n": int(r.n), "merges": int(r.merges),
             "verdict": detected(r.rho_lo, r.rho_hi, r.rho_p)} for r in h.itertuples()]


def tables(df: pd.DataFrame, merges: dict[str, list[str]], tasks: dict, diag: pd.DataFrame, seed: int,
           scored_rows: pd.DataFrame | None = None, merge_cov: pd.DataFrame | None = None, memo=_call,
           set_diag: pd.DataFrame | None = None, task_gaps: pd.DataFrame | None = None,
           shares: pd.Series | None = None) -> dict:
    """Everything set-level in one call: merge gaps per arm, set points, set diagnostics, correlations, power.
    scored_rows: analysis.scored(df, tasks), merge_cov: analysis.merge_covariates(merges), set_diag:
    set_diagnostics(diag, merges), task_gaps: merge_task_gaps(df, merges, tasks), shares: own_share(df, merges,
    tasks), where the caller has them; memo: see correlations."""
    tg = merge_task_gaps(df, merges, tasks) if task_gaps is None else task_gaps
    mg = merge_arm_gaps(tg)
    pts = set_points(mg)
    sd = set_diagnostics(diag, merges) if set_diag is None else set_diag
    cov = set_covariates(merges, merge_cov) if merges else None
    corr = correlations(pts, sd, seed, cov, memo)
    own = own_share(df, merges, tasks, scored_rows) if shares is None else shares
    return {"merge_task_gaps": tg, "merge_arm_gaps": mg, "own_share": own, "set_points": pts, "set_diagnostics": sd,
            "set_correlations": corr, "power": power_table(pts, seed, memo), "headline": headline(corr)}
