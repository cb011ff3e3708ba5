"""Merge gaps, the documented aggregate (issue 12.6: over live tasks, the share of the expert's gain over the
untrained floor that a model keeps), and the correlation between constituents' representational similarity (CKA)
and merge gaps across merges (the question of Aycock et al. 2026 and Gain et al. 2026)."""

from __future__ import annotations

import math
import operator
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from . import rankstats, schema

PRIMARY = {"lm": "bits_per_byte", "mt": "chrf++", "mc": "acc"}


ROW_FIELDS = ("task", "language", "metric", "value", "stderr", "ci_low", "ci_high", "n", "higher_is_better", "signature")
MODEL_FIELDS = ("model", "kind", "arm", "method", "status")
FLOAT_FIELDS = ("value", "stderr", "ci_low", "ci_high")


_ROW_GETTER = operator.attrgetter(*ROW_FIELDS)


def tidy_rows(results: list[schema.ResultsFile]) -> tuple[dict[str, np.ndarray], list[int]]:
    """The tidy rows of results files, all at once: (columns MODEL_FIELDS + ROW_FIELDS, each file's rows consecutive
    and in its order; each file's number of rows). Strings as object arrays, None as NaN in the float columns; n is
    int and higher_is_better bool unless a row lacks them."""
    lens = [len(r.rows) for r in results]
    out = {}
    for f in MODEL_FIELDS:
        a = np.empty(len(results), dtype=object)
        a[:] = [r.status if f == "status" else getattr(r.model, "name" if f == "model" else f) for r in results]
        out[f] = np.repeat(a, lens)
    k = sum(lens)
    columns = [[] for _ in ROW_FIELDS]  # each file's rows transposed apart (one transpose of all rows is slower)
    for r in results:
        if r.rows:
            for col, vals in zip(columns, zip(*map(_ROW_GETTER, r.rows))):
                col.extend(vals)
    for f, vals in zip(ROW_FIELDS, columns):
        if f in FLOAT_FIELDS:
            out[f] = np.array([np.nan if v is None else v for v in vals] if None in vals else vals, dtype=float)
        elif f in ("n", "higher_is_better") and None not in vals:
            out[f] = np.array(vals, dtype=int if f == "n" else bool)
        else:
            a = np.empty(k, dtype=object)
            a[:] = vals
            out[f] = a
    return out, lens


