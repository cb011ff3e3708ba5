"""Rank correlations for small samples with their uncertainty: Spearman's rho and Kendall's tau-b,
percentile bootstrap intervals (Efron and Tibshirani 1993), permutation p-values (two-sided, with the
observed statistic counted, Phipson and Smyth 2010), and partial Spearman correlation (ranks residualised
on covariates, Conover 1999). Vectorised over resamples: x, y are (n,) and resampled as (B, n)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

N_BOOT = 1000
N_PERM = 1000


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share the mean of their positions) along the last axis, as
    scipy.stats.rankdata(a, axis=-1); a slice holding a NaN ranks as all NaN (scipy's nan_policy='propagate')."""
    a = np.asarray(a, dtype=float)
    n = a.shape[-1]
    if n == 0 or a.size == 0:
        return a.copy()
    # any sort will do: tied values share one rank, so how a sort orders them among themselves cannot show (and
    # numpy's default sort is several times faster than its stable one on floats)
    order = np.argsort(a, axis=-1)
    s = np.take_along_axis(a, order, axis=-1)
    ties = s[..., 1:] == s[..., :-1]
    ranks = np.empty(a.shape)
    if not ties.any():  # no ties (continuous data): the ranks are the positions in sorted order
        np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1.0, n + 1), a.shape), axis=-1)
    else:
        new = np.concatenate([np.ones(s.shape[:-1] + (1,), bool), ~ties], axis=-1).ravel()
        starts = np.flatnonzero(new)                         # every slice starts a group: groups never span slices
        counts = np.diff(np.append(starts, new.size))
        np.put_along_axis(ranks, order, np.repeat(starts % n + 1 + (counts - 1) / 2, counts).reshape(a.shape), axis=-1)
    nan = np.isnan(a).any(-1)
    if nan.any():
        ranks[nan] = np.nan
    return ranks


