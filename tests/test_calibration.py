"""Softmax, temperature fitting and calibration error on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from galaxy_core.evaluate.calibration import (expected_calibration_error, fit_temperature,
                                              reliability_bins)
from galaxy_core.model.calibrated import softmax


def _sample(rng: np.random.Generator, logits: np.ndarray, temperature: float) -> np.ndarray:
    """Labels drawn from softmax(logits / temperature): the model that is calibrated at T."""
    p = softmax(logits, temperature)
    return (rng.uniform(size=len(p)) < p[:, 1]).astype(int)


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    return float(-np.mean(log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels]))


def test_softmax_stable_and_tempered() -> None:
    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(softmax(np.array([[2.0, 0.0]]), 2.0),
                               softmax(np.array([[1.0, 0.0]])))
    np.testing.assert_allclose(softmax(np.array([[np.log(3.0), 0.0]])), [[0.75, 0.25]])
    with pytest.raises(ValueError):
        softmax(np.zeros((1, 2)), 0.0)


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_fit_temperature_recovers_known_value(t_true: float) -> None:
    rng = np.random.default_rng(42)
    z = rng.normal(0, 3, size=(20000, 1)) * np.array([[1.0, -1.0]])
    labels = _sample(rng, z, t_true)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(t_true, rel=0.1)


def test_fit_temperature_lowers_nll_of_overconfident_logits() -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(0, 1.5, size=(5000, 2))
    labels = _sample(rng, z, 1.0)
    overconfident = 4.0 * z
    t = fit_temperature(overconfident, labels)
    assert t > 2.0
    assert _nll(overconfident, labels, t) < _nll(overconfident, labels, 1.0) - 0.1
    # Scaling by a positive T never changes the predicted class.
    assert np.array_equal(softmax(overconfident, t).argmax(1), overconfident.argmax(1))


def test_fit_temperature_bounded_on_separable_data() -> None:
    z = np.array([[5.0, -5.0], [-5.0, 5.0]] * 10)
    labels = np.array([0, 1] * 10)
    # NLL keeps falling as T shrinks; the bound keeps the answer finite and sharpening (T < 1).
    t = fit_temperature(z, labels)
    assert 0.05 <= t < 1.0


def test_ece_hand_computed() -> None:
    # Four at confidence 0.9 with three right (gap 0.15), two at 0.65 both right (gap 0.35):
    # ECE = (4 * 0.15 + 2 * 0.35) / 6.
    probs = np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]] + [[0.35, 0.65]] * 2)
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx((0.6 + 0.7) / 6)


def test_ece_zero_when_calibrated_and_one_when_always_confidently_wrong() -> None:
    labels = np.array([0, 1, 1, 0])
    assert expected_calibration_error(np.eye(2)[labels], labels) == pytest.approx(0.0)
    assert expected_calibration_error(np.eye(2)[1 - labels], labels) == pytest.approx(1.0)


def test_reliability_bins_match_hand_case() -> None:
    probs = np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]] + [[0.35, 0.65]] * 2)
    labels = np.array([0, 0, 0, 0, 1, 1])
    bins = reliability_bins(probs, labels)
    assert len(bins["edges"]) == 16 and len(bins["count"]) == 15
    assert sum(bins["count"]) == 6
    i_high = int(0.9 * 15)  # 0.9 falls in bin 13 (0.867-0.933)
    i_low = int(0.65 * 15)  # 0.65 falls in bin 9 (0.6-0.667)
    assert bins["count"][i_high] == 4 and bins["count"][i_low] == 2
    assert bins["confidence"][i_high] == pytest.approx(0.9)
    assert bins["accuracy"][i_high] == pytest.approx(0.75)
    assert bins["accuracy"][i_low] == pytest.approx(1.0)
    empty = [i for i in range(15) if i not in (i_high, i_low)]
    assert all(bins["confidence"][i] is None and bins["accuracy"][i] is None for i in empty)
    assert all(bins["count"][i] == 0 for i in empty)
