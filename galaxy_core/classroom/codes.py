"""Join codes a teacher can read aloud: six characters from an alphabet without the look-alikes
0/O and 1/I, so "B7KQ2M" survives a noisy classroom and a hurried hand."""

from __future__ import annotations

import secrets

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No 0, O, 1 or I."""
LENGTH = 6


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise_code(text: str) -> str | None:
    """The code as stored, from what a student typed (any case, spaces or dashes between), or
    None when it cannot be a code."""
    code = "".join(ch for ch in str(text).upper() if ch not in " -_\t")
    if len(code) != LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code
