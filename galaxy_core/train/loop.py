"""The training loop: cached uint8 arrays in memory, batch augmentation on tensors, AdamW with
warm-up and cosine decay, class-weighted loss, early stopping on validation loss, a checkpoint
after every epoch, and a finished model folder (weights, calibration, report) at the end.

Progress goes to callbacks and to ``status.json`` in the run folder, so a CLI progress bar and a
dashboard in another process can both follow the same run.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from galaxy_core.config import CLASSES, Config
from galaxy_core.data.cache import Part, load_framed_part, training_part
from galaxy_core.data.prepared import open_prepared
from galaxy_core.data.tensors import to_tensor
from galaxy_core.io_utils import read_json, write_json, write_text
from galaxy_core.model.build import build_model, set_threads
from galaxy_core.predict.inference import predict_logits
from galaxy_core.train.augment import colour_jitter, random_affine
from galaxy_core.train.checkpoint import load_checkpoint, save_checkpoint

StepCallback = Callable[[int, int, dict[str, Any]], None]
"""``on_step(done, total, info)`` after every optimisation step (all epochs counted)."""
EpochCallback = Callable[[dict[str, Any]], None]

LOG_FILE = "log.jsonl"
STATUS_FILE = "status.json"
CONFIG_FILE = "config.json"
BEST_FILE = "best.safetensors"


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    state: str = "finished"
    """finished | early_stopped | interrupted"""
    model_dir: Path | None = None


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to 1% of the base rate."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def class_weights(labels: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """'Balanced' weights n / (C * count_c): each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return len(labels) / (n_classes * np.maximum(counts, 1))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation parameters (standard for ResNets)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _evaluate_epoch(model: torch.nn.Module, part: Part, config: Config,
                    weights: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    logits = predict_logits(model, part.images, config.mean, config.std, tta=False,
                            channels_last=config.channels_last)
    t_logits = torch.from_numpy(logits)
    labels = torch.from_numpy(part.labels.copy())
    loss = F.cross_entropy(t_logits, labels, weight=weights).item()
    pred = logits.argmax(1)
    return {"val_loss": loss, "val_accuracy": float(accuracy_score(part.labels, pred)),
            "val_balanced_accuracy": float(balanced_accuracy_score(part.labels, pred)),
            "val_macro_f1": float(f1_score(part.labels, pred, average="macro"))}


def _write_status(run_dir: Path, **fields: Any) -> None:
    path = run_dir / STATUS_FILE
    status = read_json(path) if path.is_file() else {}
    status.update(fields, updated=time.time())
    write_json(path, status)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_log(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def train(prepared_dir: str | Path, run_dir: str | Path, config: Config, split: int = 0,
          resume: bool = False, on_step: StepCallback | None = None,
          on_epoch: EpochCallback | None = None, finalize: bool = True) -> TrainResult:
    """Train (or resume) one model on one split of a prepared dataset."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    extended = False
    if resume and (run_dir / CONFIG_FILE).is_file():
        # The run's own settings win, except when it stops: a resumed run may be given more
        # epochs (a warm restart of the cosine schedule) and a different patience (0 = keep).
        stored = Config.from_dict(read_json(run_dir / CONFIG_FILE))
        extended = config.epochs > stored.epochs
        config = stored.replace(epochs=max(stored.epochs, config.epochs),
                                patience=config.patience or stored.patience)
    else:
        # Nothing to resume (e.g. a split that `--splits K --resume` had not reached yet): a
        # fresh run, where 0 ("keep the run's own") falls back to the defaults.
        defaults = Config()
        config = config.replace(epochs=config.epochs or defaults.epochs,
                                patience=config.patience or defaults.patience)
    write_json(run_dir / CONFIG_FILE, {**config.to_dict(), "prepared": str(prepared_dir),
                                       "split": split})
    set_threads(config.threads)
    torch.manual_seed(config.seed + split)
    generator = torch.Generator().manual_seed(config.seed * 1000 + split)

    prepared = open_prepared(prepared_dir)
    _write_status(run_dir, state="loading data", pid=os.getpid(), epoch=0, epochs=config.epochs)
    train_part = training_part(prepared, config, split)
    val_part = load_framed_part(prepared, config, split, "val")

    model = build_model(config.arch, config.weights)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    weights = torch.tensor(class_weights(train_part.labels), dtype=torch.float32)
    if config.balance != "weights":
        weights = torch.ones(len(CLASSES))

    steps_per_epoch = math.ceil(len(train_part) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = steps_per_epoch * config.warmup_epochs
    # best_loss picks the weights that ship; segment_best drives early stopping. They differ
    # only after an extension: the stretched schedule raises the learning rate again, and the
    # new segment must get its own chance instead of being measured against the old best.
    start_epoch, best_loss, segment_best, bad_epochs = 0, float("inf"), float("inf"), 0
    if resume:
        info = load_checkpoint(run_dir, model, optimizer, generator)
        if info:
            start_epoch, best_loss, bad_epochs = info["epoch"], info["best_val_loss"], info["bad_epochs"]
            segment_best = info.get("segment_best_val_loss", best_loss)
            if extended:
                segment_best, bad_epochs = float("inf"), 0
    # Rows logged after the last checkpoint (a stop between the two writes) are dropped: those
    # epochs run again.
    history = [r for r in read_history(run_dir) if r["epoch"] <= start_epoch]
    result = TrainResult(run_dir=run_dir, history=list(history))
    write_text(run_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in history))

    sample_probs = None
    if config.balance == "sampler":
        per_class = 1.0 / np.bincount(train_part.labels, minlength=len(CLASSES))
        sample_probs = torch.tensor(per_class[train_part.labels], dtype=torch.float64)

    try:
        for epoch in range(start_epoch, config.epochs):
            if bad_epochs >= config.patience:
                result.state = "early_stopped"
                break
            _write_status(run_dir, state="training", epoch=epoch + 1)
            model.train()
            started = time.time()
            if sample_probs is not None:
                order = torch.multinomial(sample_probs, len(train_part), replacement=True,
                                          generator=generator)
            else:
                order = torch.randperm(len(train_part), generator=generator)
            running, seen = 0.0, 0
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size].numpy()
                if len(idx) < 2:
                    continue  # BatchNorm needs more than one sample
                idx.sort()
                x = to_tensor(train_part.images[idx], config.mean, config.std, config.channels_last)
                x = colour_jitter(random_affine(x, generator), generator)
                y = torch.from_numpy(train_part.labels[idx].copy())
                step = epoch * steps_per_epoch + i
                lr = lr_at(step, total_steps, warmup, config.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weights,
                                       label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running += loss.item() * len(idx)
                seen += len(idx)
                if on_step:
                    on_step(step + 1, total_steps, {"epoch": epoch + 1, "loss": running / seen,
                                                    "lr": lr})
                if i % 10 == 0:
                    _write_status(run_dir, step=step + 1, total_steps=total_steps,
                                  train_loss=running / seen)
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": running / max(seen, 1),
                                   "lr": lr_at((epoch + 1) * steps_per_epoch - 1, total_steps,
                                               warmup, config.lr)}
            row.update(_evaluate_epoch(model, val_part, config, weights))
            row["seconds"] = round(time.time() - started, 1)
            row["images_per_second"] = round(seen / max(row["seconds"], 1e-9), 1)
            if row["val_loss"] < best_loss - 1e-4:
                best_loss = row["val_loss"]
                _save_best(run_dir, model)
                row["best"] = True
            if row["val_loss"] < segment_best - 1e-4:
                segment_best, bad_epochs = row["val_loss"], 0
            else:
                bad_epochs += 1
            _append_log(run_dir, row)
            result.history.append(row)
            save_checkpoint(run_dir, model, optimizer, generator,
                            {"epoch": epoch + 1, "best_val_loss": best_loss,
                             "segment_best_val_loss": segment_best, "bad_epochs": bad_epochs})
            _write_status(run_dir, epoch=epoch + 1, last=row)
            if on_epoch:
                on_epoch(row)
    except KeyboardInterrupt:
        result.state = "interrupted"
        _write_status(run_dir, state="interrupted")
        return result

    if finalize:
        from galaxy_core.train.finalize import finalize_run

        _write_status(run_dir, state="evaluating")
        result.model_dir = finalize_run(run_dir, prepared, config, split, weights.numpy(),
                                        result.history)
    _write_status(run_dir, state=result.state if result.state != "finished" else "finished")
    return result


def _save_best(run_dir: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import save

    from galaxy_core.io_utils import atomic_write

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / BEST_FILE, lambda f: f.write(save(state)))
