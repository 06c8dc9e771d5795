"""Running a network that is not a torch module (ONNX Runtime: :mod:`galaxy_core.model.
onnx_network`) on model-ready images, in numpy alone.

A survey-scale run with the ONNX backends never needs torch: importing it costs about two
seconds and 400 MB per process, paid again by every worker and every Ray actor. So the
normalisation, the views and their averaging are written here in numpy, the same operations in
the same order as the torch path (:mod:`galaxy_core.model.inference`), which hands any
:class:`Network` to :func:`run_array_network` too. Against the torch normalisation and views of
the same network, the inputs are identical bit for bit and so are the logits at 1 and 4 views;
at 8 views their mean differs in the last float32 bit (torch adds the 8 in another order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from galaxy_core.model.views import DIHEDRAL_VIEWS, array_view, check_views


@dataclass
class NetworkOutput:
    logits: np.ndarray
    """(N, C), averaged over the views when rotation averaging is on."""
    features: np.ndarray | None = None
    """(N, D) penultimate features of the image as given (the first view), when asked for."""


class Network(Protocol):
    """A network other than a torch module: one batch in, its logits and features out.

    Only the forward pass differs between back ends; the views, their averaging and the
    features of the first view are the runner's, so every back end answers the same question.
    """

    n_classes: int
    n_features: int

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, C) and penultimate features (N, D), float32, for a float32 normalised
        NCHW batch (C-contiguous)."""
        ...


def normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, C-contiguous: ``(x / 255 - mean) / std`` in
    float32, as :func:`galaxy_core.data.tensors.to_tensor` computes it."""
    x = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2), dtype=np.float32)
    x /= np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return (x - m) / s


def run_array_network(network: Network, images: np.ndarray, mean: tuple[float, ...],
                      std: tuple[float, ...], views: int = 8, batch_size: int = 64,
                      features: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> NetworkOutput:
    """Logits for uint8 images (N, H, W, 3), averaged over the first ``views`` dihedral views,
    and, with ``features``, the penultimate features of the first view, from the same pass."""
    check_views(views)
    logits_out, features_out = [], []
    for start in range(0, len(images), batch_size):
        x = normalise(images[start:start + batch_size], mean, std)
        logits = []
        for i, view in enumerate(DIHEDRAL_VIEWS[:views]):
            view_logits, view_features = network(x if i == 0 else array_view(x, view))
            logits.append(np.asarray(view_logits, dtype=np.float32))
            if features and i == 0:
                features_out.append(np.asarray(view_features, dtype=np.float32))
        logits_out.append(np.stack(logits).mean(0, dtype=np.float32) if views > 1 else logits[0])
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    empty = np.zeros((0, network.n_classes), dtype=np.float32)
    return NetworkOutput(
        logits=np.concatenate(logits_out) if logits_out else empty,
        features=(np.concatenate(features_out) if features_out
                  else np.zeros((0, network.n_features), dtype=np.float32)) if features else None)
