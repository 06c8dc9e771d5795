"""How the Classify page gets its answers when a whole class uses one server.

Two things make thirty sessions cheap:

- **Answers by content.** An answer depends only on the file's bytes, the region of it chosen
  (a box, :mod:`galaxy_core.data.box`; none for the whole picture), the survey-matching option
  and the model. Every answer given is kept, server-wide, under those three (an LRU of
  :data:`MAX_ANSWERS`, about 30 kB each for the model input it keeps), so the galaxy a teacher
  hands out to the whole class is classified once, and a session that adds a file to its
  uploads does not classify the earlier ones again.
- **One shared pass.** What is not known yet goes to the model's
  :class:`~galaxy_core.predict.batching.MicroBatcher`: uploads of concurrent sessions share
  forward passes (about twice the throughput of one image at a time on 2 cores), one image from
  each session in turn, so a one-file upload is not stuck behind someone's batch of twenty.

Grad-CAM maps go through a batcher of their own (:func:`class_map`). The model's lock
(``models.lock``) is what keeps the two batchers' passes, and the Failures page's map passes, from
using the network at the same time.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future

import streamlit as st

from dashboard.models import lock, model_key
import numpy as np

from galaxy_core.data.box import Box
from galaxy_core.explain import gradcam as cams
from galaxy_core.model.store import LoadedModel
from galaxy_core.predict.batching import MicroBatcher
from galaxy_core.predict.classify import Prediction, classify_sources
from galaxy_core.predict.inputs import ESCAPED_NOTE, printable

MAX_ANSWERS = 256
MAX_BATCH = 8
"""Images per shared forward pass: 8 views each, so 64 network inputs, where the per-image
cost on 2 cores has stopped falling."""

AnswerKey = tuple[str, str, str, str]  # (model key, survey option, sha1 of the bytes, box)
Item = tuple[str, bytes, Box | None]  # (name, bytes, region to classify: None = whole picture)


class Answers:
    """A thread-safe LRU of predictions, and the ones being made right now; callers get
    copies, so nothing they change leaks into another session."""

    def __init__(self, limit: int = MAX_ANSWERS):
        self.limit = limit
        self._items: OrderedDict[AnswerKey, Prediction] = OrderedDict()
        self._making: dict[AnswerKey, Future] = {}
        self._lock = threading.Lock()

    def get(self, key: AnswerKey) -> Prediction | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
        return copy.deepcopy(found)

    def claim(self, key: AnswerKey) -> Prediction | Future | None:
        """The known answer; or the future of one another session is making (two students
        sending the same galaxy at once wait for one pass); or None, and the caller now makes
        it and must :meth:`settle` the key."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return copy.deepcopy(found)
            if key in self._making:
                return self._making[key]
            self._making[key] = Future()
            return None

    def settle(self, key: AnswerKey, pred: Prediction | None,
               error: BaseException | None = None) -> None:
        """Hand the answer of a claimed key to those waiting, and keep it if it succeeded (a
        failure may be passing: a slot, memory; it is tried again next time)."""
        with self._lock:
            future = self._making.pop(key, None)
            if pred is not None and pred.ok:
                self._keep(key, pred)
        if future is not None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(copy.deepcopy(pred))

    def put(self, key: AnswerKey, pred: Prediction) -> None:
        with self._lock:
            self._keep(key, pred)

    def _keep(self, key: AnswerKey, pred: Prediction) -> None:
        """Store a copy, most recent last, and drop the oldest beyond the limit (lock held)."""
        self._items[key] = copy.deepcopy(pred)
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource
def answers() -> Answers:
    return Answers()


@st.cache_resource(max_entries=4)
def _batcher(key: str, _loaded: LoadedModel) -> MicroBatcher:
    """One batcher per model (``key``: folder and stamp, the model itself left out of the
    cache key)."""

    def work(survey: Hashable, items: list[Item]) -> list[Prediction]:
        with lock(_loaded):
            return classify_sources(_loaded, [(name, data) for name, data, _ in items],
                                    survey=str(survey), batch_size=max(1, len(items)),
                                    keep_inputs=True, boxes=[box for _, _, box in items])

    return MicroBatcher(work, max_batch=MAX_BATCH, name=f"classify {key}")


def batcher(loaded: LoadedModel) -> MicroBatcher:
    return _batcher(model_key(loaded), loaded)


@st.cache_resource(max_entries=4)
def _map_batcher(key: str, _loaded: LoadedModel) -> MicroBatcher:
    """Grad-CAM maps share passes the same way (all 8 views of each image together)."""

    def work(_: Hashable, items: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
        with lock(_loaded):
            return cams.gradcam_many(_loaded, np.stack([image for image, _ in items]),
                                     [target for _, target in items])

    return MicroBatcher(work, max_batch=MAX_BATCH, name=f"grad-cam {key}")


def class_maps(loaded: LoadedModel, images: list[np.ndarray], targets: list[int],
               progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Grad-CAM maps of ``targets`` on model inputs, in passes of up to :data:`MAX_BATCH`
    shared with the other sessions asking at the same moment (the lock is taken per pass, so
    the Failures page's 48 maps do not hold up a student's one)."""
    items = [(np.array(image), int(target)) for image, target in zip(images, targets)]
    return _map_batcher(model_key(loaded), loaded).run(items, progress=progress)


def class_map(loaded: LoadedModel, image: np.ndarray, target: int) -> np.ndarray:
    """One map of :func:`class_maps`."""
    return class_maps(loaded, [image], [target])[0]


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _as_named(pred: Prediction, name: str) -> Prediction:
    """A known answer under the name this session gave the file."""
    shown, escaped = printable(name)
    pred.source = shown
    pred.notes = ([ESCAPED_NOTE] if escaped else []) + [n for n in pred.notes
                                                         if n != ESCAPED_NOTE]
    return pred


def classify_uploads(loaded: LoadedModel, uploads: list[tuple[str, bytes]], survey: str,
                     progress: Callable[[int, int], None] | None = None,
                     boxes: list[Box | None] | None = None) -> list[Prediction]:
    """Predictions for ``uploads`` (name, bytes), in order: known answers from the server-wide
    store, answers other sessions are making right now when they are done, the rest from the
    shared batcher. ``boxes`` gives each upload the region to classify (None: the whole
    picture), in the same order."""
    store, key = answers(), model_key(loaded)
    regions = boxes if boxes is not None else [None] * len(uploads)
    items: list[Item] = [(name, data, box) for (name, data), box in zip(uploads, regions)]
    keys = [(key, survey, digest(data), box.text if box else "") for _, data, box in items]
    preds: list[Prediction | None] = [None] * len(items)
    mine, theirs = [], []
    for i, k in enumerate(keys):
        found = store.claim(k)
        if isinstance(found, Prediction):
            preds[i] = found
        elif isinstance(found, Future):
            theirs.append((i, found))
        else:
            mine.append(i)
    if mine:
        try:
            fresh = batcher(loaded).run([items[i] for i in mine], group=survey,
                                        progress=progress)
        except BaseException as exc:
            for i in mine:
                store.settle(keys[i], None, exc)
            raise
        for i, pred in zip(mine, fresh):
            store.settle(keys[i], pred)
            preds[i] = pred
    for i, future in theirs:
        try:
            preds[i] = copy.deepcopy(future.result())
        except Exception:  # their pass failed: make it here
            preds[i] = batcher(loaded).run([items[i]], group=survey)[0]
    return [_as_named(p, name) for p, (name, _, _) in zip(preds, items) if p is not None]
