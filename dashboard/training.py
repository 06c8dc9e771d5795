"""Start, watch and stop ``galaxy train`` runs as background processes.

The training itself is the CLI (``python -m galaxy_core.cli train``) in its own session, so it
outlives page reloads and even the dashboard. Everything the page shows is read back from the run
folder (its layout is ``galaxy_core.train.run_folder``): the status and per-epoch log written by
the training loop, the process's output, and the launch record written here (pid and command,
before the loop starts).

Who may start, resume and stop runs is ``dashboard.access.may_train`` (the computer running the
dashboard and teachers, by default; ``GALAXY_ALLOW_TRAINING=all`` every visitor), asked by the
Train page before it draws those buttons. Here, for every caller, starting is limited per
server: ``GALAXY_ALLOW_TRAINING=0`` switches starting, resuming and stopping runs off for
everyone (the page only shows them), and at most ``GALAXY_MAX_TRAINING_RUNS`` (default 1) runs
may be alive at once, counted from the run folders (a run started with the CLI counts too).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galaxy_core import locations
from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import write_json
from galaxy_core.model.store import META_FILE
from galaxy_core.train.run_folder import (ACTIVE_STATES, CONFIG_FILE, DONE_STATES, LAUNCH_FILE,
                                          PROCESS_LOG_FILE, SPLIT_PREFIX, STATUS_FILE, model_dir)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALLOW_ENV = "GALAXY_ALLOW_TRAINING"
MAX_RUNS_ENV = "GALAXY_MAX_TRAINING_RUNS"
DEFAULT_MAX_RUNS = 1
RESUMABLE_STATES = ("interrupted", "stopped", "failed")
"""States a dead run without a model can be resumed from ("failed": a write failed, e.g. a full
disk; the loop kept the last finished epoch)."""

_START_LOCK = threading.Lock()
"""Held while checking the limit and launching, so two visitors clicking at once cannot both
squeeze under it."""

_PROCESSES: dict[int, subprocess.Popen] = {}
"""Children started by this server, polled so that finished ones are reaped (no zombies)."""


@dataclass
class RunInfo:
    name: str
    path: Path
    status: dict[str, Any] = field(default_factory=dict)
    alive: bool = False
    has_model: bool = False

    @property
    def state(self) -> str:
        """What the run is doing, corrected by whether its process still exists."""
        raw = str(self.status.get("state", "starting"))
        if self.has_model and raw not in ACTIVE_STATES:
            return raw if raw in DONE_STATES else "finished"
        if raw in ACTIVE_STATES and not self.alive:
            return "interrupted" if self.status.get("epoch") else "stopped"
        return raw

    @property
    def loop_done(self) -> bool:
        """The training loop has finished: the release step (calibration, evaluation reports,
        model folder) is running, or was cut short if the process is gone."""
        return self.status.get("state") in ("trained", "evaluating")

    @property
    def active(self) -> bool:
        return self.alive and self.state in ACTIVE_STATES

    @property
    def can_resume(self) -> bool:
        return not self.alive and not self.has_model and self.state in RESUMABLE_STATES

    @property
    def error(self) -> str:
        """What went wrong, for a run in state "failed" (the loop's one-line message)."""
        if self.state != "failed":
            return ""
        return str(self.status.get("error") or "the run failed (no reason was recorded)")

    @property
    def fraction(self) -> float:
        step, total = self.status.get("step"), self.status.get("total_steps")
        if step and total:
            return max(0.0, min(1.0, float(step) / float(total)))
        epoch, epochs = self.status.get("epoch"), self.status.get("epochs")
        if epoch and epochs:
            return max(0.0, min(1.0, (float(epoch) - 1) / float(epochs)))
        return 0.0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _PROCESSES.get(int(pid))
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, OverflowError):
        return False
    try:  # a zombie answers kill(0) but is not running
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def run_info(run_dir: Path) -> RunInfo:
    launch = _read(run_dir / LAUNCH_FILE)
    status = {**launch, **_read(run_dir / STATUS_FILE)}
    has_model = (model_dir(run_dir) / META_FILE).is_file() or any(
        (model_dir(s) / META_FILE).is_file() for s in run_dir.glob(f"{SPLIT_PREFIX}*"))
    return RunInfo(name=run_dir.name, path=run_dir, status=status,
                   alive=pid_alive(status.get("pid")), has_model=has_model)


