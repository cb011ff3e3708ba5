"""The method leaderboard (issue 15.5), derived at site-build time from methods/<id>/<scenario>/method.json: per
method the mean normalized score over scenarios with a bootstrap interval over scenarios (a method whose interval
does not lie above 0, the untrained floor, is marked and not ranked), translation related versus divergent-involving
target sets with an unpaired bootstrap difference, paired win rates against every other method, mean rank with a
rank interval, and which constituent-set diagnostics predict where it fails (Spearman over scenarios). Pure
functions over the records, and one loader."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import rankstats, schema, store
from .inference import set_key

N_BOOT = 1000
RECORD = "method.json"
NOT_REPRODUCED = "checkpoints, not reproduced"
# Translation related versus divergent-involving (issue 15.5), derived from the scenario categories of
# babel-mini-scenarios-v1 (scenarios.CATEGORY; the scenario set is unchanged): related = every target a Latin-script
# Romance or Germanic language; divergent-involving = at least one target (ru, ar) of another family and script than
# the rest: the mixed pairs and the one divergent pair together, since the divergent category alone is one scenario.
RELATED = ("translation related",)
DIVERGENT_INVOLVING = ("translation mixed", "translation divergent")
GROUPING = ("related: the scenarios of category 'translation related' (the pairs of de, fr, es, it and the related "
            "group mt-related: every target a Latin-script Romance or Germanic language); divergent-involving: the "
            "categories 'translation mixed' and 'translation divergent' (at least one target, ru or ar, of another "
            "family and script than the others); mt-all ('all translation') is in neither")


def load(root: Path, suite_sha256: str, preset: str) -> tuple[list[schema.MethodScenarioFile], dict[str, dict]]:
    """Every method record under root for this suite and preset, and each method's spec (methods/<id>/spec.json)."""
    recs, specs = [], {}
    if not Path(root).is_dir():
        return recs, specs
    for f in sorted(Path(root).glob(f"*/*/{RECORD}")):
        r = schema.MethodScenarioFile.model_validate(store.read_json(f))
        if (r.suite_sha256 == suite_sha256 and r.preset == preset and r.method == f.parent.parent.name
                and r.scenario == f.parent.name):
            recs.append(r)
            s = f.parent.parent / "spec.json"
            if r.method not in specs and s.is_file():
                specs[r.method] = store.read_json(s)
    return recs, specs


def kind(r: schema.MethodScenarioFile) -> str:
    """How a record was made: merged and tuned here from a maintainers' or a submission's spec, or a submitted
    checkpoint scored as given."""
    if not r.reproduced:
        return NOT_REPRODUCED
    return "submission, reproduced here" if r.submission else "reproduced here"


def table(recs: list[schema.MethodScenarioFile]) -> pd.DataFrame:
    """One row per (method, scenario): category, score (NaN when failed or with no live task), chosen parameters,
    how it was made (kind), the submitted checkpoint's hashes, and every merge made for it (points: parameters,
    identity, dev score, error, chosen)."""
    cols = ["method", "scenario", "category", "set", "score", "status", "error", "parameters", "dev_score", "results",
            "live", "grid_size", "tuned", "kind", "checkpoint", "points", "base", "limit"]
    rows = []
    for r in recs:
        p = r.points[r.chosen] if r.chosen is not None and r.points else None
        pts = [{"parameters": {**q.parameters, **q.model_parameters}, "identity": q.identity, "dev_score": q.dev_score,
                "error": q.error, "chosen": i == r.chosen} for i, q in enumerate(r.points)]
        rows.append({"method": r.method, "scenario": r.scenario, "category": r.category, "set": set_key(r.constituents),
                     "score": math.nan if r.score is None else r.score, "status": r.status, "error": r.error or "",
                     "parameters": {} if p is None else {**p.parameters, **p.model_parameters},
                     "dev_score": None if p is None else p.dev_score, "results": r.results, "live": r.live,
                     "grid_size": r.tuning.get("grid_size"), "tuned": len(r.points), "kind": kind(r),
                     "checkpoint": r.checkpoint or {}, "points": pts, "base": r.base, "limit": r.limit})
    return pd.DataFrame(rows, columns=cols)


