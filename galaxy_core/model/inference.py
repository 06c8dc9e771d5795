"""Running a network on model-ready images: the 8 rotation/flip views, rotation-averaged logits,
the penultimate features from the same forward pass, and calibrated probabilities.

Averaging the logits over the 8 dihedral views makes the prediction independent of how the
galaxy happens to be oriented, which a CNN is not by construction. Every caller that runs a
network (training's validation pass, evaluation, release, prediction) comes through here, so
what a model answers is the same number everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.special import log_softmax
from torch import nn

from galaxy_core.data.tensors import to_tensor
from galaxy_core.model.build import classifier_layer
from galaxy_core.model.ood import ood_scores
from galaxy_core.model.store import LoadedModel

View = tuple[bool, int]
"""A dihedral view: (mirror left-right first, then rotate by k quarter turns)."""
DIHEDRAL_VIEWS: tuple[View, ...] = tuple((flip, k) for flip in (False, True) for k in range(4))
"""The 8 rotations/reflections of a square image; the first is the image itself, the first four
are the rotations alone."""
VIEW_CHOICES = (1, 4, 8)
"""How many views a prediction may average: the image as given, its 4 rotations, or all 8."""


def apply_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """``x`` (N, C, H, W) seen in ``view``."""
    flip, k = view
    return torch.rot90(torch.flip(x, dims=[3]) if flip else x, k, dims=[2, 3])


def undo_view(image: np.ndarray, view: View) -> np.ndarray:
    """Turn a 2-D map computed on a view back to the original orientation."""
    flip, k = view
    out = np.rot90(image, -k)
    return np.flip(out, axis=1) if flip else out


def dihedral_views(x: torch.Tensor, n: int = 8) -> list[torch.Tensor]:
    """The first ``n`` of the 8 rotations/reflections of a batch, for test-time averaging."""
    return [apply_view(x, view) for view in DIHEDRAL_VIEWS[:n]]


@dataclass
class NetworkOutput:
    logits: np.ndarray
    """(N, C), averaged over the views when rotation averaging is on."""
    features: np.ndarray | None = None
    """(N, D) penultimate features of the image as given (the first view), when asked for."""


class Network(Protocol):
    """A network :func:`run_network` can run other than a torch module (the ONNX Runtime one in
    :mod:`galaxy_core.model.onnx_network`): one batch in, its logits and features out.

    Only the forward pass differs between back ends; the views, their averaging and the
    features of the first view stay here, so every back end answers the same question.
    """

    n_classes: int
    n_features: int

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, C) and penultimate features (N, D), float32, for a float32 normalised
        NCHW batch (C-contiguous)."""
        ...


