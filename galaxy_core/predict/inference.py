"""Batched forward passes over preprocessed images, with optional rotation/flip averaging.

Averaging the logits over the 8 dihedral views makes the prediction independent of how the
galaxy happens to be oriented, which a CNN is not by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from galaxy_core.data.tensors import to_tensor
from galaxy_core.train.augment import dihedral_views


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, mean: tuple[float, ...],
                   std: tuple[float, ...], tta: bool = True, batch_size: int = 64,
                   channels_last: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Logits (N, C) for uint8 images (N,H,W,3); model must already be in eval mode."""
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    outputs = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start:start + batch_size], mean, std, channels_last)
        if tta:
            views = dihedral_views(x)
            logits = torch.stack([model(v.contiguous(memory_format=torch.channels_last)
                                        if channels_last else v.contiguous())
                                  for v in views]).mean(0)
        else:
            logits = model(x)
        outputs.append(logits.float().numpy())
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    if not outputs:
        return np.zeros((0, 2), dtype=np.float32)
    return np.concatenate(outputs)
