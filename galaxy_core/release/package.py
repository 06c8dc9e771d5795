"""Write a model folder: the one route by which weights become something users run.

Training's finalize step and ``galaxy export`` both come here, so a folder is always made the
same way: the weights rounded to the precision they are stored in, then measured as stored
(validation and test reports), the temperature fitted on validation (unless carried over), the
out-of-distribution reference fitted on the galaxies the network learned from, and the model
card written from what was measured. ``model.json`` is written after everything it describes,
so a folder with it is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from galaxy_core.config import Config
from galaxy_core.data.cache import Part, load_framed_part
from galaxy_core.data.prepared import PreparedData
from galaxy_core.evaluate.calibration import fit_temperature
from galaxy_core.evaluate.evaluate_model import part_report
from galaxy_core.evaluate.report import headline_metrics, write_report
from galaxy_core.model.build import build_model, classifier_layer
from galaxy_core.model.inference import batch_for, run_network
from galaxy_core.model.ood import fit_ood, save_ood
from galaxy_core.io_utils import read_json
from galaxy_core.model.store import META_FILE, report_dir, save_model
from galaxy_core.model.weights import state_of
from galaxy_core.release.model_card import write_model_card

REPORT_PARTS = ("val", "test")
PartProgress = Callable[[str, int, int], None]
"""``progress(part, done, total)`` while a part is run through the network."""


def as_stored(model: nn.Module, config: Config, half: bool) -> nn.Module:
    """The network exactly as it will be loaded from the folder: float16-rounded weights when
    ``half``, so the reports and OOD reference describe the file that ships. It stays on the
    device it is on."""
    if half:
        device = next(model.parameters()).device
        rounded = {k: v.float() if v.is_floating_point() else v
                   for k, v in state_of(model, half=True).items()}
        model = build_model(config.arch, None, num_classes=classifier_layer(model).out_features)
        model.load_state_dict(rounded)
        model.to(device)
    return model.eval()


def write_model_folder(folder: Path, model: nn.Module, config: Config, prepared: PreparedData,
                       split: int, train_part: Part, logit_bias: np.ndarray,
                       training: dict[str, Any], temperature: float | None = None,
                       base: dict[str, Any] | None = None, half: bool = False,
                       progress: PartProgress | None = None) -> dict[str, Any]:
    """Measure ``model`` and write the complete model folder; returns its ``model.json``.

    ``train_part`` holds the galaxies the network learned from (the OOD reference is fitted on
    them); ``temperature`` None fits it on validation; ``base`` is a model.json to carry over
    (export): its other keys are kept, in their order, and the measured ones replaced.
    """
    folder = Path(folder)
    model = as_stored(model, config, half)
    parts = {name: load_framed_part(prepared, config, split, name) for name in REPORT_PARTS}
    outputs = {}
    for name, data in parts.items():
        step = (lambda done, total, name=name: progress(name, done, total)) if progress else None
        outputs[name] = run_network(model, data.images, config.mean, config.std, tta=config.tta,
                                    batch_size=batch_for(model),
                                    channels_last=config.channels_last, features=name == "val",
                                    progress=step)
    bias = np.asarray(logit_bias, dtype=float)
    if temperature is None:
        temperature = fit_temperature(outputs["val"].logits + bias, parts["val"].labels)
    reports = {}
    for name, data in parts.items():
        reports[name] = part_report(outputs[name].logits, data, temperature, bias, prepared,
                                    split, name, folder)
        write_report(report_dir(folder, name), reports[name])

    train_features = run_network(model, train_part.images, config.mean, config.std, tta=False,
                                 batch_size=batch_for(model),
                                 channels_last=config.channels_last, features=True).features
    ood_state, ood_meta = fit_ood(train_features, train_part.labels, outputs["val"].features,
                                  parts["val"].images)
    save_ood(folder, ood_state)

    record = {**(base or {}), "temperature": float(temperature),
              "logit_bias": [float(b) for b in bias], "ood": ood_meta,
              "metrics": headline_metrics(reports), "training": training}
    save_model(folder, model.to(memory_format=torch.contiguous_format), config, record,
               half=half)
    write_model_card(folder)
    return read_json(folder / META_FILE)
