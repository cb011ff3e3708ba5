"""Centered kernel alignment (Kornblith et al. 2019, "Similarity of Neural Network Representations
Revisited", ICML): linear CKA in feature space and through Gram matrices, RBF CKA, debiased CKA from the
unbiased HSIC estimator (Song et al. 2012, JMLR), and minibatch CKA (Nguyen et al. 2021, ICLR).

Every function takes activations as (n, width) tensors whose rows are the same n examples (tokens) in
both models, and computes in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

RBF_THRESHOLD = 0.5  # sigma^2 = threshold^2 x median squared pairwise distance (Kornblith et al. 2019 report 0.2-0.8)


def _center(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def _same_rows(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")


# ---- feature space: O(n p q) time, O(p q) memory, no n x n matrix ------------------------------------------

def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA from features. x: (n, p), y: (n, q).

    CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).
    """
    _same_rows(x, y)
    x, y = _center(x.double()), _center(y.double())
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / denom)


def _unbiased_hsic_linear(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012) of the linear kernels K = X X^T, L = Y Y^T without forming them.
    x: (n, p), y: (n, q), float64. With K~, L~ the kernels with zeroed diagonals:
    tr(K~L~) = ||Y^T X||_F^2 - sum_i |x_i|^2 |y_i|^2; 1^T K~ 1 = |sum_i x_i|^2 - sum_i |x_i|^2;
    1^T K~ L~ 1 = (K~1) . (L~1) with K~1 = X (X^T 1) - diag(K)."""
    n = x.shape[0]
    dk, dl = (x * x).sum(1), (y * y).sum(1)
    kl = torch.linalg.matrix_norm(y.T @ x) ** 2 - (dk * dl).sum()
    k1 = x @ x.sum(0) - dk
    l1 = y @ y.sum(0) - dl
    return (kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)) / (n * (n - 3))


def debiased_linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Debiased linear CKA (unbiased HSIC in place of the biased one) from features. x: (n, p), y: (n, q), n > 3.
    Its expectation does not drift with the width/sample ratio as biased CKA does; it can be slightly negative."""
    _same_rows(x, y)
    x, y = x.double(), y.double()
    return float(_unbiased_hsic_linear(x, y) / torch.sqrt(_unbiased_hsic_linear(x, x) * _unbiased_hsic_linear(y, y)))


