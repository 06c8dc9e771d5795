"""The training loop: cached uint8 arrays (memory maps: batches are gathered from the file, so
resident memory does not grow with the dataset), batch augmentation on tensors, AdamW with
warm-up and cosine decay, class-weighted loss, early stopping on validation loss, and a
checkpoint after every epoch. It ends with the best weights in the run folder; turning them into a
model folder is the release step's job (``galaxy_core.release``), which ``galaxy train`` runs
next.

Three parts, each readable on its own: :func:`setup_run` (data, network, optimizer, and the state
a resumed run continues from), :func:`train_one_epoch` and :func:`end_epoch` (validation, best
weights, early stopping, checkpoint). :func:`train` strings them together.

Progress goes to callbacks and to ``status.json`` in the run folder, so a CLI progress bar and a
dashboard in another process can both follow the same run.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from galaxy_core.config import Config
from galaxy_core.data.cache import Part, load_framed_part, training_part
from galaxy_core.data.prepared import open_prepared
from galaxy_core.data.tensors import normalise
from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import orphan_temps, read_json, write_json
from galaxy_core.model.build import build_model, set_threads
from galaxy_core.model.device import describe, resolve_device, to_device
from galaxy_core.model.inference import predict_logits
from galaxy_core.model.store import init_from_model
from galaxy_core.model.weights import state_of, write_state_dict
from galaxy_core.train.augment import augment
from galaxy_core.train import distributed
from galaxy_core.train.checkpoint import load_checkpoint, save_checkpoint
from galaxy_core.train.mix import loss_weights, sample_probabilities
from galaxy_core.train.distributed import World
from galaxy_core.train.run_folder import (BEST_FILE, CONFIG_FILE, append_history, model_dir,
                                          read_history, rewrite_history, write_status)

StepCallback = Callable[[int, int, dict[str, Any]], None]
"""``on_step(done, total, info)`` after every optimisation step (all epochs counted)."""
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    state: str = "finished"
    """finished | early_stopped | interrupted"""
    model_dir: Path | None = None
    """Set by the release step once the model folder is written."""


@dataclass
class RunState:
    """Everything one epoch needs and changes: the network, its optimizer and RNG, the data,
    the schedule, and the early-stopping bookkeeping a checkpoint carries over."""

    run_dir: Path
    config: Config
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    train_part: Part
    val_part: Part
    loss_weights: torch.Tensor
    steps_per_epoch: int
    total_steps: int
    warmup: int
    start_epoch: int = 0
    best_loss: float = float("inf")
    """Lowest validation loss so far: picks the weights that ship."""
    segment_best: float = float("inf")
    """Lowest validation loss since the last extension: drives early stopping. The two differ
    only after an extension, whose stretched schedule raises the learning rate again; the new
    segment must get its own chance instead of being measured against the old best."""
    bad_epochs: int = 0
    sample_probs: torch.Tensor | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    world: World = field(default_factory=World)
    net: torch.nn.Module | None = None
    """What the training step calls: ``model`` itself, or its DistributedDataParallel wrapper
    on a multi-process run (``model`` stays the plain network that is saved and validated)."""

    @property
    def autocast(self) -> bool:
        """bf16 autocast: on CUDA always (tensor cores, no loss scaling needed), on the CPU
        only when asked (fast only on CPUs with bf16 instructions)."""
        return self.config.bf16 or self.device.type == "cuda"


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to 1% of the base rate."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation parameters (standard for ResNets)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _run_config(run_dir: Path, config: Config, resume: bool) -> tuple[Config, bool]:
    """The settings a run trains with, and whether a resume extends it to more epochs.

    A resumed run's own settings win, except when it stops: it may be given more epochs (a warm
    restart of the cosine schedule) and a different patience (0 = keep). With nothing to resume
    (e.g. a split that ``--splits K --resume`` had not reached yet) it is a fresh run, where 0
    ("keep the run's own") falls back to the defaults.
    """
    if resume and (run_dir / CONFIG_FILE).is_file():
        stored = Config.from_dict(read_json(run_dir / CONFIG_FILE))
        extended = config.epochs > stored.epochs
        return stored.replace(epochs=max(stored.epochs, config.epochs),
                              patience=config.patience or stored.patience), extended
    defaults = Config()
    return config.replace(epochs=config.epochs or defaults.epochs,
                          patience=config.patience or defaults.patience), False


def setup_run(prepared_dir: str | Path, run_dir: str | Path, config: Config, split: int = 0,
              resume: bool = False, device: str = "auto") -> RunState:
    """Record the run's settings, load its data, build the network and optimizer, and restore
    the last checkpoint when resuming. The seeds are set before the network is built, so a run
    is repeatable from its config. Under torchrun every process comes here; only the first
    writes (see :mod:`galaxy_core.train.distributed`)."""
    world = distributed.world_from_env()
    where = resolve_device(device, world.local_rank if world.distributed else None)
    distributed.join(world, where)
    run_dir = Path(run_dir)
    config, extended = _run_config(run_dir, config, resume)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for orphan in orphan_temps(run_dir) + orphan_temps(model_dir(run_dir)):
            orphan.unlink(missing_ok=True)  # half-written by a killed process
        write_json(run_dir / CONFIG_FILE, {
            **config.to_dict(), "prepared": str(prepared_dir), "split": split,
            "device": where.type, "processes": world.size,
            "global_batch": config.batch_size,
            "per_process_batch": math.ceil(config.batch_size / world.size),
            "schedule": f"{config.warmup_epochs} warm-up epoch(s), then cosine decay over "
                        f"{config.epochs} epochs of global steps"})
    distributed.barrier(world)
    if where.type == "cpu":
        set_threads(config.threads or max(1, (os.cpu_count() or 1) // world.size))
    elif where.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size: cuDNN times its kernels once
    torch.manual_seed(config.seed + split)
    generator = torch.Generator().manual_seed(config.seed * 1000 + split)

    prepared = open_prepared(prepared_dir)
    if world.is_main:
        write_status(run_dir, state="loading data", pid=os.getpid(), epoch=0,
                     epochs=config.epochs, device=describe(where), processes=world.size)
    train_part = training_part(prepared, config, split)
    val_part = load_framed_part(prepared, config, split, "val")

    model = build_model(config.arch, config.weights)
    if config.init_from:
        init_from_model(model, config.init_from, config.arch)  # a checkpoint still wins below
    model = model.to(where)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    steps_per_epoch = math.ceil(len(train_part) / config.batch_size)
    state = RunState(run_dir=run_dir, config=config, model=model, optimizer=optimizer,
                     generator=generator, train_part=train_part, val_part=val_part,
                     loss_weights=torch.from_numpy(loss_weights(train_part, config)).to(where),
                     steps_per_epoch=steps_per_epoch,
                     total_steps=steps_per_epoch * config.epochs,
                     warmup=steps_per_epoch * config.warmup_epochs,
                     device=where, world=world, net=model)
    probs = sample_probabilities(train_part, config)
    if probs is not None:
        state.sample_probs = torch.from_numpy(probs)
    info = load_checkpoint(run_dir, model, optimizer, generator) if resume else None
    if info:
        state.start_epoch, state.best_loss = info["epoch"], info["best_val_loss"]
        state.bad_epochs = info["bad_epochs"]
        state.segment_best = info.get("segment_best_val_loss", state.best_loss)
        if extended:
            state.segment_best, state.bad_epochs = float("inf"), 0
    if world.distributed:  # after the checkpoint: every process starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        state.net = DistributedDataParallel(
            model, device_ids=[where.index] if where.type == "cuda" else None)
    return state


def _batch(state: RunState, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``idx`` on the run's device. The uint8 rows are gathered from the
    cache (a memory map: only these rows are read); a GPU gets them as uint8 from pinned
    memory, overlapping with the work already queued there, and normalises them itself, so
    the CPU that assembles the batches copies a quarter of the bytes and does no arithmetic."""
    cfg = state.config
    rows, y = to_device(state.device,
                        torch.from_numpy(np.ascontiguousarray(state.train_part.images[idx])),
                        torch.from_numpy(state.train_part.labels[idx].copy()))
    return normalise(rows, cfg.mean, cfg.std, cfg.channels_last), y


