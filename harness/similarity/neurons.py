"""Language-specific neurons of a gated MLP (SwiGLU): LAPE (Tang et al. 2024, ACL, "Language-Specific
Neurons: The Key to Multilingual Capabilities in Large Language Models"), average-precision selectivity
(Kojima et al. 2024, NAACL, "On the Multilingual Ability of Decoder-based Pre-trained Language Models:
Finding and Controlling Language-Specific Neurons"), and span-conditioned selectivity on translation prompts.

A neuron is one channel j of layer l's gate activation act_fn(x W_gate)[j] (SiLU for LLaMA-style models);
arrays below are indexed (language, layer, neuron). The embedding output's residual dimensions are scored
for AP selectivity as layer 0 ("embeddings"), since DESIGN asks where selectivity sits, embeddings included;
they have no gate, so LAPE covers blocks 1..L only.

Span-conditioned selectivity, exactly: a translation prompt is `en: <src>\\n<x>: <tgt>` (the family's one
fixed format) with the reference target teacher-forced. For a prompt p and a span s in {source, target}
(the tokens whose first character lies in <src>, resp. in ` <tgt>`), a neuron's span score is the mean of
its gate activation over the span's tokens. Its span-conditioned selectivity for target language x on span
s is the average precision of those span scores at separating the prompts whose target is x (positives)
from the prompts with any other target (negatives), over the same source verses for every target. On the
source span the text is English in every prompt, so selectivity there measures how much the neuron encodes
the requested target language while reading the source; on the target span it measures the output language.
Chance level is the share of positives, 1 / (number of targets).
"""

from __future__ import annotations

import math

import numpy as np

# Tang et al. 2024 (their released identify step): the 1% lowest-entropy neurons among those whose activation
# probability passes the 95th percentile for some language; a selected neuron belongs to each language whose
# probability passes the 95th percentile.
LAPE_TOP_RATE = 0.01
LAPE_FILTER_RATE = 0.95
LAPE_BAR_RATE = 0.95
# Kojima et al. 2024 take the top 1000 neurons by AP per language in models of 10^5-10^6 neurons; as a share:
AP_TOP_FRAC = 0.01
SPAN_SELECTIVE_AP = 0.9  # a neuron counts as span-selective for x when its span AP reaches this


def _kth(values: np.ndarray, rate: float) -> float:
    """The k-th smallest value with k = round(len * rate), 1-based (torch.kthvalue's convention)."""
    flat = np.sort(values, axis=None)
    k = min(max(1, round(flat.size * rate)), flat.size)
    return float(flat[k - 1])


def lape_entropy(probs: np.ndarray) -> np.ndarray:
    """Language activation probability entropy. probs: (langs, L, N) activation probabilities -> (L, N).
    Each neuron's probabilities are normalised to sum to one over languages; an all-zero neuron has entropy 0."""
    total = probs.sum(0, keepdims=True)
    p = np.divide(probs, total, out=np.zeros_like(probs, dtype=np.float64), where=total > 0)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logp).sum(0)


def lape_neurons(probs: np.ndarray, top_rate: float = LAPE_TOP_RATE, filter_rate: float = LAPE_FILTER_RATE,
                 bar_rate: float = LAPE_BAR_RATE) -> np.ndarray:
    """LAPE language-specific neurons. probs: (langs, L, N) -> boolean mask (langs, L, N).

    1. neurons whose probability exceeds no language's `filter_rate` quantile (over all probabilities) are set aside;
    2. the round(top_rate * L * N) neurons of lowest entropy among the rest are selected;
    3. a selected neuron is specific to every language whose probability exceeds the `bar_rate` quantile."""
    ent = lape_entropy(probs)
    passes = (probs > _kth(probs, filter_rate)).any(0)
    ent = np.where(passes, ent, np.inf)
    k = max(1, round(ent.size * top_rate))
    order = np.argsort(ent, axis=None, kind="stable")[:k]
    selected = np.zeros(ent.size, dtype=bool)
    selected[order] = True
    selected &= np.isfinite(ent.ravel())
    selected = selected.reshape(ent.shape)
    return (probs > _kth(probs, bar_rate)) & selected[None]


def average_precision(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Average precision of each column of scores at ranking the positive rows first.
    scores: (n, units), positive: (n,) bool -> (units,). AP = sum over positives of precision at its rank,
    divided by the number of positives; tied scores share the precision at the end of their tie block
    (scikit-learn's step-wise definition)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return np.full(scores.shape[1], np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, 0)
    hit = positive[order].astype(np.float64)
    tp = np.cumsum(hit, 0)
    rank = np.arange(1, scores.shape[0] + 1, dtype=np.float64)[:, None]
    # the end of each tie block: the last row with the same score
    end = np.ones_like(s, dtype=bool)
    end[:-1] = s[:-1] != s[1:]
    idx = np.where(end, np.arange(s.shape[0])[:, None], s.shape[0])
    idx = np.flip(np.minimum.accumulate(np.flip(idx, 0), 0), 0)
    prec = np.take_along_axis(tp / rank, idx, 0)
    return (prec * hit).sum(0) / n_pos


def ap_selectivity(scores: np.ndarray, labels: list[str], languages: list[str]) -> np.ndarray:
    """AP selectivity (Kojima et al. 2024). scores: (n_texts, units) one pooled activation per text;
    labels: each text's language -> (langs, units), AP of each unit for each language against the others."""
    lab = np.asarray(labels)
    return np.stack([average_precision(scores, lab == lang) for lang in languages])


def top_selective(ap: np.ndarray, top_frac: float = AP_TOP_FRAC) -> np.ndarray:
    """Per language, the round(top_frac * units) units of highest AP across the whole model.
    ap: (langs, units) -> boolean mask (langs, units)."""
    k = max(1, round(ap.shape[1] * top_frac))
    mask = np.zeros_like(ap, dtype=bool)
    for i, row in enumerate(ap):
        mask[i, np.argsort(-row, kind="stable")[:k]] = True
    return mask


def jaccard(a: np.ndarray | set, b: np.ndarray | set) -> float:
    """|A & B| / |A | B| of two boolean masks of the same shape, or of two sets; nan when both are empty."""
    if isinstance(a, np.ndarray):
        a, b = set(np.flatnonzero(a).tolist()), set(np.flatnonzero(b).tolist())
    union = a | b
    return len(a & b) / len(union) if union else math.nan


def span_mask(offsets: list[tuple[int, int]], start: int, end: int) -> np.ndarray:
    """Tokens whose first character lies in [start, end). offsets: per token (char_start, char_end)."""
    return np.array([start <= s < end for s, _ in offsets], dtype=bool)
