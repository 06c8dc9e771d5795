"""Classify images with a saved model: the one path shared by ``galaxy predict``, the dashboard
and the evaluation of foreign images.

Each input goes: bytes -> loader (format from content) -> optional survey matching -> the
model's own crop and resize -> rotation-averaged logits -> prior correction and temperature ->
calibrated probabilities, plus an out-of-distribution score. A file that fails at any step gets
an error message instead of a label; it never stops the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from galaxy_core.data.box import Box
from galaxy_core.model.calibrated import infer
from galaxy_core.model.folder import ModelInfo
from galaxy_core.predict.framing import (  # noqa: F401  (re-exported: the one place to import)
    Prediction,
    Prepared,
    Source,
    framed_input,
    prepare_source,
)
from galaxy_core.predict.plausibility import picture_findings


def model_input(loaded: ModelInfo, image: Image.Image, survey: str = "auto") -> tuple[np.ndarray, bool]:
    """The uint8 array the model sees for a loaded RGB image, and whether it was survey-matched."""
    return framed_input(loaded.config, image, survey)


def classify_arrays(loaded: ModelInfo, arrays: np.ndarray,
                    progress: Callable[[int, int], None] | None = None,
                    batch_size: int = 32,
                    views: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Calibrated probabilities (N, C) and OOD scores (N,) for model-ready uint8 arrays;
    ``views`` as :func:`~galaxy_core.model.calibrated.infer` (None: the model's own setting)."""
    result = infer(loaded, arrays, batch_size=batch_size, progress=progress, views=views)
    return result.probabilities, result.ood_scores


def finish_prepared(loaded: ModelInfo, prepared: list[Prepared], batch_size: int = 32,
                    keep_inputs: bool = False, views: int | None = None) -> list[Prediction]:
    """Run the network on one batch of prepared inputs and fill in their answers: calibrated
    probabilities, label, and the OOD score (the larger of the model input's and the picture
    as given's). Returns the predictions in the order given."""
    ok = [p for p in prepared if p.pred.model_input is not None]
    if ok:
        probs, scores = classify_arrays(loaded, np.stack([p.pred.model_input for p in ok]),
                                        batch_size=batch_size, views=views)
        # What matching made of a picture can look like a galaxy; what the user gave must too.
        pictures, findings = picture_findings(loaded, [p.look for p in ok],
                                              np.stack([p.frame for p in ok]), matched=scores)
        scores = pictures if scores is None else np.maximum(scores, pictures)
        spiral, elliptical = loaded.classes.index("spiral"), loaded.classes.index("elliptical")
        for i, item in enumerate(ok):
            pred = item.pred
            pred.p_spiral = float(probs[i, spiral])
            pred.p_elliptical = float(probs[i, elliptical])
            pred.label = loaded.classes[int(probs[i].argmax())]
            pred.ood_score = None if scores is None else float(scores[i])
            pred.findings = findings[i]
            if not keep_inputs:
                pred.model_input = None
    return [p.pred for p in prepared]


def classify_sources(loaded: ModelInfo, sources: Iterable[Source],
                     survey: str = "auto", batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None,
                     keep_inputs: bool = False,
                     boxes: Sequence[Box | None] | None = None) -> list[Prediction]:
    """Classify files (paths or :class:`Entry`) or uploads (``(name, bytes)``), in batches,
    never raising per file. ``boxes`` gives each source the region to classify (None: the
    whole picture), in the same order; see :mod:`galaxy_core.data.box`."""
    items = list(sources)
    regions = list(boxes) if boxes is not None else [None] * len(items)
    if len(regions) != len(items):
        raise ValueError(f"{len(regions)} boxes for {len(items)} sources")
    results: list[Prediction] = []
    done = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prepared = [prepare_source(loaded.config, item, survey, box)
                    for item, box in zip(chunk, regions[start:start + batch_size])]
        results.extend(finish_prepared(loaded, prepared, batch_size, keep_inputs))
        done += len(chunk)
        if progress:
            progress(done, len(items))
    return results
