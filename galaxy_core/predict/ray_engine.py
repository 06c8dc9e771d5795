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
machine; with ``--ray-address`` (or ``RAY_ADDRESS``) the job joins that cluster. The model
folder goes to the workers through Ray's object store, so they need not share a filesystem with
the driver; the images (paths) must be readable where the tasks run, as Ray Data always
requires.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
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


class RayMissing(GalaxyError):
    """``--engine ray`` without Ray installed."""


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
    returns what it joined, in words."""
    ray = _ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False,
                 "logging_level": logging.WARNING}
        try:
            if address:
                ray.init(address=address, **quiet)
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
    from galaxy_core.model.onnx_network import INT8_FILE, ONNX_FILE

    unused = {"torch": {ONNX_FILE, INT8_FILE}, "onnx": {INT8_FILE},
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
        for out in data.iter_batches(batch_size=None, batch_format="numpy"):
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
