"""Batch augmentation on tensors: galaxies have no 'up', no handedness that matters for
spiral-vs-elliptical, and are seen at slightly different scales and centrings.

Working on the whole batch with one ``affine_grid``/``grid_sample`` call costs a few percent of a
ResNet-50 step, far less than per-image PIL transforms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None,
                  max_scale: float = 0.1, max_shift: float = 0.05) -> torch.Tensor:
    """Rotate by any angle, flip half the images, jitter scale and centring."""
    n = x.shape[0]
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * max_scale
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * max_shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.contiguous(), grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def colour_jitter(x: torch.Tensor, generator: torch.Generator | None = None,
                  strength: float = 0.1) -> torch.Tensor:
    """Small per-image brightness and contrast changes (survey depth and stretch vary)."""
    n = x.shape[0]
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    bias = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    return x * gain + bias


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/reflections of a square image, for test-time averaging."""
    views = []
    for flip in (False, True):
        base = torch.flip(x, dims=[3]) if flip else x
        views.extend(torch.rot90(base, k, dims=[2, 3]) for k in range(4))
    return views
