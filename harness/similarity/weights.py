"""Weight-space diagnostics of merging: task vectors (Ilharco et al. 2023, "Editing Models with Task
Arithmetic"), their cosine; the sign-conflict rate behind TIES (Yadav et al. 2023, "TIES-Merging"), raw and
after top-k trimming; and the loss barrier along the linear path between two models (Frankle et al. 2020,
"Linear Mode Connectivity and the Lottery Ticket Hypothesis").

State dicts are {name: tensor}; every function is pure and works per tensor so no model-sized vector is
ever concatenated. Results come per layer group (groups.parameter_group) and for "all"."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from .groups import parameter_group

TRIM_DENSITY = 0.2  # TIES's default k: keep the top 20% of each task vector's entries by magnitude
PATH_POINTS = 11    # alphas 0, 0.1, ..., 1


def task_vector(model: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """tau = theta - theta_base, per tensor, in float64. Names must match."""
    missing = set(model) ^ set(base)
    if missing:
        raise ValueError(f"model and base differ in parameters: {sorted(missing)[:3]}")
    return {k: model[k].double() - base[k].double() for k in model}


def trim(tv: dict[str, torch.Tensor], density: float = TRIM_DENSITY) -> dict[str, torch.Tensor]:
    """Keep the top `density` share of each tensor's entries by magnitude (as mergekit applies TIES's density),
    zero the rest; exactly round(density * numel) entries survive, ties broken by position."""
    out = {}
    for k, t in tv.items():
        n_keep = max(1, int(round(t.numel() * density)))
        if n_keep >= t.numel():
            out[k] = t
            continue
        keep = torch.argsort(t.abs().flatten(), descending=True, stable=True)[:n_keep]
        flat = torch.zeros(t.numel(), dtype=t.dtype)
        flat[keep] = t.flatten()[keep]
        out[k] = flat.view_as(t)
    return out


def pair_sums(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """The additive pieces of a cosine for one tensor of two task vectors: a.b, a.a, b.b."""
    return {"dot": float((a * b).sum()), "aa": float((a * a).sum()), "bb": float((b * b).sum())}


def conflict_sums(ts: list[torch.Tensor]) -> dict[str, float]:
    """The additive pieces of a sign-conflict rate for one tensor of several task vectors: coordinates where at
    least two are nonzero ('active'), and those among them holding both a positive and a negative entry."""
    st = torch.stack(ts)
    nz = (st != 0).sum(0)
    pos, neg = (st > 0).any(0), (st < 0).any(0)
    return {"active": int((nz >= 2).sum()), "conflict": int(((nz >= 2) & pos & neg).sum())}


def group_sums(per_tensor, n_blocks: int) -> dict[str, dict[str, float]]:
    """Sum per-tensor pieces {name: value} (an iterable of (parameter name, pieces), in order) per layer group
    and over 'all'. Tensors can come one at a time (read from disk and dropped), so no model is ever in memory."""
    out: dict[str, dict[str, float]] = {}
    for name, pieces in per_tensor:
        for g in (parameter_group(name, n_blocks), "all"):
            acc = out.setdefault(g, dict.fromkeys(pieces, 0))
            for k, v in pieces.items():
                acc[k] += v
    return out


def cosine_of(s: dict[str, float]) -> float:
    return s["dot"] / np.sqrt(s["aa"] * s["bb"]) if s["aa"] > 0 and s["bb"] > 0 else float("nan")


def conflict_of(s: dict[str, float]) -> float:
    return s["conflict"] / s["active"] if s["active"] else float("nan")


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], n_blocks: int) -> dict[str, float]:
    """Cosine between two task vectors, globally ('all') and per layer group."""
    return {g: cosine_of(s) for g, s in group_sums(((k, pair_sums(a[k], b[k])) for k in a), n_blocks).items()}


def sign_conflict(tvs: list[dict[str, torch.Tensor]], n_blocks: int) -> dict[str, float]:
    """Share of coordinates with a sign conflict among those where at least two task vectors are nonzero:
    a conflict is any coordinate where both a positive and a negative entry occur. For two vectors it is the
    pairwise rate; for more, the set rate. Globally ('all') and per layer group."""
    sums = group_sums(((k, conflict_sums([t[k] for t in tvs])) for k in tvs[0]), n_blocks)
    return {g: conflict_of(s) for g, s in sums.items()}


def _by_group(names, n_blocks: int) -> dict[str, list[str]]:
    groups = defaultdict(list)
    for k in names:
        groups[parameter_group(k, n_blocks)].append(k)
        groups["all"].append(k)
    return groups


def relative_distance(model: dict[str, torch.Tensor], init: dict[str, torch.Tensor], n_blocks: int) -> dict[str, float]:
    """How far training moved a model from its initialisation: ||theta - theta_init|| / ||theta_init||, globally
    ('all') and per layer group (the distance that linear mode connectivity depends on, Frankle et al. 2020)."""
    out = {}
    for g, names in _by_group(model, n_blocks).items():
        num = sum(float(((model[k].double() - init[k].double()) ** 2).sum()) for k in names)
        den = sum(float((init[k].double() ** 2).sum()) for k in names)
        out[g] = float(np.sqrt(num / den)) if den > 0 else float("nan")
    return out


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) a + alpha b, per tensor, in a's dtype."""
    return {k: ((1 - alpha) * a[k].double() + alpha * b[k].double()).to(a[k].dtype) for k in a}


def alphas(points: int = PATH_POINTS) -> list[float]:
    return [round(float(x), 10) for x in np.linspace(0.0, 1.0, points)]


def loss_barrier(losses: list[float], alpha: list[float]) -> float:
    """max over the path of loss(alpha) - [(1 - alpha) loss(0) + alpha loss(1)]: how far the path rises above
    the straight line between its ends. Never negative: both ends lie on that line, so the maximum is at least
    0, reached when the whole path stays on or below the line (linearly connected models)."""
    l0, l1 = losses[0], losses[-1]
    return float(max(l - ((1 - a) * l0 + a * l1) for l, a in zip(losses, alpha)))
