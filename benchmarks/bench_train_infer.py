"""Training and inference speed of our loop against a plain reference loop, in one run.

Ours: cached uint8 arrays (no JPEG decoding), channels_last, batch augmentation on tensors.
Reference: torchvision ResNet-50 in plain fp32 NCHW, JPEG decoded and transformed with
torchvision per image every epoch (what a first implementation usually does).

Each variant runs in its own subprocess so peak memory (max RSS) is its own. Prints images/s,
per-image latency, peak memory and the ratios. Usage:
    python benchmarks/bench_train_infer.py [--images 96] [--size 96] [--arch resnet50]
Needs ../shared/data/gz1_sdss (or GALAXY_DATA).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _images(n: int) -> list[Path]:
    from galaxy_core.locations import default_data_root

    folder = default_data_root() / "gz1_sdss" / "images"
    files = sorted(folder.glob("*.jpeg"))[:n]
    if len(files) < n:
        sys.exit(f"need {n} images in {folder}")
    return files


def run_variant(variant: str, n: int, size: int, arch: str, batch: int) -> dict:
    import torch
    import torch.nn.functional as F
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    from galaxy_core.config import Config
    from galaxy_core.data.cache import decode_all
    from galaxy_core.data.tensors import to_tensor
    from galaxy_core.model.build import build_model
    from galaxy_core.model.inference import predict_logits
    from galaxy_core.train.augment import augment

    torch.manual_seed(0)
    torch.set_num_threads(2)
    files = _images(n)
    labels = torch.randint(0, 2, (n,))
    cfg = Config(arch=arch, image_size=size)
    if variant == "ours":
        model = build_model(arch).to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        cache = decode_all(files, cfg.crop_fraction, size)  # once, not per epoch
        decode_s = time.perf_counter() - t0

        def batches():
            for s in range(0, n, batch):
                x = to_tensor(cache[s:s + batch], cfg.mean, cfg.std, True)
                yield augment(x, None, cfg), labels[s:s + batch]
    else:
        model = torchvision.models.__dict__[arch](num_classes=2)
        decode_s = 0.0
        tf = T.Compose([T.CenterCrop(round(423 * cfg.crop_fraction)), T.Resize(size),
                        T.RandomRotation(180), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(cfg.mean, cfg.std)])

        def batches():
            for s in range(0, n, batch):
                x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files[s:s + batch]])
                yield x, labels[s:s + batch]

    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    for i, (x, y) in enumerate(batches()):  # warm-up: one batch
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        break
    t0 = time.perf_counter()
    for x, y in batches():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0

    model.eval()
    if variant == "ours":
        t0 = time.perf_counter()
        predict_logits(model, cache, cfg.mean, cfg.std, tta=False, batch_size=batch)
        infer_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(8):
            predict_logits(model, cache[i:i + 1], cfg.mean, cfg.std, tta=False)
        latency = (time.perf_counter() - t0) / 8
    else:
        tf_eval = T.Compose([T.CenterCrop(round(423 * cfg.crop_fraction)), T.Resize(size),
                             T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
        with torch.no_grad():
            t0 = time.perf_counter()
            for s in range(0, n, batch):
                model(torch.stack([tf_eval(Image.open(f).convert("RGB"))
                                   for f in files[s:s + batch]]))
            infer_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for f in files[:8]:
                model(tf_eval(Image.open(f).convert("RGB"))[None])
            latency = (time.perf_counter() - t0) / 8
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "train_img_s": n / train_s, "infer_img_s": n / infer_s,
            "latency_ms": latency * 1000, "peak_mib": peak, "one_off_decode_s": decode_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.images, args.size, args.arch, args.batch)))
        return
    results = {}
    for variant in ("reference", "ours"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--images",
                              str(args.images), "--size", str(args.size), "--arch", args.arch,
                              "--batch", str(args.batch)], capture_output=True, text=True,
                             check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    ref, ours = results["reference"], results["ours"]
    print(f"{args.arch} at {args.size}px, {args.images} images, batch {args.batch}, 2 threads")
    print(f"{'':22}{'reference':>12}{'ours':>12}{'ratio':>9}")
    for key, label, better in (("train_img_s", "train images/s", "higher"),
                               ("infer_img_s", "inference images/s", "higher"),
                               ("latency_ms", "latency ms/image", "lower"),
                               ("peak_mib", "peak memory MiB", "lower")):
        ratio = ours[key] / ref[key]
        print(f"{label:22}{ref[key]:12.1f}{ours[key]:12.1f}{ratio:8.2f}x  ({better} is better)")
    print(f"ours: one-off cache build {ours['one_off_decode_s']:.1f} s for {args.images} images "
          "(done once by galaxy prepare, not per epoch)")


if __name__ == "__main__":
    main()
