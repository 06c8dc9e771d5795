"""Running a torch module on model-ready images: the 8 rotation/flip views, rotation-averaged
logits, and the penultimate features from the same forward pass.

Every caller that runs a network (training's validation pass, evaluation, release, prediction)
comes through :func:`run_network`, so what a model answers is the same number everywhere; a
network that is not a torch module (ONNX Runtime) is handed to the numpy runner of
:mod:`galaxy_core.model.network`, which takes the same views in the same order. Calibrated
answers of a loaded model are :mod:`galaxy_core.model.calibrated`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from galaxy_core.data.tensors import to_tensor
from galaxy_core.model.build import classifier_layer
from galaxy_core.model.network import Network, NetworkOutput, run_array_network
from galaxy_core.model.views import DIHEDRAL_VIEWS, View, check_views, undo_view

__all__ = ["DIHEDRAL_VIEWS", "apply_view", "dihedral_views", "predict_logits", "run_network",
           "undo_view"]


def apply_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """``x`` (N, C, H, W) seen in ``view``."""
    flip, k = view
    return torch.rot90(torch.flip(x, dims=[3]) if flip else x, k, dims=[2, 3])


def dihedral_views(x: torch.Tensor, n: int = 8) -> list[torch.Tensor]:
    """The first ``n`` of the 8 rotations/reflections of a batch, for test-time averaging."""
    return [apply_view(x, view) for view in DIHEDRAL_VIEWS[:n]]


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


GPU_BATCH, CPU_BATCH = 256, 64
"""Images per pass when a whole part is measured (evaluation, the release step): a GPU is
kept busy by larger batches; on the CPU a larger batch is no faster, and 64 is what every
report so far was made with."""


def batch_for(model: nn.Module) -> int:
    """The batch for measuring ``model`` over a part, by the device its weights are on."""
    return GPU_BATCH if next(model.parameters()).device.type == "cuda" else CPU_BATCH


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
    check_views(views)
    tta = tta and views > 1
    if not isinstance(model, nn.Module):
        return run_array_network(model, images, mean, std, views=views if tta else 1,
                                 batch_size=batch_size, features=features, progress=progress)
    runner = _TorchRunner(model, channels_last, features)
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
