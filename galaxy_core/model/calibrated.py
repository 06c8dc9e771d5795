"""What a loaded model answers for model-ready images: calibrated probabilities (the prior
correction, then the temperature) and out-of-distribution scores, from one pass of its network.

Torch is imported only when the network is a torch module: a model opened on an ONNX backend
(:func:`galaxy_core.predict.backend.open_model`) answers with numpy and ONNX Runtime alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax

from galaxy_core.model.folder import ModelInfo
from galaxy_core.model.network import Network, NetworkOutput, run_array_network
from galaxy_core.model.ood import ood_scores


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, computed in log space so large logits do
    not overflow."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.asarray(logits, dtype=float) / temperature
    return np.exp(log_softmax(z, axis=1))


def calibrated_probabilities(logits: np.ndarray, logit_bias: np.ndarray,
                             temperature: float) -> np.ndarray:
    """Probabilities users see: the prior correction (which undoes class-weighted training) is
    added first, then the temperature fitted on those corrected logits is applied."""
    return softmax(np.asarray(logits, dtype=float) + logit_bias, temperature)


@dataclass
class Inference:
    """What a loaded model says about a batch of model-ready images."""

    probabilities: np.ndarray
    """(N, C) calibrated, in the model's class order."""
    ood_scores: np.ndarray | None
    """(N,) out-of-distribution scores; None for a model folder without an OOD reference."""


def network_of(loaded: ModelInfo) -> Any:
    """The network a loaded model predicts with: the one a back end attached
    (:func:`galaxy_core.predict.backend.use_backend` sets ``loaded.network``), else its torch
    module (``loaded.model``, which Grad-CAM needs, whatever the back end)."""
    network = getattr(loaded, "network", None)
    return getattr(loaded, "model", None) if network is None else network


def is_torch_module(network: object) -> bool:
    """Whether ``network`` is a torch module, without importing torch (a process that never
    imported it holds none)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(network, torch.nn.Module)


def run_loaded(loaded: ModelInfo, images: np.ndarray, views: int = 1, batch_size: int = 64,
               features: bool = False,
               progress: Callable[[int, int], None] | None = None) -> NetworkOutput:
    """Logits (averaged over ``views``) and, with ``features``, the first view's features of
    ``loaded``'s network for uint8 model-ready images."""
    network = network_of(loaded)
    cfg = loaded.config
    if is_torch_module(network):
        from galaxy_core.model.inference import run_network

        return run_network(network, images, cfg.mean, cfg.std, tta=views > 1,
                           batch_size=batch_size, channels_last=cfg.channels_last,
                           features=features, progress=progress, views=views)
    if network is None:
        raise TypeError(f"{loaded.path}: no network is loaded for this model")
    array_network: Network = network
    return run_array_network(array_network, images, cfg.mean, cfg.std, views=views,
                             batch_size=batch_size, features=features, progress=progress)


def views_for(loaded: ModelInfo, views: int | None = None) -> int:
    """The views a prediction averages: ``views``, or by default the model's own setting (8
    with rotation averaging, else 1)."""
    return views if views is not None else (8 if loaded.config.tta else 1)


def infer(loaded: ModelInfo, images: np.ndarray, batch_size: int = 64,
          progress: Callable[[int, int], None] | None = None,
          views: int | None = None) -> Inference:
    """Calibrated probabilities and OOD scores for uint8 model-ready images (N, H, W, 3), from
    one rotation-averaged pass (the OOD features come from the same pass as the logits).
    ``views`` (1, 4 or 8) trades averaging for speed; by default the model's own setting."""
    n_views = views_for(loaded, views)
    wants_ood = loaded.ood is not None and len(images) > 0
    out = run_loaded(loaded, images, views=n_views, batch_size=batch_size, features=wants_ood,
                     progress=progress)
    scores = ood_scores(out.features, loaded.ood, images) if wants_ood else None
    return Inference(calibrated_probabilities(out.logits, loaded.logit_bias, loaded.temperature),
                     scores)