def list_runs(runs: Path | None = None) -> list[RunInfo]:
    """Every run folder (has status, launch or config), newest first."""
    runs = runs or locations.runs_dir()
    if not runs.is_dir():
        return []
    marks = (STATUS_FILE, LAUNCH_FILE, CONFIG_FILE)
    found = [p for p in runs.iterdir() if p.is_dir() and any((p / f).is_file() for f in marks)]
    found.sort(key=lambda p: max((p / f).stat().st_mtime for f in marks if (p / f).is_file()),
               reverse=True)
    return [run_info(p) for p in found]


def training_allowed() -> bool:
    """False when the server's operator set GALAXY_ALLOW_TRAINING to 0 (or false/no/off)."""
    value = os.environ.get(ALLOW_ENV, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def max_runs() -> int:
    """GALAXY_MAX_TRAINING_RUNS: how many runs may be alive at once (default 1; a value that is
    not a whole number of at least 1 counts as the default)."""
    try:
        value = int(os.environ.get(MAX_RUNS_ENV, "").strip())
    except ValueError:
        return DEFAULT_MAX_RUNS
    return value if value >= 1 else DEFAULT_MAX_RUNS


def active_runs(runs: Path | None = None) -> list[RunInfo]:
    """Runs whose training process is alive and working."""
    return [r for r in list_runs(runs) if r.active]


def busy_message(runs: Path | None = None) -> str:
    """Why no further run may start now, or "" when one may."""
    if not training_allowed():
        return (f"Starting and resuming training runs is switched off on this server "
                f"({ALLOW_ENV}=0).")
    going = active_runs(runs)
    limit = max_runs()
    if len(going) < limit:
        return ""
    names = ", ".join(r.name for r in going)
    if limit == 1 and len(going) == 1:
        return f"a training run is already going: {names}; wait for it or stop it"
    return (f"{len(going)} training runs are already going ({names}); this server allows "
            f"{limit} at once ({MAX_RUNS_ENV}): wait for one or stop it")


def check_name(name: str, runs: Path | None = None) -> Path:
    """The folder for a new run, or GalaxyError saying why the name cannot be used."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise GalaxyError("run names use letters, digits, '-', '_' and '.', start with a letter "
                          "or digit and have at most 64 characters")
    run_dir = (runs or locations.runs_dir()) / name
    if run_dir.exists():
        raise GalaxyError(f"a run named {name} already exists; pick another name or resume it")
    return run_dir


def train_command(prepared: Path, run_dir: Path, settings: dict[str, Any],
                  resume: bool = False) -> list[str]:
    """The CLI call for a run; ``settings`` keys are CLI flags without dashes (None = default)."""
    cmd = [sys.executable, "-m", "galaxy_core.cli", "train", "--data", str(prepared),
           "--out", str(run_dir)]
    for key, value in settings.items():
        if value is None or value == "":
            continue
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    if resume:
        cmd.append("--resume")
    return cmd


def start(prepared: Path, run_dir: Path, settings: dict[str, Any], resume: bool = False) -> int:
    """Launch training in the background (own session, lower priority); return its pid.
    GalaxyError (nothing started, no folder made) when training is switched off or the limit
    of live runs is reached."""
    with _START_LOCK:
        refused = busy_message(run_dir.parent)
        if refused:
            raise GalaxyError(refused)
        return _launch(prepared, run_dir, settings, resume)


def _launch(prepared: Path, run_dir: Path, settings: dict[str, Any], resume: bool) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = train_command(prepared, run_dir, settings, resume)
    launch = cmd
    if shutil.which("nice"):
        launch = ["nice", "-n", "5", *cmd]  # nice execs: the pid stays the trainer's pid
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / PROCESS_LOG_FILE, "ab") as log:
        proc = subprocess.Popen(launch, cwd=locations.PROJECT_ROOT, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    _PROCESSES[proc.pid] = proc
    previous = _read(run_dir / LAUNCH_FILE)
    write_json(run_dir / LAUNCH_FILE, {
        "state": "starting", "pid": proc.pid, "started": time.time(), "command": cmd,
        "epochs": settings.get("epochs") or previous.get("epochs"),
        "settings": {**previous.get("settings", {}), **settings}, "prepared": str(prepared)})
    return proc.pid


def resume(info: RunInfo) -> int:
    launch = _read(info.path / LAUNCH_FILE)
    config = _read(info.path / CONFIG_FILE)
    prepared = launch.get("prepared") or config.get("prepared") or str(locations.prepared_dir())
    return start(Path(prepared), info.path, {}, resume=True)


def stop(info: RunInfo) -> bool:
    """Ask the run to stop (SIGINT = Ctrl-C: the loop keeps its last finished epoch)."""
    pid = info.status.get("pid")
    if not training_allowed():
        raise GalaxyError(f"stopping training runs is switched off on this server ({ALLOW_ENV}=0)")
    if not info.alive or not pid:
        return False
    try:
        os.kill(int(pid), signal.SIGINT)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def log_tail(run_dir: Path, lines: int = 15) -> str:
    """Last lines of the process output, progress-bar redraws collapsed."""
    path = run_dir / PROCESS_LOG_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 32_000))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    rows = [part.split("\r")[-1] for part in text.split("\n")]
    return "\n".join([r for r in rows if r.strip()][-lines:])


# --- progress between two status writes ---------------------------------------------------------
STATUS_EVERY = 10
"""The training loop writes its step to status.json every 10 steps (galaxy_core/train/loop.py):
at 2 s a step on a CPU the page would sit at "step 1 of 96" for 20 s."""


def clock(seconds: float) -> str:
    """Elapsed time as m:ss (h:mm:ss from an hour)."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours
            else f"{rest // 60}:{rest % 60:02d}")