class _RunningLoss:
    """The epoch's summed training loss, kept on the run's device. Reading a GPU scalar
    (``.item()``) waits until the GPU has finished the step, and the CPU could not assemble
    the next batch meanwhile; so on a GPU it is read every ``READ_EVERY`` steps (for the
    progress bar and status.json), on the CPU every step as before (it costs nothing there).
    Summed in float64 where the device has it: exactly the sum of Python floats of before."""

    READ_EVERY = 10

    def __init__(self, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.total = torch.zeros((), dtype=dtype, device=device)
        self.every = 1 if device.type == "cpu" else self.READ_EVERY
        self.seen, self.read = 0, float("nan")

    def add(self, loss: torch.Tensor, n: int, step: int, last: bool) -> float:
        """Add one step's mean loss over ``n`` images; the running mean as last read."""
        self.total += loss.detach().to(self.total.dtype) * n
        self.seen += n
        if step % self.every == 0 or last:
            self.read = self.total.item() / self.seen
        return self.read

    def sum(self) -> float:
        return float(self.total.item())


def train_one_epoch(state: RunState, epoch: int,
                    on_step: StepCallback | None = None) -> dict[str, Any]:
    """One pass over the training images (0-based ``epoch``); returns the epoch's log row
    (train loss, learning rate, speed, and the validation scores)."""
    cfg, generator, world = state.config, state.generator, state.world
    net = state.net or state.model
    net.train()
    started = time.time()
    n = len(state.train_part)
    if state.sample_probs is not None:
        order = torch.multinomial(state.sample_probs, n, replacement=True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator)
    running = _RunningLoss(state.device)
    for i in range(state.steps_per_epoch):
        batch = order[i * cfg.batch_size:(i + 1) * cfg.batch_size].numpy()
        if len(batch) < 2 * world.size:
            continue  # BatchNorm needs more than one sample on every process
        batch.sort()
        share = distributed.my_share(len(batch), world)
        x, y = _batch(state, batch[share])
        x = augment(x, generator, cfg, total=len(batch), share=share)
        step = epoch * state.steps_per_epoch + i
        lr = lr_at(step, state.total_steps, state.warmup, cfg.lr)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=state.autocast):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, weight=state.loss_weights,
                               label_smoothing=cfg.label_smoothing)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        mean_loss = running.add(loss, len(y), i, last=i == state.steps_per_epoch - 1)
        if on_step and world.is_main:
            on_step(step + 1, state.total_steps, {"epoch": epoch + 1, "loss": mean_loss,
                                                  "lr": lr})
        if i % _RunningLoss.READ_EVERY == 0 and world.is_main:
            write_status(state.run_dir, step=step + 1, total_steps=state.total_steps,
                         train_loss=mean_loss)
    loss_sum, seen = distributed.sum_floats(world, [running.sum(), float(running.seen)],
                                            state.device)  # reads the device: the steps are done
    trained = time.time() - started
    row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                           "lr": lr_at((epoch + 1) * state.steps_per_epoch - 1,
                                       state.total_steps, state.warmup, cfg.lr)}
    if world.is_main:
        row.update(validate(state.model, state.val_part, cfg, state.loss_weights.cpu(),
                            autocast=state.device.type if state.autocast else None))
    row["val_loss"] = distributed.broadcast_float(world, row.get("val_loss", 0.0),
                                                  state.device)
    row["seconds"] = round(time.time() - started, 1)
    # the training steps alone: the validation pass is another speed, on the first process only
    row["train_seconds"] = round(trained, 1)
    row["images_per_second"] = round(seen / max(trained, 1e-9), 1)
    return row