def tidy_frame(blocks: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """The tidy frame of tidy_rows' columns (blocks of them), concatenated in order; string columns stay object arrays (fast to
    iterate; pandas' Arrow strings cost a microsecond per element in Python loops), n is int and higher_is_better
    bool unless a row lacks them, task_kind is the task's part before ':'."""
    if not blocks:
        return pd.DataFrame()
    cols = {f: blocks[0][f] if len(blocks) == 1 else np.concatenate([b[f] for b in blocks]) for f in MODEL_FIELDS + ROW_FIELDS}
    if not len(cols["task"]):
        return pd.DataFrame()
    for f in ("n", "higher_is_better"):
        if cols[f].dtype == object and not pd.isna(cols[f]).any():
            cols[f] = cols[f].astype(int if f == "n" else bool)
    codes, uniques = pd.factorize(cols["task"])
    cols["task_kind"] = np.array([t.split(":")[0] for t in uniques], dtype=object)[codes]
    # copy=False: each column stays its own array (the default copies the object columns into one 2-D block, a
    # third of a second for a million rows)
    return pd.DataFrame({f: pd.Series(v, dtype=v.dtype, copy=False) for f, v in cols.items()}, copy=False)


def tidy(results: list[schema.ResultsFile]) -> pd.DataFrame:
    """One row per (model, task, metric) with the model's metadata."""
    return tidy_frame([tidy_rows(results)[0]])


def primary(df: pd.DataFrame) -> pd.DataFrame:
    """The rows on their task kind's primary metric (PRIMARY)."""
    kcode, kinds = pd.factorize(df["task_kind"])
    mcode, metrics = pd.factorize(df["metric"])
    mpos = {m: i for i, m in enumerate(metrics)}
    want = np.array([mpos.get(PRIMARY.get(k), -2) for k in kinds] + [-2])  # a missing task kind (-1): never kept
    return df[mcode == want[kcode]]


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
    mcode, _ = pd.factorize(df["model"])
    tcode, tnames = pd.factorize(df["task"])
    width = len(tnames) + 1                                  # + a column for a missing task (code -1)
    value = df["value"].to_numpy(dtype=float)
    rows = _first(mcode, tcode, width, np.flatnonzero(_is_metric(df, tcode, tnames, metric_of) & ~np.isnan(value)))
    s = df[["model", "task", "task_kind", "metric", "value", "stderr"]].iloc[rows].reset_index(drop=True)
    srows = np.flatnonzero(_is_metric(df, tcode, tnames, signal_of))
    carries = np.full(len(mcode) and (mcode.max() + 1) * width, -1, np.int8)     # (model, task) -> -1 none, 0, 1
    last = len(mcode) - 1 - _first(mcode[::-1], tcode[::-1], width, len(mcode) - 1 - srows[::-1])  # repeated: the last
    carries[mcode[last] * width + tcode[last]] = (pd.to_numeric(df["ci_low"].iloc[last], errors="coerce") > 0).to_numpy(dtype=bool)
    got = carries[mcode[rows] * width + tcode[rows]]
    live = np.array([t in tasks and tasks[t].live for t in tnames] + [False], dtype=bool)
    has_signal = np.array([t in signal_of for t in tnames] + [False], dtype=bool)
    s["live"] = live[tcode[rows]]
    s["signal"] = np.where(got < 0, None, got == 1).tolist()
    s["credited"] = ~has_signal[tcode[rows]] | (got == 1)
    s["norm"] = math.nan
    for task, g in s[s["live"]].groupby("task"):
        tv = tasks[task]
        norm = normalized(g["value"].to_numpy(dtype=float), tv.floor_value, tv.expert_value, tv.higher_is_better)
        s.loc[g.index, "norm"] = np.where(g["credited"].to_numpy(dtype=bool), norm, np.minimum(norm, 0.0))
    return s[cols]


def _is_metric(df: pd.DataFrame, tcode: np.ndarray, tnames, metric_of: dict[str, str]) -> np.ndarray:
    """Rows whose metric is metric_of[their task] (df["metric"] == df["task"].map(metric_of), on codes)."""
    kcode, knames = pd.factorize(df["metric"])
    kpos = {k: i for i, k in enumerate(knames)}
    want = np.array([kpos.get(metric_of.get(t), -2) for t in tnames] + [-2])
    return kcode == want[tcode]


def _first(mcode: np.ndarray, tcode: np.ndarray, width: int, rows: np.ndarray) -> np.ndarray:
    """Of `rows` (increasing), the first row of each (model, task) code pair, in order (drop_duplicates)."""
    _, first = np.unique(mcode[rows] * width + tcode[rows], return_index=True)
    return rows[np.sort(first)]


def group_means(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Each key's mean of its non-NaN values (NaN where it has none), indexed by the sorted keys: numpy's sum of the
    key's values in their order over their count, so that a key's mean does not depend on the other keys' rows
    (pandas' grouped mean of the same values can differ in the last bit with them, measured)."""
    codes, uniq = pd.factorize(keys, sort=True)
    v = values.to_numpy(dtype=float)
    ok = ~np.isnan(v) & (codes >= 0)
    order = np.argsort(codes[ok], kind="stable")
    c, v = codes[ok][order], v[ok][order]
    out = np.full(len(uniq), np.nan)
    if len(v):
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        out[c[starts]] = np.add.reduceat(v, starts) / np.diff(np.r_[starts, len(v)])
    return pd.Series(out, index=pd.Index(uniq, name=keys.name))


def leaderboard(df: pd.DataFrame, tasks: dict, scored_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide table: one row per model; the babel score (mean normalized score over the live tasks it has), the
    number of live tasks behind it, mean bits per byte over live lm tasks and mean chrF++ over the live mt tasks
    whose metric is chrF++, and one column per task (its shown metric, live or not); best first, models without
    a live score last. tasks: task -> validity.TaskValidity; scored_rows: scored(df, tasks) where the caller has it."""
    s = scored(df, tasks) if scored_rows is None else scored_rows
    if s.empty:
        return pd.DataFrame(columns=["babel_score", "n_live", "mean_bpb", "mean_chrf"])
    live = s[s.live]
    wide = s.pivot_table(index="model", columns="task", values="value")
    out = pd.DataFrame({
        "babel_score": group_means(live["model"], live["norm"]),
        "n_live": live.groupby("model")["norm"].count(),
        "mean_bpb": group_means(*(live.loc[live.metric == "bits_per_byte", c] for c in ("model", "value"))),
        "mean_chrf": group_means(*(live.loc[live.metric == "chrf++", c] for c in ("model", "value"))),
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


def value_table(df: pd.DataFrame, metric_of: dict[str, str]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Each model's value of each task's metric: (model -> row, values (n models, n tasks), present (same shape)),
    task columns in metric_of's order; a repeated (model, task, metric) keeps its last row, as a dict would.
    A present value may be NaN (stored so)."""
    mcode, models = pd.factorize(df["model"])
    tcode, tasks = pd.factorize(df["task"])
    kcode, metrics = pd.factorize(df["metric"])
    tpos, kpos = {t: i for i, t in enumerate(tasks)}, {k: i for i, k in enumerate(metrics)}
    col, want = np.full(len(tasks) + 1, -1), np.full(len(tasks) + 1, -2)  # index -1 (a missing task): never kept
    for j, (t, m) in enumerate(metric_of.items()):
        if t in tpos and m in kpos:
            col[tpos[t]], want[tpos[t]] = j, kpos[m]
    keep = np.flatnonzero((kcode == want[tcode]) & (mcode >= 0))
    val = np.full((len(models), len(metric_of)), np.nan)
    has = np.zeros(val.shape, bool)
    val[mcode[keep], col[tcode[keep]]] = df["value"].to_numpy(dtype=float)[keep]
    has[mcode[keep], col[tcode[keep]]] = True
    return {m: i for i, m in enumerate(models)}, val, has


@lru_cache(maxsize=1 << 16)
def _expert_for(constituents: tuple[str, ...], task_kind: str, language: str) -> str | None:
    return expert_for(list(constituents), task_kind, language)


def experts_of(merges: dict[str, list[str]], keys: list[tuple[str, str]]) -> np.ndarray:
    """(n merges, n keys) object array: for each merge (dict order) and (task kind, language) key, expert_for's
    constituent expert or None; computed once per distinct constituent list, however many merges share it."""
    codes: dict[tuple, int] = {}
    per_merge = np.array([codes.setdefault(tuple(c), len(codes)) for c in merges.values()], dtype=np.intp)
    table = np.empty((len(codes), len(keys)), dtype=object)
    for cons, i in codes.items():
        table[i] = [_expert_for(cons, k, l) for k, l in keys]
    return table[per_merge] if len(per_merge) else np.empty((0, len(keys)), dtype=object)



def merge_gaps(df: pd.DataFrame, merges: dict[str, list[str]], references=("mixed", "mt-all")) -> pd.DataFrame:
    """Gap of each merge on each task's primary metric against its constituent expert and each reference, one row
    per (merge, task, reference): merges in their order, a merge's tasks sorted, the expert first, then
    `references` in order (a reference without a score on the task gives no row).

    gap = merge - reference for higher-is-better metrics and reference - merge for bits per byte, so a
    negative gap always means the merge is worse; rel_gap_pct = 100 * gap / |reference|.
    merges: merge name -> constituent references. Columns: merge, task, task_kind, language, reference,
    ref_model, merge_value, ref_value, gap, rel_gap_pct (none when there is no row).
    """
    p = primary(df[["model", "task", "task_kind", "metric", "language", "value"]]) if not df.empty else df
    if p.empty or not merges:
        return pd.DataFrame()
    model = p["model"].to_numpy(dtype=object)
    task = p["task"].to_numpy(dtype=object)
    mcode, models = pd.factorize(model)
    tcode, tasks = pd.factorize(task)
    values = p["value"].to_numpy(dtype=float)
    val = np.full((len(models), len(tasks)), np.nan)
    has = np.zeros((len(models), len(tasks)), bool)
    val[mcode, tcode], has[mcode, tcode] = values, True      # a repeated (model, task): the last row, as a dict
    lang_of = dict(zip(task.tolist(), p["language"].to_numpy(dtype=object).tolist()))  # the last row's language
    kinds = np.array([t.split(":")[0] for t in tasks], dtype=object)
    langs = np.array([lang_of[t] for t in tasks], dtype=object)
    model_index = {m: i for i, m in enumerate(models)}
    order = {m: i for i, m in enumerate(merges)}
    rows = np.flatnonzero(np.fromiter((m in order for m in model), bool, len(model)))  # the merges' own rows
    m_order = np.array([order[m] for m in model[rows]], dtype=np.intp)
    t_rank = np.argsort(np.argsort(tasks, kind="stable"), kind="stable")[tcode[rows]]
    sort = np.lexsort((rows, t_rank, m_order))                # merge order, then sorted tasks (stable)
    rows, m_order = rows[sort], m_order[sort]
    mi, ti = mcode[rows], tcode[rows]
    mv = val[mi, ti]
    keys = sorted(set(zip(kinds.tolist(), langs.tolist())))
    key_of = {k: j for j, k in enumerate(keys)}
    task_key = np.array([key_of[(k, l)] for k, l in zip(kinds.tolist(), langs.tolist())], dtype=np.intp)
    expert = experts_of(merges, keys)[m_order, task_key[ti]]
    parts = []
    for r, (ref_kind, names) in enumerate([("expert", expert)] + [(ref, np.full(len(rows), ref, dtype=object)) for ref in references]):
        ref_i = np.array([model_index.get(n, -1) if n is not None else -1 for n in names], dtype=np.intp)
        ok = ref_i >= 0
        ok[ok] = has[ref_i[ok], ti[ok]]
        sel = np.flatnonzero(ok)
        rv = val[ref_i[sel], ti[sel]]
        mt = kinds[ti[sel]] == "mt"
        gap = np.where(mt, mv[sel] - rv, rv - mv[sel])
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(rv != 0, 100.0 * gap / np.abs(rv), math.nan)
        parts.append(pd.DataFrame({"_pos": sel, "_ref": r, "merge": model[rows[sel]], "task": tasks[ti[sel]],
                                   "task_kind": kinds[ti[sel]], "language": langs[ti[sel]], "reference": ref_kind,
                                   "ref_model": names[sel], "merge_value": mv[sel], "ref_value": rv, "gap": gap, "rel_gap_pct": rel}))
    out = pd.concat(parts, ignore_index=True).sort_values(["_pos", "_ref"], kind="stable")
    if out.empty:
        return pd.DataFrame()
    return out.drop(columns=["_pos", "_ref"]).reset_index(drop=True)


def merge_gap_records(df: pd.DataFrame, merges: dict[str, list[str]], references=("mixed", "mt-all")) -> list[dict]:
    """merge_gaps as a list of row dicts (Python scalars)."""
    return gap_records(merge_gaps(df, merges, references))


def gap_records(gaps: pd.DataFrame) -> list[dict]:
    """A merge_gaps frame as row dicts of Python scalars (DataFrame.to_dict('records'), without its per-cell cost)."""
    cols = list(gaps.columns)
    return [dict(zip(cols, row)) for row in zip(*(gaps[c].to_numpy(dtype=object).tolist() for c in cols))]


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
    draws = rng.integers(0, len(x), (n_boot, len(x)))  # the rows n_boot calls of rng.integers(0, n, n) would give
    draws = draws[(np.ptp(x[draws], axis=1) != 0) & (np.ptp(y[draws], axis=1) != 0)]   # a constant resample: skipped
    # every resample's least-squares line at once (slope = centred cross product / centred sum of squares: the fit
    # np.polyfit(x[i], y[i], 1) makes, to rounding) and its Spearman rho from the resample's ranks
    bx, by = x[draws], y[draws]
    cx, cy = bx - bx.mean(1, keepdims=True), by - by.mean(1, keepdims=True)
    b = (cx * cy).sum(1) / (cx * cx).sum(1)
    a = by.mean(1) - b * bx.mean(1)
    preds = a[:, None] + b[:, None] * grid
    rhos = rankstats._pearson(rankstats._resample_ranks(x, draws), rankstats._resample_ranks(y, draws))
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
        at = list(zip(cka["layer"].tolist(), n_layers.tolist()))
        group = {k: hidden_group(int(k[0]), int(k[1])) for k in set(at)}   # once per distinct (layer, layers)
        cka["group"] = [group[k] for k in at]
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

    if not merges:
        return pd.DataFrame({}).T
    memo: dict[tuple, dict] = {}
    of: dict[tuple, dict] = {}  # by constituents (ten thousand merges have a few hundred distinct lists)
    rows = []
    for c in merges.values():
        t = tuple(c)
        if t not in of:
            langs = tuple(merge_languages(c))
            if langs not in memo:
                memo[langs] = set_covariates(list(langs))
            of[t] = memo[langs]
        rows.append(of[t])
    return pd.DataFrame(rows, index=pd.Index(list(merges)))


def gap_by_reference(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per merge (rows) and reference (columns): the mean relative gap in percent over the merge's tasks."""
    if gaps.empty:
        return pd.DataFrame()
    return gaps.groupby(["merge", "reference"])["rel_gap_pct"].mean().unstack()


LOLO_FEATURES = ("cka_linear:all", "cka_debiased:all", "cka_rbf:all", "task_cosine:all", "sign_conflict_trim:all",
                 "loss_barrier:all", "neuron_jaccard_ap:all", "expert_cka")


def leave_one_language_out(gaps: pd.DataFrame, diag: pd.DataFrame, sim: pd.DataFrame, arm: str, alpha: float = 1.0) -> dict:
    """Predict each (merge, task) gap to its constituent expert in one arm (task kind 'lm' or 'mt'; the gap in that
    arm's unit, bits per byte or chrF++, never pooled across arms) from diagnostics alone (the merge's
    LOLO_FEATURES, with expert_cka the merge's mean CKA to that expert) by ridge regression on standardised
    features, trained on every other language and scored on the held-out one. Reports the held-out mean absolute
    error beside that of predicting the training mean, per language and pooled."""
    g = gaps[(gaps.reference == "expert") & (gaps.task_kind == arm)][["merge", "task", "language", "ref_model", "gap"]].dropna()
    g = g.rename(columns={"gap": "rel_gap_pct"})  # the target column below; here an absolute gap in the arm's unit
    if g.empty or diag.empty:
        return {"rows": [], "mae": None, "baseline_mae": None, "n": 0, "arm": arm}
    mc = sim[(sim.relation == "merge-constituent") & (sim.metric == "cka_linear")] if not sim.empty else sim
    ecka = mc.groupby(["merge", "b"])["value"].mean() if not mc.empty else pd.Series(dtype=float)
    g = g.join(diag, on="merge")
    g["expert_cka"] = (ecka.reindex(pd.MultiIndex.from_arrays([g["merge"], g["ref_model"]])).to_numpy(dtype=float)
                       if len(ecka) else np.nan)
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
    return {"rows": rows, "features": feats, "n": n, "alpha": alpha, "arm": arm,
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
                       suite: dict, diag: pd.DataFrame | None = None) -> dict:
    """The tidy tables of the diagnostics analysis, derived from stored rows (the site shows them, `analyze`
    prints them): per-merge diagnostics, gaps by reference, covariates, the leave-one-language-out predictor per
    arm, neuron counts by layer and the mixed -> mt-en-<x> movement. Correlations are set-level: inference.py.
    diag: merge_diagnostics(sim), where the caller has it."""
    diag = merge_diagnostics(sim) if diag is None else diag
    gapref = gap_by_reference(gaps)
    cov = merge_covariates(merges) if merges else pd.DataFrame(columns=["uriel_distance", "script_mismatch"])
    lolo = {arm: leave_one_language_out(gaps, diag, sim, arm) if not gaps.empty else {"rows": [], "mae": None, "n": 0, "arm": arm}
            for arm in ("lm", "mt")}
    targets = [l for l in suite["languages"] if l != "en"]
    layers = neuron_layers(neurons) if not neurons.empty else pd.DataFrame()
    movement = neuron_movement(neurons, targets) if not neurons.empty else pd.DataFrame()
    return {"diagnostics": diag, "gap_by_reference": gapref, "covariates": cov, "lolo": lolo,
            "neuron_layers": layers, "neuron_movement": movement}
