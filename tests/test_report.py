"""Report building, its on-disk round trip and the dashboard's plotly figures."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate import plots
from galaxy_core.evaluate.calibration import expected_calibration_error, softmax
from galaxy_core.evaluate.metrics import classification_metrics, selective_summary
from galaxy_core.evaluate.report import (PLOT_FILES, accepted_at, build_report, load_report,
                                         selective_block, validation_threshold, write_report)


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


# --- plotly figures ---------------------------------------------------------------------------


def test_confusion_matrix_figure() -> None:
    fig = plots.confusion_matrix_figure([[8, 2], [1, 3]], ["elliptical", "spiral"])
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert fig.layout.xaxis.title.text == "Predicted" and fig.layout.yaxis.title.text == "True"
    norm = plots.confusion_matrix_figure([[8, 2], [1, 3]], ["elliptical", "spiral"],
                                         normalise=True)
    np.testing.assert_allclose(np.asarray(norm.data[0].z), [[0.8, 0.2], [0.25, 0.75]])


def test_report_figures_trace_counts() -> None:
    logits, labels, ids, images = _data()
    report = build_report(logits, labels, ids, images, 2.0)
    rel = plots.reliability_figure(report["uncalibrated"]["reliability"],
                                   report["calibrated"]["reliability"],
                                   report["uncalibrated"]["ece"], report["calibrated"]["ece"])
    assert len(rel.data) == 3
    assert f"{report['calibrated']['ece']:.3f}" in rel.data[2].name
    # Empty bins are not drawn.
    non_empty = sum(1 for c in report["calibrated"]["reliability"]["count"] if c)
    assert len(rel.data[2].x) == non_empty
    roc = plots.roc_figure(report["roc"], report["calibrated"]["metrics"]["roc_auc"])
    assert len(roc.data) == 2 and len(roc.data[1].x) == len(report["roc"]["fpr"])
    assert len(plots.roc_figure({"fpr": [], "tpr": [], "thresholds": []}, None).data) == 2


def test_training_curves_figure() -> None:
    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5 + e / 20,
             "val_macro_f1": 0.4 + e / 20, "lr": 1e-3} for e in range(1, 6)]
    fig = plots.training_curves_figure(rows)
    assert len(fig.data) == 4
    assert list(fig.data[0].y) == pytest.approx([r["train_loss"] for r in rows])
    partial = plots.training_curves_figure([{"epoch": 1, "train_loss": 0.7}])
    assert len(partial.data) == 1


def test_probability_splits_and_funnel_figures() -> None:
    prob = plots.probability_figure({"elliptical": 0.2, "spiral": 0.8})
    assert len(prob.data) == 1 and prob.data[0].orientation == "h"
    assert list(prob.data[0].x) == [0.2, 0.8]
    agg = {"accuracy": {"mean": 0.9, "std": 0.01, "values": [0.89, 0.91]},
           "macro_f1": {"mean": 0.85, "std": 0.02, "values": [0.83, 0.87]}}
    splits = plots.splits_figure(agg)
    assert len(splits.data) == 4  # per metric: the split values, then mean ± std
    assert [list(splits.data[i].y) for i in (0, 2)] == [[0.89, 0.91], [0.83, 0.87]]
    assert [list(splits.data[i].error_y.array) for i in (1, 3)] == [[0.01], [0.02]]
    assert [splits.data[i].y[0] for i in (1, 3)] == [0.9, 0.85]
    funnel = plots.funnel_figure({"rows_read": 6064,
                                  "dropped": {"uncertain": 171, "image missing": 0},
                                  "kept_per_class": {"elliptical": 4345, "spiral": 1548}})
    assert len(funnel.data) == 1 and isinstance(funnel.data[0], go.Funnel)
    assert list(funnel.data[0].x) == [6064, 5893, 5893, 5893]


def test_coverage_figure_marks_each_target_reached() -> None:
    logits, labels, ids, images = _data()
    block = build_report(logits, labels, ids, images, 2.0)["selective"]
    fig = plots.coverage_figure(block)
    hits = [h for h in block["at_accuracy"].values() if h]
    assert len(fig.data) == 1 + len(hits)
    assert list(fig.data[0].x) == block["curve"]["coverage"]
    assert [trace.x[0] for trace in fig.data[1:]] == [h["coverage"] for h in hits]
    assert len(plots.coverage_figure({"curve": {}, "at_accuracy": {"0.95": None}}).data) == 1


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
