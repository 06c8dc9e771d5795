"""The 8 dihedral views of a square image (rotations and mirror images), on numpy arrays.

Averaging a network's logits over these views makes its answer independent of how the galaxy
happens to lie on the sky, which a CNN is not by construction. The list and its order live here,
free of torch, so the ONNX Runtime path (:mod:`galaxy_core.model.network`) and the torch one
(:mod:`galaxy_core.model.inference`) take the same views in the same order.
"""

from __future__ import annotations

import numpy as np

View = tuple[bool, int]
"""A dihedral view: (mirror left-right first, then rotate by k quarter turns)."""
DIHEDRAL_VIEWS: tuple[View, ...] = tuple((flip, k) for flip in (False, True) for k in range(4))
"""The 8 rotations/reflections of a square image; the first is the image itself, the first four
are the rotations alone."""
VIEW_CHOICES = (1, 4, 8)
"""How many views a prediction may average: the image as given, its 4 rotations, or all 8."""


def check_views(views: int) -> None:
    if views not in VIEW_CHOICES:
        raise ValueError(f"views must be one of {VIEW_CHOICES}, got {views}")


def array_view(x: np.ndarray, view: View) -> np.ndarray:
    """A batch ``x`` (N, C, H, W) seen in ``view``, C-contiguous: what ``torch.rot90`` of
    ``torch.flip`` gives for the same view, element for element."""
    flip, k = view
    turned = np.rot90(x[..., ::-1] if flip else x, k, axes=(2, 3))
    return np.ascontiguousarray(turned)


def undo_view(image: np.ndarray, view: View) -> np.ndarray:
    """Turn a 2-D map computed on a view back to the original orientation."""
    flip, k = view
    out = np.rot90(image, -k)
    return np.flip(out, axis=1) if flip else out
