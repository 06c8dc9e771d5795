"""Everything ``galaxy predict`` does to an input before the network: read and decode it,
survey-match it, the model's crop and resize, and the measurements for the picture score.

Split from :mod:`galaxy_core.predict.classify` so that it imports no torch: the worker
processes of :mod:`galaxy_core.predict.stream` run exactly these functions, and importing torch
costs each of them about 500 MB of memory and seconds of start-up. The main process and the
dashboard run the same functions through :func:`galaxy_core.predict.classify.classify_sources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from galaxy_core.config import Config
from galaxy_core.data.box import Box, crop_to_box, upright_size
from galaxy_core.data.imageio import read_image
from galaxy_core.data.galaxy_finder import GalaxyBox, detect
from galaxy_core.data.preprocess import frame_for_model
from galaxy_core.errors import GalaxyError, NotAnImageError
from galaxy_core.model.ood import WARN_AT
from galaxy_core.predict.inputs import ESCAPED_NOTE, Entry, printable
from galaxy_core.predict.plausibility import (
    MAY_BE_GALAXY,
    MAY_BE_GALAXY_VERDICT,
    UNLIKE_GALAXY,
    PictureLook,
    look_at,
    whole_frame,
)
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
    box: str = ""
    """The region classified, ``x0,y0,x1,y1`` in pixels of the picture
    (:mod:`galaxy_core.data.box`); empty when the whole picture was."""
    findings: list[str] = field(default_factory=list)
    """What makes the input unlike the training galaxies: the picture checks it fails and
    :data:`~galaxy_core.predict.plausibility.MATCHED_FEATURES` (names of
    :mod:`galaxy_core.predict.plausibility`); empty when nothing does."""
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

    @property
    def may_be_galaxy(self) -> bool:
        """Flagged only for being framed unlike a survey cutout (or for the galaxy found being
        unlike the training ones): a galaxy photographed otherwise, as a press picture is,
        rather than a picture that is not of the sky
        (:data:`~galaxy_core.predict.plausibility.MAY_BE_GALAXY`)."""
        return self.unusual and bool(self.findings) and set(self.findings) <= MAY_BE_GALAXY

    @property
    def ood_verdict(self) -> str:
        """The OOD decision in the dashboard's words, for a survey table to filter on:
        :data:`UNLIKE_GALAXY` or :data:`MAY_BE_GALAXY_VERDICT` for an unusual input, empty
        otherwise (and for an input not classified)."""
        if not self.unusual:
            return ""
        return MAY_BE_GALAXY_VERDICT if self.may_be_galaxy else UNLIKE_GALAXY

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
                "ood_verdict": self.ood_verdict, "ood_findings": "; ".join(self.findings),
                "survey_matched": int(self.survey_matched) if self.ok else "",
                "error": f"skipped: {self.error}" if self.skipped else self.error,
                "notes": "; ".join(self.notes)}


def framed_input(config: Config, image: Image.Image, survey: str = "auto",
                 galaxy: GalaxyBox | None = None) -> tuple[np.ndarray, bool]:
    """The uint8 array the model sees for a loaded RGB image, and whether it was survey-matched,
    from the model's settings alone (:func:`galaxy_core.predict.classify.model_input` takes the
    loaded model), so worker processes without a network frame pictures as the main one does."""
    matched_image, matched = prepare_for_model(image, survey, galaxy)
    return frame_for_model(matched_image, config), matched


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


@dataclass
class Prepared:
    """One input after everything that needs no network: its row so far, the picture as the
    model will see it (``pred.model_input``, None when it failed), and the picture score's
    inputs. Picklable, so worker processes can make it (:mod:`galaxy_core.predict.stream`)."""

    pred: Prediction
    look: PictureLook | None = None
    frame: np.ndarray | None = None


def prepare_source(config: Config, item: Source, survey: str = "auto",
                   box: Box | None = None) -> Prepared:
    """Read, survey-match and frame one input, and measure its picture as given; any problem
    with the file becomes the row's error. Needs only the model's settings, not the network.

    With ``box``, only that region of the picture goes on (:func:`~galaxy_core.data.box.
    crop_to_box`), treated from then on exactly as a file holding just those pixels would be:
    the person said which galaxy they mean, so the finder no longer guesses. A box that does
    not fit the picture is the row's error."""
    pred, data, entry = _start(item)
    if box is not None:
        pred.box = box.text
    if data is None:
        return Prepared(pred)
    try:
        loaded_image = read_image(data, name=pred.source)
        pred.notes += loaded_image.notes
        image = loaded_image.image
        if box is not None:
            image = crop_to_box(image, box, upright_size(loaded_image.original_size, image.size))
        found = detect(image.convert("RGB"))  # once: matching and the look
        arr, pred.survey_matched = framed_input(config, image, survey, found.galaxy)
        look = look_at(image, found)
        frame = whole_frame(image, config.image_size)
        pred.model_input = arr
        return Prepared(pred, look, frame)
    except NotAnImageError as exc:
        pred.error, pred.skipped = str(exc), bool(entry and entry.skippable)
    except GalaxyError as exc:
        pred.error = str(exc)
    return Prepared(pred)