def linear_cka_matrix(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
    """Linear CKA between every layer of one model and every layer of another. xs[i]: (n, p_i), ys[j]: (n, q_j).
    Returns (len(xs), len(ys)); each layer is centered and its self-norm computed once."""
    cx = [_center(x.double()) for x in xs]
    cy = [_center(y.double()) for y in ys]
    nx = [torch.linalg.matrix_norm(x.T @ x) for x in cx]
    ny = [torch.linalg.matrix_norm(y.T @ y) for y in cy]
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, x in enumerate(cx):
        for j, y in enumerate(cy):
            out[i, j] = torch.linalg.matrix_norm(y.T @ x) ** 2 / (nx[i] * ny[j])
    return out


# ---- Gram matrices: O(n^2) memory --------------------------------------------------------------------------

def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """K = X X^T. x: (n, p) -> (n, n)."""
    x = x.double()
    return x @ x.T


def gram_rbf(x: torch.Tensor, threshold: float = RBF_THRESHOLD) -> torch.Tensor:
    """RBF kernel exp(-|x_i - x_j|^2 / (2 sigma^2)) with sigma^2 = threshold^2 * the median of ALL n^2 squared
    pairwise distances, the diagonal's zeros included: the bandwidth convention of Kornblith et al. (2019)'s
    published reference code, so values compare with papers that used it. x: (n, p) -> (n, n)."""
    x = x.double()
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min_(0.0)
    d2.fill_diagonal_(0.0)
    flat = d2.flatten()
    m = flat.numel()
    lo = flat.kthvalue((m + 1) // 2).values
    median = lo if m % 2 else 0.5 * (lo + flat.kthvalue(m // 2 + 1).values)  # numpy's median of an even count
    return torch.exp(-d2 / (2.0 * threshold ** 2 * median))


def center_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T/n, by row and column means (no n x n H). k: (n, n)."""
    k = k - k.mean(0, keepdim=True)
    return k - k.mean(1, keepdim=True)


def hsic_gram(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC (Gretton et al. 2005) without its 1/(n-1)^2 factor: tr(K H L H). k, l: (n, n)."""
    return (center_gram(k) * center_gram(l)).sum()


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012, eq. 5). k, l: (n, n), n > 3.
    With K~, L~ the kernels with zeroed diagonals:
    [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))."""
    n = k.shape[0]
    k = k - torch.diag(torch.diag(k))
    l = l - torch.diag(torch.diag(l))
    k1, l1 = k.sum(1), l.sum(1)
    return ((k * l).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)) / (n * (n - 3))


def cka_gram(k: torch.Tensor, l: torch.Tensor, debiased: bool = False) -> float:
    """CKA from two (n, n) Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    h = hsic_unbiased if debiased else hsic_gram
    return float(h(k, l) / torch.sqrt(h(k, k) * h(l, l)))


def gram_linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA through n x n Gram matrices. x: (n, p), y: (n, q). The reference formulation (O(n^2) memory)."""
    _same_rows(x, y)
    return cka_gram(gram_linear(x), gram_linear(y))


def rbf_cka(x: torch.Tensor, y: torch.Tensor, threshold: float = RBF_THRESHOLD) -> float:
    """RBF-kernel CKA. x: (n, p), y: (n, q); bandwidth per gram_rbf."""
    _same_rows(x, y)
    return cka_gram(gram_rbf(x, threshold), gram_rbf(y, threshold))


def minibatch_cka(x: torch.Tensor, y: torch.Tensor, batch: int = 1024,
                  kernel: Callable[[torch.Tensor], torch.Tensor] = gram_linear) -> float:
    """Minibatch CKA (Nguyen et al. 2021): unbiased HSIC averaged over consecutive row blocks of `batch`
    examples, then CKA = mean HSIC(K, L) / sqrt(mean HSIC(K, K) mean HSIC(L, L)). x: (n, p), y: (n, q).
    Memory O(batch^2), independent of n; a last block smaller than 4 rows is dropped (unbiased HSIC needs n > 3)."""
    _same_rows(x, y)
    kl = kk = ll = 0.0
    for s in range(0, x.shape[0], batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        if xb.shape[0] < 4:
            break
        k, l = kernel(xb), kernel(yb)
        kl, kk, ll = kl + hsic_unbiased(k, l), kk + hsic_unbiased(k, k), ll + hsic_unbiased(l, l)
    return float(kl / torch.sqrt(kk * ll))


@dataclass
class MinibatchCKA:
    """Streaming minibatch CKA (Nguyen et al., ICLR 2021) for every layer at once: feed one minibatch of tokens at
    a time (each model's activations at every layer), read CKA per layer at the end. What it holds is three
    running sums per layer, so its memory does not grow with the number of probe tokens; each update needs one
    batch x batch Gram matrix per layer and model (computed in float64 from bf16 or float32 activations)."""

    kl: list = field(default_factory=list)
    kk: list = field(default_factory=list)
    ll: list = field(default_factory=list)
    batches: int = 0

    def update(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        """xs[i], ys[i]: (b, width) activations of the same b tokens at layer i of the two models, b > 3."""
        if len(xs) != len(ys):
            raise ValueError(f"models have different depths ({len(xs)} vs {len(ys)} layers)")
        if not self.kl:
            self.kl, self.kk, self.ll = [0.0] * len(xs), [0.0] * len(xs), [0.0] * len(xs)
        for i, (x, y) in enumerate(zip(xs, ys)):
            _same_rows(x, y)
            if x.shape[0] < 4:
                raise ValueError("a minibatch needs at least 4 tokens (unbiased HSIC)")
            k, l = gram_linear(x.double()), gram_linear(y.double())
            self.kl[i] += float(hsic_unbiased(k, l))
            self.kk[i] += float(hsic_unbiased(k, k))
            self.ll[i] += float(hsic_unbiased(l, l))
        self.batches += 1

    def result(self) -> list[float]:
        return [kl / math.sqrt(kk * ll) for kl, kk, ll in zip(self.kl, self.kk, self.ll)]


# ---- per layer ---------------------------------------------------------------------------------------------

METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {}


def register(name: str, fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    METRICS[name] = fn


register("cka_linear", linear_cka)
register("cka_debiased", debiased_linear_cka)
register("cka_rbf", rbf_cka)


def layerwise(xs: list[torch.Tensor], ys: list[torch.Tensor], metric: str = "cka_linear") -> list[float]:
    """One CKA per matching layer of two models. xs[i], ys[i]: (n, width) at layer i."""
    if len(xs) != len(ys):
        raise ValueError(f"models have different depths ({len(xs)} vs {len(ys)} layers)")
    fn = METRICS[metric]
    return [fn(a, b) for a, b in zip(xs, ys)]
