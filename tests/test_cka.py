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
