"""Tasks that tests send to worker processes. Kept in a module of their own that imports only
what the worker already has: a test module's own imports (pandas, the CLI) would change the
worker's memory state, which is what some of these tasks measure."""

from __future__ import annotations

import resource
from pathlib import Path

from galaxy_core.data.image_roots import ImageRoots
from galaxy_core.data.pool import probe_chunk


def check_and_count_faults(names: list[str], root: Path) -> int:
    """Minor page faults while checking the second half of ``names`` (the first half warms
    the heap up)."""
    half = len(names) // 2
    roots = ImageRoots.single(root)
    probe_chunk(names[:half], roots)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    assert all(reason == "" for reason, *_ in probe_chunk(names[half:], roots))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
