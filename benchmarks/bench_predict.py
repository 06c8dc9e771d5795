"""Survey-scale prediction speed (issue 16): images/s and peak memory, end to end (JPEG decoding
included), of every way this project can classify a folder of GZ1 cutouts, in one run.

Variants, each in its own subprocess (so its peak memory, max RSS, is its own):

- ``plain``: a per-image torchvision loop, fp32, one view: open the JPEG, centre-crop, resize,
  normalise, one forward pass, softmax. What a first script does; the reference for ratios.
- ``inproc-8``: ``classify_sources`` in one process, 8 views, torch: the path ``galaxy predict``
  took before streaming (and the dashboard's path); the logits and OOD features already come
  from one pass, so the issue's "today's path" (a ninth pass for OOD) was slower still.
- ``torch-1``, ``torch-8``, ``onnx-1``, ``onnx-8``, ``int8-1``, ``int8-8``: today's
  ``galaxy predict`` (streamed output, reading in worker processes, logits and OOD features from
  one pass) with each backend at 1 and 8 views.
- ``ray-1``: ``galaxy predict --engine ray`` on a local Ray over this machine's CPUs
  (int8 backend when the model folder has it, else torch), 1 view.

It ends with what the full Galaxy Zoo 2 release (243,000 images) and an LSST-size catalogue
(10^8 galaxies) would take on N nodes, from the best measured rate per core. ``--flat`` also
runs the fastest variant on 20,000 files (hard links to the cutouts, made here) to compare its
peak memory with the 1,000-file run.

    .venv/bin/python benchmarks/bench_predict.py [--n 1000] [--only plain,int8-1] [--flat]

Needs the real cutouts ($GALAXY_DATA or ../shared/data: gz1_sdss/images) and the shipped model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("plain", "inproc-8", "torch-1", "torch-8", "onnx-1", "onnx-8", "int8-1", "int8-8",
            "ray-1")
BACKENDS = {"torch": "torch", "onnx": "onnx", "int8": "onnx-int8"}
SCALES = (("GZ2 release", 243_000), ("LSST-size catalogue", 100_000_000))
NODES = (1, 10, 100)
CORES_PER_NODE = 32


def _cutouts(n: int) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from galaxy_core.locations import default_data_root

    folder = default_data_root() / "gz1_sdss" / "images"
    files = sorted(folder.glob("*.jpeg"))[:n]
    if len(files) < n:
        sys.exit(f"need {n} cutouts in {folder} (set GALAXY_DATA)")
    return files


def _folder_of(files: list[Path], root: Path, copies: int = 1) -> Path:
    """A folder of links to ``files`` (``copies`` times over, each name distinct)."""
    folder = root / f"cutouts_{len(files) * copies}"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for f in files:
            target = folder / f"{k:03d}_{f.name}"
            if not target.exists():
                try:
                    os.link(f, target)
                except OSError:
                    target.symlink_to(f)
    return folder


# --- the variants, run in a child process ----------------------------------------------------
def plain_loop(folder: Path) -> int:
    import torch
    from PIL import Image
    from torchvision import transforms as T

    from galaxy_core.locations import SHIPPED_MODEL_DIR
    from galaxy_core.model.store import load_model

    loaded = load_model(SHIPPED_MODEL_DIR)
    cfg = loaded.config
    model = loaded.model.float().eval().to(memory_format=torch.contiguous_format)
    prep = T.Compose([T.CenterCrop(int(423 * cfg.crop_fraction)), T.Resize(cfg.image_size),
                      T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    n = 0
    with torch.inference_mode():
        for path in sorted(folder.iterdir()):
            x = prep(Image.open(path).convert("RGB"))[None]
            torch.softmax(model(x), 1)
            n += 1
    return n


def in_process(folder: Path) -> int:
    from galaxy_core.locations import SHIPPED_MODEL_DIR
    from galaxy_core.model.store import load_model
    from galaxy_core.predict.classify import classify_sources
    from galaxy_core.predict.inputs import find_inputs

    loaded = load_model(SHIPPED_MODEL_DIR)
    return len(classify_sources(loaded, find_inputs([str(folder)]), batch_size=32))


def cli_path(folder: Path, variant: str, out: Path) -> int:
    kind, views = variant.split("-")
    args = [sys.executable, "-m", "galaxy_core.cli", "predict", str(folder), "-o", str(out),
            "--views", views]
    if kind == "ray":
        args += ["--engine", "ray", "--backend", "auto"]
    else:
        args += ["--backend", BACKENDS[kind]]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args[2:])} failed: {done.stderr[-800:]}")
    with open(out, encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1


def child(variant: str, folder: Path, out: Path) -> None:
    started = time.perf_counter()
    if variant == "plain":
        n = plain_loop(folder)
    elif variant == "inproc-8":
        n = in_process(folder)
    else:
        n = cli_path(folder, variant, out)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"variant": variant, "images": n, "seconds": seconds,
                      "peak_mb": max(own, kids) / 1024}))


# --- the run ------------------------------------------------------------------------------------
def measure(variant: str, folder: Path, scratch: Path) -> dict:
    out = scratch / f"{variant}_{folder.name}.csv"
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--folder", str(folder),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        return {"variant": variant, "error": (done.stderr or done.stdout).strip()[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def hours(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="cutouts per variant")
    parser.add_argument("--only", help="comma-separated variants (default: all)")
    parser.add_argument("--flat", action="store_true", help="also 20,000 files, fastest variant")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        child(args.child, Path(args.folder), Path(args.out))
        return
    variants = args.only.split(",") if args.only else list(VARIANTS)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        scratch = Path(tmp)
        files = _cutouts(args.n)
        folder = _folder_of(files, scratch)
        results = []
        for variant in variants:
            r = measure(variant, folder, scratch)
            results.append(r)
            if "error" in r:
                print(f"{variant:>8}: failed: {r['error']}", flush=True)
            else:
                print(f"{variant:>8}: {r['images'] / r['seconds']:7.1f} img/s  "
                      f"peak {r['peak_mb']:6.0f} MB  ({r['images']} in {r['seconds']:.0f} s)",
                      flush=True)
        ok = {r["variant"]: r for r in results if "error" not in r}
        rate = {v: r["images"] / r["seconds"] for v, r in ok.items()}
        base = rate.get("plain")
        print(f"\n{args.n} GZ1 cutouts end to end, {cores} CPU cores, one run")
        print(f"{'variant':>8} | {'img/s':>7} | {'peak MB':>7} | vs plain")
        for v, r in ok.items():
            ratio = f"{rate[v] / base:.1f}x" if base else "-"
            print(f"{v:>8} | {rate[v]:7.1f} | {r['peak_mb']:7.0f} | {ratio}")
        if base and "int8-1" in rate:
            print(f"target: int8-1 >= 5x plain: {rate['int8-1'] / base:.1f}x "
                  f"{'met' if rate['int8-1'] >= 5 * base else 'NOT met'}")
        if "inproc-8" in rate and "int8-8" in rate:
            print(f"target: int8-8 >= 2x inproc-8: {rate['int8-8'] / rate['inproc-8']:.1f}x "
                  f"{'met' if rate['int8-8'] >= 2 * rate['inproc-8'] else 'NOT met'}")
        if args.flat and ok:
            best = max((v for v in ok if v not in ("plain", "inproc-8")), key=rate.get,
                       default=None)
            if best:
                big = _folder_of(files, scratch, copies=max(1, 20_000 // len(files)))
                r = measure(best, big, scratch)
                if "error" not in r:
                    small = ok[best]["peak_mb"]
                    print(f"memory: {best} on {r['images']} files peaks at {r['peak_mb']:.0f} "
                          f"MB against {small:.0f} MB on {ok[best]['images']} "
                          f"({(r['peak_mb'] / small - 1) * 100:+.1f}%; target within 10%)")
        if rate:
            best = max(rate, key=rate.get)
            per_core = rate[best] / cores
            print(f"\nscale, from {best} at {per_core:.1f} img/s per core, nodes of "
                  f"{CORES_PER_NODE} cores (estimates: linear in cores, reading not limited)")
            print(f"{'catalogue':>22} | " + " | ".join(f"{n:>4} node{'s' if n > 1 else ' '}"
                                                      for n in NODES))
            for name, count in SCALES:
                cells = [hours(count / (per_core * CORES_PER_NODE * n)) for n in NODES]
                print(f"{name + f' ({count:,})':>22} | " + " | ".join(f"{c:>9}" for c in cells))


if __name__ == "__main__":
    main()
