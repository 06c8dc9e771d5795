"""Class-activation maps: which parts of the galaxy pushed the network towards a class.

A map comes from one block of the network (``layer``, see ``build.CAM_LAYERS``) and one of
pytorch-grad-cam's methods (``method``, the :data:`METHODS` table: the one place a method is
chosen; each is a pytorch-grad-cam class whose own override point, ``get_cam_weights`` or
``get_cam_image``, says how activations and gradients become a map). Because the prediction is
an average over the 8 rotations/flips, the map is too: each view's map is turned back to the
original orientation before averaging, so the map explains the same number the user is shown.

Why the default is not Grad-CAM on the last block: at the 96 px input of the shipped ResNet-50
the last block (layer4) is 3 x 3, so its map can only peak on one of 9 cell centres and nearly
every galaxy gets the same centred diamond. ``benchmarks/cam_faithfulness.py`` measured every
choice on the shipped model: 48 synthetic images of one galaxy-like blob off-centre on dark sky
(covering it with sky lowers the answer's probability by 0.16-0.48, so it drove the answer),
and 80 GZ1 test galaxies with a companion of the other class pasted near a corner (84 cases
where covering an object with sky shows which one drove a class, 6 of them the companion):

    layer   method      grid   blob  driver  del.win
    layer4  gradcam     3x3    0.00   0.73    0.85     (the map before)
    layer4  gradcam++   3x3    0.00   0.67    0.80
    layer3  gradcam     6x6    0.00   0.48    0.85
    layer3  gradcam++   6x6    0.21   0.77    0.89
    layer2  gradcam     12x12  0.00   0.44    0.74
    layer2  hirescam    12x12  0.65   0.80    0.89
    layer2  layercam    12x12  0.88   0.86    0.90
    layer2  gradcam++   12x12  1.00   0.83    0.88     (the default)

blob: share of maps whose peak lies on the blob; driver: share of real cases whose map peaks on
the object that drove the class; del.win: share where covering the map's peak (a 12 px disc)
lowers the class's probability more than covering the other object the same way. No choice
reached 0.9 on all three (the rule fixed before the run); the default is the best on their mean:
Grad-CAM++ on layer2, 12 x 12 cells of 8 px at 96 px. It finds every off-centre blob, where no
layer4 or layer3 map finds more than a fifth, and peaks on the real driver more often than the
old map. Still weak: a companion that drove the class is rarely where any map peaks (0 of 6 for
the default, at best 1 of 6), so a map is a hint, not a proof. Time per 8-view map on 2 CPU
cores (median of 6 galaxies, machine otherwise quiet): default 0.17 s, layer4 Grad-CAM 0.11 s;
the old map, with its full backward pass, took 0.31 s.

Backpropagation starts at the chosen block's output (the weights are frozen while a map is
made), so a map costs one forward pass of the 8 views and a backward pass through the blocks
after ``layer`` only; the maps are the same as with a full backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from galaxy_core.data.tensors import to_tensor
from galaxy_core.errors import GalaxyError
from galaxy_core.model.build import CAM_LAYERS, cam_layer
from galaxy_core.model.inference import DIHEDRAL_VIEWS, apply_view, undo_view
from galaxy_core.model.store import LoadedModel

METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM, "hirescam": HiResCAM, "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM, "layercam": LayerCAM,
}
"""Map methods by name, all driven by the explained class's gradient. Left out: EigenCAM (the
block's first principal component: the same map whatever class is asked about, with an
arbitrary sign), and ScoreCAM and AblationCAM (they run the network once per channel of the
block and view, 8 x 512 passes at layer2: by the forward pass's speed here, over a minute per
map on a CPU; not measured)."""
DEFAULT_LAYER = "layer2"
DEFAULT_METHOD = "gradcam++"


def gradcam(loaded: LoadedModel, image: np.ndarray, target: int | None = None,
            average_views: bool = True, layer: str = DEFAULT_LAYER,
            method: str = DEFAULT_METHOD) -> np.ndarray:
    """Map in [0, 1] (H, W) for one model-ready uint8 image (H, W, 3).

    ``target`` is the class index to explain; by default the predicted class. ``layer`` names
    the block (``build.CAM_LAYERS``) and ``method`` the way its activations become a map
    (:data:`METHODS`).
    """
    return gradcam_many(loaded, np.asarray(image)[None], [target], average_views, layer,
                        method)[0]


def gradcam_many(loaded: LoadedModel, images: np.ndarray, targets: list[int | None],
                 average_views: bool = True, layer: str = DEFAULT_LAYER,
                 method: str = DEFAULT_METHOD) -> list[np.ndarray]:
    """:func:`gradcam` of several images (N, H, W, 3) in one pass: every view of every image
    goes through the network together. Each map is scaled on its own, so a map does not
    depend on the others in the pass; a pass of 8 images costs about half as much per image
    as 8 single ones on a CPU (the Failures page and concurrent dashboard sessions share
    passes)."""
    if method not in METHODS:
        raise GalaxyError(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    if len(images) == 0:
        return []
    cfg = loaded.config
    model = loaded.model.to(memory_format=torch.contiguous_format)
    block = cam_layer(model, layer)
    x = to_tensor(np.asarray(images), cfg.mean, cfg.std, channels_last=False)
    if any(t is None for t in targets):
        with torch.inference_mode():
            predicted = model(x).argmax(1).tolist()
        targets = [p if t is None else t for t, p in zip(targets, predicted)]
    views = DIHEDRAL_VIEWS if average_views else DIHEDRAL_VIEWS[:1]
    batch = torch.cat([apply_view(x, view) for view in views])  # view-major: v * N + i
    wanted = [ClassifierOutputTarget(int(t)) for _ in views for t in targets]
    with _gradients_from(model, block), METHODS[method](model=model, target_layers=[block]) as cam:
        maps = cam(input_tensor=batch, targets=wanted)
    n = len(images)
    out = []
    for i in range(n):
        total = np.mean([undo_view(maps[v * n + i], view) for v, view in enumerate(views)],
                        axis=0)
        peak = float(total.max())
        out.append((total / peak if peak > 0 else total).astype(np.float32))
    return out


@contextmanager
def _gradients_from(model: nn.Module, block: nn.Module) -> Iterator[None]:
    """Backpropagate from the output back to ``block``'s output and no further: the weights
    stop needing gradients and the graph starts at that output. The gradients there, all a map
    uses, are unchanged; the backward pass through the earlier blocks and into the weights, most
    of the cost, is skipped."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    handle = block.register_forward_hook(lambda module, args, out: out.requires_grad_(),
                                         prepend=True)
    try:
        yield
    finally:
        handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)


def map_grid(loaded: LoadedModel, layer: str = DEFAULT_LAYER) -> tuple[int, int]:
    """(rows, cols) of the map's cells for this model at its input size: how coarse the map
    is before it is smoothed up to the image (3 x 3 for the last block of a 96 px ResNet)."""
    if layer not in CAM_LAYERS:
        raise GalaxyError(f"unknown map layer {layer!r}; choose one of {', '.join(CAM_LAYERS)}")
    side = math.ceil(loaded.config.image_size / CAM_LAYERS[layer])
    return side, side


def map_grid_text(loaded: LoadedModel, layer: str = DEFAULT_LAYER) -> str:
    """:func:`map_grid` in words for the screen, e.g. ``"6 x 6 cells of 16 px"``."""
    rows, cols = map_grid(loaded, layer)
    return f"{rows} x {cols} cells of {loaded.config.image_size / cols:g} px"


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heat map blended over the image (uint8 RGB), as shown in the dashboard."""
    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True,
                             image_weight=1 - alpha)
