"""Scale rehearsal (issue 17, item 4): ``galaxy prepare`` and one training epoch on a SYNTHETIC
catalogue of N galaxies, to show that memory does not grow with the data.

THE CATALOGUES ARE SYNTHETIC. For each N this writes, under --work:

- ``GalaxyZoo1_DR_table2.csv`` in the official GZ1 table 2 format and ``gz2_filename_mapping.csv``
  in the official GZ2 format (``sample`` is ``SYNTHETIC`` in every row), with made-up, distinct
  OBJIDs (9000000000000000000 + i) and asset ids (i + 1), and a ``README_SYNTHETIC.txt``;
- ``images/<asset_id>.jpg``: the real GZ1 SDSS cutouts of ../shared/data, reused. The first
  pass over the 6,064 real cutouts is hard links (symlinks, then copies, where linking fails).
  Beyond that a cutout is used again as a COPY, turned or mirrored (rolled by 24 px past the
  eighth use) and re-encoded with a JPEG comment ("SYNTHETIC ..."): ``galaxy prepare`` drops
  the same galaxy seen twice, by its bytes or by what the image shows (it would leak between
  train and test), so a link, or a copy with the same pixels, would not count.
- Each galaxy's label flags follow its cutout's real GZ1 class (EL elliptical; CW, ACW, EDGE
  spiral; DK, MG uncertain), with vote fractions 0.9 / 0.05 / 0.5 made up to match.

Then, each step in its own subprocess (time = wall clock; peak RSS = the kernel's peak resident
set of that process, from ``os.wait4``; for prepare also the sampled peak of the summed PSS of
the process and all its descendants, the worker processes included):

1. ``galaxy prepare --catalogue --mapping`` with ``--workers 1``, then with ``--workers 2``
   (the image files are read once beforehand so both start with a warm page cache); the two
   caches are compared byte for byte.
2. One training epoch from the memory-mapped cache: ``galaxy_core.train.loop.train`` with
   ``epochs=1`` and ``max_train_images=M`` (a fixed random M of the train part, gathered from
   the whole mapped part), then the loop's validation pass over the FULL validation part (15% of
   the kept galaxies, read through the map). The release step that ``galaxy train`` runs after
   the loop (reports, calibration, OOD reference) is not part of this number; ``--release``
   runs ``galaxy train`` (loop + release, ``--no-tta``) instead.

Targets printed: training peak RSS at the largest N within 20% of the smallest N (50k vs 6k by
default); prepare with 2 workers at least 1.7x as fast as with 1.

Usage:  .venv/bin/python benchmarks/bench_scale.py [--n 6000 25000 50000] [--train-images 1024]
            [--image-size 96] [--arch resnet50] [--work /tmp/bench_scale] [--repeat 1]
            [--no-train] [--release] [--keep] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SYNTHETIC_NOTE = ("SYNTHETIC catalogue written by benchmarks/bench_scale.py: made-up OBJIDs and "
                  "asset ids; the images are real GZ1 SDSS cutouts reused (hard links, or copies "
                  "with a 'SYNTHETIC' JPEG comment); not a real Galaxy Zoo release.")
ID_BASE = 9_000_000_000_000_000_000
RSS_TARGET = 1.20
SPEEDUP_TARGET = 1.7
LEAF_TO_FLAGS = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "spiral", 4: "uncertain",
                 5: "uncertain"}


# --- the synthetic catalogue -------------------------------------------------------------------
def real_cutouts(data_root: Path) -> list[tuple[Path, int]]:
    """(cutout, GZ1 leaf class) of every real GZ1 cutout with a label, in OBJID order."""
    import pandas as pd

    classes = pd.read_csv(data_root / "gz1_sdss" / "gz1_classes.csv")
    folder = data_root / "gz1_sdss" / "images"
    out = [(folder / f"{objid}.jpeg", int(leaf)) for objid, leaf in
           sorted(zip(classes["OBJID"], classes["CLASS"]))]
    return [(path, leaf) for path, leaf in out if path.is_file()]


TURNS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
         Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM,
         Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE)
"""The eight ways to turn or mirror a cutout: a reused cutout comes back as another of them."""


def varied_copy(source: Path, target: Path, use: int, tag: str) -> None:
    """Use number ``use`` (1, 2, ...) of ``source``: turned or mirrored (and, past the eighth
    use, rolled by 24 px a time), re-encoded as JPEG with ``tag`` as its comment. ``galaxy
    prepare`` finds the same galaxy by what the image shows, not only by its bytes, so a copy
    with the same pixels would be dropped as a duplicate; a turned one is another picture."""
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    turn = TURNS[use % len(TURNS)]
    if turn is not None:
        image = image.transpose(turn)
    shift = 24 * (use // len(TURNS))
    if shift:
        image = Image.fromarray(np.roll(np.asarray(image), shift, axis=(0, 1)))
    image.save(target, format="JPEG", quality=92, comment=tag.encode("ascii"))


def link(source: Path, target: Path) -> str:
    for how, make in (("hard link", os.link), ("symlink", os.symlink),
                      ("copy", lambda s, t: shutil.copyfile(s, t))):
        try:
            make(source, target)
            return how
        except OSError:
            continue
    raise OSError(f"cannot link or copy {source} to {target}")


def _sexagesimal(value: float, hours: bool) -> str:
    sign = "-" if value < 0 else ("" if hours else "+")
    value = abs(value)
    d, rest = int(value), (abs(value) - int(value)) * 60
    m = int(rest)
    return f"{sign}{d:02d}:{m:02d}:{(rest - m) * 60:05.2f}"


def write_synthetic(n: int, folder: Path, cutouts: list[tuple[Path, int]]) -> dict[str, object]:
    """Write (or reuse, when a finished one is there) the synthetic catalogue of ``n`` galaxies."""
    import pandas as pd

    marker = folder / "README_SYNTHETIC.txt"
    stamp = f"{SYNTHETIC_NOTE}\nn={n}\n"
    if marker.is_file() and marker.read_text() == stamp:
        return json.loads((folder / "made.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    images = folder / "images"
    images.mkdir(parents=True)
    rows, mapping, ways = [], [], {"hard link": 0, "symlink": 0, "copy": 0, "turned copy": 0}
    for i in range(n):
        source, leaf = cutouts[i % len(cutouts)]
        objid, asset = ID_BASE + i, i + 1
        target = images / f"{asset}.jpg"
        if i < len(cutouts):
            ways[link(source, target)] += 1
        else:
            varied_copy(source, target, i // len(cutouts),
                        f"SYNTHETIC bench_scale galaxy {objid} (reuses {source.stem})")
            ways["turned copy"] += 1
        kind = LEAF_TO_FLAGS[leaf]
        p_el = {"elliptical": 0.9, "spiral": 0.05, "uncertain": 0.5}[kind]
        p_cs = {"elliptical": 0.05, "spiral": 0.9, "uncertain": 0.4}[kind]
        rows.append({"OBJID": objid, "RA": _sexagesimal((i * 0.0137) % 24, True),
                     "DEC": _sexagesimal(((i * 0.173) % 180) - 90, False), "NVOTE": 30,
                     "P_EL": p_el, "P_CW": round(p_cs / 3, 4), "P_ACW": round(p_cs / 3, 4),
                     "P_EDGE": round(p_cs / 3, 4), "P_DK": 0.05, "P_MG": 0.0, "P_CS": p_cs,
                     "P_EL_DEBIASED": p_el, "P_CS_DEBIASED": p_cs,
                     "SPIRAL": int(kind == "spiral"), "ELLIPTICAL": int(kind == "elliptical"),
                     "UNCERTAIN": int(kind == "uncertain")})
        mapping.append({"objid": objid, "sample": "SYNTHETIC", "asset_id": asset})
    pd.DataFrame(rows).to_csv(folder / "GalaxyZoo1_DR_table2.csv", index=False)
    pd.DataFrame(mapping).to_csv(folder / "gz2_filename_mapping.csv", index=False)
    made = {"n": n, "images": ways}
    (folder / "made.json").write_text(json.dumps(made))
    marker.write_text(stamp)
    return made


def warm_page_cache(folder: Path) -> None:
    """Read every image once, so that the first timed prepare does not pay for the disk."""
    for path in folder.iterdir():
        path.read_bytes()


# --- measuring a subprocess --------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class TreeSampler(threading.Thread):
    """Samples the summed PSS of a process and its descendants (workers, fork server), and the
    CPU time each of them has used (the last sample of each: a worker's last quarter second
    before it exits can be missed)."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.stopped = pid, every, 0, threading.Event()
        self.cpu: dict[int, float] = {}

    def run(self) -> None:
        while not self.stopped.is_set():
            tree = _descendants(self.pid)
            self.peak = max(self.peak, sum(_pss(p) for p in tree))
            for p in tree:
                self.cpu[p] = max(self.cpu.get(p, 0.0), _cpu_seconds(p))
            self.stopped.wait(self.every)


