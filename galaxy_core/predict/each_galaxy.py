"""One row per galaxy: ``galaxy predict --each-galaxy`` asks the finder, picture by picture,
which galaxy is meant, and where it cannot tell, classifies every bright source on its own.

A press picture often holds several galaxies, or one off-centre or cut by the frame. The
Classify page then shows the candidates and lets a person pick (:mod:`galaxy_core.data.box`);
a folder of a thousand pictures needs the same without a person. Where the page would ask
(:func:`~galaxy_core.data.box.reasons_to_ask`: more than one bright source, the galaxy off
centre or touching the edge), each candidate becomes its own job with the box a click on it
would give (:func:`~galaxy_core.data.box.cutout_box`: framed like a survey cutout), and its
row records the box. Where the page would not ask, the job stays whole and its row is what
plain ``galaxy predict`` writes.

The expansion happens to jobs, before anything is classified, so every later step (workers,
the Ray engine, ``--resume``'s row-by-row check) sees ordinary boxed jobs: the finder is
deterministic, so a resumed run expands each picture into the same rows in the same order.
It reads every picture one more time (the finder's pass, in the main process).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from galaxy_core.data.box import Box, cutout_box, reasons_to_ask, upright_size
from galaxy_core.data.galaxy_finder import find_candidates
from galaxy_core.data.imageio import read_image
from galaxy_core.errors import GalaxyError
from galaxy_core.predict.jobs import Job, Source


def galaxy_boxes(source: Source) -> list[Box]:
    """The cutout box of each bright source in the picture, the finder's own choice first, in
    pixels of the file at full resolution, upright; empty when the whole picture is a safe
    guess (one bright source, near the centre, inside the frame), nothing stands out of the
    sky, or the picture cannot be read (its row will then say why, as without the option)."""
    if isinstance(source, tuple):
        name, data = source
    else:
        if source.problem:
            return []
        name, data = str(source.path), source.path
    try:
        loaded = read_image(data, name=name)
    except GalaxyError:
        return []
    picture = loaded.image.convert("RGB")
    candidates = find_candidates(picture)
    if not reasons_to_ask(candidates):
        return []
    full = upright_size(loaded.original_size, picture.size)
    boxes = [cutout_box(galaxy) for galaxy in candidates]
    return boxes if picture.size == full else [box.scaled(picture.size, full) for box in boxes]


@dataclass
class Expansion:
    """What :func:`each_galaxy` did, for the run's closing lines."""

    pictures: int = 0
    """Pictures split into one row per galaxy."""
    rows: int = 0
    """Rows those pictures became."""


def each_galaxy(jobs: Iterable[Job], tally: Expansion | None = None) -> Iterator[Job]:
    """``jobs`` with each picture where the finder cannot tell which galaxy is meant replaced
    by one job per bright source, each with its box. A job that already has a box (``--box``,
    a catalogue's box columns) is a person's choice and passes unchanged, as does a job with
    nothing to read."""
    for job in jobs:
        boxes = galaxy_boxes(job.source) if job.box is None and job.source is not None else []
        if not boxes:
            yield job
            continue
        if tally is not None:
            tally.pictures += 1
            tally.rows += len(boxes)
        for box in boxes:
            yield replace(job, box=box)


__all__ = ["Expansion", "each_galaxy", "galaxy_boxes"]
