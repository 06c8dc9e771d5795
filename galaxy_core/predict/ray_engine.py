"""``galaxy predict --engine ray``: the same rows as the local engine, made by a Ray Data job that
can spread over every core of a cluster.

The job is the local pipeline cut at the same seams (:func:`~galaxy_core.predict.stream.
prepare_job` and :func:`~galaxy_core.predict.classify.finish_prepared`):

1. the inputs, taken lazily from the same :class:`~galaxy_core.predict.jobs.Job` stream (files,
   folders, catalogue rows, Parquet rows with image bytes), a window of :data:`WINDOW` at a time
   so the driver never lists a survey;
2. reading, survey matching and framing in Ray tasks (``map_batches`` with a function);
3. the network in an actor pool (``map_batches`` with a class, ``compute=ActorPoolStrategy``):
   each actor loads the model once and keeps it;
4. the answers come back in input order and the driver appends them to the output through the
   same writer as the local engine (CSV or Parquet parts), so ``--resume``, ``--prior`` and
   ``--accept-at`` behave exactly as they do locally.

The last step keeps one writer, on the driver: a row is about 200 bytes, so even 10^8 rows are
a small stream next to the images the workers read. Without an address a Ray is started on this
machine; with ``--ray-address`` (or ``RAY_ADDRESS``) the job joins that cluster.

Joining is bounded (:func:`start`): Ray itself retries an address that does not answer for
about ten minutes, printing each retry, and cannot be stopped while it waits (617 s for
``127.0.0.1:1``, SIGTERM ignored). So the address is first tried with a plain TCP connection
(a closed port is refused at once, before Ray is even imported), and ``ray.init`` then runs in
a helper thread while this one waits at most :data:`CONNECT_SECONDS` (``GALAXY_RAY_TIMEOUT``
to change it), stopping at once on Ctrl-C or SIGTERM. The model
folder goes to the workers through Ray's object store, so they need not share a filesystem with
the driver; the images (paths) must be readable where the tasks run, as Ray Data always
requires.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from galaxy_core.config import Config
from galaxy_core.errors import GalaxyError
from galaxy_core.predict.framing import Prediction
from galaxy_core.predict.jobs import Job

WINDOW = 20_000
"""Jobs per Ray Data dataset: enough to keep a cluster busy, few enough for the driver to hold
their names; the actor pool starts again per window (a model load per actor, about a second)."""
INSTALL = "pip install 'ray[data]==2.60.0' (or: pip install .[ray])"

Batch = list[tuple[Job, Prediction]]


CONNECT_SECONDS = 30.0
"""How long joining a cluster may take before galaxy predict gives up (GALAXY_RAY_TIMEOUT)."""
TIMEOUT_VARIABLE = "GALAXY_RAY_TIMEOUT"
LOCAL_ADDRESSES = ("auto", "local")
"""Addresses Ray resolves on this machine itself (no host:port to try first)."""


class RayMissing(GalaxyError):
    """``--engine ray`` without Ray installed."""


def _require_ray() -> None:
    """Refuse, without importing Ray (seconds), when it is not installed."""
    from importlib.util import find_spec

    try:
        found = find_spec("ray") is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules (None) raises here
        found = False
    if not found:
        raise RayMissing(f"--engine ray needs Ray Data, which is not installed: {INSTALL}")


def connect_seconds() -> float:
    """:data:`CONNECT_SECONDS`, or ``GALAXY_RAY_TIMEOUT`` when it is a positive number."""
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        value = float(text)
    except ValueError:
        return CONNECT_SECONDS
    return value if 0 < value < 1e6 else CONNECT_SECONDS


def host_port(address: str) -> tuple[str, int] | None:
    """``address`` (``host:port``, ``ray://host:port``, ``[v6]:port``) as (host, port); None
    for the addresses Ray resolves itself (:data:`LOCAL_ADDRESSES`)."""
    if address in LOCAL_ADDRESSES:
        return None
    text = address.split("://", 1)[1] if "://" in address else address
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GalaxyError(f"--ray-address {address!r} is not host:port (e.g. 10.0.0.5:6379, "
                          "ray://head:10001 or auto)")
    return host.strip("[]"), int(port)


def _reach(address: str, seconds: float) -> None:
    """Try ``address`` with a plain TCP connection: refused, unknown or silent for ``seconds``
    is one clear error at once, where Ray would retry for ten minutes."""
    target = host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=seconds).close()
    except ConnectionRefusedError:
        raise GalaxyError(f"cannot reach the Ray cluster at {address}: nothing listens there "
                          "(connection refused); start it with ray start --head, or check "
                          "--ray-address / RAY_ADDRESS") from None
    except socket.gaierror:
        raise GalaxyError(f"cannot reach the Ray cluster at {address}: unknown host "
                          f"{target[0]!r}") from None
    except TimeoutError:
        raise GalaxyError(f"cannot reach the Ray cluster at {address}: no answer within "
                          f"{seconds:g} s ({TIMEOUT_VARIABLE} sets how long to wait)") from None
    except OSError as exc:
        raise GalaxyError(f"cannot reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc}") from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _init_within(ray: Any, address: str, seconds: float, **options: Any) -> None:
    """``ray.init(address=...)`` given at most ``seconds``. It runs in a helper thread: Ray's
    own wait sits in C++ retries that hold off signal handlers, so this thread waits instead,
    where Ctrl-C and SIGTERM (made a KeyboardInterrupt here) stop it at once. A thread left
    behind is a daemon and holds nothing of ours; the process ends after the error."""
    done = threading.Event()
    failure: list[BaseException] = []

    def join() -> None:
        try:
            ray.init(address=address, **options)
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            done.set()

    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _interrupt) if main else None
    ray_log = logging.getLogger("ray")
    level = ray_log.level
    ray_log.setLevel(logging.ERROR)  # "SIGTERM handler is not set ... not the main thread"
    try:
        threading.Thread(target=join, name="galaxy-ray-init", daemon=True).start()
        if not done.wait(seconds):
            raise GalaxyError(f"the Ray cluster at {address} did not answer within {seconds:g} "
                              f"s; check that it runs and that this machine can reach it "
                              f"({TIMEOUT_VARIABLE} sets how long to wait)")
    finally:
        ray_log.setLevel(level)
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    if failure:
        raise failure[0]


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayMissing(f"--engine ray needs Ray Data, which is not installed: {INSTALL}") \
            from None
    return ray


def start(address: str | None = None, num_cpus: int | None = None) -> str:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start Ray on this machine;
    returns what it joined, in words. Joining gives up after :func:`connect_seconds` with one
    line (see the module docstring)."""
    _require_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    seconds = connect_seconds()
    if address:
        _reach(address, seconds)  # before Ray is imported: a closed port is refused at once
    ray = _ray()
    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False,
                 "logging_level": logging.WARNING}
        try:
            if address:
                _init_within(ray, address, seconds, **quiet)
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise GalaxyError(f"cannot start {where}: {' '.join(str(exc).split())[:200]}") \
                from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in input order: --resume needs it
    context.enable_progress_bars = False  # galaxy predict draws its own
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return f"Ray cluster at {address} ({cpus} CPUs)" if address else f"local Ray ({cpus} CPUs)"