@dataclass
class Measured:
    seconds: float
    peak_rss: int
    """Kernel's peak resident set of the process itself (wait4 ru_maxrss)."""
    peak_tree_pss: int
    """Sampled peak of the summed PSS of the process and its descendants."""
    returncode: int
    output: str = ""
    cpu_seconds: float = 0.0
    """CPU time of the process (exact, wait4) and its descendants (sampled)."""


def run_measured(cmd: list[str], log: Path) -> Measured:
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stopped.set()
        sampler.join()
    cpu = usage.ru_utime + usage.ru_stime + sum(
        v for p, v in sampler.cpu.items() if p != proc.pid)
    return Measured(seconds, usage.ru_maxrss * 1024, sampler.peak, proc.returncode,
                    log.read_text()[-3000:], cpu)


def _digest(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*.npy")):
        h = hashlib.sha1()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                h.update(block)
        out[str(path.relative_to(folder))] = h.hexdigest()
    return out


# --- one N -------------------------------------------------------------------------------------
@dataclass
class Row:
    n: int
    made: dict = field(default_factory=dict)
    kept: int = 0
    prepare: dict = field(default_factory=dict)
    """workers -> Measured as a dict"""
    identical: bool | None = None
    cache_bytes: int = 0
    train: dict = field(default_factory=dict)
    train_info: dict = field(default_factory=dict)


def prepare_cmd(src: Path, out: Path, workers: int, size: int) -> list[str]:
    return [sys.executable, "-m", "galaxy_core.cli", "prepare",
            "--catalogue", str(src / "GalaxyZoo1_DR_table2.csv"),
            "--mapping", str(src / "gz2_filename_mapping.csv"), "--images", str(src / "images"),
            "--out", str(out), "--image-size", str(size), "--workers", str(workers)]


def train_cmd(args: argparse.Namespace, prepared: Path, run: Path, info: Path) -> list[str]:
    if args.release:
        return [sys.executable, "-m", "galaxy_core.cli", "train", "--data", str(prepared),
                "--out", str(run), "--epochs", "1", "--max-train-images", str(args.train_images),
                "--arch", args.arch, "--image-size", str(args.image_size), "--batch-size",
                str(args.batch_size), "--no-tta"]
    return [sys.executable, str(Path(__file__).resolve()), "--train-child", str(prepared),
            str(run), str(info), "--arch", args.arch, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), "--train-images", str(args.train_images)]


