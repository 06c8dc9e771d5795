"""How much one dashboard's classroom may hold, and how fast a visitor may make classes.

Making a class runs the network once per galaxy for its Grad-CAM map: a 200-galaxy class took
95 s of CPU on a 2-core laptop and 10.7 MB of the classroom file. The dashboard is open to every
computer on the school network, so every number here bounds what one visitor can make the
server do or keep. They are sized for the lesson the manual describes (one class of about 30,
20 galaxies each) with room to spare; change them here, nowhere else.
"""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_TARGET = 50
"""Galaxies per student, and so per class (a class stores exactly that many): 20 fill about 15
minutes, 50 a double lesson. About 2.5 MB and 25 s of CPU per class at most."""
MAX_OPEN_CLASSES = 10
"""Classes taking answers at once on one server; close one to make another."""
MAX_STORED_CLASSES = 60
"""Classes kept in the file, open or closed; delete old ones to make room."""
MAX_STUDENTS = 100
"""Nicknames in one class."""
MAX_CLASSES_PER_VISITOR = 3
"""Classes one visitor on another computer may make within :data:`VISITOR_WINDOW_S` (the
computer running the dashboard is not counted)."""
VISITOR_WINDOW_S = 3600.0


class VisitorQuota:
    """At most ``limit`` classes per visitor (an address) within ``window`` seconds, counted in
    memory: a restart forgets, which is fine for a bound against a prank, not an account."""

    def __init__(self, limit: int = MAX_CLASSES_PER_VISITOR,
                 window: float = VISITOR_WINDOW_S) -> None:
        self.limit = limit
        self.window = window
        self._made: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, visitor: str, now: float | None = None) -> bool:
        """Count one class for ``visitor`` and say True, or say False (nothing counted) when
        the visitor already made ``limit`` in the window."""
        now = time.time() if now is None else now
        with self._lock:
            made = self._made.setdefault(visitor, deque())
            while made and made[0] <= now - self.window:
                made.popleft()
            if len(made) >= self.limit:
                return False
            made.append(now)
            return True

    def give_back(self, visitor: str) -> None:
        """Uncount the last class taken (it was not made after all)."""
        with self._lock:
            made = self._made.get(visitor)
            if made:
                made.pop()
