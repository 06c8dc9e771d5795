"""Turn a finished run's model folder into the one users get: fp16 weights (half the download),
the calibration carried over, and the OOD reference and the validation and test reports measured
again with the exported weights, so the model card and the warnings describe exactly the file
that ships (and an OOD reference written by an older version is never carried forward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaxy_core.data.cache import training_part
from galaxy_core.data.prepared import PreparedData
from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import read_json
from galaxy_core.model.store import load_model
from galaxy_core.release.package import PartProgress, write_model_folder
from galaxy_core.train.run_folder import SPLITS_SUMMARY_FILE

RECIPE_KEYS = ("arch", "weights", "epochs", "image_size", "crop_fraction", "lr")


def read_stability(run: str | Path) -> dict[str, Any]:
    """The spread over splits measured by a ``galaxy train --splits K`` run, with its recipe.

    The recipe travels with the figures because the spread is a property of how a model is
    trained on K different splits, and that recipe may be a cheaper stand-in for the shipped one.
    """
    run = Path(run)
    if not (run / SPLITS_SUMMARY_FILE).is_file():
        raise GalaxyError(f"{run} has no {SPLITS_SUMMARY_FILE}: give a folder written by "
                          "'galaxy train --splits K' (K >= 2) after it finished")
    configs = sorted(run.glob("split_*/config.json"))
    recipe = read_json(configs[0]) if configs else {}
    return {"summary": read_json(run / SPLITS_SUMMARY_FILE),
            "recipe": {k: recipe.get(k) for k in RECIPE_KEYS}}


def export_model(source: str | Path, target: str | Path, prepared: PreparedData,
                 half: bool = True, progress: PartProgress | None = None,
                 stability: str | Path | None = None) -> dict[str, Any]:
    """Write ``target`` from the model folder ``source`` and re-evaluate it; returns model.json.

    ``stability``: a ``--splits K`` run folder whose spread over splits the card should report.
    """
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise GalaxyError("export needs a different target folder than the source model")
    splits = read_stability(stability) if stability else None
    loaded = load_model(source)
    training = loaded.meta.get("training", {})
    split = int(training.get("split", 0))
    base = dict(loaded.meta)
    if splits:
        base["splits"], base["splits_recipe"] = splits["summary"], splits["recipe"]
    return write_model_folder(target, loaded.model, loaded.config, prepared, split,
                              training_part(prepared, loaded.config, split), loaded.logit_bias,
                              training, temperature=loaded.temperature, base=base, half=half,
                              progress=progress)
