"""Per-area usage ledger shared by every process that opens the same store root.

Why a ledger: ``usage()`` must be cheap (no directory walk per call) and quota
checks must hold across processes (gunicorn workers, the CLI). The ledger is a
tiny file per area holding the bytes and file count of stored files plus the
bytes *reserved* by writers in flight, keyed by their temp-file name. Every
read-modify-write happens under an exclusive ``flock`` on that same file, so
reservations from different processes can never sum past the quota.

The ledger is a cache of facts on disk, not a second source of truth: it is
not fsynced, it carries a CRC, and when it is missing or damaged it is rebuilt
by a scan (``rescan``), which is also the remedy after an unclean shutdown.
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class LedgerState:
    """The ledger's content; mutate it inside :meth:`Ledger.locked`."""

    used: int = 0  # bytes in stored (renamed-into-place) files
    files: int = 0  # number of stored files
    # temp-file name -> [reserved bytes, 1 while committing else 0]
    reservations: dict[str, list[int]] = field(default_factory=dict)

    @property
    def reserved(self) -> int:
        return sum(r[0] for r in self.reservations.values())

    @property
    def total(self) -> int:
        """Bytes that count against the quota: stored plus in flight."""
        return self.used + self.reserved


def _encode(state: LedgerState) -> bytes:
    body = json.dumps(
        {"v": 1, "used": state.used, "files": state.files, "res": state.reservations},
        separators=(",", ":"), sort_keys=True,
    ).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _decode(raw: bytes) -> LedgerState | None:
    """Parse the ledger; ``None`` when missing or damaged (then it is rebuilt)."""
    try:
        crc, body = raw.rstrip(b"\n").split(b" ", 1)
        if int(crc, 16) != zlib.crc32(body):
            return None
        doc = json.loads(body)
        res = {str(k): [int(v[0]), int(v[1])] for k, v in doc["res"].items()}
        return LedgerState(used=int(doc["used"]), files=int(doc["files"]), reservations=res)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        data = os.pread(fd, 65536, offset)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        offset += len(data)


class Held:
    """The ledger while its lock is held: ``state`` plus :meth:`flush`."""

    def __init__(self, fd: int, state: LedgerState, written: bytes) -> None:
        self._fd = fd
        self.state = state
        self._written = written

    def flush(self) -> None:
        """Write the state now (used before a step a crash could interrupt)."""
        data = _encode(self.state)
        if data != self._written:
            # In place: readers hold the lock, and a torn write fails the CRC.
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
            self._written = data


class Ledger:
    """One area's ledger file; ``rebuild`` makes a fresh state from the disk."""

    def __init__(self, path: str, rebuild: Callable[[], LedgerState]) -> None:
        self.path = path
        self._rebuild = rebuild

    @contextmanager
    def locked(self, exclusive: bool = True) -> Iterator[Held]:
        """Hold the area lock; exclusive holders have their changes written on exit.

        A fresh descriptor per call keeps this correct across threads and after
        fork (flock is per open file description). Never nest two holds of the
        same area in one thread: the second would wait for the first forever.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            raw = _read_all(fd)
            state = _decode(raw)
            if state is None:
                if not exclusive:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    exclusive = True
                    raw = _read_all(fd)
                    state = _decode(raw)
                if state is None:
                    state = self._rebuild()
                    raw = b""
            held = Held(fd, state, raw)
            try:
                yield held
            finally:
                if exclusive:
                    held.flush()
        finally:
            os.close(fd)
