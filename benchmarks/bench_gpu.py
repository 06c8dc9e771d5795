"""GPU rehearsal (issue 17): the README's GPU commands, run in one short, prepared go on a GPU
machine, so that the scale table's GPU rows can be measured instead of estimated.

A lent GPU machine (this project's `device` tool) gets a copy of the repository and nothing
beside it, so the real cutouts travel in a small pack made here first:

    # here, where ../shared/data is: copy 1,500 labelled GZ1 cutouts (~21 MB) into .gpu_pack/;
    # it also says what a device call would send, and what to move aside if that is over
    # the tool's 64 MiB (the shipped model's files, 45 MiB of weights and 23 MiB of int8
    # ONNX, are tracked and not needed there)
    .venv/bin/python benchmarks/bench_gpu.py --pack .gpu_pack
    # there (carry .gpu_pack), with the machine's own python3 and torch:
    PYTHONUNBUFFERED=1 python3 benchmarks/bench_gpu.py --from .gpu_pack --out $OUT

Each step is the `galaxy` command in its own process, timed (wall clock), its output kept in
a log; a step that fails is recorded and the next one still runs. THE CATALOGUE IS SYNTHETIC:
N galaxies made by benchmarks/bench_scale.py from the packed real cutouts (made-up ids; each
cutout reused with a JPEG comment that changes its bytes, not its pixels).

1. the machine: torch, CUDA, the GPU, the CPUs;
2. ``galaxy prepare --workers <all CPUs>`` of the N galaxies: the workstation figure for
   checking and decoding, scaled to the 243,000-galaxy GZ2 release;
3. ``galaxy train --device cuda`` (bf16 autocast, channels_last, batch augmentation on the GPU),
   ``--epochs 2``: images/s of the second epoch's training steps (the first includes cuDNN's
   autotuning; the validation pass is timed apart), and
   the release step (reports, calibration, OOD reference) on the GPU;
4. the same through ``torchrun --standalone --nproc_per_node 1`` (LOCAL_RANK picks the GPU; one
   process needs no process group, so NCCL itself needs a machine of several GPUs), then
   ``--resume`` of that run in a plain process with one more epoch;
5. the GPU-trained model folder evaluated on the CPU and on the GPU (the answers compared
   image by image) and used for ``galaxy predict --device cpu``: checkpoints and model
   folders must not depend on the device they were made on.

Writes ``bench_gpu.json`` and the logs into --out and prints a summary with one epoch of the
243k release (170,000 training images) at the measured rates. ``--device cpu`` runs the same
steps on a machine without a GPU (tests/test_bench_gpu.py does, at a tiny size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import bench_scale  # noqa: E402  (benchmarks/ is not a package)

RELEASE_GALAXIES = 243_000
RELEASE_TRAIN_IMAGES = 170_000
"""The GZ2 release, and its training part with the default 15% validation and 15% test."""
PACK_CLASSES = "gz1_sdss/gz1_classes.csv"
PACK_IMAGES = "gz1_sdss/images"


# --- here: the pack that travels -----------------------------------------------------------------
def make_pack(pack: Path, data_root: Path, count: int) -> int:
    """Copy ``count`` labelled real cutouts (every k-th, so every class is in) and their rows
    of ``gz1_classes.csv`` into ``pack``, in the layout of ../shared/data."""
    import pandas as pd

    cutouts = bench_scale.real_cutouts(data_root)
    if not cutouts:
        raise SystemExit(f"no GZ1 cutouts under {data_root}/gz1_sdss (set --data)")
    step = max(1, len(cutouts) // count)
    chosen = cutouts[::step][:count]
    shutil.rmtree(pack, ignore_errors=True)
    (pack / PACK_IMAGES).mkdir(parents=True)
    for path, _ in chosen:
        shutil.copyfile(path, pack / PACK_IMAGES / path.name)
    pd.DataFrame({"OBJID": [int(p.stem) for p, _ in chosen],
                  "CLASS": [leaf for _, leaf in chosen]}).to_csv(pack / PACK_CLASSES, index=False)
    (pack / "README.txt").write_text("Real GZ1 SDSS cutouts copied from ../shared/data by "
                                     "benchmarks/bench_gpu.py --pack, to travel to a GPU "
                                     "machine; not committed.\n")
    return len(chosen)


TRAVEL_LIMIT = 64 * 2**20
"""What the device tool sends at most: the checkout's tracked and untracked-not-ignored files
plus the carried paths (its README, "Limits")."""


def travel_size(pack: Path) -> tuple[int, list[tuple[int, str]]]:
    """Bytes a device call would send with ``pack`` carried, and the tracked files by size."""
    def listed(*flags: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *flags], cwd=REPO, capture_output=True,
                             check=True).stdout.decode()
        return [name for name in out.split("\0") if name]

    sizes = [((REPO / name).stat().st_size, name) for name in
             listed() + listed("--others", "--exclude-standard") if (REPO / name).is_file()]
    packed = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
    return sum(size for size, _ in sizes) + packed, sorted(sizes, reverse=True)


def travel_advice(pack: Path) -> list[str]:
    """What to move out of the checkout for the device call when it would send too much (the
    shipped model's files are 68 MiB, and this rehearsal does not use them)."""
    total, files = travel_size(pack)
    lines = [f"a device call would send {total / 2**20:.1f} MiB (limit "
             f"{TRAVEL_LIMIT / 2**20:.0f} MiB) with {pack} carried"]
    if total <= TRAVEL_LIMIT:
        return lines
    aside, excess = [], total - TRAVEL_LIMIT
    for size, name in files:
        if excess <= 0 or not name.startswith("models/"):
            continue
        aside.append(name)
        excess -= size
    lines.append("over the limit: move these (unused here) out of the checkout for the call, "
                 "and back after it:")
    lines.append("  mkdir -p /tmp/gpu_aside && mv " + " ".join(aside) + " /tmp/gpu_aside/")
    lines.append("  # after the call: mv /tmp/gpu_aside/* " + str(Path(aside[0]).parent) + "/"
                 if aside else "  (no model file to move: make the pack smaller)")
    return lines


# --- there: the steps ----------------------------------------------------------------------------
def galaxy(*args: str) -> list[str]:
    return [sys.executable, "-m", "galaxy_core.cli", *args]


def torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "galaxy_core.cli", *args]


