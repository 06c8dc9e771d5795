"""The issue-22 targets, measured as a new user meets the model: ``galaxy predict`` at its
defaults on test galaxies the model never trained or was calibrated on, file by file.

Sets (each the test part of the prepared split the model was trained on):

- ``gz1``: the GZ1 cutouts (423 px JPEG) of the test part;
- ``gz2``: the GZ2 cutouts (424 px) of the test part;
- ``gz2-224``: the same GZ2 galaxies as 224 px thumbnails (Lanczos, JPEG quality 90), the way
  many catalogues and web pages ship them.

For each: balanced accuracy, accuracy, recall of each class, and the share flagged
out-of-distribution (score above 1), which for SDSS galaxies should stay at most 5%. Writes
``OUT/held_out_targets.json`` and prints a table.

    .venv/bin/python benchmarks/held_out_targets.py --data ~/galaxy-runs/gz12 \
        --model models/resnet50_gz1 --out bench_out [--n 1000] [--sets gz1,gz2,gz2-224]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from galaxy_core.data.prepared import open_prepared  # noqa: E402
from galaxy_core.io_utils import write_json  # noqa: E402

WARN_AT = 1.0
THUMB = 224


def test_rows(prepared_dir: Path, source: str, n: int, seed: int) -> list[tuple[Path, str]]:
    """(file, label) of up to ``n`` test galaxies of ``source`` (all when n is 0), seeded."""
    prepared = open_prepared(prepared_dir)
    table = prepared.table[(prepared.table["split_0"] == "test")
                           & (prepared.table.get("source", source) == source)]
    if n and n < len(table):
        table = table.sample(n=n, random_state=seed)
    return [(prepared.image_path(r.image), r.label) for r in table.itertuples()]


def stage(rows: list[tuple[Path, str]], folder: Path, thumb: int | None) -> dict[str, str]:
    """Put the files in ``folder`` (links, or thumbnails); return file name -> label."""
    folder.mkdir(parents=True)
    truth = {}
    for path, label in rows:
        target = folder / (path.stem + ".jpg")
        if thumb:
            Image.open(path).convert("RGB").resize((thumb, thumb), Image.LANCZOS).save(
                target, quality=90)
        else:
            target.symlink_to(path)
        truth[target.name] = label
    return truth


def predict(model: Path, folder: Path, out: Path) -> float:
    """``galaxy predict FOLDER --model MODEL -o OUT`` at every other default; seconds taken."""
    start = time.perf_counter()
    subprocess.run([str(REPO / ".venv" / "bin" / "galaxy"), "predict", str(folder), "--model",
                    str(model), "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def score(truth: dict[str, str], answers: Path) -> dict[str, float]:
    with answers.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if not r.get("error")]
    y = np.array([truth[Path(r["path"]).name] for r in rows])
    pred = np.array([r["label"] for r in rows])
    ood = np.array([float(r["ood_score"] or "nan") for r in rows])
    recall = {c: float((pred[y == c] == c).mean()) for c in ("elliptical", "spiral")}
    return {"n": int(len(rows)), "accuracy": float((pred == y).mean()),
            "balanced_accuracy": float(np.mean(list(recall.values()))),
            "recall_elliptical": recall["elliptical"], "recall_spiral": recall["spiral"],
            "flagged_ood": float(np.nanmean(ood > WARN_AT))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="prepared folder (multi-source)")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "resnet50_gz1")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=0, help="galaxies per set (0: the whole test part)")
    ap.add_argument("--sets", default="gz1,gz2,gz2-224")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"model": str(args.model), "data": str(args.data), "split": 0, "part": "test"}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            source = name.split("-")[0]
            rows = test_rows(args.data, source, args.n, args.seed)
            truth = stage(rows, Path(tmp) / name, THUMB if name.endswith("-224") else None)
            answers = Path(tmp) / f"{name}.csv"
            seconds = predict(args.model, Path(tmp) / name, answers)
            results[name] = {**score(truth, answers), "seconds": round(seconds, 1)}
            print(name, json.dumps(results[name]), flush=True)
    write_json(args.out / "held_out_targets.json", results)
    print(f"\n| set | galaxies | balanced accuracy | accuracy | spiral recall | "
          f"elliptical recall | flagged OOD |\n|---|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        r = results[name]
        print(f"| {name} | {r['n']:,} | {r['balanced_accuracy']:.3f} | {r['accuracy']:.3f} | "
              f"{r['recall_spiral']:.3f} | {r['recall_elliptical']:.3f} | "
              f"{100 * r['flagged_ood']:.1f}% |")


if __name__ == "__main__":
    main()
