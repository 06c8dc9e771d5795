"""What a class's answers add up to, as plain numbers for the pages: a student's score beside the
network's on the same galaxies, the class's accuracy beside the network's, and the galaxies the
class disagreed on most. Pure functions over what :mod:`store` returns; nothing is read here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from galaxy_core.classroom.store import Galaxy
from galaxy_core.io_utils import inert_cell

LEAF_WORDS = {"EL": "elliptical", "CW": "clockwise spiral", "ACW": "anticlockwise spiral",
              "EDGE": "edge-on disk"}
"""Galaxy Zoo 1 leaves in words (the GZ1 decision tree: elliptical, clockwise spiral,
anticlockwise spiral, edge-on disk; "don't know" and mergers never reach a class)."""
ANSWER_WORDS = {"spiral": "spiral", "elliptical": "elliptical", "cant_tell": "can't tell"}


def volunteers_words(galaxy: Galaxy) -> str:
    """What the Galaxy Zoo volunteers said, in words: the GZ1 leaf when known (an edge-on
    disk is said to be a spiral, which is how it counts)."""
    words = LEAF_WORDS.get(galaxy.leaf)
    if words is None:  # a Galaxy Zoo 2 class ("disk, edge-on") or none
        return f"{galaxy.label} ({galaxy.leaf})" if galaxy.leaf else galaxy.label
    return words + (" (a spiral seen from the side)" if galaxy.leaf == "EDGE" else "")


@dataclass(frozen=True)
class Score:
    """Answers checked against the volunteers, and the network on the very same galaxies."""

    answered: int = 0
    agree: int = 0
    """Answers equal to the volunteers' label."""
    cant_tell: int = 0
    model_agree: int = 0
    """Of the same answered galaxies, how many the network labelled as the volunteers did."""
    missed: list[int] = field(default_factory=list)
    """Positions answered differently from the volunteers (a "can't tell" included)."""

    @property
    def accuracy(self) -> float | None:
        return self.agree / self.answered if self.answered else None

    @property
    def model_accuracy(self) -> float | None:
        return self.model_agree / self.answered if self.answered else None


def score(galaxies: Sequence[Galaxy], answers: Mapping[int, str]) -> Score:
    """One student's score: ``answers`` maps a galaxy's position to the student's answer."""
    by_position = {g.position: g for g in galaxies}
    answered = agree = cant_tell = model_agree = 0
    missed: list[int] = []
    for position in sorted(answers):
        galaxy = by_position.get(position)
        if galaxy is None:
            continue
        answered += 1
        answer = answers[position]
        cant_tell += answer == "cant_tell"
        if answer == galaxy.label:
            agree += 1
        else:
            missed.append(position)
        model_agree += galaxy.model_label == galaxy.label
    return Score(answered, agree, cant_tell, model_agree, missed)


def class_score(rows: Iterable[Mapping[str, Any]]) -> Score:
    """The whole class over every answer (``store.export_rows``): each answer checked against
    the volunteers, and the network checked on the same galaxy once per answer, so both are
    measured on the very same mix of galaxies."""
    answered = agree = cant_tell = model_agree = 0
    for row in rows:
        answered += 1
        agree += row["answer"] == row["volunteers"]
        cant_tell += row["answer"] == "cant_tell"
        model_agree += row["model"] == row["volunteers"]
    return Score(answered, agree, cant_tell, model_agree)


def split_share(vote: Mapping[str, Any]) -> float:
    """How divided the class was on one galaxy: the share of its votes that did not go to the
    most popular answer (0 when all agree; 2/3 at most, with three answers)."""
    counts = [int(vote.get(k) or 0) for k in ("spiral", "elliptical", "cant_tell")]
    total = sum(counts)
    return 1 - max(counts) / total if total else 0.0


def class_answer(vote: Mapping[str, Any]) -> str:
    """The class's most popular answer for one galaxy ("" without votes; ties say "split")."""
    counts = {k: int(vote.get(k) or 0) for k in ("spiral", "elliptical", "cant_tell")}
    top = max(counts.values())
    if top == 0:
        return ""
    leaders = [k for k, v in counts.items() if v == top]
    return leaders[0] if len(leaders) == 1 else "split"


def most_disputed(votes: Iterable[Mapping[str, Any]], top: int = 5,
                  min_votes: int = 2) -> list[dict[str, Any]]:
    """The galaxies the class disagreed on most (at least ``min_votes`` votes, some
    disagreement), most divided first, then the most voted."""
    rows = []
    for vote in votes:
        total = sum(int(vote.get(k) or 0) for k in ("spiral", "elliptical", "cant_tell"))
        share = split_share(vote)
        if total >= min_votes and share > 0:
            rows.append({**vote, "votes": total, "split": share})
    rows.sort(key=lambda r: (-r["split"], -r["votes"], r["position"]))
    return rows[:top]


EXPORT_COLUMNS = ("nickname", "galaxy_id", "position", "answer", "volunteers", "gz1_leaf",
                  "model", "p_spiral", "time")


def export_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The teacher's CSV of every answer (``store.export_rows``). A nickname starting like a
    spreadsheet formula (``=``, ``+``, ``-``, ``@``) gets a leading apostrophe, so opening the
    file in a spreadsheet shows it as text and never runs it."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: inert_cell(v) for k, v in row.items()})
    return buffer.getvalue()
