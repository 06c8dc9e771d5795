"""One network, many callers: requests from concurrent sessions are merged into shared forward
passes, and served fairly.

A dashboard in class has thirty students uploading at once, each a thread of one server that
holds one copy of the network. Run one by one behind a lock, every upload pays the fixed cost
of a forward pass on its own (on 2 cores a batch of 8 costs about half as much per image as a
batch of 1), and a student who sends 20 images holds everyone else up until all 20 are done.
Here each request is cut into its items; one worker thread takes up to ``max_batch`` items at
a time, one from each waiting request in turn (so a one-image request joins the very next pass
however large the others are), runs them through ``work`` in one call and hands every caller
its own results, in its own order. Callers only wait; nothing they hold is shared.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

Progress = Callable[[int, int], None]


@dataclass
class _Request(Generic[Item, Result]):
    items: list[Item]
    group: Hashable
    future: Future = field(default_factory=Future)
    results: list[Result | None] = field(default_factory=list)
    next: int = 0  # the next item to hand to the worker
    done: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)


class MicroBatcher(Generic[Item, Result]):
    """Runs ``work(group, items) -> results`` (one result per item, in order) on items merged
    from every caller of :meth:`run`. Only items of one ``group`` share a call (for example the
    same survey-matching option); groups take turns like callers do.

    ``max_wait`` is how long the worker lingers after the first item arrives for others to
    join its pass: a few milliseconds, next to a forward pass of a tenth of a second or more.
    """

    def __init__(self, work: Callable[[Hashable, list[Item]], Sequence[Result]],
                 max_batch: int = 8, max_wait: float = 0.005, name: str = "micro-batcher"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._work = work
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._waiting: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self.calls = 0
        """Calls of ``work`` so far (how many passes the requests were merged into)."""
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, items: Sequence[Item], group: Hashable = None,
            progress: Progress | None = None, poll: float = 0.1) -> list[Result]:
        """The results for ``items``, once all are done. ``progress(done, total)`` is called
        in the caller's own thread (a Streamlit page can only draw from its own) whenever more
        are done. An exception raised by ``work`` reaches every caller whose items were in
        that pass."""
        request = self.submit(items, group)
        shown = 0
        while True:
            try:
                results = request.future.result(timeout=poll if progress else None)
            except FutureTimeout:
                if progress is not None and request.done != shown:
                    shown = request.done
                    progress(shown, len(request.items))
                continue
            if progress is not None and shown != len(results):
                progress(len(results), len(results))
            return results

    def submit(self, items: Sequence[Item], group: Hashable = None) -> _Request:
        """Queue ``items``; the request's ``future`` gives the results, ``done`` counts them."""
        request: _Request = _Request(list(items), group)
        if not request.items:
            request.future.set_result([])
            return request
        with self._wake:
            if self._closed:
                raise RuntimeError("this batcher is closed")
            self._waiting.append(request)
            self._wake.notify()
        return request

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    # --- the worker ------------------------------------------------------------------------
    def _take(self) -> tuple[Hashable, list[tuple[_Request, int]]]:
        """Up to ``max_batch`` items of one group, one per waiting request in turn."""
        group = self._waiting[0].group
        taken: list[tuple[_Request, int]] = []
        while len(taken) < self.max_batch:
            added = False
            for request in [r for r in self._waiting if r.group == group]:
                if request.next < len(request.items) and len(taken) < self.max_batch:
                    taken.append((request, request.next))
                    request.next += 1
                    added = True
            if not added:
                break
        for request in {id(r): r for r, _ in taken}.values():
            if request.next == len(request.items):
                self._waiting.remove(request)  # all handed out; it finishes with this pass
            else:  # to the back: the others go first next time
                self._waiting.remove(request)
                self._waiting.append(request)
        return group, taken

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if not self._waiting:
                    return
                if self.max_wait > 0 and self._queued() < self.max_batch:
                    self._wake.wait(self.max_wait)  # let concurrent callers join this pass
                group, taken = self._take()
            self._run(group, taken)

    def _queued(self) -> int:
        return sum(len(r.items) - r.next for r in self._waiting)

    def _run(self, group: Hashable, taken: list[tuple[_Request, int]]) -> None:
        requests = list({id(r): r for r, _ in taken}.values())
        try:
            self.calls += 1
            results = list(self._work(group, [r.items[i] for r, i in taken]))
            if len(results) != len(taken):
                raise RuntimeError(f"work returned {len(results)} results for "
                                   f"{len(taken)} items")
        except BaseException as exc:  # every caller in this pass hears of it, once
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
                with self._wake:
                    if request in self._waiting:
                        self._waiting.remove(request)
            return
        for (request, index), result in zip(taken, results):
            request.results[index] = result
            request.done += 1
        for request in requests:
            if not request.future.done() and request.done == len(request.items):
                request.future.set_result(list(request.results))
