"""The cache of written UpdateInfo entries (devupdate/wsus/client/markup.py): bounded by the bytes
it holds, the least recently used entries leaving first, and an entry kept only under its own key."""

from __future__ import annotations

import sys
import threading

from devupdate.wsus.client.markup import OVERHEAD, MarkupCache


def cost(text: str) -> int:
    return sys.getsizeof(text) + OVERHEAD


def test_bounded_by_bytes_least_recently_used_first():
    entry = "<UpdateInfo>" + "x" * 1000 + "</UpdateInfo>"
    cache = MarkupCache(max_bytes=3 * cost(entry))
    for key in ("a", "b", "c"):
        cache.put(key, entry)
    assert len(cache) == 3 and cache.size == 3 * cost(entry)
    assert cache.get("a") == entry  # now the most recently used
    cache.put("d", entry)
    assert cache.get("b") is None
    assert [cache.get(key) for key in ("a", "c", "d")] == [entry] * 3
    assert cache.size == 3 * cost(entry) <= cache.max_bytes


def test_replacing_an_entry_counts_it_once_and_oversized_entries_are_not_kept():
    cache = MarkupCache(max_bytes=10_000)
    cache.put(("k", 1), "short")
    cache.put(("k", 1), "longer text")
    assert cache.get(("k", 1)) == "longer text" and cache.size == cost("longer text")
    cache.put("big", "y" * 20_000)
    assert cache.get("big") is None and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.size == 0


def test_threads_keep_the_bound():
    cache = MarkupCache(max_bytes=50 * cost("v" * 100))

    def fill(n: int) -> None:
        for i in range(2000):
            cache.put((n, i), "v" * 100)
            cache.get((n, i - 1))

    threads = [threading.Thread(target=fill, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.size == len(cache) * cost("v" * 100) <= cache.max_bytes
