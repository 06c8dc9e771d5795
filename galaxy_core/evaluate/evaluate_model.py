"""Evaluate a saved model on a prepared split, and summarise several splits.

The model's own preprocessing settings (crop, size) decide which cache is read, so a model is
always evaluated on images prepared exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from galaxy_core.data.cache import Part, load_framed_part
from galaxy_core.data.prepared import PreparedData
from galaxy_core.evaluate.metrics import aggregate
from galaxy_core.evaluate.report import build_report, write_report
from galaxy_core.model.inference import batch_for, predict_logits
from galaxy_core.model.store import LoadedModel


def part_report(logits: np.ndarray, data: Part, temperature: float, logit_bias: np.ndarray,
                prepared: PreparedData, split: int, part: str, model: Path) -> dict[str, Any]:
    """The report of one part from its logits, saying which galaxies, split and model it is of
    (the release step has the logits already; :func:`evaluate_model` computes them)."""
    images = data.table["image"].astype(str).tolist()
    described = prepared.describe(images)
    report = build_report(logits, data.labels, data.table["objid"].astype(str).tolist(),
                          images, temperature, logit_bias, sources=described.get("source"),
                          subclasses=described.get("subclass"))
    report.update(split=split, part=part, image_dir=str(prepared.image_dir), model=str(model))
    if not prepared.image_roots.is_single:
        report["image_dirs"] = {name: str(path) for name, path in prepared.image_roots.folders}
    return report


def evaluate_model(loaded: LoadedModel, prepared: PreparedData, split: int = 0,
                   part: str = "test", out: Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Report (metrics, calibration, examples) of ``loaded`` on one part of one split."""
    cfg = loaded.config
    data = load_framed_part(prepared, cfg, split, part)
    logits = predict_logits(loaded.model, data.images, cfg.mean, cfg.std, tta=cfg.tta,
                            batch_size=batch_for(loaded.model),
                            channels_last=cfg.channels_last, progress=progress)
    report = part_report(logits, data, loaded.temperature, loaded.logit_bias, prepared, split,
                         part, loaded.path)
    if out is not None:
        write_report(out, report)
    return report


def summarise_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of the headline metrics over splits (calibrated)."""
    rows = [{**r["calibrated"]["metrics"], "ece": r["calibrated"]["ece"]} for r in reports]
    return aggregate(rows)
