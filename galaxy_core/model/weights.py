"""State-dict files: safetensors in and out, and a pickle only when a caller allows it.

Safetensors holds raw tensors and cannot run code, so it is the only format this project writes.
A ``.pth`` pickle is refused unless the caller explicitly allows it, and even then it is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from galaxy_core.errors import ModelLoadError
from galaxy_core.io_utils import atomic_write


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read tensors from safetensors, or from a pickle only when ``allow_pickle`` is True."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name} is not a valid safetensors file: {exc}") from None
    if not allow_pickle:
        raise ModelLoadError(
            f"{path.name} is a pickle-based file, which can run code when loaded; refusing it. "
            "Convert it to safetensors, or allow it explicitly (read with weights_only=True).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "weights_only" in str(exc) or isinstance(exc, pickle.UnpicklingError):
            raise ModelLoadError(
                f"{path.name} holds Python objects besides tensors, which could run code when "
                "loaded; refusing it. If you trust its source, convert it once to safetensors "
                "(safetensors.torch.save_file of its state dict) and pass that file.") from None
        raise ModelLoadError(f"{path.name} cannot be read as a PyTorch state dict "
                             f"({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelLoadError(f"{path.name} does not hold a state dict (names to tensors)")
    return state


def state_of(model: nn.Module, half: bool = False) -> dict[str, torch.Tensor]:
    """The model's tensors ready to store: contiguous, on the CPU, and in float16 when ``half``
    (half the download; every floating tensor is rounded, buffers included)."""
    return {k: (v.detach().half() if half and v.is_floating_point() else v.detach())
            .contiguous().cpu() for k, v in model.state_dict().items()}


def write_state_dict(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Write tensors atomically as safetensors."""
    return atomic_write(Path(path), lambda f: f.write(save(state)))
