"""Validation of caller-supplied names, so no argument can reach outside the store.

Names are checked twice: lexically (:func:`split_relpath`: no absolute paths,
``..``, empty components, backslashes, control characters, reserved temp
prefix) and against the real filesystem (:func:`check_contained`: after
resolving symlinks the path must still lie inside the area), because a
lexically clean name can still walk through a symlink planted in the area.
"""

from __future__ import annotations

import os
import re

from .errors import UnsafePath

#: Prefix of in-flight temp files; reserved so no stored name can look like one.
TEMP_PREFIX = ".tmp-"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_COMPONENT = 255  # bytes, NAME_MAX on Linux


def _bad_char(value: str) -> str | None:
    for ch in value:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or ch == "\\":
            return ch
    return None


def split_relpath(value: object, what: str = "name") -> tuple[str, ...]:
    """Return the ``/``-separated components of a safe relative path, or raise UnsafePath."""
    if not isinstance(value, str):
        raise UnsafePath(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise UnsafePath(f"{what} is empty")
    bad = _bad_char(value)
    if bad is not None:
        raise UnsafePath(
            f"{what} {value!r} contains {bad!r}; use a relative path of printable "
            f"characters separated by '/'"
        )
    if value.startswith("/"):
        raise UnsafePath(f"{what} {value!r} is absolute; give a path relative to the area")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePath(f"{what} {value!r} is not valid UTF-8") from None
    parts = tuple(value.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePath(
                f"{what} {value!r} has an empty, '.' or '..' component; "
                f"give a plain relative path such as 'dir/file.txt'"
            )
        if part.startswith(TEMP_PREFIX):
            raise UnsafePath(f"{what} {value!r}: names starting with {TEMP_PREFIX!r} are reserved")
        if len(part.encode("utf-8")) > _MAX_COMPONENT:
            raise UnsafePath(f"{what} {value!r} has a component longer than {_MAX_COMPONENT} bytes")
    return parts


def check_area_name(value: object) -> str:
    """Validate an area name at configuration time (may be nested: ``logs/client``)."""
    parts = split_relpath(value, "area")
    for part in parts:
        if part.startswith("."):
            # Keeps areas apart from the store's own ``.filestore`` metadata directory.
            raise UnsafePath(f"area {value!r}: components may not start with '.'")
    return "/".join(parts)


def check_sha256(value: object) -> str:
    """Normalise a hex SHA-256 (lower case); anything else is refused as unsafe."""
    if isinstance(value, str) and len(value) == 64:
        low = value.lower()
        if _SHA256.fullmatch(low):
            return low
    raise UnsafePath(f"{value!r} is not a hex SHA-256 digest (64 characters 0-9a-f)")


def is_sha256(name: str) -> bool:
    return len(name) == 64 and _SHA256.fullmatch(name) is not None


def check_contained(base_real: str, path: str, shown: str) -> None:
    """Raise UnsafePath if ``path`` resolves (symlinks followed) outside ``base_real``."""
    real = os.path.realpath(path)
    if real != base_real and not real.startswith(base_real + os.sep):
        raise UnsafePath(f"{shown!r} leads outside the store through a symlink; remove the link")
