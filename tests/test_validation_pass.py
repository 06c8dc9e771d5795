"""The per-epoch validation pass runs at the training steps' precision: bf16 when the run
trains in bf16 (twice as fast on CPUs with bf16 instructions), float32 otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from galaxy_core.config import Config
from galaxy_core.data.cache import Part
from galaxy_core.model.build import build_model, classifier_layer
from galaxy_core.train.loop import validate


def _part(n: int = 24) -> Part:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 2
    return Part(images=images, labels=labels, table=pd.DataFrame({"objid": range(n)}))


def _validate_catching_dtype(autocast: str | None) -> tuple[dict[str, float], torch.dtype]:
    torch.manual_seed(0)
    model = build_model("resnet18", None)
    seen: list[torch.dtype] = []
    classifier_layer(model).register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    row = validate(model, _part(), Config(), torch.ones(2), autocast=autocast)
    return row, seen[0]


def test_validation_runs_in_bf16_when_asked_and_scores_agree_with_float32():
    fp32, fp32_dtype = _validate_catching_dtype(None)
    bf16, bf16_dtype = _validate_catching_dtype("cpu")
    assert fp32_dtype == torch.float32
    assert bf16_dtype == torch.bfloat16
    # the loss is computed in float32 from the bf16 logits: a number, near the float32 one
    assert isinstance(bf16["val_loss"], float) and np.isfinite(bf16["val_loss"])
    assert abs(bf16["val_loss"] - fp32["val_loss"]) < 0.05 * max(1.0, fp32["val_loss"])
    assert set(bf16) == set(fp32) == {"val_loss", "val_accuracy", "val_balanced_accuracy",
                                      "val_macro_f1"}
