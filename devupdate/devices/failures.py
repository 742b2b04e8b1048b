"""Failed external authentications per source, counted across the worker processes of a server.

A source that fails ``limit`` times within ``window`` seconds is refused (``429`` with
``Retry-After``) without its password being checked until the window that began with its first
failure has passed. The source is the client address (``X-Forwarded-For`` from trusted proxies
only); IPv6 addresses count per ``/64``, which one subscriber usually gets whole.

The counts live in a fixed table of ``SLOTS`` slots in an anonymous shared-memory file that
``devupdate serve`` creates in its master before the workers fork (:func:`prepare_shared`), so every
worker — and each worker gunicorn starts later — shares them. POSIX record locks serialise the
processes (the kernel drops a dead worker's lock), a thread lock the threads of one process. A
process that no such master forked (tests, ``flask run``) gets a table of its own. Counts are per
server, not per installation: with several nodes behind a load balancer a source may fail up to
``limit`` times on each node. When the table is full, the slot with the oldest window gives way.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import math
import mmap
import os
import struct
import tempfile
import threading
import time

SLOTS = 8192
PROBES = 16
_SLOT = struct.Struct("<16sdI4x")  # key digest, window start (monotonic seconds), failures in the window
_EMPTY = bytes(16)


class FailureTable:
    """Slots of (source digest, window start, count) in shared memory; a lock around each operation."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        if hasattr(os, "memfd_create"):  # Linux
            self._fd = os.memfd_create("devupdate-auth-failures", os.MFD_CLOEXEC)
        else:
            self._file = tempfile.TemporaryFile()  # unlinked; kept open for as long as the table lives
            self._fd = self._file.fileno()
        os.ftruncate(self._fd, slots * _SLOT.size)
        self._map = mmap.mmap(self._fd, slots * _SLOT.size, mmap.MAP_SHARED)
        self._thread_lock = threading.Lock()

    def update(self, key: bytes, window: float, now: float, add: int) -> tuple[float, int]:
        """Add ``add`` failures to ``key`` (a window older than ``window`` starts over); returns the
        window start and the count after the update (``(0.0, 0)`` for an unknown key and ``add=0``)."""
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                return self._update(key, window, now, add)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _update(self, key: bytes, window: float, now: float, add: int) -> tuple[float, int]:
        first = int.from_bytes(key[:8], "little") % self.slots
        free, oldest, oldest_start = None, first, math.inf
        for step in range(min(PROBES, self.slots)):
            index = (first + step) % self.slots
            slot_key, start, count = _SLOT.unpack_from(self._map, index * _SLOT.size)
            expired = slot_key == _EMPTY or now - start >= window
            if slot_key == key:
                if expired:
                    start, count = now, 0
                if add:
                    count += add
                    _SLOT.pack_into(self._map, index * _SLOT.size, key, start, count)
                return (start, count) if count else (0.0, 0)
            if expired and free is None:
                free = index
            if start < oldest_start:
                oldest, oldest_start = index, start
        if add:
            index = free if free is not None else oldest
            _SLOT.pack_into(self._map, index * _SLOT.size, key, now, add)
            return now, add
        return 0.0, 0


_shared: FailureTable | None = None


def prepare_shared() -> FailureTable:
    """In the serving master, before workers fork: the table every worker inherits."""
    global _shared
    if _shared is None:
        _shared = FailureTable()
    return _shared


def source_key(address: str) -> bytes:
    """Digest of the source: the address, or its ``/64`` for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        text = address
    else:
        mapped = getattr(parsed, "ipv4_mapped", None)
        if mapped is not None:
            text = str(mapped)
        elif parsed.version == 6:
            text = str(ipaddress.ip_network(f"{parsed}/64", strict=False))
        else:
            text = str(parsed)
    return hashlib.blake2b(text.encode(), digest_size=16, person=b"auth-failures").digest()


class FailureLimiter:
    """``limit`` failures per source within ``window`` seconds; ``limit`` 0 turns it off."""

    def __init__(self, limit: int, window: float, table: FailureTable | None = None, *, clock=time.monotonic):
        self.limit, self.window = limit, float(window)
        self.table = table if table is not None else (_shared or FailureTable())
        self.clock = clock

    def retry_after(self, source: str) -> int:
        """Whole seconds until ``source`` may try again; 0 when it may now."""
        if not self.limit:
            return 0
        now = self.clock()
        start, count = self.table.update(source_key(source), self.window, now, 0)
        if count < self.limit:
            return 0
        return max(1, math.ceil(start + self.window - now))

    def failed(self, source: str) -> None:
        """Count one failed authentication of ``source``."""
        if self.limit:
            self.table.update(source_key(source), self.window, self.clock(), 1)
