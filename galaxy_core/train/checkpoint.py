"""Resumable training state without pickles: tensors (weights, optimizer moments, RNG) go into
safetensors, the small bookkeeping into JSON. Both are written atomically after every epoch, so a
Ctrl-C or a killed process loses at most the epoch in progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from galaxy_core.io_utils import atomic_write, read_json, write_json
from galaxy_core.train.run_folder import CHECKPOINT_INFO_FILE as INFO_FILE
from galaxy_core.train.run_folder import CHECKPOINT_STATE_FILE as STATE_FILE


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
    atomic_write(run_dir / STATE_FILE, lambda f: f.write(save(tensors)))
    # The JSON is written last: its presence means the tensors beside it are complete.
    write_json(run_dir / INFO_FILE, {**info, "param_groups": [
        {k: v for k, v in g.items() if k != "params"} for g in opt_state["param_groups"]]})


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> dict[str, Any] | None:
    """Restore everything saved by :func:`save_checkpoint`; None when there is no checkpoint."""
    if not (run_dir / INFO_FILE).is_file() or not (run_dir / STATE_FILE).is_file():
        return None
    info = read_json(run_dir / INFO_FILE)
    tensors = load_file(str(run_dir / STATE_FILE))
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
