"""Report building and its on-disk round trip (the charts: tests/test_charts.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.calibration import expected_calibration_error
from galaxy_core.evaluate.metrics import classification_metrics, selective_summary
from galaxy_core.evaluate.report import (PLOT_FILES, accepted_at, build_report, load_report,
                                         selective_block, validation_threshold, write_report)
from galaxy_core.model.calibrated import softmax


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    signal = (2 * labels - 1) * 1.5 + rng.normal(0, 1.5, n)
    logits = np.column_stack([-signal, signal]) * 2.0  # over-confident on purpose
    ids = [f"g{i}" for i in range(n)]
    images = [f"img/{i}.jpg" for i in range(n)]
    return logits, labels, ids, images


def test_build_report_metrics_follow_bias_then_temperature() -> None:
    logits, labels, ids, images = _data()
    bias = np.array([0.3, -0.2])
    report = build_report(logits, labels, ids, images, 2.5, bias)
    cal = softmax(logits + bias, 2.5)
    raw = softmax(logits + bias)
    expected = classification_metrics(labels, cal)
    got = report["calibrated"]["metrics"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss", "brier"):
        assert got[key] == pytest.approx(expected[key])
    assert got["confusion_matrix"] == expected["confusion_matrix"]
    assert report["uncalibrated"]["metrics"]["log_loss"] == pytest.approx(
        classification_metrics(labels, raw)["log_loss"])
    assert report["calibrated"]["ece"] == pytest.approx(expected_calibration_error(cal, labels))
    assert report["uncalibrated"]["ece"] == pytest.approx(expected_calibration_error(raw, labels))
    assert report["logit_bias"] == pytest.approx([0.3, -0.2])
    assert report["n"] == 400 and report["classes"] == ["elliptical", "spiral"]
    assert sum(report["calibrated"]["reliability"]["count"]) == 400
    assert len(report["roc"]["fpr"]) > 2


def test_report_carries_the_accuracy_coverage_of_its_calibrated_answers() -> None:
    logits, labels, ids, images = _data()
    report = build_report(logits, labels, ids, images, 2.5, np.array([0.3, -0.2]))
    expected = selective_summary(labels, softmax(logits + np.array([0.3, -0.2]), 2.5))
    assert report["selective"] == expected
    assert report["selective"]["curve"]["accuracy"][-1] == pytest.approx(
        report["calibrated"]["metrics"]["accuracy"])
    # A report written before the block existed gets it rebuilt from its predictions.
    old = {k: v for k, v in report.items() if k != "selective"}
    rebuilt = selective_block(old)
    assert rebuilt["at_accuracy"].keys() == expected["at_accuracy"].keys()
    for target, hit in expected["at_accuracy"].items():
        if hit is None:
            assert rebuilt["at_accuracy"][target] is None
        else:
            assert rebuilt["at_accuracy"][target] == pytest.approx(hit)
    assert selective_block({"classes": ["elliptical", "spiral"]}) is None


def test_accepted_at_applies_a_threshold_chosen_elsewhere() -> None:
    logits, labels, ids, images = _data()
    report = build_report(logits, labels, ids, images, 2.0)
    cal = softmax(logits, 2.0)
    confidence, right = cal.max(axis=1), cal.argmax(axis=1) == labels
    everything = accepted_at(report, 0.0)
    assert everything["coverage"] == 1.0
    assert everything["accuracy"] == pytest.approx(report["calibrated"]["metrics"]["accuracy"])
    got = accepted_at(report, 0.9)
    assert got["coverage"] == pytest.approx((confidence >= 0.9).mean())
    assert got["accuracy"] == pytest.approx(right[confidence >= 0.9].mean())
    assert got["accuracy"] > everything["accuracy"]
    assert accepted_at(report, 1.01) is None
    assert accepted_at({"classes": ["elliptical", "spiral"]}, 0.5) is None


def test_bias_changes_predictions() -> None:
    logits, labels, ids, images = _data()
    everything_spiral = build_report(logits, labels, ids, images, 1.0, np.array([-100.0, 100.0]))
    assert {row["predicted"] for row in everything_spiral["predictions"]} == {"spiral"}
    plain = build_report(logits, labels, ids, images, 1.0)
    assert {row["predicted"] for row in plain["predictions"]} == {"elliptical", "spiral"}


def test_example_lists_sorted_and_correctly_chosen() -> None:
    logits, labels, ids, images = _data()
    report = build_report(logits, labels, ids, images, 2.0, n_examples=10)
    failures, successes = report["confident_failures"], report["uncertain_successes"]
    assert len(failures) == 10 and len(successes) == 10
    assert all(item["true"] != item["predicted"] for item in failures)
    assert all(item["true"] == item["predicted"] for item in successes)
    conf_f = [item["confidence"] for item in failures]
    conf_s = [item["confidence"] for item in successes]
    assert conf_f == sorted(conf_f, reverse=True)
    assert conf_s == sorted(conf_s)
    # The most confident failure is the most confident of all misclassified galaxies.
    cal = softmax(logits, 2.0)
    wrong = cal.argmax(1) != labels
    assert conf_f[0] == pytest.approx(cal.max(1)[wrong].max())
    assert conf_s[0] == pytest.approx(cal.max(1)[~wrong].min())
    item = failures[0]
    assert item["p_spiral"] + item["p_elliptical"] == pytest.approx(1.0)
    assert item["image"] == f"img/{item['objid'][1:]}.jpg"
    rows = report["predictions"]
    assert len(rows) == 400
    assert set(rows[0]) == {"objid", "image", "true", "predicted", "p_spiral"}
    assert rows[5]["p_spiral"] == pytest.approx(cal[5, 1])


def test_build_report_rejects_bad_lengths() -> None:
    logits, labels, ids, images = _data(20)
    with pytest.raises(ValueError):
        build_report(logits, labels, ids[:-1], images, 1.0)
    with pytest.raises(ValueError):
        build_report(logits, labels, ids, images, 1.0, np.zeros(3))


def test_write_and_load_round_trip(tmp_path) -> None:
    logits, labels, ids, images = _data(120)
    report = build_report(logits, labels, ids, images, 1.7, np.array([0.1, -0.1]))
    folder = tmp_path / "report_test"
    write_report(folder, report)
    loaded = load_report(folder)
    assert loaded == json.loads(json.dumps(report))
    for name in PLOT_FILES:
        path = folder / name
        assert path.is_file()
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.size[0] > 100 and img.size[1] > 100
            img.verify()
    assert not list(folder.glob(".*.tmp"))


def test_write_report_handles_single_class(tmp_path) -> None:
    logits, _, ids, images = _data(10)
    report = build_report(logits, np.ones(10, dtype=int), ids, images, 1.0)
    assert report["calibrated"]["metrics"]["roc_auc"] is None
    write_report(tmp_path, report)
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_load_report_missing_and_corrupt(tmp_path) -> None:
    assert load_report(tmp_path / "nowhere") is None
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(GalaxyError):
        load_report(tmp_path)


def test_validation_threshold_is_read_from_the_validation_report(tmp_path) -> None:
    logits, labels, ids, images = _data()
    write_report(tmp_path / "report_val", build_report(logits, labels, ids, images, 2.0))
    cal = softmax(logits, 2.0)
    confidence, right = cal.max(axis=1), cal.argmax(axis=1) == labels
    threshold = validation_threshold(tmp_path, 0.9)
    assert right[confidence >= threshold].mean() >= 0.9
    lower = confidence[confidence < threshold]
    assert lower.size == 0 or right[confidence >= lower.max()].mean() < 0.9  # the largest such set
    # The most confident answer is wrong: no threshold gives 100%.
    wrong_first = np.array(labels)
    wrong_first[np.argmax(confidence)] ^= 1
    write_report(tmp_path / "report_val", build_report(logits, wrong_first, ids, images, 2.0))
    with pytest.raises(GalaxyError, match="choose a lower target"):
        validation_threshold(tmp_path, 1.0)
    with pytest.raises(GalaxyError, match="no validation report"):
        validation_threshold(tmp_path / "elsewhere", 0.9)
