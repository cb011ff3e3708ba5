"""Laws of linear CKA (Kornblith et al. 2019), and agreement between its two formulations."""

import numpy as np
import pytest
import torch

from harness.similarity.cka import gram_linear_cka, layerwise, linear_cka


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 24, generator=g, dtype=torch.float64)
    y = x @ torch.randn(24, 16, generator=g, dtype=torch.float64) + 0.5 * torch.randn(300, 16, generator=g, dtype=torch.float64)
    return x, y


def test_self_similarity_is_one(xy):
    x, _ = xy
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transform(xy):
    x, y = xy
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert linear_cka(x @ q, y) == pytest.approx(linear_cka(x, y), abs=1e-10)


def test_invariant_to_isotropic_scaling(xy):
    x, y = xy
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(linear_cka(x, y), abs=1e-10)


def test_not_invariant_to_anisotropic_scaling(xy):
    # a law that can fail: CKA must change under a non-orthogonal, non-isotropic map
    x, y = xy
    d = torch.diag(torch.linspace(0.1, 10, 24, dtype=torch.float64))
    assert abs(linear_cka(x @ d, y) - linear_cka(x, y)) > 1e-3


def test_feature_and_gram_formulations_agree(xy):
    x, y = xy
    assert linear_cka(x, y) == pytest.approx(gram_linear_cka(x, y), abs=1e-10)
    assert 0.0 < linear_cka(x, y) < 1.0


def test_matches_numpy_transcription(xy):
    """Equation (5)-(6) of Kornblith et al. 2019, written out in numpy independently of the code under test."""
    x, y = (t.numpy() for t in xy)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h) / (n - 1) ** 2
    expected = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
    assert linear_cka(*xy) == pytest.approx(expected, abs=1e-9)


def test_unrelated_representations_score_low():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    assert linear_cka(x, y) < 0.05


def test_layerwise_checks_depth(xy):
    x, y = xy
    assert layerwise([x, y], [x, y]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="different depths"):
        layerwise([x], [x, y])


# ---- RBF, debiased and minibatch CKA against an independent numpy transcription of the published formulas ----

def _np_hsic_biased(k, l):
    """Gretton et al. 2005: tr(K H L H) / (n-1)^2, with the explicit centering matrix H."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def _np_hsic_unbiased(k, l):
    """Song et al. 2012, eq. (5), term by term with explicit loops over the zero-diagonal kernels."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    ones = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (ones @ kt @ ones) * (ones @ lt @ ones) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (ones @ kt @ lt @ ones)
    return (term1 + term2 - term3) / (n * (n - 3))


def _np_rbf(x, threshold):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # explicit pairwise differences, diagonal zeros included
    return np.exp(-d2 / (2 * threshold ** 2 * np.median(d2)))


def _np_cka(k, l, hsic):
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture
def small_xy():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(120, 10, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(10, 7, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(120, 7, generator=g, dtype=torch.float64)
    return x, y


def test_debiased_feature_space_matches_gram_and_numpy(small_xy):
    from harness.similarity.cka import cka_gram, debiased_linear_cka, gram_linear

    x, y = small_xy
    xn, yn = x.numpy(), y.numpy()
    expected = _np_cka(xn @ xn.T, yn @ yn.T, _np_hsic_unbiased)
    assert debiased_linear_cka(x, y) == pytest.approx(expected, abs=1e-6)
    assert cka_gram(gram_linear(x), gram_linear(y), debiased=True) == pytest.approx(expected, abs=1e-6)
    # and it is a different number from biased CKA (the bias is what it removes)
    assert abs(expected - linear_cka(x, y)) > 1e-3


def test_rbf_matches_numpy(small_xy):
    from harness.similarity.cka import rbf_cka

    x, y = small_xy
    for frac in (0.2, 0.5, 0.8):
        expected = _np_cka(_np_rbf(x.numpy(), frac), _np_rbf(y.numpy(), frac), _np_hsic_biased)
        assert rbf_cka(x, y, frac) == pytest.approx(expected, abs=1e-6)


def test_rbf_reproduces_the_published_reference_value():
    """Kornblith et al.'s reference code's demo (numpy seed 1337, X = randn(100, 10), Y = randn(100, 10) + X,
    threshold 0.5) reports RBF CKA 0.65483; the bandwidth convention must reproduce it."""
    from harness.similarity.cka import rbf_cka

    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    assert rbf_cka(torch.from_numpy(x), torch.from_numpy(y), 0.5) == pytest.approx(0.65483, abs=5e-6)


def test_gram_hsic_matches_numpy(small_xy):
    from harness.similarity.cka import gram_linear, hsic_gram

    x, y = small_xy
    n = x.shape[0]
    k, l = gram_linear(x), gram_linear(y)
    assert float(hsic_gram(k, l)) / (n - 1) ** 2 == pytest.approx(_np_hsic_biased(k.numpy(), l.numpy()), rel=1e-9)


@pytest.mark.parametrize("name", ["cka_linear", "cka_debiased", "cka_rbf"])
def test_laws_hold_for_every_variant(name, small_xy):
    from harness.similarity.cka import METRICS

    fn = METRICS[name]
    x, y = small_xy
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    assert fn(x, x) == pytest.approx(1.0, abs=1e-9)
    assert fn(x @ q, y) == pytest.approx(fn(x, y), abs=1e-9)          # orthogonal invariance
    assert fn(4.2 * x, 0.3 * y) == pytest.approx(fn(x, y), abs=1e-9)  # isotropic scaling
    assert fn(x + 5.0, y) == pytest.approx(fn(x, y), abs=1e-9)        # translation (centering)


def test_minibatch_is_memory_bounded_and_matches_numpy():
    """Nguyen et al. 2021: mean unbiased HSIC over blocks. Checked against numpy on the same blocks, and
    close to full debiased CKA when the blocks are large."""
    from harness.similarity.cka import debiased_linear_cka, minibatch_cka

    g = torch.Generator().manual_seed(11)
    x = torch.randn(1000, 12, generator=g, dtype=torch.float64)
    y = x[:, :6] @ torch.randn(6, 9, generator=g, dtype=torch.float64) + torch.randn(1000, 9, generator=g, dtype=torch.float64)
    xn, yn = x.numpy(), y.numpy()
    kl = kk = ll = 0.0
    for s in range(0, 1000, 250):
        k, l = xn[s:s + 250] @ xn[s:s + 250].T, yn[s:s + 250] @ yn[s:s + 250].T
        kl, kk, ll = kl + _np_hsic_unbiased(k, l), kk + _np_hsic_unbiased(k, k), ll + _np_hsic_unbiased(l, l)
    assert minibatch_cka(x, y, batch=250) == pytest.approx(kl / np.sqrt(kk * ll), abs=1e-6)
    assert minibatch_cka(x, y, batch=500) == pytest.approx(debiased_linear_cka(x, y), abs=0.05)


def test_layer_matrix_diagonal_is_layerwise(xy):
    from harness.similarity.cka import linear_cka_matrix

    x, y = xy
    xs, ys = [x, y, torch.cat([x, y], 1)], [y, x, 2 * x]
    m = linear_cka_matrix(xs, ys)
    assert m.shape == (3, 3)
    assert m.diagonal().tolist() == pytest.approx(layerwise(xs, ys), abs=1e-12)
    assert float(m[0, 1]) == pytest.approx(1.0, abs=1e-12)  # layer 0 of xs is layer 1 of ys
