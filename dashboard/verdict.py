"""How sure an answer is, said in words and a colour, the same way everywhere on the dashboard.

The wording bands are defined here once, on the calibrated probability of the class the model
chose (its confidence, 0.5 to 1):

=====================  ===========  =======  ====================================
confidence             band         colour   headline (example)
=====================  ===========  =======  ==============================================
>= 0.9                 confident    green    "Spiral (confident: 96%)"
0.7 to 0.9             probably     yellow   "Probably spiral (78%)"
< 0.7                  unsure       orange   "Unsure: perhaps spiral (58%)"
flagged, framed oddly  unfamiliar   orange   "This may be a galaxy, but not framed like …"
flagged otherwise      not_galaxy   red      "This does not look like a galaxy image"
=====================  ===========  =======  ==============================================

A flagged input (``Prediction.unusual``: its out-of-distribution score, which includes the check
of the picture as given, is above 1) never gets a band: the network's guess is then only
mentioned, small, after the warning. A press picture whose galaxy fills the frame or sits off
centre is flagged too, but is told that it may well be a galaxy and what to do
(``Prediction.may_be_galaxy``, :func:`unfamiliar_advice`): calling the Whirlpool "not a galaxy"
taught people to distrust the page. Percentages are rounded down, so a 0.8996 answer reads 89%
and never shows a "90%" that its band does not match.

The batch CSV row is here too (:func:`csv_row`): the columns of ``galaxy predict --prior P
--accept-at A``, ``unusual`` and ``box``.

Pure functions (no Streamlit), so the wording is tested without a page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from galaxy_core.io_utils import inert_cell
from galaxy_core.predict.classify import Prediction
from galaxy_core.predict.plausibility import MATCHED_FEATURES

CONFIDENT_AT = 0.9
"""Confidence from which an answer is stated plainly ("Spiral")."""
PROBABLY_AT = 0.7
"""Confidence from which an answer is "probably"; below it the answer is "unsure"."""

CONFIDENT, PROBABLY, UNSURE, NOT_GALAXY = "confident", "probably", "unsure", "not_galaxy"
UNFAMILIAR = "unfamiliar"
NOT_GALAXY_TEXT = "This does not look like a galaxy image"
UNFAMILIAR_TEXT = "This may be a galaxy, but not framed like the survey pictures the network knows"
FINDING_WORDS = {
    "bright border": "the picture's edges are bright, as when a galaxy fills or overflows the "
                     "frame",
    "bright sky": "the sky around the source is bright, where a survey cutout's is dark",
    "off centre": "the brightest source is far from the middle of the picture",
    MATCHED_FEATURES: "even cropped to the source found, it looks unlike the SDSS galaxies "
                      "the network learned from",
}
"""The findings of :mod:`galaxy_core.predict.plausibility` that leave a galaxy possible, in
words (:data:`~galaxy_core.predict.plausibility.FRAMING_CHECKS` and ``MATCHED_FEATURES``)."""

_LOOK = {  # band -> (Streamlit colour name, Material icon)
    CONFIDENT: ("green", "check_circle"),
    PROBABLY: ("yellow", "help"),
    UNSURE: ("orange", "help"),
    UNFAMILIAR: ("orange", "crop"),
    NOT_GALAXY: ("red", "block"),
}


def band(confidence: float) -> str:
    """``confident``, ``probably`` or ``unsure`` for a confidence in [0.5, 1]."""
    if confidence >= CONFIDENT_AT:
        return CONFIDENT
    if confidence >= PROBABLY_AT:
        return PROBABLY
    return UNSURE


def percent(p: float) -> str:
    """A probability as a percentage rounded down: whole percent, one decimal above 99%."""
    if p >= 0.99:
        return f"{math.floor(p * 1000 + 1e-9) / 10:.1f}%"
    return f"{math.floor(p * 100 + 1e-9):d}%"


def percent_pair(p_first: float) -> tuple[str, str]:
    """Two complementary probabilities as percentages that add up to 100: the larger rounded
    down as in the headline, the smaller its complement (0.185 -> "19%", "81%", not 18% and
    81%)."""
    high = max(p_first, 1 - p_first)
    shown = percent(high)
    value = float(shown.rstrip("%"))
    rest = f"{100 - value:.1f}%" if "." in shown else f"{100 - value:.0f}%"
    return (shown, rest) if p_first >= 0.5 else (rest, shown)


@dataclass(frozen=True)
class Verdict:
    band: str
    headline: str
    """What the page shows in large type where the answer goes."""
    short: str
    """The same in a few lower-case words, for a table cell."""
    colour: str
    icon: str

    def markdown(self, level: int = 3) -> str:
        """The headline as a coloured Markdown heading (Streamlit colour syntax)."""
        return f"{'#' * level} :{self.colour}[:material/{self.icon}: {self.headline}]"


def verdict(label: str, confidence: float, unusual: bool = False,
            may_be_galaxy: bool = False) -> Verdict:
    """The words and colour for an answer ``label`` given with ``confidence``; ``unusual``
    (the input was flagged) overrides the band, and ``may_be_galaxy`` (flagged for its framing
    only) says so instead of "not a galaxy"."""
    if unusual and may_be_galaxy:
        colour, icon = _LOOK[UNFAMILIAR]
        return Verdict(UNFAMILIAR, UNFAMILIAR_TEXT, "may be a galaxy, framed unlike a cutout",
                       colour, icon)
    if unusual:
        colour, icon = _LOOK[NOT_GALAXY]
        return Verdict(NOT_GALAXY, NOT_GALAXY_TEXT, "not like a galaxy image", colour, icon)
    which = band(confidence)
    colour, icon = _LOOK[which]
    shown = percent(confidence)
    if which == CONFIDENT:
        headline, short = f"{label.capitalize()} (confident: {shown})", label
    elif which == PROBABLY:
        headline, short = f"Probably {label} ({shown})", f"probably {label}"
    else:
        headline, short = f"Unsure: perhaps {label} ({shown})", f"unsure, perhaps {label}"
    return Verdict(which, headline, short, colour, icon)


def unfamiliar_advice(findings: list[str], matched: bool = True) -> str:
    """Why a flagged picture that may be a galaxy was flagged, and what to do about it, by
    what flagged it.

    Measured on the 18 flagged ESA/Hubble development pictures: a box round the galaxy the page
    found cleared both that were flagged only for being off centre, and none of the 14 flagged
    because the galaxy fills the frame or the sky is bright (the box is then the whole picture,
    and no crop adds dark sky). So the advice for those is a wider picture, and cropping is
    offered where it works. Survey matching cannot clear a framing check either (they look at
    the picture as given; ``auto`` already matched every picture of that set): it is offered
    only when it was off (``matched`` False)."""
    why = "; ".join(FINDING_WORDS[f] for f in findings if f in FINDING_WORDS)
    steps = []
    if "off centre" in findings:
        steps.append("draw a box around the galaxy you mean where the page asks *Which "
                     "galaxy?*, or crop the picture to the galaxy: the answer is then for it "
                     "alone")
    if {"bright border", "bright sky"} & set(findings):
        steps.append("where the galaxy fills the picture or its sky is bright, no crop can "
                     "add the dark sky a survey cutout has: a wider picture of the same "
                     "galaxy, with dark sky all round, would be judged like one. The answer "
                     "stays shown, but is not accepted without a look")
    if not steps:
        steps.append("crop the picture to the galaxy with some dark sky around it, or draw a "
                     "box around it where the page asks *Which galaxy?*")
    match = ("" if matched else "; and set survey matching to **auto** so that the galaxy is "
             "cut out and scaled as a survey would")
    return (f"Why: {why or 'it is framed unlike a survey cutout'}. The network learned from SDSS "
            "cutouts with one galaxy in the middle of a dark sky. What to do: "
            + "; ".join(steps) + f"{match}.")


def guess_line(label: str, confidence: float) -> str:
    """The small line under a flagged input's warning: the network's guess, for what it is
    worth."""
    return (f"The network's guess, for what it is worth: {label} ({percent(confidence)}). It "
            "was trained on SDSS galaxy cutouts only, so this says little about this picture.")


def csv_row(pred: Prediction, prior: float, threshold: float | None) -> dict[str, object]:
    """One row of the page's CSV: ``galaxy predict``'s (``Prediction.row`` and ``prior``, the
    spiral fraction the probabilities are for; empty when unknown), ``accepted`` when there is
    a validation threshold (as with ``--accept-at``), ``unusual`` (1: flagged as unlike the
    training galaxies; such an answer is never accepted), and ``box``: the region of the
    picture the answer is for, ``x0,y0,x1,y1`` as ``galaxy predict --box`` takes it (empty: the
    whole picture), so a row says which galaxy it is about."""
    row = pred.row()
    row["prior"] = f"{prior:.4f}" if pred.ok and prior == prior else ""
    if threshold is not None:
        row["accepted"] = int(pred.accepted(threshold)) if pred.ok else ""
    row["unusual"] = int(pred.unusual) if pred.ok else ""
    row["box"] = pred.box
    return row


def csv_bytes(rows: list[dict[str, object]]) -> bytes:
    """The page's CSV download of ``rows`` (:func:`csv_row`), every cell that a spreadsheet
    would run as a formula (a file named ``=1+1.jpeg``) escaped as ``galaxy predict`` does."""
    import pandas as pd

    table = pd.DataFrame(rows).map(inert_cell)
    return table.to_csv(index=False).encode()