def model_package(folder: Path, backend: str = "torch") -> dict[str, bytes]:
    """The model folder's own files (not its reports), to ship to workers that cannot read it:
    of the ONNX files only the one ``backend`` runs."""
    from galaxy_core.model.onnx_network import INT8_FILE, INT8_OOD_FILE, ONNX_FILE

    unused = {"torch": {ONNX_FILE, INT8_FILE, INT8_OOD_FILE}, "onnx": {INT8_FILE, INT8_OOD_FILE},
              "onnx-int8": {ONNX_FILE}}.get(backend, set())
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.name not in unused and not p.name.startswith(".")}


def _prepare(batch: dict[str, np.ndarray], config: Config, survey: str) -> dict[str, np.ndarray]:
    """Ray task: read and frame a batch of jobs (the local engine's worker step)."""
    from galaxy_core.predict.stream import prepare_job

    prepared = [pickle.dumps(prepare_job(pickle.loads(raw), config, survey))
                for raw in batch["job"]]
    return {"n": batch["n"], "prepared": np.array(prepared, dtype=object)}


class _Network:
    """Ray actor: one loaded model, kept for every batch the pool gives it."""

    def __init__(self, package: Any, backend: str, views: int | None,
                 batch_size: int, threads: int):
        import ray

        from galaxy_core.predict.backend import open_model

        if backend == "torch":
            import torch

            torch.set_num_threads(max(1, threads))
        self._folder = tempfile.TemporaryDirectory(prefix="galaxy-model-")
        for name, data in ray.get(package).items():  # an object-store reference
            (Path(self._folder.name) / name).write_bytes(data)
        # an ONNX engine's actor never imports torch (open_model loads no torch module for it)
        self.loaded = open_model(self._folder.name, backend, threads=max(1, threads))
        self.views, self.batch_size = views, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from galaxy_core.predict.classify import finish_prepared

        prepared = [pickle.loads(raw) for raw in batch["prepared"]]
        preds = finish_prepared(self.loaded, prepared, self.batch_size, views=self.views)
        return {"n": batch["n"], "pred": np.array([pickle.dumps(p) for p in preds],
                                                  dtype=object)}


