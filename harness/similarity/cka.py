"""Centered kernel alignment (Kornblith et al. 2019, "Similarity of Neural Network Representations
Revisited", ICML): linear CKA in its feature-space and Gram (HSIC) formulations."""

from __future__ import annotations

import torch


def _center(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA from features. x: (n, p), y: (n, q), rows are the same n examples.

    CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), computed in float64; cost O(n p q), memory O(p q).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    x, y = _center(x.double()), _center(y.double())
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / denom)


def hsic_gram(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC estimator (Gretton et al. 2005) up to a constant: tr(K H L H), H = I - 11^T/n. k, l: (n, n)."""
    n = k.shape[0]
    h = torch.eye(n, dtype=k.dtype, device=k.device) - 1.0 / n
    return torch.trace(k @ h @ l @ h)


def gram_linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA through n x n Gram matrices K = X X^T, L = Y Y^T: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

    x: (n, p), y: (n, q). O(n^2) memory: the reference formulation, for tests and benchmarks.
    """
    x, y = x.double(), y.double()
    k, l = x @ x.T, y @ y.T
    return float(hsic_gram(k, l) / torch.sqrt(hsic_gram(k, k) * hsic_gram(l, l)))


def layerwise(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> list[float]:
    """Linear CKA between matching layers of two models. xs[i], ys[i]: (n, width) at layer i."""
    if len(xs) != len(ys):
        raise ValueError(f"models have different depths ({len(xs)} vs {len(ys)} layers)")
    return [linear_cka(a, b) for a, b in zip(xs, ys)]
