"""Numbers read from text: ASCII digits only.

Python's ``int()``, ``float()``, ``str.isdigit()`` and the regex ``\\d`` take any Unicode digit
(``int("٤") == 4``), and ``int()``/``float()`` also blanks, signs, ``_`` separators, ``nan`` and
``inf``. A version ``٤.0.0.0`` passed the update check while the importer refused it. Whatever
comes from outside (devices, the API, the command line, settings) is read here, so ``٤`` and
``1_0`` mean the same everywhere: not a number. In patterns, write ``[0-9]``, never ``\\d``.
"""

from __future__ import annotations

import math
import re

#: the longest number accepted at all: far past any range, short enough to convert in no time
MAX_DIGITS = 100
#: the furthest a listing pages by offset (API, console, CLI): past any real listing, and an OFFSET
#: every database takes
MAX_OFFSET = 10**9

_WHOLE = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def is_digits(text: str) -> bool:
    """A non-empty run of ASCII ``0-9`` (what ``str.isdigit`` is usually taken to mean)."""
    return text.isascii() and text.isdigit()


def whole(text: str) -> int:
    """``[-]digits`` in ASCII as an ``int``; ``ValueError`` for anything else (blanks included)."""
    if not isinstance(text, str) or len(text) > MAX_DIGITS or not _WHOLE.fullmatch(text):
        raise ValueError(f"{str(text)[:40]!r} is not a whole number (digits 0-9)")
    return int(text)


def decimal(text: str) -> float:
    """``[-]digits[.digits]`` in ASCII as a finite ``float``; ``ValueError`` for anything else
    (exponents, ``nan``, ``inf``, blanks)."""
    if not isinstance(text, str) or len(text) > MAX_DIGITS or not _DECIMAL.fullmatch(text):
        raise ValueError(f"{str(text)[:40]!r} is not a number (digits 0-9, optionally with a '.')")
    value = float(text)
    if not math.isfinite(value):  # 100 digits fit a float, but be explicit
        raise ValueError(f"{text[:40]!r} is too large")
    return value
