"""Language-specific neuron measures (Tang et al. 2024; Kojima et al. 2024) on constructed activations whose
answers are known, and average precision against scikit-learn's independent implementation."""

import numpy as np
import pytest

from harness.similarity import neurons


def test_average_precision_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 30))
    scores[:, :5] = np.round(scores[:, :5], 1)  # ties, which the step-wise definition must share
    positive = rng.random(200) < 0.3
    scores[positive, 10:] += 0.8
    ours = neurons.average_precision(scores, positive)
    ref = [average_precision_score(positive, scores[:, j]) for j in range(30)]
    assert ours == pytest.approx(ref, abs=1e-12)


def test_average_precision_extremes():
    positive = np.array([True, True, False, False, False])
    perfect = np.array([[5.0], [4.0], [1.0], [0.0], [-1.0]])
    worst = -perfect
    assert neurons.average_precision(perfect, positive)[0] == pytest.approx(1.0)
    assert neurons.average_precision(worst, positive)[0] == pytest.approx((1 / 4 + 2 / 5) / 2)


def _probs_with_planted_neurons():
    """3 languages, 2 layers x 100 neurons; neuron (1, 7) fires only for language 1, (0, 3) only for language 2,
    the rest fire with the same probability in every language."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, size=(1, 2, 100))
    probs = np.repeat(base, 3, 0) + rng.normal(0, 0.005, size=(3, 2, 100))
    probs[:, 1, 7] = [0.0, 0.95, 0.0]
    probs[:, 0, 3] = [0.01, 0.0, 0.9]
    return np.clip(probs, 0, 1)


def test_lape_finds_planted_neurons():
    probs = _probs_with_planted_neurons()
    mask = neurons.lape_neurons(probs, top_rate=0.01)
    assert mask.shape == (3, 2, 100)
    assert mask[1, 1, 7] and mask[2, 0, 3]
    assert mask.sum() == 2  # 1% of 200 neurons = 2, each assigned to its one language


def test_lape_entropy_bounds():
    probs = _probs_with_planted_neurons()
    ent = neurons.lape_entropy(probs)
    assert ent[1, 7] == pytest.approx(0.0, abs=1e-12)
    assert np.all(ent <= np.log(3) + 1e-12)
    uniform = np.full((3, 1, 1), 0.5)
    assert neurons.lape_entropy(uniform)[0, 0] == pytest.approx(np.log(3))


def test_lape_thresholds_are_configurable():
    probs = _probs_with_planted_neurons()
    assert neurons.lape_neurons(probs, top_rate=0.05).sum() > neurons.lape_neurons(probs, top_rate=0.01).sum()
    # a filter above every probability leaves no candidate
    assert neurons.lape_neurons(probs, filter_rate=1.0).sum() == 0


def test_ap_selectivity_and_top_sets():
    rng = np.random.default_rng(2)
    labels = ["en"] * 40 + ["ru"] * 40
    scores = rng.normal(size=(80, 50))
    scores[40:, 9] += 5.0  # unit 9 separates ru perfectly
    ap = neurons.ap_selectivity(scores, labels, ["en", "ru"])
    assert ap.shape == (2, 50)
    assert ap[1, 9] == pytest.approx(1.0)
    top = neurons.top_selective(ap, top_frac=0.02)
    assert top.sum(1).tolist() == [1, 1] and top[1, 9]


def test_jaccard():
    a = np.zeros((2, 5), bool)
    b = np.zeros((2, 5), bool)
    a[0, :3] = True
    b[0, 1:4] = True
    assert neurons.jaccard(a, b) == pytest.approx(2 / 4)
    assert np.isnan(neurons.jaccard(np.zeros(3, bool), np.zeros(3, bool)))


def test_span_mask_uses_first_character():
    offsets = [(0, 3), (3, 4), (4, 9), (9, 10), (10, 14)]
    assert neurons.span_mask(offsets, 4, 10).tolist() == [False, False, True, True, False]