def run_step(name: str, cmd: list[str], out: Path, steps: dict, timeout: float) -> bool:
    """Run one step, record its time, exit code and the end of its output; True if it worked."""
    log = out / f"{name}.log"
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        code, text = done.returncode, done.stdout
    except subprocess.TimeoutExpired as exc:
        code = -1
        text = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        text += f"\n[bench_gpu] stopped after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    log.write_text(" ".join(cmd) + "\n\n" + text)
    steps[name] = {"seconds": round(seconds, 2), "returncode": code,
                   "tail": text[-1500:] if code else text[-300:]}
    print(f"[{name}] {'ok' if code == 0 else f'FAILED ({code})'} in {seconds:.1f} s",
          flush=True)
    if code:
        print(text[-1500:], flush=True)
    return code == 0


def epoch_rows(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def machine_facts(device: str) -> dict:
    facts: dict = {"python": platform.python_version(), "cpus": os.cpu_count(),
                   "platform": platform.platform()}
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["cuda"] = torch.version.cuda
        facts["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpus"] = torch.cuda.device_count()
            facts["bf16"] = torch.cuda.is_bf16_supported()
    except Exception as exc:  # noqa: BLE001 - a machine without torch is a finding, not a crash
        facts["torch_error"] = repr(exc)
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True)
        facts["nvidia_smi"] = smi.stdout.strip()
    facts["device_asked"] = device
    return facts


