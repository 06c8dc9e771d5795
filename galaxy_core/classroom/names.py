"""When two nicknames look the same on a screen.

A class's list of nicknames is read by a teacher and by students: "Аda" (a Cyrillic А) beside
"Ada", or "Ada" beside a full-width "Ａda", reads as one person answering twice, and lets a
student pass as a classmate. So a class refuses a nickname whose *skeleton* is already taken.

The skeleton follows the idea of Unicode's confusable skeleton (UTS #39) on a small scale, with
no new dependency: NFKC (full-width, ligatures and other compatibility forms to their plain
letters), the common Cyrillic and Greek letters that look like Latin ones mapped to those
(capitals before case folding, small letters after), capital I, small l and the digits 1 and 0
folded together, case folded, and accents dropped. The table covers the letters a keyboard layout or a copy-paste is likely to bring, not
every confusable of Unicode.
"""

from __future__ import annotations

import unicodedata

_CAPITALS = str.maketrans({
    # Cyrillic capitals that look Latin
    "А": "A", "В": "B", "Е": "E", "Ѕ": "S", "І": "I", "Ј": "J", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ү": "Y", "Ӏ": "I", "Ԛ": "Q",
    "Ԝ": "W",
    # Greek capitals that look Latin
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # told apart only by case: a capital I and a small l are one stroke in a sans-serif font,
    # and so are the digits 1 and 0 beside l and o
    "I": "l", "1": "l", "|": "l", "0": "o",
})
"""Applied before case folding, which would turn a Greek capital Nu (N) into a small nu (v)."""

_SMALL = str.maketrans({
    # Cyrillic small letters that look Latin
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i",
    "ј": "j", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "ь": "b",
    # Greek small letters that look Latin
    "α": "a", "ο": "o", "ι": "i", "ν": "v", "ρ": "p", "χ": "x", "υ": "u", "κ": "k",
    "ϲ": "c", "ϳ": "j",
    # Latin
    "ı": "i", "ɡ": "g",
})
"""Applied after case folding."""


def skeleton(text: str) -> str:
    """The form two nicknames share when they look alike: equal skeletons are one nickname.

    Spaces are squeezed, so "Comet  Kid" and "Comet Kid" are one name too."""
    name = unicodedata.normalize("NFKC", str(text)).translate(_CAPITALS).casefold()
    name = unicodedata.normalize("NFKD", name)
    name = "".join(ch for ch in name if not unicodedata.combining(ch))
    name = name.translate(_SMALL).translate(_CAPITALS)
    return " ".join(name.split())
