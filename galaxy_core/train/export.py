"""Turn a finished run's model folder into the one users get: fp16 weights (half the download),
the calibration and OOD reference carried over, and the validation and test reports measured
again with the exported weights, so the model card describes exactly the file that ships.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from galaxy_core.data.prepared import PreparedData
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.evaluate_model import evaluate_model
from galaxy_core.evaluate.model_card import write_model_card
from galaxy_core.evaluate.report import headline_metrics
from galaxy_core.io_utils import atomic_write, write_json
from galaxy_core.model.store import META_FILE, load_model, save_model
from galaxy_core.predict.ood import OOD_FILE

PARTS = ("val", "test")


def export_model(source: str | Path, target: str | Path, prepared: PreparedData,
                 half: bool = True,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Write ``target`` from the model folder ``source`` and re-evaluate it; returns model.json."""
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise GalaxyError("export needs a different target folder than the source model")
    loaded = load_model(source)
    split = int(loaded.meta.get("training", {}).get("split", 0))
    save_model(target, loaded.model, loaded.config, loaded.meta, half=half)
    if (source / OOD_FILE).is_file():
        data = (source / OOD_FILE).read_bytes()
        atomic_write(target / OOD_FILE, lambda f: f.write(data))

    exported = load_model(target)
    reports = {}
    for part in PARTS:
        step = (lambda done, total, part=part: progress(part, done, total)) if progress else None
        reports[part] = evaluate_model(exported, prepared, split, part,
                                       target / f"report_{part}", step)
    record = {**exported.meta, "metrics": headline_metrics(reports)}
    write_json(target / META_FILE, record)
    write_model_card(target)
    return record
