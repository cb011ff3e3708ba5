"""Rank correlations against scipy's independent implementations, and their intervals on known cases."""

import warnings

import numpy as np
import pytest
from scipy import stats

from harness import rankstats


def test_spearman_and_kendall_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=40), 1)
    y = np.round(x + rng.normal(size=40), 1)
    assert rankstats.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert rankstats.kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)  # tau-b
    xb = np.stack([x, x[::-1]])
    assert rankstats.kendall(xb, np.stack([y, y])).tolist() == pytest.approx(
        [stats.kendalltau(x, y).statistic, stats.kendalltau(x[::-1], y).statistic], abs=1e-12)


def test_partial_spearman_removes_a_shared_cause():
    rng = np.random.default_rng(1)
    z = rng.normal(size=300)
    x = z + 0.3 * rng.normal(size=300)
    y = z + 0.3 * rng.normal(size=300)
    assert rankstats.spearman(x, y) > 0.7
    assert abs(rankstats.partial_spearman(x, y, z[:, None])) < 0.15


def test_partial_spearman_matches_residual_formula_for_one_covariate():
    """With one covariate, the partial correlation of ranks is (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=50)
    x, y = z + rng.normal(size=50), -z + rng.normal(size=50)
    r = lambda a, b: stats.spearmanr(a, b).statistic
    expected = (r(x, y) - r(x, z) * r(y, z)) / np.sqrt((1 - r(x, z) ** 2) * (1 - r(y, z) ** 2))
    assert rankstats.partial_spearman(x, y, z[:, None]) == pytest.approx(expected, abs=1e-10)


def test_correlate_intervals_and_p_values():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    strong = rankstats.correlate(x, x + 0.2 * rng.normal(size=60), seed=0)
    assert strong["rho_lo"] <= strong["rho"] <= strong["rho_hi"] and strong["rho_lo"] > 0.8
    assert strong["rho_p"] == pytest.approx(1 / 1001)  # no permutation reaches it
    noise = rankstats.correlate(x, rng.normal(size=60), seed=0)
    assert noise["rho_lo"] < 0 < noise["rho_hi"] and noise["rho_p"] > 0.05
    assert rankstats.correlate(x[:3], x[:3], seed=0)["rho"] is None  # too few points: no number


def test_batched_partial_matches_one_at_a_time():
    rng = np.random.default_rng(4)
    x, y, z = rng.normal(size=(3, 25))
    c = np.column_stack([z, (z > 0).astype(float)])
    idx = rng.integers(0, 25, size=(5, 25))
    bc = rankstats._rank(np.moveaxis(c[idx], 1, 2))
    batched = rankstats._pearson(rankstats._residualize_batch(rankstats._rank(x[idx]), bc),
                                 rankstats._residualize_batch(rankstats._rank(y[idx]), bc))
    single = [rankstats.partial_spearman(x[i], y[i], c[i]) for i in idx]
    assert batched == pytest.approx(single, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 201, 286])
def test_rank_equals_scipy_rankdata_with_ties_and_nan(n):
    rng = np.random.default_rng(n)
    a = np.round(rng.normal(size=(3, 4, n)), 1)
    a[0, 0] = 2.0                          # all tied
    a[1, 2, 0] = np.nan                    # a NaN: the slice ranks as all NaN, as scipy propagates it
    assert np.array_equal(rankstats._rank(a), stats.rankdata(a, axis=-1), equal_nan=True)


def test_inversions_equal_a_pair_loop():
    rng = np.random.default_rng(5)
    for n in (1, 2, 15, 16, 17, 40, 100):
        v = rng.integers(0, max(n // 3, 1), size=(6, n)).astype(float)
        brute = [sum(r[i] > r[j] for i in range(n) for j in range(i + 1, n)) for r in v]
        assert rankstats._inversions(v).tolist() == brute


def _xy(seed: int, n: int, ties: bool):
    """(rng, n, x, y): two normal samples of n points, rounded to make ties when asked."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(size=n)
    return (rng, n, *((np.round(x, 0), np.round(y, 1)) if ties else (x, y)))