def validate(model: torch.nn.Module, part: Part, config: Config,
             weights: torch.Tensor, autocast: str | None = None) -> dict[str, float]:
    """Validation loss and scores of one epoch (one view: fast, and enough to compare epochs).

    ``autocast`` (a device type) runs the pass in bf16, as the training steps are: on a CPU
    with bf16 instructions that is 2.2x faster (85 -> 185 images/s on 2 cores), and for a
    small capped run the validation pass took two thirds of each epoch. The release step
    still measures in float32, so the shipped reports do not depend on it."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    with torch.autocast(autocast or "cpu", dtype=torch.bfloat16, enabled=autocast is not None):
        logits = predict_logits(model, part.images, config.mean, config.std, tta=False,
                                channels_last=config.channels_last)
    t_logits = torch.from_numpy(logits)
    labels = torch.from_numpy(part.labels.copy())
    loss = F.cross_entropy(t_logits, labels, weight=weights).item()
    pred = logits.argmax(1)
    return {"val_loss": loss, "val_accuracy": float(accuracy_score(part.labels, pred)),
            "val_balanced_accuracy": float(balanced_accuracy_score(part.labels, pred)),
            "val_macro_f1": float(f1_score(part.labels, pred, average="macro"))}


def end_epoch(state: RunState, row: dict[str, Any]) -> None:
    """Keep the best weights, update early stopping, log the row and write the checkpoint (the
    checkpoint last: a stop before it replays this epoch, and the log is cut back to match)."""
    main = state.world.is_main  # every process keeps the bookkeeping; the first one writes
    if row["val_loss"] < state.best_loss - 1e-4:
        state.best_loss = row["val_loss"]
        if main:
            write_state_dict(state.run_dir / BEST_FILE, state_of(state.model))
        row["best"] = True
    if row["val_loss"] < state.segment_best - 1e-4:
        state.segment_best, state.bad_epochs = row["val_loss"], 0
    else:
        state.bad_epochs += 1
    if not main:
        return
    append_history(state.run_dir, row)
    save_checkpoint(state.run_dir, state.model, state.optimizer, state.generator,
                    {"epoch": row["epoch"], "best_val_loss": state.best_loss,
                     "segment_best_val_loss": state.segment_best,
                     "bad_epochs": state.bad_epochs})
    write_status(state.run_dir, epoch=row["epoch"], last=row)


def train(prepared_dir: str | Path, run_dir: str | Path, config: Config, split: int = 0,
          resume: bool = False, on_step: StepCallback | None = None,
          on_epoch: EpochCallback | None = None, device: str = "auto") -> TrainResult:
    """Train (or resume) one model on one split of a prepared dataset; the best weights end up
    in the run folder's ``best.safetensors``. ``device``: see :mod:`galaxy_core.model.device`;
    under torchrun this is one of the processes (:mod:`galaxy_core.train.distributed`)."""
    run_dir = Path(run_dir)
    fresh = not run_dir.exists()
    try:
        state = setup_run(prepared_dir, run_dir, config, split, resume, device)
    except GalaxyError:
        if fresh and distributed.world_from_env().is_main:  # refused before anything ran
            shutil.rmtree(run_dir, ignore_errors=True)
        distributed.leave()
        raise
    main = state.world.is_main
    # Rows logged after the last checkpoint (a stop between the two writes) are dropped: those
    # epochs run again.
    history = [r for r in read_history(state.run_dir) if r["epoch"] <= state.start_epoch]
    result = TrainResult(run_dir=state.run_dir, history=list(history))
    if main:
        rewrite_history(state.run_dir, history)
    try:
        for epoch in range(state.start_epoch, state.config.epochs):
            if state.bad_epochs >= state.config.patience:
                result.state = "early_stopped"
                break
            if main:
                write_status(state.run_dir, state="training", epoch=epoch + 1)
            row = train_one_epoch(state, epoch, on_step)
            end_epoch(state, row)
            result.history.append(row)
            if on_epoch and main:
                on_epoch(row)
    except KeyboardInterrupt:
        result.state = "interrupted"
        if main:
            write_status(state.run_dir, state="interrupted")
        return result
    except OSError as exc:
        raise _write_failed(state.run_dir, exc) from None
    finally:
        distributed.leave()
    if main:
        write_status(state.run_dir, state="trained")
    return result


def _write_failed(run_dir: Path, exc: OSError) -> GalaxyError:
    """A failed write (most often a full disk) as one line that says where, how much space is
    left and how to continue; ``status.json`` says so too when there is room for it."""
    where = exc.filename or run_dir
    try:
        free = f"{shutil.disk_usage(run_dir).free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    full = exc.errno == errno.ENOSPC
    done = [r["epoch"] for r in read_history(run_dir)]
    kept = f"epoch {done[-1]} is the last one kept" if done else "no epoch had finished yet"
    message = (f"{'disk full' if full else exc.strerror or 'write failed'} while writing "
               f"{where} ({free}); {kept}. Make room, then continue with the same command and "
               "--resume")
    try:
        write_status(run_dir, state="failed", error=message)
    except OSError:
        pass
    return GalaxyError(message)