def rehearse(args: argparse.Namespace) -> dict:
    out = Path(args.out).resolve()
    work = Path(args.work).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine_facts(args.device), "n": args.n, "steps": {}}
    steps = result["steps"]
    print(json.dumps(result["machine"], indent=1), flush=True)

    cutouts = bench_scale.real_cutouts(Path(args.from_pack).resolve())
    if not cutouts:
        raise SystemExit(f"no cutouts in the pack {args.from_pack} (make it with --pack)")
    source = work / "synthetic"
    started = time.perf_counter()
    bench_scale.write_synthetic(args.n, source, cutouts)
    result["synthetic_seconds"] = round(time.perf_counter() - started, 1)
    bench_scale.warm_page_cache(source / "images")

    size, cpus = str(args.image_size), str(os.cpu_count() or 1)
    prepared, single, ddp = work / "prepared", work / "run_gpu", work / "run_torchrun"
    for folder in (prepared, single, ddp):
        shutil.rmtree(folder, ignore_errors=True)
    common = ["--data", str(prepared), "--device", args.device, "--batch-size",
              str(args.batch_size), "--image-size", size, "--arch", args.arch, "--no-tta"]
    if run_step("prepare", galaxy(
            "prepare", "--catalogue", str(source / "GalaxyZoo1_DR_table2.csv"), "--mapping",
            str(source / "gz2_filename_mapping.csv"), "--images", str(source / "images"),
            "--out", str(prepared), "--image-size", size, "--workers", cpus),
            out, steps, args.step_timeout):
        kept = json.loads((prepared / "summary.json").read_text())["kept_total"]
        rate = args.n / steps["prepare"]["seconds"]
        result["prepare"] = {"workers": int(cpus), "galaxies": args.n, "kept": kept,
                             "galaxies_per_second": round(rate, 1),
                             "release_minutes": round(RELEASE_GALAXIES / rate / 60, 1)}
    else:
        return result

    if run_step("train", galaxy("train", "--out", str(single), "--epochs", "2", *common),
                out, steps, args.step_timeout):
        rows = epoch_rows(single)
        result["train"] = {"epochs": rows, "images_per_second": rows[-1]["images_per_second"],
                           "release_epoch_minutes": round(
                               RELEASE_TRAIN_IMAGES / rows[-1]["images_per_second"] / 60, 2)}
        config = json.loads((single / "config.json").read_text())
        result["train"]["config"] = {k: config.get(k) for k in
                                     ("device", "processes", "global_batch", "per_process_batch")}
    if run_step("torchrun", torchrun(1, "train", "--out", str(ddp), "--epochs", "1", *common),
                out, steps, args.step_timeout):
        result["torchrun"] = {"epochs": epoch_rows(ddp)}
        if run_step("resume", galaxy("train", "--out", str(ddp), "--resume", "--epochs", "2",
                                     *common), out, steps, args.step_timeout):
            result["torchrun"]["after_resume"] = [r["epoch"] for r in epoch_rows(ddp)]

    model = single / "model"
    if model.is_dir():
        reports = {}
        for device in dict.fromkeys(("cpu", args.device)):
            folder = work / f"report_{device}"
            if run_step(f"evaluate_{device}", galaxy(
                    "evaluate", "--model", str(model), "--data", str(prepared), "--device",
                    device, "--out", str(folder)), out, steps, args.step_timeout):
                report = json.loads((folder / "report.json").read_text())
                reports[device] = {row["objid"]: row for row in report["predictions"]}
        if len(reports) == 2:  # the same model folder on the CPU and on the GPU
            cpu, gpu = reports["cpu"], reports[args.device]
            result["cpu_vs_gpu"] = {
                "test_images": len(cpu),
                "same_class": sum(cpu[k]["predicted"] == gpu[k]["predicted"] for k in cpu),
                "max_abs_p_spiral_difference": max(
                    abs(cpu[k]["p_spiral"] - gpu[k]["p_spiral"]) for k in cpu)}
        images = Path(args.from_pack).resolve() / PACK_IMAGES
        table = out / "predict_cpu.csv"
        if run_step("predict_cpu", galaxy(
                "predict", str(images), "--model", str(model), "--device", "cpu",
                "--backend", "torch", "--views", "1", "--workers", "0", "-o", str(table)),
                out, steps, args.step_timeout):
            result["predict_cpu_rows"] = max(0, len(table.read_text().splitlines()) - 1)
    return result


def summary(result: dict) -> list[str]:
    lines = [f"machine: {result['machine'].get('gpu') or 'no GPU'}; torch "
             f"{result['machine'].get('torch')}; {result['machine'].get('cpus')} CPUs"]
    if "prepare" in result:
        p = result["prepare"]
        lines.append(f"prepare, {p['workers']} workers: {p['galaxies_per_second']:.0f} "
                     f"galaxies/s -> the 243k release in about {p['release_minutes']} min")
    if "train" in result:
        t = result["train"]
        lines.append(f"train, one process: {t['images_per_second']:.0f} images/s (second "
                     f"epoch) -> one epoch of 170k training images in about "
                     f"{t['release_epoch_minutes']} min")
    if "cpu_vs_gpu" in result:
        c = result["cpu_vs_gpu"]
        lines.append(f"the GPU-trained model on the CPU and on the GPU: the same class for "
                     f"{c['same_class']} of {c['test_images']} test images; p_spiral differs by "
                     f"at most {c['max_abs_p_spiral_difference']:.2g}")
    for name, step in result["steps"].items():
        if step["returncode"]:
            lines.append(f"step {name} FAILED (exit {step['returncode']}): see {name}.log")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pack", help="make the pack of real cutouts in this folder (here)")
    what.add_argument("--from", dest="from_pack", help="rehearse from this pack (there)")
    parser.add_argument("--pack-images", type=int, default=1500)
    parser.add_argument("--data", help="real data folder for --pack (default ../shared/data)")
    parser.add_argument("--out", default="bench_gpu_out", help="JSON and logs")
    parser.add_argument("--work", default="/tmp/bench_gpu", help="scratch folder")
    parser.add_argument("--n", type=int, default=50_000, help="synthetic galaxies")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"))
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument("--step-timeout", type=float, default=240,
                        help="seconds before a step is stopped and recorded as failed")
    args = parser.parse_args(argv)
    if args.n < 100 or args.pack_images < 20:
        parser.error("--n must be >= 100 and --pack-images >= 20")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.pack:
        from galaxy_core.locations import default_data_root

        data_root = Path(args.data) if args.data else default_data_root()
        count = make_pack(Path(args.pack), data_root, args.pack_images)
        print(f"packed {count} real cutouts into {args.pack}; carry it to the GPU machine")
        print("\n".join(travel_advice(Path(args.pack))))
        return
    result = rehearse(args)
    result["summary"] = summary(result)
    Path(args.out, "bench_gpu.json").write_text(json.dumps(result, indent=2))
    print("\n".join(result["summary"]))


if __name__ == "__main__":
    main()
