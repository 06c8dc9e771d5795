"""The layout of a training run's folder, in one place: the training loop writes it, the release
step reads it, and the CLI and the dashboard (another process) follow a run through it.

``config.json``             the run's settings (written once, at start)
``status.json``             what the run is doing now (state, epoch, step), rewritten often
``log.jsonl``               one JSON row per finished epoch
``best.safetensors``        weights of the epoch with the lowest validation loss
``checkpoint.safetensors``  weights, optimizer moments, RNG and (in its metadata) the epoch
                            counters after the last finished epoch: one file, replaced atomically
``checkpoint.json``         older versions kept the counters here; still read, no longer written
``train.log``               the process's own output, when started by the dashboard
``launch.json``             pid and command, written by the dashboard before the loop starts
``model/``                  the finished model folder (written by ``galaxy_core.release``)
``splits_summary.json``     mean ± std over splits, in the parent of ``split_<k>/`` runs
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from galaxy_core.io_utils import read_json, write_json, write_text

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
HISTORY_FILE = "log.jsonl"
BEST_FILE = "best.safetensors"
CHECKPOINT_STATE_FILE = "checkpoint.safetensors"
LEGACY_CHECKPOINT_INFO_FILE = "checkpoint.json"
PROCESS_LOG_FILE = "train.log"
LAUNCH_FILE = "launch.json"
MODEL_SUBDIR = "model"
SPLITS_SUMMARY_FILE = "splits_summary.json"
SPLIT_PREFIX = "split_"

ACTIVE_STATES = ("starting", "loading data", "training", "trained", "evaluating")
"""States of a run whose process is still working ("trained": the loop is done and the release
step has not started yet)."""
DONE_STATES = ("finished", "early_stopped")


def split_run_dir(out: Path, split: int) -> Path:
    """Where split ``split`` of a ``galaxy train --splits K`` run lives."""
    return Path(out) / f"{SPLIT_PREFIX}{split}"


def model_dir(run_dir: Path) -> Path:
    return Path(run_dir) / MODEL_SUBDIR


def write_status(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into ``status.json`` (atomically, so a reader never sees half of it)."""
    path = Path(run_dir) / STATUS_FILE
    status = read_json(path) if path.is_file() else {}
    status.update(fields, updated=time.time())
    write_json(path, status)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_history(run_dir: Path, row: dict[str, Any]) -> None:
    with open(Path(run_dir) / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    write_text(Path(run_dir) / HISTORY_FILE, "".join(json.dumps(r) + "\n" for r in rows))
