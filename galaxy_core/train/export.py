"""Turn a finished run's model folder into the one users get: fp16 weights (half the download),
the calibration carried over, and the OOD reference and the validation and test reports measured
again with the exported weights, so the model card and the warnings describe exactly the file
that ships (and an OOD reference written by an older version is never carried forward).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from galaxy_core.data.cache import load_framed_part
from galaxy_core.data.prepared import PreparedData
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.evaluate_model import evaluate_model
from galaxy_core.evaluate.model_card import write_model_card
from galaxy_core.evaluate.report import headline_metrics
from galaxy_core.io_utils import read_json, write_json
from galaxy_core.model.store import META_FILE, load_model, save_model
from galaxy_core.predict.ood import fit_ood, save_ood

PARTS = ("val", "test")
SPLITS_SUMMARY = "splits_summary.json"
RECIPE_KEYS = ("arch", "weights", "epochs", "image_size", "crop_fraction", "lr")


def read_stability(run: str | Path) -> dict[str, Any]:
    """The spread over splits measured by a ``galaxy train --splits K`` run, with its recipe.

    The recipe travels with the figures because the spread is a property of how a model is
    trained on K different splits, and that recipe may be a cheaper stand-in for the shipped one.
    """
    run = Path(run)
    if not (run / SPLITS_SUMMARY).is_file():
        raise GalaxyError(f"{run} has no {SPLITS_SUMMARY}: give a folder written by "
                          "'galaxy train --splits K' (K >= 2) after it finished")
    configs = sorted(run.glob("split_*/config.json"))
    recipe = read_json(configs[0]) if configs else {}
    return {"summary": read_json(run / SPLITS_SUMMARY),
            "recipe": {k: recipe.get(k) for k in RECIPE_KEYS}}


def export_model(source: str | Path, target: str | Path, prepared: PreparedData,
                 half: bool = True,
                 progress: Callable[[str, int, int], None] | None = None,
                 stability: str | Path | None = None) -> dict[str, Any]:
    """Write ``target`` from the model folder ``source`` and re-evaluate it; returns model.json.

    ``stability``: a ``--splits K`` run folder whose spread over splits the card should report.
    """
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise GalaxyError("export needs a different target folder than the source model")
    splits = read_stability(stability) if stability else None
    loaded = load_model(source)
    split = int(loaded.meta.get("training", {}).get("split", 0))
    save_model(target, loaded.model, loaded.config, loaded.meta, half=half)

    exported = load_model(target)
    cfg = exported.config
    ood_state, ood_meta = fit_ood(exported.model, load_framed_part(prepared, cfg, split, "train"),
                                  load_framed_part(prepared, cfg, split, "val"), cfg)
    save_ood(target, ood_state)
    reports = {}
    for part in PARTS:
        step = (lambda done, total, part=part: progress(part, done, total)) if progress else None
        reports[part] = evaluate_model(exported, prepared, split, part,
                                       target / f"report_{part}", step)
    record = {**exported.meta, "ood": ood_meta, "metrics": headline_metrics(reports)}
    if splits:
        record["splits"], record["splits_recipe"] = splits["summary"], splits["recipe"]
    write_json(target / META_FILE, record)
    write_model_card(target)
    return record
