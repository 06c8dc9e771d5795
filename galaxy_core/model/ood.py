"""Out-of-distribution score: how unlike the training galaxies an input looks to the network.

A two-class softmax is confident about anything, noise included, so confidence cannot warn a
user. Instead we measure the Mahalanobis distance of the penultimate-layer features to the
nearest class centre (Lee et al. 2018), in a 64-dimensional PCA space fitted on the training
split. The score is that distance divided by the 99th percentile of validation-galaxy distances:
about 1 or below is "looks like the training data", clearly above 1 is a warning.

Features alone can miss inputs that a network maps near the galaxies (a smooth blue-sky photo
scored 0.81 with the 34-epoch model), so a second, pixel-level score checks what every survey
cutout has: dark sky around the galaxy. It is the mean brightness of the image's outer ring,
again in units of the validation 99th percentile; the reported score is the larger of the two.

Both measures see only the model input, i.e. a foreign picture after survey matching, which
paints anything (a landscape, a plot, a black frame) into a dark SDSS-like sky. The predict stage
therefore also scores the picture as the user gave it (``galaxy_core/predict/plausibility.py``:
a found, centred, compact source on a dark, noisy sky, and :func:`ood_scores` of the features of
the whole unmatched picture) and reports the larger of that and this score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from galaxy_core.errors import ModelLoadError
from galaxy_core.io_utils import atomic_write

OOD_FILE = "ood.safetensors"
N_COMPONENTS = 64
WARN_AT = 1.0
"""Scores above this (the 99th percentile of validation galaxies) get a warning."""


def _distances(features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    z = (features - state["pca_mean"]) @ state["pca_components"].T
    best = None
    for centre in state["class_means"]:
        d = z - centre
        dist = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, state["precision"], d), 0))
        best = dist if best is None else np.minimum(best, dist)
    return best


def fit_ood(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
            val_images: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the PCA, class centres and shared covariance on the training galaxies' penultimate
    features; scale by the validation galaxies (their features and model-input images)."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    feats = train_features
    n_comp = int(min(N_COMPONENTS, feats.shape[1], max(1, len(feats) - 1)))
    pca = PCA(n_components=n_comp, random_state=0).fit(feats)
    z = pca.transform(feats)
    labels = np.asarray(train_labels)
    present = sorted(set(labels.tolist()))
    means = np.stack([z[labels == c].mean(0) for c in present])
    centred = np.concatenate([z[labels == c] - means[i] for i, c in enumerate(present)])
    precision = LedoitWolf().fit(centred).precision_
    state = {"pca_mean": pca.mean_.astype(np.float32),
             "pca_components": pca.components_.astype(np.float32),
             "class_means": means.astype(np.float32), "precision": precision.astype(np.float32)}
    val_dist = _distances(val_features, state)
    scale = float(np.percentile(val_dist, 99)) if len(val_dist) else 1.0
    state["scale"] = np.array([scale], dtype=np.float32)
    val_border = border_brightness(val_images)
    border_scale = max(float(np.percentile(val_border, 99)), 1.0) if len(val_border) else 255.0
    state["border_scale"] = np.array([border_scale], dtype=np.float32)
    val_scores = np.maximum(val_dist / scale, val_border / border_scale)
    meta = {"method": "mahalanobis-pca + dark-sky border", "components": n_comp, "scale": scale,
            "border_scale": border_scale, "warn_at": WARN_AT,
            "val_score_percentiles": {str(p): float(np.percentile(val_scores, p))
                                      for p in (50, 90, 99)} if len(val_dist) else {}}
    return state, meta


BORDER_CHUNK = 512
"""Images whose borders are averaged at once: the release step reads the validation part of a
large cache through a memory map, and all its borders at once in float64 were 0.7 GB at 50,000
galaxies."""


def border_brightness(images: np.ndarray) -> np.ndarray:
    """Mean 0-255 brightness of the outer eighth of each (N, H, W, 3) uint8 image (a memory
    map is read :data:`BORDER_CHUNK` images at a time)."""
    if not hasattr(images, "shape"):  # a list of images
        images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        return np.zeros(len(images))
    ring = max(1, images.shape[1] // 8)
    mask = np.ones(images.shape[1:3], dtype=bool)
    mask[ring:-ring, ring:-ring] = False
    out = np.empty(len(images))
    for start in range(0, len(images), BORDER_CHUNK):
        chunk = np.asarray(images[start:start + BORDER_CHUNK])
        out[start:start + len(chunk)] = chunk[:, mask].reshape(len(chunk), -1).mean(1)
    return out


def ood_scores(features: np.ndarray, state: dict[str, np.ndarray],
               images: np.ndarray | None = None) -> np.ndarray:
    """The larger of the feature distance and (given the model-input images, for references
    that have it) the border brightness, each in units of its validation 99th percentile."""
    scores = _distances(features, state) / float(state["scale"][0])
    if images is not None and "border_scale" in state:
        scores = np.maximum(scores, border_brightness(images) / float(state["border_scale"][0]))
    return scores


def save_ood(folder: Path, state: dict[str, np.ndarray], name: str = OOD_FILE) -> Path:
    # safetensors writes the raw buffer: a Fortran-ordered array (PCA components are) would come
    # back transposed-scrambled, so make every array C-contiguous first.
    state = {k: np.ascontiguousarray(v) for k, v in state.items()}
    path = Path(folder) / name
    atomic_write(path, lambda f: f.write(save(state)))
    return path


def load_ood(folder: Path, name: str = OOD_FILE) -> dict[str, np.ndarray] | None:
    """The stored reference, None when the folder has none; a damaged file is refused."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"{path} is not a valid safetensors file: {reason}") from None
