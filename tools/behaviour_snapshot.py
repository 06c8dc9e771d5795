"""Record what the product outputs, so a refactor can show that behaviour did not change.

``capture OUT`` runs the user-facing commands on fixed real inputs and keeps everything they
write: the shipped model's predictions on the seed examples and on 200 GZ1 cutouts, a test
report (JSON and PNGs), the shipped model card re-rendered, Grad-CAM maps, and a tiny training
run (checkpoint, resume with more epochs, finalize) followed by an export. ``compare A B`` then
diffs two captures byte for byte; only fields that record wall-clock time or a process id are
dropped from JSON before comparing.

It drives the CLI (the stable interface) through ``python -m galaxy_core.cli`` in the current
checkout, so the same script measures the code before and after a change::

    PYTHONPATH=/path/to/old/checkout python tools/behaviour_snapshot.py capture /tmp/before
    python tools/behaviour_snapshot.py capture /tmp/after
    python tools/behaviour_snapshot.py compare /tmp/before /tmp/after

Needs the real data (``../shared/data``) and a prepared folder (``make prepare``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

VOLATILE = {"seconds", "images_per_second", "updated", "pid", "started"}
"""JSON keys that record time or a process: they differ between any two runs."""
N_CUTOUTS = 200


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "galaxy_core.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    print(f"galaxy {args[0]}: exit {done.returncode}", file=sys.stderr)
    return done


def _python(code: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True)


def capture(out: Path, data: Path, prepared: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    root = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or repo)
    out.mkdir(parents=True, exist_ok=False)
    (out / PLACES_FILE).write_text(json.dumps({"models": str(root / "models"), "out": str(out)}))
    shipped = root / "models" / "resnet50_gz1"
    cutouts = sorted((data / "gz1_sdss" / "images").glob("*.jpeg"))[:N_CUTOUTS]

    runs = {
        "predict_seed": ["predict", str(data / "seed_examples"), "-o", str(out / "seed.csv")],
        "predict_gz1": ["predict", *map(str, cutouts), "-o", str(out / "gz1_200.csv"),
                        "--accept-at", "0.95"],
        "evaluate": ["evaluate", "--model", str(shipped), "--data", str(prepared),
                     "--part", "test", "--out", str(out / "report_test")],
        "train": ["train", "--data", str(prepared), "--out", str(out / "run"), "--arch",
                  "resnet18", "--epochs", "2", "--max-train-images", "96", "--threads", "2"],
        "resume": ["train", "--data", str(prepared), "--out", str(out / "run"), "--resume",
                   "--epochs", "3", "--threads", "2"],
        "export": ["export", str(out / "run" / "model"), "--out", str(out / "exported"),
                   "--data", str(prepared)],
    }
    for name, args in runs.items():
        done = _cli(*args, cwd=root)
        text = f"exit {done.returncode}\n--- stdout\n{done.stdout}"
        (out / f"{name}.txt").write_text(text)
    shutil.copytree(shipped, out / "shipped_card", ignore=shutil.ignore_patterns("report_*"))
    for part in ("report_val", "report_test"):
        shutil.copytree(shipped / part, out / "shipped_card" / part)
    _python(
        "import sys\n"
        "from pathlib import Path\n"
        "try:\n"
        "    from galaxy_core.release.model_card import write_model_card\n"
        "except ImportError:\n"
        "    from galaxy_core.evaluate.model_card import write_model_card\n"
        f"write_model_card(Path({str(out / 'shipped_card')!r}))\n", cwd=root)
    _python(
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from galaxy_core.model.store import load_model\n"
        "from galaxy_core.data.imageio import load_image\n"
        "from galaxy_core.data.preprocess import frame_for_model\n"
        "from galaxy_core.explain.gradcam import gradcam\n"
        f"m = load_model({str(shipped)!r})\n"
        f"paths = {[str(p) for p in cutouts[:4]]!r}\n"
        "maps = [gradcam(m, frame_for_model(load_image(Path(p)), m.config)) for p in paths]\n"
        f"np.save({str(out / 'gradcam.npy')!r}, np.stack(maps))\n", cwd=root)


def _normalised(path: Path, places: dict[str, str]) -> bytes:
    """The file's bytes, with the capture's own folder and checkout named by placeholders (two
    captures are written to different folders, and may be of different checkouts)."""
    data = path.read_bytes()
    if path.suffix in TEXT_SUFFIXES:
        for name, place in places.items():
            data = data.replace(place.encode(), f"<{name}>".encode())
    if path.suffix not in {".json", ".jsonl"}:
        return data

    def drop(value):
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value

    lines = data.decode().splitlines() if path.suffix == ".jsonl" else [data.decode()]
    return b"\n".join(json.dumps(drop(json.loads(line)), sort_keys=True).encode()
                      for line in lines if line.strip())


PLACES_FILE = "places.json"
TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".csv", ".md"}
SKIP_FILES = {"train.log", "launch.json", PLACES_FILE}


def compare(a: Path, b: Path) -> int:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name not in SKIP_FILES}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name not in SKIP_FILES}
    differ = 0
    places = {side: json.loads((root / PLACES_FILE).read_text()) for side, root in
              (("a", a), ("b", b))}
    for rel in sorted(files_a | files_b):
        if rel not in files_a or rel not in files_b:
            print(f"only in {'first' if rel in files_a else 'second'}: {rel}")
            differ += 1
            continue
        same = _normalised(a / rel, places["a"]) == _normalised(b / rel, places["b"])
        if not same:
            differ += 1
        digest = hashlib.sha256((a / rel).read_bytes()).hexdigest()[:12]
        print(f"{'same  ' if same else 'DIFFER'} {rel} ({digest})")
    print(f"{len(files_a | files_b)} files, {differ} differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("capture")
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data").resolve())
    p.add_argument("--prepared", type=Path, default=Path("data/gz1").resolve())
    p = sub.add_parser("compare")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "capture":
        capture(args.out, args.data.resolve(), args.prepared.resolve())
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
