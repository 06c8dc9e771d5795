"""Where a network runs: ``--device auto|cpu|cuda|mps``.

The choice is made at run time and never stored with the weights: checkpoints and model folders
hold CPU tensors, so a model trained on a GPU predicts on a laptop. ``auto`` takes the fastest
accelerator present (CUDA, then Apple's MPS) and falls back to the CPU; naming one that is not
there is a usage error, said in one line, rather than a silent run on the CPU that would take
days instead of hours.
"""

from __future__ import annotations

import torch

from galaxy_core.config import DEVICE_CHOICES
from galaxy_core.errors import GalaxyError


class DeviceError(GalaxyError):
    """The device asked for is not on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device for ``name``; ``local_rank`` picks the GPU of a torchrun process."""
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA GPU is visible to PyTorch on this machine "
                              f"(torch {torch.__version__}, CUDA build "
                              f"{torch.version.cuda or 'none'}); use --device cpu or auto")
        index = 0 if local_rank is None else local_rank % torch.cuda.device_count()
        return torch.device("cuda", index)
    if name == "mps" and not _mps_available():
        raise DeviceError("--device mps: Apple's Metal backend is not available here; use "
                          "--device cpu or auto")
    return torch.device(name)


def describe(device: torch.device) -> str:
    """The device in words for logs and the run's status ("cuda:0 (NVIDIA H100 80GB HBM3)")."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def to_device(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """CPU tensors on ``device``. A GPU gets them from pinned memory without waiting: a plain
    copy from pageable memory holds the CPU until the GPU has caught up with everything queued
    before it, so a training loop could not assemble its next batch meanwhile. On the CPU the
    tensors themselves come back."""
    if device.type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tuple(t.to(device) for t in tensors)
