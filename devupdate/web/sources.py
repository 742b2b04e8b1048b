"""Open connections per source address, counted across every worker process of one server.

The table is shared memory created by the master before it forks the workers. Each worker owns
one row and is its only writer (its event loop counts a connection in; the loop, or the thread
that answered it, counts it out, under a lock of the worker's own); the count of a source is the
sum of its bucket over the rows. Rows of workers that died are cleared by the next worker that
starts. Sources are hashed into buckets:
two sources very rarely share one, and then they share its limit (never a wrong refusal of a
source with few connections unless it shares a bucket with one at the limit).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import struct
import threading
import zlib
from collections.abc import Iterable

from devupdate.processes import pid_alive
from devupdate.web.network import in_networks, parse_networks

BUCKETS = 16384
_OWNER = struct.Struct("q")


class SourceTable:
    """``rows`` worker rows of ``BUCKETS`` 16-bit counters, each row headed by its owner's pid."""

    def __init__(self, rows: int):
        self.rows = rows
        self._row_bytes = _OWNER.size + BUCKETS * 2
        self._memory = mmap.mmap(-1, rows * self._row_bytes)  # anonymous, MAP_SHARED: inherited by fork
        self._lock = multiprocessing.Lock()
        self._counts = [memoryview(self._memory)[r * self._row_bytes + _OWNER.size:(r + 1) * self._row_bytes]
                        .cast("H") for r in range(rows)]
        self._row: int | None = None
        self._row_lock = threading.Lock()

    # --- in a worker, after the fork -------------------------------------------------------------

    def claim(self) -> None:
        """Take a free row (or one of a dead worker, cleared); rows of other dead workers are cleared too."""
        with self._lock:
            mine = None
            for row in range(self.rows):
                owner = _OWNER.unpack_from(self._memory, row * self._row_bytes)[0]
                if owner and owner != os.getpid() and pid_alive(owner):
                    continue
                if owner:
                    self._clear(row)
                if mine is None:
                    mine = row
            if mine is None:
                raise RuntimeError("no free row in the connection table (more workers than it was made for)")
            _OWNER.pack_into(self._memory, mine * self._row_bytes, os.getpid())
            self._row = mine

    def _clear(self, row: int) -> None:
        start = row * self._row_bytes
        self._memory[start:start + self._row_bytes] = bytes(self._row_bytes)

    @staticmethod
    def bucket(address: str) -> int:
        return zlib.crc32(address.encode("utf-8", "replace")) % BUCKETS

    def count(self, bucket: int) -> int:
        return sum(row[bucket] for row in self._counts)

    def add(self, bucket: int) -> None:
        row = self._counts[self._row]  # type: ignore[index]
        with self._row_lock:
            if row[bucket] < 0xFFFF:
                row[bucket] += 1

    def remove(self, bucket: int) -> None:
        row = self._counts[self._row]  # type: ignore[index]
        with self._row_lock:
            if row[bucket]:
                row[bucket] -= 1


class Exempt:
    """Addresses whose connections are not counted: trusted proxies (one carries many clients)."""

    def __init__(self, networks: Iterable[str]):
        self._networks = parse_networks(networks, "DEVUPDATE_TRUSTED_PROXIES")

    def __call__(self, address: str) -> bool:
        return bool(self._networks) and in_networks(address, self._networks)


_table: SourceTable | None = None


def prepare(workers: int) -> SourceTable:
    """In the master, before the workers fork: the one table of this server (room for replacements)."""
    global _table
    _table = SourceTable(rows=2 * workers + 4)
    return _table


def table() -> SourceTable:
    global _table
    if _table is None:  # a worker run without the master's hook (tests, another server): a private table
        _table = SourceTable(rows=1)
    return _table