def family_norms(ctx) -> tuple[dict[tuple[str, str], float], str]:
    """(base_norms of the published family results of ctx's suite and preset, the floor's name): the same
    normalization as the site's leaderboard, for `babelmerge methods board` (reads the results; I/O)."""
    from . import analysis, submissions, validity
    from .evaluate import docs_path

    files = sorted(Path(ctx.references_dir).glob(f"*/*/results/{ctx.results_name}"))
    res = [r for r in (submissions.read_results(f) for f in files) if r.status == "ok"]
    df = analysis.tidy(res)
    if df.empty:
        return {}, validity.rule(ctx.suite).floor
    docs = {f.parent.parent.name: schema.DocsFile.model_validate(store.read_json(docs_path(f)))
            for f in files if docs_path(f).exists()}
    tv, _ = validity.assess(df, ctx.suite, docs)
    return base_norms(analysis.scored(df, tv)), validity.rule(ctx.suite).floor


def base_norms(scored: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(model, task) -> normalized score, from analysis.scored of the published family results (live tasks only)."""
    if scored is None or scored.empty:
        return {}
    return {(m, t): float(v) for m, t, v in zip(scored["model"], scored["task"], scored["norm"]) if v == v}


def controls(df: pd.DataFrame, base_norm: dict[tuple[str, str], float], floor: str) -> pd.DataFrame:
    """df with two more columns: `control`, what each scenario score must beat, and `control_of`, where it comes
    from. The control is the scenario's base model (the model the merge starts from) scored on the same live tasks
    (the mean of its normalized scores, base_norm: (member, task) -> normalized score from the published family
    results of this suite and preset, so only for records on the full test split, limit None), or the floor (0, the
    untrained model) where that is higher, since a merge must beat both; 0 where the base is
    the floor itself (0 by the normalization's definition), and 0 (the floor) where the base's score is not known."""
    ctrl, src = [], []
    for base, live, limit in zip(df["base"], df["live"], df["limit"]):
        got = [base_norm.get((base, t)) for t in live]
        if base == floor:
            ctrl.append(0.0), src.append(f"{floor}, the floor")
        elif live and None not in got and (limit is None or limit != limit):  # both must be beaten: the larger
            b = float(np.mean(got))
            ctrl.append(max(b, 0.0)), src.append(base if b > 0 else f"{floor}, the floor (above {base}'s {b:.1f})")
        else:
            ctrl.append(0.0), src.append(f"{floor}, the floor: {base}'s score not known")
    return df.assign(control=ctrl, control_of=src)


def merge_files(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(method, scenario) -> its test results file, relative to the methods folder (<method>/<scenario>/<results>);
    the site copies each to method/<the same path> so that the method page links it. A results path that leaves its
    scenario folder is left out."""
    out = {}
    for m, sc, res in zip(df["method"], df["scenario"], df["results"]):
        if isinstance(res, str) and res and not res.startswith("/") and ".." not in Path(res).parts:
            out[(m, sc)] = f"{m}/{sc}/{res}"
    return out


def _interval(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    return (math.nan, math.nan) if boot.size == 0 else (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))


def ranks(wide: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method within each scenario (1 = best; ties share the mean rank), among the methods scored there."""
    return wide.rank(axis=1, ascending=False, method="average")


def _boot_means(v: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Means of n_boot resamples (with replacement) of v; empty when v has fewer than 2 values."""
    return v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1) if len(v) >= 2 else np.array([])


def translation_breakdown(df: pd.DataFrame, seed: int, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per method with a translation score: the mean over its related scenarios and over its divergent-involving
    ones (GROUPING), each with a 95% bootstrap interval over its scenarios, and related minus divergent-involving
    with an unpaired bootstrap interval (the two groups are different scenarios: each is resampled on its own);
    verdict: "not detected" when that interval includes 0, else which is higher; "too few scenarios" with fewer
    than 2 in a group."""
    cols = ["method", "n_related", "related", "related_lo", "related_hi", "n_divergent", "divergent", "divergent_lo",
            "divergent_hi", "difference", "difference_lo", "difference_hi", "verdict"]
    ok = df.dropna(subset=["score"])
    out = []
    for m, g in ok.groupby("method", sort=True):
        rng = np.random.default_rng([seed, zlib.crc32(str(m).encode())])  # a method's interval depends on its own records only
        r = g.loc[g.category.isin(RELATED), "score"].to_numpy(dtype=float)
        d = g.loc[g.category.isin(DIVERGENT_INVOLVING), "score"].to_numpy(dtype=float)
        if len(r) == 0 and len(d) == 0:
            continue
        br, bd = _boot_means(r, rng, n_boot), _boot_means(d, rng, n_boot)
        mean = lambda v: float(v.mean()) if len(v) else math.nan
        diff = mean(r) - mean(d)
        lo, hi = _interval(br - bd) if len(br) and len(bd) else (math.nan, math.nan)
        verdict = ("too few scenarios" if not (len(r) >= 2 and len(d) >= 2) else "not detected" if lo <= 0 <= hi
                   else "related higher" if lo > 0 else "divergent-involving higher")
        out.append({"method": m, "n_related": len(r), "related": mean(r), **dict(zip(("related_lo", "related_hi"), _interval(br))),
                    "n_divergent": len(d), "divergent": mean(d), **dict(zip(("divergent_lo", "divergent_hi"), _interval(bd))),
                    "difference": diff, "difference_lo": lo, "difference_hi": hi, "verdict": verdict})
    return pd.DataFrame(out, columns=cols)


def breakdown_lines(bd: pd.DataFrame) -> list[str]:
    """The translation breakdown as text, one line per method (for `babelmerge methods board` and the bench's row)."""
    f = lambda v, d=1: "n/a" if v is None or v != v else f"{v:.{d}f}"
    return [f"{r.method}: related {f(r.related)} [{f(r.related_lo)}, {f(r.related_hi)}] (n={r.n_related}); "
            f"divergent-involving {f(r.divergent)} [{f(r.divergent_lo)}, {f(r.divergent_hi)}] (n={r.n_divergent}); "
            f"difference {f(r.difference)} [{f(r.difference_lo)}, {f(r.difference_hi)}]: {r.verdict}"
            for r in bd.itertuples()]


def board_lines(recs: list[schema.MethodScenarioFile], seed: int, base_norm: dict | None = None,
                floor: str = "init-s0", n_boot: int = N_BOOT) -> list[str]:
    """`babelmerge methods board`: the leaderboard as text (tab-separated, a header line first), then the
    translation breakdown, one line per method, and how its groups are derived."""
    df = controls(table(recs), base_norm or {}, floor)
    f = lambda v, d=1: "n/a" if v is None or v != v else f"{v:.{d}f}"
    out = ["method\tscenarios\tmean\t95% interval\tover control\t95% interval\tmean rank\trank interval\tkind"]
    for r in summary(df, seed, n_boot).itertuples():
        rank = (f"{f(r.mean_rank, 2)}\t[{f(r.rank_lo, 2)}, {f(r.rank_hi, 2)}]" if r.ranked
                else "not ranked\t(not shown to beat its controls)")
        out.append(f"{r.method}\t{r.n}\t{f(r.mean)}\t[{f(r.lo)}, {f(r.hi)}]\t{f(r.over)}\t[{f(r.over_lo)}, "
                   f"{f(r.over_hi)}]\t{rank}\t{r.kind}")
    out.append(f"(control: each scenario's base model scored on the same tasks, or {floor} (0) where that is higher; 0 where the base is {floor}, or where "
               "its score is not known)")
    bd = breakdown_lines(translation_breakdown(df, seed, n_boot))
    if bd:
        out += ["", "translation, related versus divergent-involving (95% bootstrap over scenarios; the difference's "
                "unpaired):"] + bd + [f"({GROUPING})"]
    return out


def summary(df: pd.DataFrame, seed: int, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per method: scenarios scored, mean score with a 95% percentile-bootstrap interval over scenarios (one resample
    of the scenario set shared by all methods), the mean of score minus control (`controls`; 0, the floor, where df
    has no control column) with its interval under the same resamples, whether it is ranked (that interval lies above
    0: a method not shown to beat its controls is marked, not ranked), translation related and divergent-involving
    means (translation_breakdown), mean rank among the ranked methods scored in each scenario and its interval
    under the same resamples, and how it was made (kind); ranked methods first, each part best mean first."""
    cols = ["method", "n", "mean", "lo", "hi", "over", "over_lo", "over_hi", "ranked", "related", "divergent",
            "mean_rank", "rank_lo", "rank_hi", "kind"]
    ok = df.dropna(subset=["score"])
    if ok.empty:
        return pd.DataFrame(columns=cols)
    ok = ok.assign(over=ok["score"] - (ok["control"] if "control" in ok else 0.0))
    wide = ok.pivot_table(index="scenario", columns="method", values="score")
    over = ok.pivot_table(index="scenario", columns="method", values="over").reindex(index=wide.index, columns=wide.columns)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(wide), size=(n_boot, len(wide)))
    vals, ovals = wide.to_numpy(), over.to_numpy()

    def boot(v: np.ndarray) -> np.ndarray:
        has = np.isfinite(v)
        with np.errstate(invalid="ignore"):
            return np.nansum(np.where(has[idx], v[idx], 0), 1) / has[idx].sum(1)

    out = []
    for j, m in enumerate(wide.columns):
        lo, hi = _interval(boot(vals[:, j]))
        olo, ohi = _interval(boot(ovals[:, j]))
        out.append({"method": m, "n": int(np.isfinite(vals[:, j]).sum()), "mean": float(np.nanmean(vals[:, j])),
                    "lo": lo, "hi": hi, "over": float(np.nanmean(ovals[:, j])), "over_lo": olo, "over_hi": ohi,
                    "ranked": bool(olo > 0)})
    res = pd.DataFrame(out)
    ranked = [m for m, r in zip(res.method, res.ranked) if r]
    rk = ranks(wide[ranked]) if ranked else pd.DataFrame(index=wide.index)
    rank_of = {m: (float(np.nanmean(rk[m])), *_interval(boot(rk[m].to_numpy()))) for m in ranked}
    nan3 = (math.nan, math.nan, math.nan)
    res[["mean_rank", "rank_lo", "rank_hi"]] = [list(rank_of.get(m, nan3)) for m in res.method]
    bd = translation_breakdown(df, seed, n_boot).set_index("method")
    res["related"] = [bd["related"].get(m, math.nan) for m in res.method]
    res["divergent"] = [bd["divergent"].get(m, math.nan) for m in res.method]
    kinds = ok.groupby("method")["kind"].agg(lambda k: NOT_REPRODUCED if NOT_REPRODUCED in set(k) else sorted(set(k))[0])
    res["kind"] = [kinds[m] for m in res.method]
    return (res[cols].assign(_r=~res.ranked).sort_values(["_r", "mean"], ascending=[True, False], kind="stable")
            .drop(columns="_r").reset_index(drop=True))


def win_rates(df: pd.DataFrame, seed: int, n_boot: int = N_BOOT) -> pd.DataFrame:
    """For every ordered pair of methods: over the scenarios both scored, the share where the first scores higher
    (a tie counts one half), with a 95% bootstrap interval over those scenarios."""
    cols = ["method", "other", "n", "win_rate", "lo", "hi"]
    ok = df.dropna(subset=["score"])
    if ok.empty:
        return pd.DataFrame(columns=cols)
    wide = ok.pivot_table(index="scenario", columns="method", values="score")
    rng = np.random.default_rng(seed)
    out = []
    for a in wide.columns:
        for b in wide.columns:
            if a == b:
                continue
            both = wide[[a, b]].dropna()
            if both.empty:
                continue
            w = np.where(both[a] > both[b], 1.0, np.where(both[a] == both[b], 0.5, 0.0))
            boot = w[rng.integers(0, len(w), size=(n_boot, len(w)))].mean(1)
            out.append({"method": a, "other": b, "n": len(w), "win_rate": float(w.mean()), **dict(zip(("lo", "hi"), _interval(boot)))})
    return pd.DataFrame(out, columns=cols)


def failure_predictors(df: pd.DataFrame, set_diag: pd.DataFrame, seed: int, n_boot: int = N_BOOT,
                       min_n: int = 4) -> pd.DataFrame:
    """Per method and constituent-set diagnostic (inference.set_diagnostics: CKA, task-vector cosine, sign conflict,
    loss barrier, neuron overlap of the scenario's set): Spearman of the method's score with the diagnostic over
    its scenarios, a 95% bootstrap interval over scenarios, and whether the interval excludes zero."""
    cols = ["method", "diagnostic", "n", "rho", "lo", "hi", "predicts"]
    ok = df.dropna(subset=["score"])
    if ok.empty or set_diag is None or set_diag.empty:
        return pd.DataFrame(columns=cols)
    rng = np.random.default_rng(seed)
    out = []
    for m, g in ok.groupby("method"):
        g = g[g["set"].isin(set_diag.index)]
        for d in set_diag.columns:
            x = set_diag.loc[g["set"], d].to_numpy(dtype=float)
            y = g["score"].to_numpy(dtype=float)
            keep = np.isfinite(x) & np.isfinite(y)
            x, y = x[keep], y[keep]
            if len(x) < min_n or np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            rho = float(stats.spearmanr(x, y).statistic)
            ix = rng.integers(0, len(x), size=(n_boot, len(x)))
            xb, yb = x[ix], y[ix]
            varies = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)  # a resample with a constant side has no rho
            keep_ix = ix[varies]  # all resamples at once, ranked by counting (rankstats._resample_ranks: no sort each)
            lo, hi = _interval(rankstats._pearson(rankstats._resample_ranks(x, keep_ix), rankstats._resample_ranks(y, keep_ix)))
            out.append({"method": m, "diagnostic": d, "n": len(x), "rho": rho, "lo": lo, "hi": hi,
                        "predicts": bool(lo > 0 or hi < 0)})
    res = pd.DataFrame(out, columns=cols)
    return res.assign(a=res.rho.abs()).sort_values(["method", "a"], ascending=[True, False]).drop(columns="a") if not res.empty else res