@pytest.mark.parametrize("ties", [False, True])
def test_kendall_rows_equals_scipy_kendalltau(ties):
    """The vectorised tau-b for large n is scipy's, to the last bit, on bootstrap and permutation resamples."""
    rng, n, x, y = _xy(6, 250, ties)
    boot = rng.integers(0, n, size=(30, n))
    perm = np.argsort(rng.random((30, n)), axis=1)
    xs, ys = np.vstack([x[boot], np.broadcast_to(x, (30, n)), np.full((1, n), 3.0)]), np.vstack([y[boot], y[perm], y[None]])
    expected = [stats.kendalltau(a, b).statistic for a, b in zip(xs, ys)]
    assert np.array_equal(rankstats._kendall_rows(xs, ys), expected, equal_nan=True)  # the constant row: NaN in both
    assert rankstats._kendall_rows(x, y) == stats.kendalltau(x, y).statistic


def test_resample_ranks_equal_ranking_each_resample():
    rng = np.random.default_rng(7)
    v = np.round(rng.normal(size=(2, 3, 30)), 1)
    idx = rng.integers(0, 30, size=(40, 30))
    assert np.array_equal(rankstats._resample_ranks(v, idx), stats.rankdata(v[..., idx], axis=-1))
    v[0, 0, 3] = np.nan
    assert np.array_equal(rankstats._resample_ranks(v, idx), stats.rankdata(v[..., idx], axis=-1), equal_nan=True)


@pytest.mark.parametrize("ties", [False, True])
def test_kendall_resampled_equals_scipy_on_each_resample(ties):
    rng, n, x, y = _xy(8, 230, ties)
    idx = np.vstack([rng.integers(0, n, size=(25, n)), np.zeros((1, n), int)])  # the last resample: one point n times
    expected = [stats.kendalltau(x[i], y[i]).statistic for i in idx]
    assert np.array_equal(rankstats._kendall_resampled(x, y, idx), expected, equal_nan=True)


@pytest.mark.parametrize("xties", [False, True])
def test_kendall_permuted_equals_scipy_on_each_permutation(xties):
    rng = np.random.default_rng(9)
    n = 230
    x, y = rng.normal(size=n), np.round(rng.normal(size=n), 1)
    if xties:
        x = np.round(x, 0)
    perm = np.argsort(rng.random((25, n)), axis=1)
    expected = [stats.kendalltau(x, y[p]).statistic for p in perm]
    assert np.array_equal(rankstats._kendall_permuted(x, y, perm), expected)


@pytest.mark.parametrize("ties", [False, True])
def test_stratified_spearman_equals_scipy_per_resample_and_reuses_nothing_stale(ties):
    """The pooled set-level rho, its cluster-bootstrap interval and permutation p-value, against scipy's spearmanr
    on each resample and permutation drawn as the function documents; then a second x with the same ys (the case
    whose ys side is kept) and a different ys of the same shape, each against scipy again."""
    rng = np.random.default_rng(7)
    n, m, n_boot, n_perm = 14, 3, 60, 40

    def scipy_pooled(x, ys, seed):
        draws = np.random.default_rng(seed)
        boot = draws.integers(0, n, size=(n_boot, n))
        perm = np.argsort(draws.random((n_perm, n)), axis=1)
        mean_rho = lambda xs, cols: np.nanmean([stats.spearmanr(xs, c).statistic if np.ptp(c) and np.ptp(xs) else np.nan
                                                for c in cols])
        obs = mean_rho(x, ys)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample whose methods are all constant: nanmean of nothing
            b = np.array([mean_rho(x[i], ys[:, i]) for i in boot])
        p = np.array([mean_rho(x[i], ys) for i in perm])
        return obs, np.nanpercentile(b, 2.5), np.nanpercentile(b, 97.5), (1 + np.sum(np.abs(p) >= abs(obs) - 1e-12)) / (1 + n_perm)

    ys = rng.normal(size=(m, n))
    if ties:
        ys = np.round(ys)
    for x, y in ((rng.normal(size=n), ys), (rng.normal(size=n), ys), (rng.normal(size=n), ys[::-1] + rng.normal(size=(m, n)))):
        x = np.round(x) if ties else x
        got = rankstats.stratified_spearman(x, y, 3, n_boot, n_perm)
        assert (got["n"], got["strata"]) == (n, m)
        assert [got["rho"], got["rho_lo"], got["rho_hi"], got["rho_p"]] == pytest.approx(list(scipy_pooled(x, y, 3)), abs=1e-12)
