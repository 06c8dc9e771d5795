"""Population prior: moving calibrated probabilities to another spiral fraction, and estimating a
batch's fraction by EM, on synthetic batches whose true posteriors are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxy_core.model.prior import (adjust_to_prior, estimate_prior, estimate_with_interval,
                                     parse_prior, training_prior)
from galaxy_core.predict.classify import Prediction
from galaxy_core.predict.population import apply_prior

TRAIN = 0.26


def calibrated_batch(prior: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn at ``prior`` and the exact posterior p(spiral | x) a model calibrated
    under TRAIN would give: scores are N(+1, 1) for spirals and N(-1, 1) for ellipticals, so
    the likelihood ratio is exp(2x)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prior
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    odds = np.exp(2 * x) * TRAIN / (1 - TRAIN)
    return y, odds / (1 + odds)


def test_adjusting_to_the_training_prior_changes_nothing_and_is_invertible():
    _, p = calibrated_batch(0.4, 500)
    assert np.allclose(adjust_to_prior(p, TRAIN, TRAIN), np.clip(p, 1e-6, 1 - 1e-6))
    there = adjust_to_prior(p, TRAIN, 0.8)
    assert np.allclose(adjust_to_prior(there, 0.8, TRAIN), np.clip(p, 1e-6, 1 - 1e-6), atol=1e-9)
    assert (there >= np.clip(p, 1e-6, 1 - 1e-6) - 1e-12).all()  # more spirals: every p rises


def test_adjusted_probabilities_are_calibrated_for_the_new_population():
    y, p = calibrated_batch(0.7, 200_000, seed=1)
    q = adjust_to_prior(p, TRAIN, 0.7)
    for low in (0.2, 0.5, 0.8):
        band = (q >= low) & (q < low + 0.1)
        assert abs(y[band].mean() - q[band].mean()) < 0.01


@pytest.mark.parametrize("prior", [0.1, 0.26, 0.5, 0.8])
def test_em_recovers_the_batch_prior_where_counting_does_not(prior):
    y, p = calibrated_batch(prior, 20_000, seed=2)
    assert estimate_prior(p, TRAIN) == pytest.approx(y.mean(), abs=0.015)
    if abs(prior - TRAIN) > 0.2:
        assert abs((p > 0.5).mean() - y.mean()) > 0.05  # counting is biased towards TRAIN


def test_interval_covers_the_truth_and_narrows_with_more_galaxies():
    small = estimate_with_interval(calibrated_batch(0.5, 100, seed=3)[1], TRAIN, n_boot=200)
    large = estimate_with_interval(calibrated_batch(0.5, 3000, seed=3)[1], TRAIN, n_boot=200)
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert large.high - large.low < small.high - small.low
    assert "95% interval" in large.describe()


def test_training_prior_and_parsing():
    assert training_prior({"training": {"class_counts": {"elliptical": 74, "spiral": 26}}}) \
        == pytest.approx(0.26)
    assert training_prior({}) is None
    assert parse_prior("train") == "train" and parse_prior("0.3") == 0.3
    for bad in ("0", "1", "-0.2", "lots", "nan"):
        with pytest.raises(ValueError):
            parse_prior(bad)


def test_estimate_leaves_unusual_inputs_out_and_adjusts_every_answer():
    meta = {"training": {"class_counts": {"elliptical": 74, "spiral": 26}}}
    y, p = calibrated_batch(0.8, 400, seed=4)
    preds = [Prediction(source=f"g{i}", label="", p_spiral=float(v), p_elliptical=1 - float(v),
                        ood_score=0.5) for i, v in enumerate(p)]
    photos = [Prediction(source=f"photo{i}", p_spiral=0.001, p_elliptical=0.999, ood_score=5.0)
              for i in range(400)]  # would drag the estimate down if they counted
    used = apply_prior(preds + photos, meta, "estimate")
    assert used.source == "estimated" and used.fraction == pytest.approx(y.mean(), abs=0.06)
    assert all(pr.label == ("spiral" if pr.p_spiral > 0.5 else "elliptical") for pr in preds)
    assert photos[0].p_spiral > 0.001  # adjusted like the rest, though not counted


def test_estimate_refuses_a_batch_too_small(tmp_path):
    from galaxy_core.errors import GalaxyError

    meta = {"training": {"class_counts": {"elliptical": 74, "spiral": 26}}}
    preds = [Prediction(source="a", p_spiral=0.9, p_elliptical=0.1, ood_score=0.3)]
    with pytest.raises(GalaxyError, match="at least"):
        apply_prior(preds, meta, "estimate")


def test_cli_records_the_prior_and_moves_the_answers(tmp_path, capsys):
    import pandas as pd

    from galaxy_core.cli import main
    from galaxy_core.locations import SHIPPED_MODEL_DIR
    from tests.conftest import draw_galaxy

    if not (SHIPPED_MODEL_DIR / "model.json").is_file():
        pytest.skip("shipped model not present")
    images = tmp_path / "images"
    images.mkdir()
    for i, kind in enumerate(("spiral", "elliptical", "spiral")):
        draw_galaxy(kind, 128, seed=i).save(images / f"g{i}.png")
    frames = {}
    for prior in ("train", "0.8"):
        out = tmp_path / f"{prior}.csv"
        assert main(["predict", str(images), "--prior", prior, "-o", str(out)]) == 0
        frames[prior] = pd.read_csv(out).sort_values("path").reset_index(drop=True)
    err = capsys.readouterr().err
    assert "80.0% spirals" in err
    counts = json.loads((SHIPPED_MODEL_DIR / "model.json").read_text())["training"]["class_counts"]
    mix = counts["spiral"] / sum(counts.values())  # the training galaxies' own spiral share
    assert 0.05 < mix < 0.95 and frames["train"]["prior"].round(3).eq(round(mix, 3)).all()
    assert frames["0.8"]["prior"].eq(0.8).all()
    assert (frames["0.8"]["p_spiral"] > frames["train"]["p_spiral"]).all()