def train_child(args: argparse.Namespace) -> None:
    """In its own process: one epoch of the real training loop, its log row to ``info``."""
    from galaxy_core.config import Config
    from galaxy_core.train.loop import train

    prepared, run, info = (Path(p) for p in args.train_child)
    config = Config(arch=args.arch, image_size=args.image_size, batch_size=args.batch_size,
                    epochs=1, max_train_images=args.train_images)
    started = time.perf_counter()
    result = train(prepared, run, config)
    row = result.history[-1] if result.history else {}
    Path(info).write_text(json.dumps({"state": result.state, "row": row,
                                      "loop_seconds": time.perf_counter() - started}))


def measure_n(n: int, args: argparse.Namespace, cutouts: list[tuple[Path, int]]) -> Row:
    row = Row(n=n)
    base = Path(args.work) / f"n{n}"
    src = base / "synthetic"
    print(f"\n== N = {n:,} (SYNTHETIC catalogue in {src})", flush=True)
    row.made = write_synthetic(n, src, cutouts)
    print(f"   images: {row.made['images']}", flush=True)
    warm_page_cache(src / "images")
    digests = {}
    runs: dict[int, list[Measured]] = {1: [], 2: []}
    for rep in range(args.repeat):  # alternated, so that a change in the machine's load
        for workers in ((1, 2) if rep % 2 == 0 else (2, 1)):  # hits both alike
            out = base / f"prepared_w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            m = run_measured(prepare_cmd(src, out, workers, args.image_size),
                             base / f"prepare_w{workers}.log")
            if m.returncode != 0:
                raise SystemExit(f"prepare --workers {workers} failed:\n{m.output}")
            runs[workers].append(m)
            digests[workers] = _digest(out)
            print(f"   prepare --workers {workers}: {m.seconds:7.1f} s, peak RSS "
                  f"{m.peak_rss / 2**20:6.0f} MiB (process), {m.peak_tree_pss / 2**20:6.0f} MiB "
                  f"(PSS, with workers); CPU {m.cpu_seconds:6.1f} s = "
                  f"{m.cpu_seconds / m.seconds:.2f} cores on average; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            if workers == 1 and rep < args.repeat - 1:
                shutil.rmtree(out, ignore_errors=True)
    for workers, done in runs.items():  # the fastest run of each: the least disturbed
        best = min(done, key=lambda m: m.seconds)
        row.prepare[workers] = asdict(best) | {
            "output": "", "peak_rss": max(m.peak_rss for m in done),
            "peak_tree_pss": max(m.peak_tree_pss for m in done),
            "all_seconds": [round(m.seconds, 1) for m in done]}
    row.identical = digests[1] == digests[2]
    prepared = base / "prepared_w2"
    summary = json.loads((prepared / "summary.json").read_text())
    row.kept = summary["kept_total"]
    row.cache_bytes = sum(p.stat().st_size for p in (prepared / "cache").rglob("*.npy"))
    shutil.rmtree(base / "prepared_w1", ignore_errors=True)
    print(f"   kept {row.kept:,}; cache {row.cache_bytes / 2**20:.0f} MiB; caches of 1 and 2 "
          f"workers byte-identical: {row.identical}", flush=True)
    if not args.no_train:
        run, info = base / "run", base / "train_info.json"
        shutil.rmtree(run, ignore_errors=True)
        info.unlink(missing_ok=True)
        m = run_measured(train_cmd(args, prepared, run, info), base / "train.log")
        if m.returncode != 0:
            raise SystemExit(f"training failed:\n{m.output}")
        row.train = asdict(m) | {"output": ""}
        row.train_info = json.loads(info.read_text()) if info.is_file() else {}
        r = row.train_info.get("row", {})
        print(f"   train 1 epoch: {m.seconds:7.1f} s in all (epoch {r.get('seconds', '?')} s, "
              f"{r.get('images_per_second', '?')} train img/s), peak RSS "
              f"{m.peak_rss / 2**20:6.0f} MiB", flush=True)
        shutil.rmtree(run, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(prepared, ignore_errors=True)
    return row


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpus} CPUs ({model}), {platform.system()} {platform.release()}, load average "
            f"{', '.join(f'{x:.1f}' for x in load)}")


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print("\nSCALE REHEARSAL on SYNTHETIC catalogues (real GZ1 cutouts reused, made-up ids)")
    print(f"machine: {machine()}")
    print(f"image size {args.image_size} px; training: {args.arch}, batch {args.batch_size}, one "
          f"epoch of {args.train_images} train images"
          + (" + the release step (galaxy train)" if args.release else
             " + validation over the whole val part (the loop only, no release step)"))
    head = (f"{'N':>7} {'kept':>7} {'cache MiB':>9} | {'prep 1w s':>9} {'prep 2w s':>9} "
            f"{'speedup':>7} {'RSS 1w':>7} {'RSS 2w':>7} {'PSS 2w*':>7} {'same':>5} | "
            f"{'train s':>8} {'train RSS':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        p1, p2 = r.prepare[1], r.prepare[2]
        speed = p1["seconds"] / p2["seconds"]
        train = (f"{r.train['seconds']:8.1f} {r.train['peak_rss'] / 2**20:8.0f}M"
                 if r.train else f"{'-':>8} {'-':>9}")
        print(f"{r.n:7d} {r.kept:7d} {r.cache_bytes / 2**20:9.0f} | {p1['seconds']:9.1f} "
              f"{p2['seconds']:9.1f} {speed:6.2f}x {p1['peak_rss'] / 2**20:6.0f}M "
              f"{p2['peak_rss'] / 2**20:6.0f}M {p2['peak_tree_pss'] / 2**20:6.0f}M "
              f"{str(r.identical):>5} | {train}")
    print("prep s = the fastest of --repeat runs (alternating 1 and 2 workers); RSS = the "
          "process's own peak (kernel); PSS 2w* = sampled peak of the prepare process, its fork "
          "server and workers together (both the highest of the runs).")
    for r in rows:
        p1, p2 = r.prepare[1], r.prepare[2]
        if p1.get("cpu_seconds") and p2.get("cpu_seconds"):
            print(f"N={r.n:,}: prepare used {p1['cpu_seconds'] / p1['seconds']:.2f} cores on "
                  f"average with 1 worker, {p2['cpu_seconds'] / p2['seconds']:.2f} with 2 "
                  f"(CPU {p1['cpu_seconds']:.0f} s and {p2['cpu_seconds']:.0f} s)")
    small, large = rows[0], rows[-1]
    if small.train and large.train and small is not large:
        ratio = large.train["peak_rss"] / small.train["peak_rss"]
        verdict = "PASS" if ratio <= RSS_TARGET else "FAIL"
        print(f"target: training peak RSS at N={large.n:,} within 20% of N={small.n:,}: "
              f"{ratio:.2f}x -> {verdict}")
    speeds = [r.prepare[1]["seconds"] / r.prepare[2]["seconds"] for r in rows]
    best = max(speeds)
    print(f"target: prepare with 2 workers >= {SPEEDUP_TARGET}x faster than 1: "
          f"{', '.join(f'{s:.2f}x' for s in speeds)} -> "
          f"{'PASS' if min(speeds) >= SPEEDUP_TARGET else 'FAIL'}"
          + ("" if best >= SPEEDUP_TARGET else " (on a machine shared with other jobs the "
             "second worker may find no free core: see the load average and the cores used "
             "above)"))
    print(f"caches byte-identical with 1 and 2 workers: "
          f"{'yes' if all(r.identical for r in rows) else 'NO'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[6000, 25000, 50000],
                        help="catalogue sizes (galaxies, before the uncertain ones are dropped)")
    parser.add_argument("--train-images", type=int, default=1024,
                        help="training images in the epoch (max_train_images; 0 = the whole "
                        "train part)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work", default="/tmp/bench_scale", help="scratch folder")
    parser.add_argument("--data", help="real data folder (default: the project's, ../shared/data)")
    parser.add_argument("--release", action="store_true",
                        help="train with 'galaxy train' (loop + release step) instead of the loop")
    parser.add_argument("--no-train", action="store_true", help="prepare only")
    parser.add_argument("--repeat", type=int, default=1,
                        help="prepare runs per worker count, alternated; the fastest is reported "
                        "(a shared machine's load changes from minute to minute)")
    parser.add_argument("--keep", action="store_true", help="keep the prepared folders")
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--train-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 100 for n in args.n) or args.train_images < 0 or args.repeat < 1:
        parser.error("--n must be >= 100, --train-images >= 0 and --repeat >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.train_child:
        train_child(args)
        return
    from galaxy_core.locations import default_data_root

    data_root = Path(args.data) if args.data else default_data_root()
    cutouts = real_cutouts(data_root)
    if not cutouts:
        raise SystemExit(f"no GZ1 cutouts under {data_root}/gz1_sdss (set --data)")
    print(f"SYNTHETIC catalogues built from {len(cutouts):,} real GZ1 cutouts in {data_root}; "
          f"machine: {machine()}", flush=True)
    rows = [measure_n(n, args, cutouts) for n in sorted(args.n)]
    report(rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