def _resample_ranks(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """_rank(v[..., idx]) without sorting each resample: v (..., n) values, idx (B, k) indices into the last axis
    -> (..., B, k) average ranks. A draw's rank is (draws below its value) + (draws at its value + 1) / 2, from
    per-resample counts of the values' tie groups (exact: integers and halves)."""
    v = np.asarray(v, dtype=float)
    if np.isnan(v).any():
        return _rank(v[..., idx])
    rows, k = idx.shape
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty((len(flat), rows, k))
    offset = np.arange(rows)[:, None]
    for i, row in enumerate(flat):
        _, group = np.unique(row, return_inverse=True)
        width = int(group.max()) + 1 if len(group) else 1
        g = group[idx]
        counts = np.bincount((offset * width + g).ravel(), minlength=rows * width).reshape(rows, width)
        out[i] = np.take_along_axis(np.cumsum(counts, axis=1) - counts + (counts + 1) / 2, g, axis=1)
    return out.reshape(v.shape[:-1] + (rows, k))


def _centred(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a minus its mean along the last axis, the sum of squares of that along the last axis): _pearson's halves."""
    a = a - a.mean(-1, keepdims=True)
    return a, (a * a).sum(-1)


def _pearson_centred(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Pearson's r along the last axis of two arrays given as _centred's pairs (a caller correlating one array with
    many centres it once)."""
    den = np.sqrt(a[1] * b[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a[0] * b[0]).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _pearson_centred(_centred(a), _centred(b))


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (average ranks for ties)."""
    return _pearson(_rank(x), _rank(y))


def kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b along the last axis (_kendall_rows: O(n log n) per row, scipy's value to the last bit)."""
    return _kendall_rows(x, y)


def _inversions(v: np.ndarray) -> np.ndarray:
    """Per row of v (R, n): the number of pairs i < j with v_i > v_j (strictly), by bottom-up merge sort over all
    rows at once. At each level the two sorted halves of a block are merged by a stable sort; a right-half element
    at index q within its half that lands at position p has p - q left-half elements at or below it, so the block
    contributes sum over the right half of (h - p + q) pairs (blocks of up to 16 compare every pair). O(n log n) per
    row. Rows are padded to base * 2^levels with base <= 16 (266 values: 9 * 32 = 288, not the next power of two)."""
    rows, n = v.shape
    levels = max(0, (max(n, 1) - 1) // 16).bit_length()  # the fewest halvings that leave blocks of 16 or fewer
    base = -(-max(n, 1) // (1 << levels))                 # blocks this small: count their pairs directly, then merge
    size = base << levels
    pad = np.full((rows, size), np.inf)  # larger than every value, at the end: no inversions of their own
    pad[:, :n] = v
    blocks = pad.reshape(rows, size // base, base)
    total = ((blocks[..., :, None] > blocks[..., None, :]) & np.triu(np.ones((base, base), bool), 1)).sum(axis=(1, 2, 3))
    pad = np.sort(blocks, axis=-1).reshape(rows, size)
    h = base
    while h < size:
        blocks = pad.reshape(rows, size // (2 * h), 2 * h)
        order = np.argsort(blocks, axis=-1, kind="stable")
        landed = np.where(order >= h, np.arange(2 * h), 0).sum(axis=(1, 2))   # sum of p over right-half elements
        total += (size // (2 * h)) * (h * h + h * (h - 1) // 2) - landed
        pad = np.take_along_axis(blocks, order, axis=-1).reshape(rows, size)
        h *= 2
    return total


def _tied_pairs(s: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Per row of s (R, n), sorted so that ties are adjacent, tie groups starting where `new` is True: the number
    of tied pairs, sum over positions of how many earlier positions share the group."""
    pos = np.arange(s.shape[-1])
    return (pos - np.maximum.accumulate(np.where(new, pos, 0), axis=-1)).sum(-1)


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b in O(n log n) per row, all rows at once: tau-b from counts as Knight (1966) computes it
    (and scipy.stats.kendalltau, to the last bit): sort by (x, y), count discordant pairs as the inversions of y,
    pairs tied in x, in y and in both; (tot - xtie - ytie + ntie - 2 dis) / sqrt(tot - xtie) / sqrt(tot - ytie),
    NaN where x or y is constant or a row holds a NaN. x, y: (n,) or (R, n)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    one = x.ndim == 1
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    x, y = np.broadcast_arrays(x, y)
    nan = np.isnan(x).any(-1) | np.isnan(y).any(-1)
    if nan.any():
        x, y = np.where(nan[:, None], 0.0, x), np.where(nan[:, None], 0.0, y)
    n = x.shape[-1]
    order = np.lexsort((y, x), axis=-1)
    xs, ys = np.take_along_axis(x, order, -1), np.take_along_axis(y, order, -1)
    first = np.ones((x.shape[0], 1), bool)
    xnew = np.concatenate([first, xs[:, 1:] != xs[:, :-1]], -1)
    xtie = _tied_pairs(xs, xnew)
    ntie = _tied_pairs(xs, xnew | np.concatenate([first, ys[:, 1:] != ys[:, :-1]], -1))
    ysorted = np.sort(y, axis=-1)
    ytie = _tied_pairs(ysorted, np.concatenate([first, ysorted[:, 1:] != ysorted[:, :-1]], -1))
    dis = _inversions(ys)
    tot = n * (n - 1) // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (tot - xtie - ytie + ntie - 2 * dis) / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)
    tau = np.where((xtie == tot) | (ytie == tot) | nan, np.nan, np.minimum(1.0, np.maximum(-1.0, tau)))
    return tau[0] if one else tau


def _kendall_resampled(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """_kendall_rows(x[idx], y[idx]) from each resample's draw counts w (B, n) instead of sorting it: discordant
    pairs of draws are w A w' with A[k, l] = [x_k < x_l][y_k > y_l] (one matrix product, exact in float64: integer
    terms far below 2^53), tied pairs sum c (c - 1) / 2 over the draw counts c of each tie group. x, y (n,), idx (B, k)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.isnan(x).any() or np.isnan(y).any():
        return _kendall_rows(x[idx], y[idx])
    rows, k = idx.shape
    offset = np.arange(rows)[:, None]

    def tied(group: np.ndarray) -> np.ndarray:
        width = int(group.max()) + 1
        c = np.bincount((offset * width + group[idx]).ravel(), minlength=rows * width).reshape(rows, width)
        return (c * (c - 1) // 2).sum(1)

    n = len(x)
    w = np.bincount((offset * n + idx).ravel(), minlength=rows * n).reshape(rows, n).astype(float)
    disc = ((x[:, None] < x[None, :]) & (y[:, None] > y[None, :])).astype(float)
    dis = np.rint(((w @ disc) * w).sum(1)).astype(np.int64)
    gx, gy = np.unique(x, return_inverse=True)[1], np.unique(y, return_inverse=True)[1]
    xtie, ytie, ntie = tied(gx), tied(gy), tied(np.unique(gx * (gy.max() + 1) + gy, return_inverse=True)[1])
    tot = k * (k - 1) // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (tot - xtie - ytie + ntie - 2 * dis) / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)
    return np.where((xtie == tot) | (ytie == tot), np.nan, np.minimum(1.0, np.maximum(-1.0, tau)))


def _kendall_permuted(x: np.ndarray, y: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """_kendall_rows(x, y[perm]) for each permutation (B, n) of y: where x has no ties, every row sorts by x alike
    and has no pairs tied in x or in both, so only the discordant pairs are counted per row."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.isnan(x).any() or np.isnan(y).any() or len(np.unique(x)) < len(x):
        return _kendall_rows(np.broadcast_to(x, perm.shape), y[perm])
    ys = np.sort(y)
    ytie = int(_tied_pairs(ys[None], np.concatenate([[True], ys[1:] != ys[:-1]])[None])[0])
    tot = len(x) * (len(x) - 1) // 2
    if ytie == tot:
        return np.full(len(perm), np.nan)
    dis = _inversions(y[perm][:, np.argsort(x, kind="stable")])
    tau = (tot - 0 - ytie + 0 - 2 * dis) / np.sqrt(tot - 0) / np.sqrt(tot - ytie)
    return np.minimum(1.0, np.maximum(-1.0, tau))


def residualize(r: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """Residuals of r (n,) after least squares on [1, covariates (n, k)]."""
    design = np.column_stack([np.ones(len(r)), covariates])
    beta, *_ = np.linalg.lstsq(design, r, rcond=None)
    return r - design @ beta


def _residualize_batch(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """residualize over a batch: r (..., B, n), c (B, k, n) -> residuals (..., B, n), by the pseudo-inverse of each
    design, taken once for every leading index of r (a resample where a covariate is constant has a singular design;
    pinv still gives the least-squares fit)."""
    design = np.concatenate([np.ones((c.shape[0], 1, c.shape[2])), c], axis=1).transpose(0, 2, 1)  # (B, n, k+1)
    pinv = np.linalg.pinv(design)
    return np.stack([x - (design @ (pinv @ x[..., None]))[..., 0] for x in r.reshape((-1,) + r.shape[-2:])]).reshape(r.shape)


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> float:
    """Spearman correlation of x and y controlling for covariates (n, k): Pearson correlation of the residuals
    of their ranks regressed on the covariates' ranks."""
    c = np.column_stack([_rank(col) for col in np.asarray(covariates, dtype=float).T])
    return float(_pearson(residualize(_rank(x), c), residualize(_rank(y), c)))


def correlate(x: np.ndarray, y: np.ndarray, seed: int, covariates: np.ndarray | None = None,
              n_boot: int = N_BOOT, n_perm: int = N_PERM) -> dict:
    """rho and tau with 95% bootstrap intervals (resampling points) and permutation p-values; with covariates,
    also the partial Spearman rho, its interval and p-value (permuting y's residuals)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out = {"n": n}
    keys = ["rho", "rho_lo", "rho_hi", "rho_p", "tau", "tau_lo", "tau_hi", "tau_p"]
    if covariates is not None:
        keys += ["partial_rho", "partial_lo", "partial_hi", "partial_p"]
    out.update({k: None for k in keys})
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    if n > 200:  # 200 resamples above 200 points (set when Kendall grew with n^2; kept, so published intervals stay)
        n_boot, n_perm = min(n_boot, 200), min(n_perm, 200)
    boot, perm = _draws(n, seed, n_boot, n_perm)

    def summary(name, obs, b, p):
        out[name] = obs
        out[f"{name}_lo"], out[f"{name}_hi"] = (float(np.nanpercentile(b, 2.5)), float(np.nanpercentile(b, 97.5)))
        out[f"{name}_p"] = float((1 + np.sum(np.abs(p) >= abs(obs) - 1e-12)) / (1 + n_perm))

    rx, ry = _rank(x), _rank(y)  # a permutation's ranks are the permuted ranks; resamples rank by counting
    summary("rho", float(_pearson(rx, ry)), _pearson(_resample_ranks(x, boot), _resample_ranks(y, boot)),
            _pearson(np.broadcast_to(rx, (n_perm, n)), ry[perm]))
    summary("tau", float(_kendall_rows(x, y)), _kendall_resampled(x, y, boot), _kendall_permuted(x, y, perm))
    if covariates is not None:
        out.update(partial_correlate(x, y, covariates, seed, n_boot, n_perm))
    return out


def partial_correlate(x: np.ndarray, y: np.ndarray, covariates: np.ndarray, seed: int, n_boot: int = N_BOOT,
                      n_perm: int = N_PERM) -> dict:
    """Partial Spearman rho of x and y given covariates (n, k), its 95% bootstrap interval and permutation p-value
    (permuting y's residuals). Covariates constant over the sample are dropped."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out = {"partial_rho": None, "partial_lo": None, "partial_hi": None, "partial_p": None}
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    if n > 200:
        n_boot, n_perm = min(n_boot, 200), min(n_perm, 200)
    boot, perm = _draws(n, seed + 1, n_boot, n_perm)
    c = np.asarray(covariates, float).reshape(n, -1)
    c = c[:, [j for j in range(c.shape[1]) if np.ptp(c[:, j]) > 0]]
    obs = partial_spearman(x, y, c)
    bx, by, bc = _resample_ranks(x, boot), _resample_ranks(y, boot), np.moveaxis(_resample_ranks(c.T, boot), 0, 1)  # (B, n), (B, n), (B, k, n)
    bs = _pearson(*_residualize_batch(np.stack([bx, by]), bc))
    cr = np.column_stack([_rank(col) for col in c.T]) if c.shape[1] else np.zeros((n, 0))
    rx, ry = residualize(_rank(x), cr), residualize(_rank(y), cr)
    ps = _pearson(np.broadcast_to(rx, (n_perm, n)), ry[perm])
    out.update(partial_rho=obs, partial_lo=float(np.nanpercentile(bs, 2.5)), partial_hi=float(np.nanpercentile(bs, 97.5)),
               partial_p=float((1 + np.sum(np.abs(ps) >= abs(obs) - 1e-12)) / (1 + n_perm)))
    return out


@lru_cache(maxsize=16)
def _draws(n: int, seed: int, n_boot: int, n_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """The resamples (n_boot, n) and permutations (n_perm, n) of n points that a seed gives, read-only (a set-level
    table correlates many diagnostics over the same sets: drawn once for all of them)."""
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, n, size=(n_boot, n))
    perm = np.argsort(rng.random((n_perm, n)), axis=1)
    boot.flags.writeable = perm.flags.writeable = False
    return boot, perm


_STRATA: dict = {}  # the ys side of the last stratified_spearman calls: one arm's gaps serve every diagnostic


def _strata_side(ys: np.ndarray, seed: int, n_boot: int, n_perm: int) -> tuple:
    """For stratified_spearman: ys's resampled ranks, each centred (_centred), and its ranks centred, kept for the
    next call with the same ys (a set-level table correlates one arm's gaps with every diagnostic in turn)."""
    key = (ys.shape, ys.tobytes(), seed, n_boot, n_perm)
    if key not in _STRATA:
        boot, _ = _draws(ys.shape[1], seed, n_boot, n_perm)
        if len(_STRATA) >= 2:
            _STRATA.pop(next(iter(_STRATA)))
        _STRATA[key] = (_centred(_resample_ranks(ys, boot)), _centred(_rank(ys)))
    return _STRATA[key]


def stratified_spearman(x: np.ndarray, ys: np.ndarray, seed: int, n_boot: int = N_BOOT, n_perm: int = N_PERM) -> dict:
    """Set-level pooled rank correlation across strata (merge methods) that share their units (constituent sets).

    x (n,): one diagnostic value per set; ys (m, n): the gap of each of m methods on the same n sets (one point
    per set and method). rho = mean over methods of Spearman(x, ys[j]). The 95% interval is a cluster bootstrap
    that resamples sets, each drawn set bringing every method's value with it; the p-value permutes x over sets
    (the same permutation for every method). n is the number of sets, whatever the number of merges behind them.
    What depends on ys alone (its resampled ranks) is computed once for every x it is correlated with."""
    x, ys = np.asarray(x, float), np.atleast_2d(np.asarray(ys, float))
    n = len(x)
    out = {"n": n, "strata": int(ys.shape[0]), "rho": None, "rho_lo": None, "rho_hi": None, "rho_p": None}
    if n < 4 or np.ptp(x) == 0 or any(np.ptp(y) == 0 for y in ys):
        return out
    boot, perm = _draws(n, seed, n_boot, n_perm)
    y_boot, y_perm = _strata_side(ys, seed, n_boot, n_perm)
    obs = float(np.mean([spearman(x, y) for y in ys]))
    per = _pearson_centred(_centred(_resample_ranks(x, boot)[None]), y_boot)  # (m, B): a resample with a constant
    ok = np.isfinite(per)                                                        # column gives NaN for that method
    b = np.where(ok.any(0), np.where(ok, per, 0).sum(0) / np.maximum(ok.sum(0), 1), np.nan)
    # ranks of a permutation are the permuted ranks: rank once, not per permutation. Every permutation is
    # correlated with every method's (unpermuted) ranks: one matrix product, (permutations, n) by (n, methods)
    xc, xss = _centred(_rank(x)[perm])
    yc, yss = y_perm
    den = np.sqrt(xss[:, None] * yss[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.mean(np.where(den > 0, (xc @ yc.T) / np.where(den > 0, den, 1), np.nan), axis=1)
    out.update(rho=obs, rho_lo=float(np.nanpercentile(b, 2.5)), rho_hi=float(np.nanpercentile(b, 97.5)),
               rho_p=float((1 + np.sum(np.abs(p) >= abs(obs) - 1e-12)) / (1 + n_perm)))
    return out


@lru_cache(maxsize=256)
def detectable_rho(n: int, seed: int = 0, power: float = 0.8, alpha: float = 0.05, sims: int = 2000) -> float | None:
    """The smallest population Spearman correlation (on a 0.05 grid) that a two-sided level-alpha rank test over
    n independent points detects with the given power, by simulation: the critical |rho| from random permutations,
    then bivariate normal samples whose Pearson r = 2 sin(pi rho_s / 6) gives Spearman rho_s (Pearson 1907)."""
    if n < 4:
        return None
    rng = np.random.default_rng(seed)
    # the ranks of 0..n-1 and of a permutation of it are the values plus one: Spearman's rho is their Pearson r
    null = _pearson(np.broadcast_to(np.arange(1.0, n + 1), (sims, n)), np.argsort(rng.random((sims, n)), axis=1) + 1.0)
    crit = float(np.quantile(np.abs(null), 1 - alpha))
    for rho_s in np.arange(0.05, 1.0, 0.05):
        r = 2 * np.sin(np.pi * rho_s / 6)
        z = rng.standard_normal((2, sims, n))
        y = r * z[0] + np.sqrt(1 - r * r) * z[1]
        if np.mean(np.abs(spearman(z[0], y)) > crit) >= power:
            return float(round(rho_s, 2))
    return None