def ray_batches(jobs: Iterable[Job], model_folder: Path, config: Config, survey: str = "auto",
                batch_size: int = 32, views: int | None = None, backend: str = "torch",
                actors: int | None = None, threads: int = 1) -> Iterator[Batch]:
    """The jobs with their predictions, in input order, in batches of ``batch_size``: what
    :func:`~galaxy_core.predict.stream.prepared_batches` followed by ``finish_prepared`` gives
    locally. Call :func:`start` first."""
    ray = _ray()
    from ray.data import ActorPoolStrategy

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pool = ActorPoolStrategy(min_size=1, max_size=actors or max(1, cpus // max(1, threads)))
    package = ray.put(model_package(model_folder, backend))
    it = iter(jobs)
    while window := list(islice(it, WINDOW)):
        rows = [{"n": n, "job": pickle.dumps(job)} for n, job in enumerate(window)]
        data = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // batch_size))
        data = data.map_batches(_prepare, fn_kwargs={"config": config, "survey": survey},
                                batch_size=batch_size, batch_format="numpy")
        data = data.map_batches(
            _Network, fn_constructor_kwargs={"package": package, "backend": backend,
                                             "views": views, "batch_size": batch_size,
                                             "threads": threads},
            batch_size=batch_size, batch_format="numpy", compute=pool, num_cpus=threads)
        expected = 0
        pending: Batch = []
        for out in _answers(data):
            for n, raw in zip(out["n"], out["pred"]):
                if int(n) != expected:
                    raise GalaxyError(f"the Ray job returned row {int(n)} where row {expected} "
                                      "was due; nothing after it was written, --resume goes on")
                pending.append((window[expected], pickle.loads(raw)))
                expected += 1
                if len(pending) == batch_size:
                    yield pending
                    pending = []
        if pending:
            yield pending
        if expected != len(window):
            raise GalaxyError(f"the Ray job returned {expected} of {len(window)} rows")


def _answers(data: Any) -> Iterator[dict[str, np.ndarray]]:
    """The job's output batches. A task or actor that failed (an onnxruntime or torch
    allocation, a model that cannot load) reaches the driver as Ray's own exception, a
    traceback from another machine: our error is passed on as it is, anything else as one
    line saying that the rows before are written."""
    try:
        yield from data.iter_batches(batch_size=None, batch_format="numpy")
    except GalaxyError:
        raise
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, GalaxyError):
            raise cause from None
        first = next((line for line in str(cause or exc).splitlines() if line.strip()), "")
        raise GalaxyError(f"the Ray job failed ({type(cause or exc).__name__}: "
                          f"{' '.join(first.split())[:200]}); the rows before it are written, "
                          "--resume goes on") from None
