"""Resumable training state without pickles, in one file written atomically after every epoch:
tensors (weights, optimizer moments, RNG) and, in the same file's metadata, the bookkeeping
(epoch, best validation loss, early-stopping count, optimizer settings). One file means one
rename: a kill at any moment leaves either the previous epoch's checkpoint or this one, never
weights of one epoch beside the counters of another. A Ctrl-C or a killed process loses at most
the epoch in progress.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import atomic_write, read_json
from galaxy_core.train.run_folder import CHECKPOINT_STATE_FILE as STATE_FILE
from galaxy_core.train.run_folder import LEGACY_CHECKPOINT_INFO_FILE as OLD_INFO_FILE

INFO_KEY = "galaxy_checkpoint"
"""Metadata entry of the safetensors file that holds the bookkeeping as JSON."""


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator, info: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().contiguous()
                                        for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, state in opt_state["state"].items():
        for name, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{pid}.{name}"] = tensor.detach().contiguous()
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    record = {**info, "param_groups": [{k: v for k, v in g.items() if k != "params"}
                                       for g in opt_state["param_groups"]]}
    data = save(tensors, metadata={INFO_KEY: json.dumps(record)})
    atomic_write(run_dir / STATE_FILE, lambda f: f.write(data))
    # A checkpoint.json beside it is from an older version: it no longer describes this file.
    (run_dir / OLD_INFO_FILE).unlink(missing_ok=True)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Tensors and the bookkeeping stored with them (None in checkpoints of older versions)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise GalaxyError(f"{path} is damaged ({' '.join(str(exc).split())[:120]}); delete it "
                          "to restart the run from scratch") from None
    return tensors, json.loads(meta[INFO_KEY]) if INFO_KEY in meta else None


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> dict[str, Any] | None:
    """Restore everything saved by :func:`save_checkpoint`; None when there is no checkpoint."""
    if not (run_dir / STATE_FILE).is_file():
        return None
    tensors, info = _read(run_dir / STATE_FILE)
    if info is None:  # written by a version that kept the bookkeeping in checkpoint.json
        if not (run_dir / OLD_INFO_FILE).is_file():
            return None
        info = read_json(run_dir / OLD_INFO_FILE)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    for group, saved in zip(groups, info.get("param_groups", []), strict=False):
        group.update(saved)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return info