def seconds_per_step(status: dict[str, Any], rows: list[dict[str, Any]],
                     seen: list[tuple[int, float]]) -> float | None:
    """How long one step takes: from the finished epochs' times (``rows``, the run's log), else
    from two status writes seen by the caller: ``seen`` keeps the last two (step, time written)
    pairs and is updated here."""
    total, epochs = status.get("total_steps"), status.get("epochs")
    if rows and total and epochs:
        per_epoch = [float(r["seconds"]) for r in rows if r.get("seconds")]
        if per_epoch:
            return sum(per_epoch) / len(per_epoch) / (float(total) / float(epochs))
    step, written = status.get("step"), status.get("updated")
    if step and written and (not seen or seen[-1][0] != int(step)):
        seen.append((int(step), float(written)))
        del seen[:-2]
    if len(seen) == 2 and seen[1][0] > seen[0][0] and seen[1][1] > seen[0][1]:
        return (seen[1][1] - seen[0][1]) / (seen[1][0] - seen[0][0])
    return None


def live_step(info: RunInfo, rows: list[dict[str, Any]], seen: list[tuple[int, float]],
              now: float | None = None) -> tuple[float, bool]:
    """The step a training run is at now: the last one written, moved on by the time since
    then at the measured speed, never past the next write, the epoch's end or the last step;
    and whether that is such an estimate (False: the written step, for a run not training)."""
    s = info.status
    step, total, written = s.get("step") or 0, s.get("total_steps"), s.get("updated")
    speed = seconds_per_step(s, rows, seen)
    if not (info.active and info.state == "training" and step and total and written and speed):
        return float(step), False
    now = time.time() if now is None else now
    per_epoch = float(total) / float(s.get("epochs") or 1)
    epoch_end = float(s.get("epoch") or 1) * per_epoch
    guess = min(step + max(0.0, now - float(written)) / speed, step + STATUS_EVERY - 1,
                epoch_end, float(total))
    return max(float(step), guess), guess >= step + 1


def stopped_note(rows: list[dict[str, Any]]) -> str:
    """What a stopped run kept, in words: its last finished epoch, or that none had finished
    (a stop during the first epoch keeps nothing, whatever the loop's interrupt line says)."""
    if rows:
        return (f"Epoch {rows[-1]['epoch']} is the last finished one and is kept: Resume "
                "continues after it.")
    return ("No epoch had finished, so nothing was kept: Resume starts the training again "
            "from the beginning.")
