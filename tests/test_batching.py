"""The micro-batcher that lets concurrent dashboard sessions share forward passes: every caller
gets its own results in its own order, requests really are merged, a small request overtakes a
large one, and an exception reaches the callers it concerns and no others."""

from __future__ import annotations

import threading
import time

import pytest

from galaxy_core.predict.batching import MicroBatcher


class Recorder:
    """A ``work`` function that squares numbers and remembers every pass it was given."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None):
        self.passes: list[tuple[object, list[int]]] = []
        self.delay, self.fail_on = delay, fail_on
        self.lock = threading.Lock()

    def __call__(self, group, items):
        with self.lock:
            self.passes.append((group, list(items)))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot square {self.fail_on}")
        return [x * x for x in items]


def run_together(batcher, requests, group=None):
    """Start every request at once (a barrier), return each one's results (or exception)."""
    out: list[object] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def one(i, items):
        barrier.wait()
        try:
            out[i] = batcher.run(items, group=group)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i, r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def test_each_caller_gets_its_own_results_in_order_and_passes_are_shared():
    work = Recorder(delay=0.05)
    batcher = MicroBatcher(work, max_batch=8, max_wait=0.05)
    requests = [[100 * i + j for j in range(3)] for i in range(6)]
    results = run_together(batcher, requests)
    assert results == [[x * x for x in r] for r in requests]
    assert batcher.calls == len(work.passes) < len(requests), "requests were merged"
    assert max(len(items) for _, items in work.passes) > 3
    assert all(len(items) <= 8 for _, items in work.passes)
    handed = sorted(x for _, items in work.passes for x in items)
    assert handed == sorted(x for r in requests for x in r), "every item exactly once"
    batcher.close()


def test_a_small_request_overtakes_a_large_one():
    work = Recorder(delay=0.05)
    batcher = MicroBatcher(work, max_batch=4, max_wait=0.0)
    finished: dict[str, float] = {}

    def large():
        batcher.run(list(range(40)))
        finished["large"] = time.monotonic()

    thread = threading.Thread(target=large)
    thread.start()
    time.sleep(0.08)  # the large one is under way
    assert batcher.run([1000]) == [1000 ** 2]
    finished["small"] = time.monotonic()
    thread.join(timeout=30)
    assert finished["small"] < finished["large"]
    passes_before_small = next(i for i, (_, items) in enumerate(work.passes) if 1000 in items)
    assert passes_before_small <= 3, "it joined one of the next passes, not the end of the queue"
    batcher.close()


def test_groups_never_share_a_pass():
    work = Recorder(delay=0.02)
    batcher = MicroBatcher(work, max_batch=8, max_wait=0.05)
    groups = {"auto": [10, 11], "off": [20, 21], "on": [30, 31], "auto2": [40, 41]}
    out: dict[str, list[int]] = {}

    def one(group, items):
        out[group] = batcher.run(items, group=group)

    threads = [threading.Thread(target=one, args=(g, items)) for g, items in groups.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    owner = {x: g for g, items in groups.items() for x in items}
    for group, items in work.passes:
        assert {owner[x] for x in items} == {group}, "a pass mixed groups"
    assert out == {g: [x * x for x in items] for g, items in groups.items()}
    batcher.close()


def test_an_exception_reaches_the_callers_in_that_pass_and_the_batcher_goes_on():
    work = Recorder(fail_on=13)
    batcher = MicroBatcher(work, max_batch=2, max_wait=0.0)
    with pytest.raises(ValueError, match="cannot square 13"):
        batcher.run([12, 13])
    assert batcher.run([3, 4, 5]) == [9, 16, 25], "later requests are served"
    batcher.close()


def test_progress_is_reported_in_the_callers_thread():
    work = Recorder(delay=0.03)
    batcher = MicroBatcher(work, max_batch=2, max_wait=0.0)
    seen: list[tuple[int, int, str]] = []
    caller = threading.current_thread().name
    batcher.run(list(range(7)),
                progress=lambda d, t: seen.append((d, t, threading.current_thread().name)),
                poll=0.01)
    assert seen[-1][:2] == (7, 7)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert {name for _, _, name in seen} == {caller}
    batcher.close()


def test_empty_request_and_bad_settings():
    batcher = MicroBatcher(Recorder(), max_batch=1)
    assert batcher.run([]) == []
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.run([1])
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch=0)
