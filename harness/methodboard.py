"""The method leaderboard (issue 15.5), derived at site-build time from methods/<id>/<scenario>/method.json: per
method the mean normalized score over scenarios with a bootstrap interval over scenarios, translation related versus
divergent, paired win rates against every other method, mean rank with a rank interval, and which constituent-set
diagnostics predict where it fails (Spearman over scenarios). Pure functions over the records, and one loader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import schema, store
from .inference import set_key

N_BOOT = 1000
RECORD = "method.json"


def load(root: Path, suite_sha256: str, preset: str) -> tuple[list[schema.MethodScenarioFile], dict[str, dict]]:
    """Every method record under root for this suite and preset, and each method's spec (methods/<id>/spec.json)."""
    recs, specs = [], {}
    if not Path(root).is_dir():
        return recs, specs
    for f in sorted(Path(root).glob(f"*/*/{RECORD}")):
        r = schema.MethodScenarioFile.model_validate(store.read_json(f))
        if r.suite_sha256 == suite_sha256 and r.preset == preset and r.method == f.parent.parent.name:
            recs.append(r)
            s = f.parent.parent / "spec.json"
            if r.method not in specs and s.is_file():
                specs[r.method] = store.read_json(s)
    return recs, specs


def table(recs: list[schema.MethodScenarioFile]) -> pd.DataFrame:
    """One row per (method, scenario): category, score (NaN when failed or with no live task), chosen parameters."""
    rows = []
    for r in recs:
        p = r.points[r.chosen] if r.chosen is not None and r.points else None
        rows.append({"method": r.method, "scenario": r.scenario, "category": r.category, "set": set_key(r.constituents),
                     "score": math.nan if r.score is None else r.score, "status": r.status, "error": r.error or "",
                     "parameters": {} if p is None else {**p.parameters, **p.model_parameters},
                     "dev_score": None if p is None else p.dev_score, "results": r.results, "live": r.live,
                     "grid_size": r.tuning.get("grid_size"), "tuned": len(r.points)})
    return pd.DataFrame(rows, columns=["method", "scenario", "category", "set", "score", "status", "error", "parameters",
                                       "dev_score", "results", "live", "grid_size", "tuned"])


def _interval(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    return (math.nan, math.nan) if boot.size == 0 else (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))


def ranks(wide: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method within each scenario (1 = best; ties share the mean rank), among the methods scored there."""
    return wide.rank(axis=1, ascending=False, method="average")


def summary(df: pd.DataFrame, seed: int, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per method: scenarios scored, mean score with a 95% percentile-bootstrap interval over scenarios (one resample
    of the scenario set shared by all methods), translation related and divergent means, mean rank and its interval
    under the same resamples; best mean first."""
    cols = ["method", "n", "mean", "lo", "hi", "related", "divergent", "mean_rank", "rank_lo", "rank_hi"]
    ok = df.dropna(subset=["score"])
    if ok.empty:
        return pd.DataFrame(columns=cols)
    wide = ok.pivot_table(index="scenario", columns="method", values="score")
    rk = ranks(wide)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(wide), size=(n_boot, len(wide)))
    vals, rvals = wide.to_numpy(), rk.to_numpy()
    out = []
    for j, m in enumerate(wide.columns):
        v, r = vals[:, j], rvals[:, j]
        has = np.isfinite(v)
        with np.errstate(invalid="ignore"):
            bm = np.nansum(np.where(has[idx], v[idx], 0), 1) / has[idx].sum(1)
            br = np.nansum(np.where(has[idx], r[idx], 0), 1) / has[idx].sum(1)
        cat = ok[ok.method == m].groupby("category")["score"].mean()
        out.append({"method": m, "n": int(has.sum()), "mean": float(np.nanmean(v)), **dict(zip(("lo", "hi"), _interval(bm))),
                    "related": cat.get("translation related", math.nan), "divergent": cat.get("translation divergent", math.nan),
                    "mean_rank": float(np.nanmean(r)), **dict(zip(("rank_lo", "rank_hi"), _interval(br)))})
    return pd.DataFrame(out, columns=cols).sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


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
            boot = []
            for ix in rng.integers(0, len(x), size=(n_boot, len(x))):
                if np.ptp(x[ix]) > 0 and np.ptp(y[ix]) > 0:
                    boot.append(stats.spearmanr(x[ix], y[ix]).statistic)
            lo, hi = _interval(np.asarray(boot, dtype=float))
            out.append({"method": m, "diagnostic": d, "n": len(x), "rho": rho, "lo": lo, "hi": hi,
                        "predicts": bool(lo > 0 or hi < 0)})
    res = pd.DataFrame(out, columns=cols)
    return res.assign(a=res.rho.abs()).sort_values(["method", "a"], ascending=[True, False]).drop(columns="a") if not res.empty else res
