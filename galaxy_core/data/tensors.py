"""uint8 image batches -> normalised float tensors, the single conversion every model input uses."""

from __future__ import annotations

import numpy as np
import torch


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              channels_last: bool = True) -> torch.Tensor:
    """(N,H,W,3) uint8 tensor -> (N,3,H,W) float32, normalised, on the tensor's own device: a
    GPU gets the uint8 rows (a quarter of the bytes) and does this arithmetic itself."""
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_tensor(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              channels_last: bool = True) -> torch.Tensor:
    """(N,H,W,3) uint8 -> (N,3,H,W) float32, normalised."""
    return normalise(torch.from_numpy(np.ascontiguousarray(images)), mean, std, channels_last)
