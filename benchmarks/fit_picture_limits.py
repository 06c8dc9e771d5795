"""Measure the out-of-distribution checks on four groups of real pictures and report, per group,
how many the shipped model's OOD decision flags (issue 23, part 1).

Groups (``tests/ood_groups.py``): SDSS cutouts (GZ1, and GZ2 where its images were written
out), the same cutouts cropped tight round the galaxy, the ESA/Hubble development set, and the
non-galaxy pictures the tests build. Each is cut into a part the limits may be fitted on and a
part held back; the table is printed for both, and the held-back part is what the README quotes.

Each picture goes the way ``galaxy predict`` takes it (read from bytes, ``--survey-match
auto``, the model's own views), and the script keeps every raw number the decision is made of
(each pixel check, the whole-picture feature distance, the matched input's OOD score), so
``--limits`` can try other limits without running the network again (``--cache``).

Outcomes: *accepted* (not flagged), *may be a galaxy* (flagged by the framing checks or the
matched features only: ``Prediction.may_be_galaxy``) and *not a galaxy* (flagged otherwise).

Usage:
  python benchmarks/fit_picture_limits.py --data ~/galaxy-runs/gz12 --per-source 500 \
      --cache ~/galaxy-runs/ood_groups.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from galaxy_core.data.prepared import open_prepared  # noqa: E402
from galaxy_core.locations import SHIPPED_MODEL_DIR, default_data_root, prepared_dir  # noqa: E402
from galaxy_core.model.store import load_model  # noqa: E402
from galaxy_core.predict.classify import classify_arrays  # noqa: E402
from galaxy_core.predict.framing import prepare_source  # noqa: E402
from galaxy_core.predict.plausibility import (  # noqa: E402
    LIMITS,
    MAY_BE_GALAXY,
    PictureLimits,
    PictureLook,
    decide,
    whole_frame_scores,
)
from tests.ood_groups import (  # noqa: E402
    GROUPS,
    Item,
    hubble_items,
    nongalaxy_items,
    sdss_items,
)

OUTCOMES = ("accepted", "may be a galaxy", "not a galaxy")


def measure(loaded, items: list[Item], batch: int = 64) -> list[dict]:
    """One record per item: its group, part and label, the answer, and the raw numbers the
    decision is made of: what :func:`~galaxy_core.predict.plausibility.look_at` measured, the
    whole picture's feature distance and the matched input's OOD score (units of the model's
    OOD scale)."""
    records = []
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        prepared = [prepare_source(loaded.config, (it.name, it.data)) for it in chunk]
        ok = [p for p in prepared if p.pred.model_input is not None]
        probs, matched = classify_arrays(loaded, np.stack([p.pred.model_input for p in ok]))
        whole = whole_frame_scores(loaded, np.stack([p.frame for p in ok]))
        spiral = loaded.classes.index("spiral")
        at = {id(p): i for i, p in enumerate(ok)}
        for it, p in zip(chunk, prepared):
            record = {"group": it.group, "name": it.name, "label": it.label, "held": it.held,
                      "error": p.pred.error}
            if id(p) in at:
                i = at[id(p)]
                record.update(predicted=loaded.classes[int(probs[i].argmax())],
                              p_spiral=float(probs[i, spiral]), matched=float(matched[i]),
                              whole=float(whole[i]), look=asdict(p.look))
            records.append(record)
        print(f"  {start + len(chunk)}/{len(items)}", file=sys.stderr, flush=True)
    return records


def findings(record: dict, limits: PictureLimits = LIMITS) -> list[str]:
    """What flags this record under ``limits`` (empty: accepted)."""
    return decide(PictureLook(**record["look"]), record["whole"], record["matched"], limits)


def outcome(record: dict, limits: PictureLimits = LIMITS) -> str:
    """accepted / may be a galaxy / not a galaxy, as the product decides under ``limits``."""
    if record.get("error"):
        return "not a galaxy"
    found = findings(record, limits)
    if not found:
        return "accepted"
    return "may be a galaxy" if set(found) <= MAY_BE_GALAXY else "not a galaxy"


def outcome_counts(records: list[dict], held: bool,
                   limits: PictureLimits = LIMITS) -> dict[str, Counter]:
    """Per group of one part (groups with no record left out): how many of each outcome."""
    out: dict[str, Counter] = {}
    for group in GROUPS:
        kinds = Counter(outcome(r, limits) for r in records
                        if r["group"] == group and r["held"] == held)
        if kinds:
            out[group] = kinds
    return out


def table(records: list[dict], held: bool) -> str:
    lines = ["| group | pictures | accepted | may be a galaxy | not a galaxy | flagged "
             "| right label |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for group, counts in outcome_counts(records, held).items():
        rows = [r for r in records if r["group"] == group and r["held"] == held]
        n = len(rows)
        flagged = n - counts["accepted"]
        labelled = [r for r in rows if r["label"] and not r.get("error")]
        right = sum(r["predicted"] == r["label"] for r in labelled)
        cells = [f"{counts[o]} ({counts[o] / n:.1%})" for o in OUTCOMES]
        acc = f"{right / len(labelled):.1%}" if labelled else "-"
        lines.append(f"| {group} | {n} | " + " | ".join(cells)
                     + f" | {flagged / n:.1%} | {acc} |")
    return "\n".join(lines)


def findings_summary(records: list[dict], held: bool, limits: PictureLimits = LIMITS) -> str:
    lines = []
    for group in GROUPS:
        rows = [r for r in records if r["group"] == group and r["held"] == held
                and not r.get("error")]
        found = Counter(f for r in rows for f in findings(r, limits))
        if found:
            lines.append(f"{group}: " + ", ".join(f"{k} {v}" for k, v in found.most_common()))
    return "\n".join(lines)


def rates(records: list[dict], held: bool, limits: PictureLimits) -> dict[str, tuple[float, float]]:
    """Per group of one part: (share flagged, share told "not a galaxy")."""
    out = {}
    for group, kinds in outcome_counts(records, held, limits).items():
        n = sum(kinds.values())
        out[group] = ((n - kinds["accepted"]) / n, kinds["not a galaxy"] / n)
    return out


def fit_whole_features(records: list[dict], step: float = 0.02, sdss_at_most: float = 0.02,
                       limits: PictureLimits = LIMITS) -> PictureLimits:
    """The smallest whole-picture feature limit (from 1, in ``step``) at which the fit part's
    SDSS cutouts are flagged less than ``sdss_at_most`` of the time while every non-galaxy of
    the fit part that was flagged stays flagged."""
    base = rates(records, False, limits).get("nongalaxy", (1.0, 0.0))[0]
    value = 1.0
    while value < 2.0:
        trial = replace(limits, whole_features=round(value, 4))
        fit = rates(records, False, trial)
        if fit["sdss"][0] < sdss_at_most and fit.get("nongalaxy", (1.0, 0.0))[0] >= base:
            return trial
        value += step
    return limits


FRAMING_GRID = {"max_offset": (0.36, 0.40, 0.43, 0.46),
                "max_sky": (30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0),
                "min_dark_border": (0.65, 0.60, 0.57, 0.55, 0.50)}
"""The framing limits tried: from the SDSS training percentiles outwards."""


def search_framing(records: list[dict], limits: PictureLimits) -> PictureLimits:
    """The framing limits that flag the fewest Hubble pictures and tight thumbnails of the fit
    part while every non-galaxy of the fit part stays flagged (ties: the least loosening)."""
    best = None
    for off, sky, border in itertools.product(*FRAMING_GRID.values()):
        trial = replace(limits, max_offset=off, max_sky=sky, min_dark_border=border)
        fit = rates(records, False, trial)
        if fit.get("nongalaxy", (1.0, 0.0))[0] < 1.0:
            continue
        loosening = off / LIMITS.max_offset + sky / LIMITS.max_sky + (
            1 - LIMITS.min_dark_border) / (1 - border)
        galaxies = sum(fit.get(group, (0.0, 0.0))[0] for group in ("hubble", "tight"))
        key = (round(galaxies, 6), loosening)
        if best is None or key < best[0]:
            best = (key, trial)
    return best[1] if best else limits


def describe(records: list[dict], limits: PictureLimits) -> str:
    cells = []
    for held in (False, True):
        part = rates(records, held, limits)
        cells.append(("held back" if held else "fit      ") + ": " + "  ".join(
            f"{g} {a:.1%} flagged / {b:.1%} not a galaxy" for g, (a, b) in part.items()))
    return "\n".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR)
    ap.add_argument("--data", type=Path, default=None,
                    help="prepared data (default: the project's data/gz1)")
    ap.add_argument("--per-source", type=int, default=300,
                    help="cutouts per survey in each part (default 300)")
    ap.add_argument("--fit", action="store_true",
                    help="search limits on the fit part and show both parts under them")
    ap.add_argument("--cache", type=Path, default=None,
                    help="JSON of the measured records: read if present, else written")
    args = ap.parse_args()

    if args.cache and args.cache.is_file():
        records = json.loads(args.cache.read_text())
    else:
        loaded = load_model(args.model)
        prepared = open_prepared(args.data or prepared_dir())
        split = int(loaded.meta.get("training", {}).get("split", 0))
        items = (sdss_items(prepared, split, args.per_source)
                 + hubble_items(default_data_root()) + nongalaxy_items())
        records = measure(loaded, items)
        if args.cache:
            args.cache.write_text(json.dumps(records))
    if args.fit:
        print(f"limits now: {LIMITS}\n{describe(records, LIMITS)}")
        whole = fit_whole_features(records)
        print(f"\nwhole-picture feature limit fitted: {whole.whole_features}\n"
              f"{describe(records, whole)}")
        framing = search_framing(records, whole)
        print(f"\nframing limits searched: {framing}\n{describe(records, framing)}")
    for held, title in ((False, "fit part"), (True, "held-back part")):
        print(f"\n## {title}\n\n{table(records, held)}\n\n{findings_summary(records, held)}")


if __name__ == "__main__":
    main()