class _TorchRunner:
    """A torch module behind the runner interface: the features are caught by a hook on the
    head's input, so they come from the very pass that gives the logits."""

    def __init__(self, model: nn.Module, channels_last: bool, features: bool) -> None:
        model.eval()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.model, self.channels_last = model, channels_last
        head = classifier_layer(model)
        self.n_classes, self.n_features = head.out_features, head.in_features
        self._caught: list[torch.Tensor] = []
        self._hook = head.register_forward_hook(
            lambda m, inp, out: self._caught.append(inp[0].float())) if features else None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One view's logits and features, on the CPU whatever device the module is on (a
        model being trained on a GPU is validated through here)."""
        device = next(self.model.parameters()).device
        if device.type != "cpu":
            x = x.to(device, non_blocking=True)
        logits = self.model(x)
        caught = self._caught[-1] if self._caught else None
        self._caught.clear()
        if device.type != "cpu":
            logits = logits.float().cpu()
            caught = None if caught is None else caught.cpu()
        return logits, caught

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()


class _NetworkRunner:
    """A :class:`Network` behind the runner interface: NCHW numpy in, tensors out."""

    channels_last = False

    def __init__(self, network: Network) -> None:
        self.network = network
        self.n_classes, self.n_features = network.n_classes, network.n_features

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = self.network(np.ascontiguousarray(x.numpy(), dtype=np.float32))
        return torch.from_numpy(np.asarray(logits)), torch.from_numpy(np.asarray(features))

    def close(self) -> None:
        pass


@torch.inference_mode()
def run_network(model: nn.Module | Network, images: np.ndarray, mean: tuple[float, ...],
                std: tuple[float, ...], tta: bool = True, batch_size: int = 64,
                channels_last: bool = True, features: bool = False,
                progress: Callable[[int, int], None] | None = None,
                views: int = 8) -> NetworkOutput:
    """Logits for uint8 images (N, H, W, 3), averaged over the first ``views`` dihedral views
    when ``tta``, and, with ``features``, the penultimate features caught on the way through
    the same forward pass (no second pass for the OOD score).

    ``model`` is a torch module or any :class:`Network` (ONNX Runtime); ``channels_last`` is a
    torch memory layout and applies to torch modules only."""
    if views not in VIEW_CHOICES:
        raise ValueError(f"views must be one of {VIEW_CHOICES}, got {views}")
    tta = tta and views > 1
    runner = _TorchRunner(model, channels_last, features) if isinstance(model, nn.Module) \
        else _NetworkRunner(model)
    channels_last = runner.channels_last
    logits_out, features_out = [], []
    try:
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start:start + batch_size], mean, std, channels_last)
            batch_views = dihedral_views(x, views) if tta else [x]
            logits = []
            for i, view in enumerate(batch_views):
                if tta:
                    view = view.contiguous(memory_format=torch.channels_last) if channels_last \
                        else view.contiguous()
                view_logits, view_features = runner(view)
                logits.append(view_logits)
                if features and i == 0:
                    features_out.append(view_features)
            batch_logits = torch.stack(logits).mean(0) if tta else logits[0]
            logits_out.append(batch_logits.float().numpy())
            if progress:
                progress(min(start + batch_size, len(images)), len(images))
    finally:
        runner.close()
    return NetworkOutput(
        logits=np.concatenate(logits_out) if logits_out
        else np.zeros((0, runner.n_classes), dtype=np.float32),
        features=(torch.cat(features_out).numpy() if features_out
                  else np.zeros((0, runner.n_features), dtype=np.float32)) if features else None)


def predict_logits(model: nn.Module | Network, images: np.ndarray, mean: tuple[float, ...],
                   std: tuple[float, ...], tta: bool = True, batch_size: int = 64,
                   channels_last: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Logits (N, C) for uint8 images (N, H, W, 3)."""
    return run_network(model, images, mean, std, tta=tta, batch_size=batch_size,
                       channels_last=channels_last, progress=progress).logits


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


def network_of(loaded: LoadedModel) -> nn.Module | Network:
    """The network :func:`infer` runs for ``loaded``: the one a back end attached
    (``galaxy_core.predict.backend.use_backend`` sets ``loaded.network``), else the torch module.
    ``loaded.model`` itself stays the torch module, which Grad-CAM needs."""
    network = getattr(loaded, "network", None)
    return loaded.model if network is None else network


def infer(loaded: LoadedModel, images: np.ndarray, batch_size: int = 64,
          progress: Callable[[int, int], None] | None = None,
          views: int | None = None) -> Inference:
    """Calibrated probabilities and OOD scores for uint8 model-ready images (N, H, W, 3), from
    one rotation-averaged pass (the OOD features come from the same pass as the logits).
    ``views`` (1, 4 or 8) trades averaging for speed; by default the model's own setting."""
    cfg = loaded.config
    n_views = views if views is not None else (8 if cfg.tta else 1)
    wants_ood = loaded.ood is not None and len(images) > 0
    out = run_network(network_of(loaded), images, cfg.mean, cfg.std, tta=n_views > 1,
                      batch_size=batch_size, channels_last=cfg.channels_last,
                      features=wants_ood, progress=progress, views=n_views)
    scores = ood_scores(out.features, loaded.ood, images) if wants_ood else None
    return Inference(calibrated_probabilities(out.logits, loaded.logit_bias, loaded.temperature),
                     scores)
