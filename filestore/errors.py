"""Exceptions raised by the filestore.

Every error is a :class:`FileStoreError`, so a web layer can map the whole
family to HTTP statuses in one place (``QuotaExceeded`` -> 507, ``TooLarge``
-> 413, ``UnsafePath`` -> 400, ``ObjectNotFound`` -> 404).
"""

from __future__ import annotations


def format_bytes(n: int | None) -> str:
    """Human-readable size for messages (MiB with one decimal, like ``df -h``)."""
    if n is None:
        return "unlimited"
    if n < 1024 * 1024:
        return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB"
    if n < 1024**3:
        return f"{n / 1024**2:.1f} MiB"
    return f"{n / 1024**3:.2f} GiB"


class FileStoreError(Exception):
    """Base class of every error the filestore raises on purpose."""


class UnsafePath(FileStoreError, ValueError):
    """A name or area argument could reach outside the store, or is malformed.

    A ``ValueError`` too: it is always the caller's input that is wrong.
    """


class UnknownArea(FileStoreError, LookupError):
    """The area was not configured when the store was created."""


class ObjectNotFound(FileStoreError, LookupError):
    """The object or named file does not exist."""


class QuotaExceeded(FileStoreError):
    """A write would pass the area's byte quota; nothing was left behind.

    ``used`` is the area's usage without this write, ``attempted`` the size of
    this write (known in advance, or as far as it had got when it was stopped).
    Callers may replace the text (``message=`` or by assigning ``.message``) to
    name their own remedy, e.g. the setting that raises the quota.
    """

    def __init__(self, area: str, quota: int, used: int, attempted: int,
                 message: str | None = None) -> None:
        self.area = area
        self.quota = quota
        self.used = used
        self.attempted = attempted
        self.message = message or (
            f"area {area!r} quota {format_bytes(quota)} would be exceeded "
            f"(used {format_bytes(used)}, writing {format_bytes(attempted)}); "
            f"raise the area's quota or remove files from it"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class TooLarge(FileStoreError):
    """A named write passed its ``max_size``; nothing was left behind."""

    def __init__(self, area: str, relpath: str, max_size: int) -> None:
        self.area = area
        self.relpath = relpath
        self.max_size = max_size
        super().__init__(
            f"{relpath!r} in area {area!r} is larger than the limit of "
            f"{format_bytes(max_size)}; send a smaller file or raise the limit"
        )
