"""The range of every number an admin sets: one reader and one check for the process settings
(``settings.py``) and the device-update configuration (``configuration.py``), so the CLI, the API
and the environment refuse the same values with the same words.

:meth:`Range.parse` reads a value (ASCII digits only, see ``numbers.py``; sizes with units),
checks it against the range and returns it, or raises ``ValueError`` whose text states the range —
the caller puts the setting's name in front. Nothing else escapes: not for huge numbers (no float
arithmetic on sizes, so no ``OverflowError``), ``nan``, ``inf``, signs or booleans.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from devupdate import numbers

_SIZE = re.compile(r"([0-9]+)(?:\.([0-9]+))?\s*([KMGTP]i?B?|B)?", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4, "PI": 1024**5}
_BINARY = (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_DIGITS_ONLY = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")


class TooManyDigits(ValueError):
    """A number longer than ``numbers.MAX_DIGITS`` digits: outside every range there is."""


def parse_size(text: str | int) -> int:
    """'100MiB', '2GB', '1.5KiB', '1,024,000', '512000' → bytes (rounded down), in integers only."""
    if isinstance(text, bool):
        raise ValueError("expected a size, not true/false")
    if isinstance(text, int):
        return text
    cleaned = str(text).strip().replace(",", "").replace("_", "")
    match = _SIZE.fullmatch(cleaned)
    if not match:
        raise ValueError(f"{str(text)[:40]!r} is not a size (examples: 512000, 100MiB, 2GB)")
    whole, fraction, unit = match.group(1), match.group(2) or "", (match.group(3) or "").upper().rstrip("B")
    if len(whole) > numbers.MAX_DIGITS:
        raise TooManyDigits(f"{len(whole)} digits")
    fraction = fraction[:numbers.MAX_DIGITS]
    factor = _UNITS[unit]
    scale: int = 10 ** len(fraction)
    return int(whole) * factor + int(fraction or "0") * factor // scale


def size_text(value: int) -> str:
    """1073741824 → '1 GiB'; sizes that are no whole binary unit stay plain bytes."""
    for name, factor in _BINARY:
        if value >= factor and value % factor == 0:
            return f"{value // factor} {name}"
    return f"{value} bytes"


@dataclass(frozen=True)
class Range:
    """``low ≤ value ≤ high`` (``low < value`` with ``low_open``) of one kind: ``whole`` numbers,
    ``decimal`` numbers, or ``size`` in bytes (units accepted). ``unit`` is said after the numbers."""

    low: int | float
    high: int | float
    kind: str = "whole"
    unit: str = ""
    low_open: bool = False

    def describe(self) -> str:
        """The range as the documentation and every refusal state it, e.g. '1–256', '1 KiB–1 GiB'."""
        if self.kind == "size":
            return f"{size_text(int(self.low))}–{size_text(int(self.high))}"
        low, high = _number_text(self.low), _number_text(self.high)
        unit = f" {self.unit}" if self.unit else ""
        if self.low_open:
            return f"more than {low}, at most {high}{unit}"
        return f"{low}–{high}{unit}"

    def parse(self, value: object) -> int | float:
        """The value, read and inside the range; otherwise ``ValueError`` stating the range."""
        try:
            number = self._read(value)
        except TooManyDigits:
            raise ValueError(f"out of range {self.describe()}") from None
        except ValueError as exc:
            raise ValueError(f"{exc}; the range is {self.describe()}") from None
        if number < self.low or (self.low_open and number == self.low) or number > self.high:
            raise ValueError(f"out of range {self.describe()}")
        return number

    def _read(self, value: object) -> int | float:
        if isinstance(value, bool):
            raise ValueError(f"expected {self._expected()}, not true/false")
        if self.kind == "size":
            return parse_size(value)  # type: ignore[arg-type]
        if isinstance(value, int):
            return value if self.kind == "whole" else float(value)
        if isinstance(value, float):
            if self.kind == "whole":  # a TOML float: 2.0 is not a count of workers
                raise ValueError(f"expected {self._expected()}")
            if not math.isfinite(value):
                raise ValueError(f"expected {self._expected()}, not {value}")
            return value
        text = str(value).strip()
        if _DIGITS_ONLY.fullmatch(text) and len(text.split(".")[0].lstrip("-")) > numbers.MAX_DIGITS:
            raise TooManyDigits(text[:20])
        try:
            return numbers.whole(text) if self.kind == "whole" else numbers.decimal(text)
        except ValueError:
            raise ValueError(f"expected {self._expected()}") from None

    def _expected(self) -> str:
        return {"whole": "a whole number (digits 0-9)", "decimal": "a number (digits 0-9, optionally with a '.')",
                "size": "a size"}[self.kind]


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if abs(value) >= 100_000 else str(value)


__all__ = ["Range", "TooManyDigits", "parse_size", "size_text"]
