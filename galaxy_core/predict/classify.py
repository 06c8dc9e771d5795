"""Classify images with a saved model: the one path shared by ``galaxy predict``, the dashboard
and the evaluation of foreign images.

Each input goes: bytes -> loader (format from content) -> optional survey matching -> the
model's own crop and resize -> rotation-averaged logits -> prior correction and temperature ->
calibrated probabilities, plus an out-of-distribution score. A file that fails at any step gets
an error message instead of a label; it never stops the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from galaxy_core.data.imageio import read_image
from galaxy_core.data.preprocess import frame_for_model
from galaxy_core.errors import GalaxyError, NotAnImageError
from galaxy_core.model.inference import infer
from galaxy_core.model.ood import WARN_AT
from galaxy_core.model.store import LoadedModel
from galaxy_core.predict.inputs import ESCAPED_NOTE, Entry, printable
from galaxy_core.predict.plausibility import look_at, picture_scores, whole_frame
from galaxy_core.predict.survey_match import prepare_for_model


@dataclass
class Prediction:
    """One input's outcome; ``error`` is empty when it was classified."""

    source: str
    label: str = ""
    p_spiral: float | None = None
    p_elliptical: float | None = None
    ood_score: float | None = None
    survey_matched: bool = False
    error: str = ""
    skipped: bool = False
    """Found in a folder and not an image at all (a README, a catalogue): reported, but not a
    failure to classify."""
    notes: list[str] = field(default_factory=list)
    model_input: np.ndarray | None = field(default=None, repr=False)
    """The uint8 image exactly as the model saw it (after matching, crop and resize)."""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def failed(self) -> bool:
        """Could not be classified, and should have been."""
        return bool(self.error) and not self.skipped

    @property
    def unusual(self) -> bool:
        """Out of distribution: the OOD score, which includes the picture score of the input as
        given (:mod:`galaxy_core.predict.plausibility`), is above the warning level."""
        return self.ood_score is not None and self.ood_score > WARN_AT

    def accepted(self, threshold: float) -> bool:
        """Whether this answer may be taken without a human look: confident enough by a
        threshold measured on survey galaxies, which says nothing for an input unlike them, so
        an out-of-distribution answer is never accepted on its own."""
        return self.ok and max(self.p_spiral, self.p_elliptical) >= threshold and not self.unusual

    def row(self) -> dict[str, object]:
        """The CSV row documented for ``galaxy predict``."""
        fmt = (lambda v: "" if v is None else f"{v:.4f}")
        return {"path": self.source, "label": self.label, "p_spiral": fmt(self.p_spiral),
                "p_elliptical": fmt(self.p_elliptical), "ood_score": fmt(self.ood_score),
                "survey_matched": int(self.survey_matched) if self.ok else "",
                "error": f"skipped: {self.error}" if self.skipped else self.error,
                "notes": "; ".join(self.notes)}


def model_input(loaded: LoadedModel, image: Image.Image, survey: str = "auto") -> tuple[np.ndarray, bool]:
    """The uint8 array the model sees for a loaded RGB image, and whether it was survey-matched."""
    matched_image, matched = prepare_for_model(image, survey)
    return frame_for_model(matched_image, loaded.config), matched


def classify_arrays(loaded: LoadedModel, arrays: np.ndarray,
                    progress: Callable[[int, int], None] | None = None,
                    batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """Calibrated probabilities (N, C) and OOD scores (N,) for model-ready uint8 arrays."""
    result = infer(loaded, arrays, batch_size=batch_size, progress=progress)
    return result.probabilities, result.ood_scores


Source = str | Path | tuple[str, bytes] | Entry


def _start(item: Source) -> tuple[Prediction, Path | bytes | None, Entry | None]:
    """The row an input starts as, and what to read for it (None: nothing to read)."""
    if isinstance(item, tuple):
        name, data = item
        shown, escaped = printable(name)
        return Prediction(source=shown, notes=[ESCAPED_NOTE] if escaped else []), data, None
    entry = item if isinstance(item, Entry) else Entry(Path(item))
    shown, escaped = printable(str(entry.path))
    pred = Prediction(source=shown, notes=[ESCAPED_NOTE] if escaped else [])
    if entry.problem:
        pred.error, pred.skipped = entry.problem, entry.skippable
        return pred, None, entry
    return pred, entry.path, entry


def classify_sources(loaded: LoadedModel, sources: Iterable[Source],
                     survey: str = "auto", batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None,
                     keep_inputs: bool = False) -> list[Prediction]:
    """Classify files (paths or :class:`Entry`) or uploads (``(name, bytes)``), in batches,
    never raising per file."""
    items = list(sources)
    results: list[Prediction] = []
    done = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        preds: list[Prediction] = []
        arrays: list[np.ndarray] = []
        looks, frames = [], []  # the pictures as given, for the picture score
        for item in chunk:
            pred, data, entry = _start(item)
            preds.append(pred)
            if data is None:
                continue
            try:
                loaded_image = read_image(data, name=pred.source)
                pred.notes += loaded_image.notes
                arr, pred.survey_matched = model_input(loaded, loaded_image.image, survey)
                look = look_at(loaded_image.image)
                frame = whole_frame(loaded_image.image, loaded.config.image_size)
                pred.model_input = arr
                arrays.append(arr)
                looks.append(look)
                frames.append(frame)
            except NotAnImageError as exc:
                pred.error, pred.skipped = str(exc), bool(entry and entry.skippable)
            except GalaxyError as exc:
                pred.error = str(exc)
        ok = [p for p in preds if p.model_input is not None]
        if ok:
            probs, scores = classify_arrays(loaded, np.stack(arrays), batch_size=batch_size)
            # What matching made of a picture can look like a galaxy; what the user gave must too.
            pictures = picture_scores(loaded, looks, np.stack(frames))
            scores = pictures if scores is None else np.maximum(scores, pictures)
            spiral, elliptical = loaded.classes.index("spiral"), loaded.classes.index("elliptical")
            for i, pred in enumerate(ok):
                pred.p_spiral = float(probs[i, spiral])
                pred.p_elliptical = float(probs[i, elliptical])
                pred.label = loaded.classes[int(probs[i].argmax())]
                pred.ood_score = None if scores is None else float(scores[i])
                if not keep_inputs:
                    pred.model_input = None
        results.extend(preds)
        done += len(chunk)
        if progress:
            progress(done, len(items))
    return results
