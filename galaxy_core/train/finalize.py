"""Turn a finished run into a shippable model folder: best weights, prior correction and
temperature fitted on the validation split, held-out test metrics, the evaluation report and the
out-of-distribution reference, all stored beside the weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from galaxy_core.config import CLASSES, Config
from galaxy_core.data.cache import load_framed_part, training_part
from galaxy_core.data.prepared import PreparedData
from galaxy_core.model.build import build_model
from galaxy_core.model.store import save_model
from galaxy_core.predict.inference import predict_logits

MODEL_SUBDIR = "model"


def prior_correction(weights: np.ndarray) -> np.ndarray:
    """Logit shift that undoes class-weighted training: weighting class c by w_c multiplies its
    odds by w_c, so subtracting log w_c restores probabilities for the true class mix."""
    return -np.log(np.asarray(weights, dtype=float))


def finalize_run(run_dir: Path, prepared: PreparedData, config: Config, split: int,
                 class_weights: np.ndarray, history: list[dict[str, Any]],
                 half: bool = False) -> Path:
    from galaxy_core.evaluate.calibration import fit_temperature
    from galaxy_core.evaluate.report import build_report, headline_metrics, write_report
    from galaxy_core.predict.ood import fit_ood, save_ood

    model = build_model(config.arch, None)
    model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    model.eval()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)

    def logits_of(part_name: str) -> tuple[np.ndarray, Any]:
        part = load_framed_part(prepared, config, split, part_name)
        return predict_logits(model, part.images, config.mean, config.std, tta=config.tta,
                              channels_last=config.channels_last), part

    bias = prior_correction(class_weights)
    val_logits, val_part = logits_of("val")
    temperature = fit_temperature(val_logits + bias, val_part.labels)
    test_logits, test_part = logits_of("test")
    reports = {}
    for name, logits, part in (("val", val_logits, val_part), ("test", test_logits, test_part)):
        reports[name] = build_report(logits, part.labels, part.table["objid"].astype(str).tolist(),
                                     part.table["image"].astype(str).tolist(), temperature, bias)
    out = run_dir / MODEL_SUBDIR
    for name, report in reports.items():
        report["split"] = split
        report["part"] = name
        report["image_dir"] = str(prepared.image_dir)
        write_report(out / f"report_{name}", report)

    train_part = training_part(prepared, config, split)
    ood_state, ood_meta = fit_ood(model, train_part, val_part, config)
    save_ood(out, ood_state)

    meta = {
        "temperature": float(temperature),
        "logit_bias": [float(b) for b in bias],
        "ood": ood_meta,
        "metrics": headline_metrics(reports),
        "training": {"prepared": str(prepared.root), "source": prepared.summary.get("source"),
                     "split": split, "n_train": int(len(train_part)),
                     "n_val": int(len(val_part)), "n_test": int(len(test_part)),
                     "class_counts": prepared.summary.get("kept_per_class"),
                     "epochs_run": len(history), "history": history},
    }
    save_model(out, model.to(memory_format=torch.contiguous_format), config, meta, half=half)
    from galaxy_core.evaluate.model_card import write_model_card

    write_model_card(out)
    return out


__all__ = ["finalize_run", "prior_correction", "CLASSES"]
