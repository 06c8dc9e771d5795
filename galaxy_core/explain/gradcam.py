"""Grad-CAM maps: which parts of the galaxy pushed the network towards a class.

Uses pytorch-grad-cam on the last convolutional block (``build.feature_layer``). Because the
prediction is an average over the 8 rotations/flips, the map is too: each view's map is turned
back to the original orientation before averaging, so the map explains the same number the
user is shown.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from galaxy_core.data.tensors import to_tensor
from galaxy_core.model.build import feature_layer
from galaxy_core.model.inference import DIHEDRAL_VIEWS, apply_view, undo_view
from galaxy_core.model.store import LoadedModel

def gradcam(loaded: LoadedModel, image: np.ndarray, target: int | None = None,
            average_views: bool = True) -> np.ndarray:
    """Map in [0, 1] (H, W) for one model-ready uint8 image (H, W, 3).

    ``target`` is the class index to explain; by default the predicted class.
    """
    cfg = loaded.config
    model = loaded.model.to(memory_format=torch.contiguous_format)
    x = to_tensor(image[None], cfg.mean, cfg.std, channels_last=False)
    if target is None:
        with torch.inference_mode():
            target = int(model(x).argmax(1).item())
    views = DIHEDRAL_VIEWS if average_views else DIHEDRAL_VIEWS[:1]
    batch = torch.cat([apply_view(x, view) for view in views])
    with GradCAM(model=model, target_layers=[feature_layer(model)]) as cam:
        maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(target)] * len(views))
    total = np.mean([undo_view(m, view) for m, view in zip(maps, views)], axis=0)
    peak = float(total.max())
    return (total / peak if peak > 0 else total).astype(np.float32)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heat map blended over the image (uint8 RGB), as shown in the dashboard."""
    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True,
                             image_weight=1 - alpha)
