"""Written ``UpdateInfo`` entries kept for the next client that is sent the same ones: the clients
of a scan wave ask for the same revisions page after page, and writing an entry (its Core
fragment read and escaped, its Deployment formatted) cost more than choosing it.

An entry is found by everything it is written from — the snapshot's change sequence (which every
catalog, deployment and group write advances, so a re-imported revision is written anew), the
RevisionID, the deployment, IsLeaf and what the client's version and build change in the
Deployment element — so a hit is byte for byte what writing it again would give. The cache holds
at most ``max_bytes`` of markup, the entries used least recently leaving first: its size follows
the pages being asked for, never the catalog. Thread-safe; pure (no database, no settings).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable

#: bytes an entry costs besides its text (the key tuple, the dict slot, the string header)
OVERHEAD = 200


class MarkupCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> str | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Hashable, markup: str) -> None:
        cost = _cost(markup)
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= _cost(old)
            self._entries[key] = markup
            self.size += cost
            while self.size > self.max_bytes:
                _key, gone = self._entries.popitem(last=False)
                self.size -= _cost(gone)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0


def _cost(markup: str) -> int:
    return sys.getsizeof(markup) + OVERHEAD
