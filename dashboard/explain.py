"""Grad-CAM overlays and catalogue model inputs for the pages, cached per model and image.

Sits above ``models`` (its per-model lock) and ``ui``; neither imports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.models import lock
from galaxy_core.data.imageio import load_image
from galaxy_core.explain.gradcam import gradcam, overlay
from galaxy_core.model.store import LoadedModel
from galaxy_core.predict.classify import model_input


@st.cache_data(max_entries=512, show_spinner=False)
def cam_overlay(_loaded: LoadedModel, model_key: str, image: np.ndarray,
                target: int) -> np.ndarray:
    """Grad-CAM of ``target`` on ``image`` (uint8, as the model saw it), blended over it.
    ``model_key`` (``models.model_key``) keys the cache; the model itself is left out of it."""
    image = np.array(image)  # cached arrays come back read-only
    with lock(_loaded):
        cam = gradcam(_loaded, image, target=target)
    return overlay(image, cam)


@st.cache_data(max_entries=512, show_spinner=False)
def catalogue_input(_loaded: LoadedModel, model_key: str, path: str) -> np.ndarray:
    """A catalogue galaxy's model input, built exactly as in training (no survey matching)."""
    return model_input(_loaded, load_image(Path(path)), survey="off")[0]


def cam_caption(class_name: str) -> str:
    return (f"Grad-CAM for '{class_name}' (last convolutional block): red areas pushed "
            f"the network towards {class_name}, blue ones did not.")
