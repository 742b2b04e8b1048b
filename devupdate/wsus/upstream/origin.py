"""``DownloadFiles`` makes a missing file present ([wsus] §1b U6): the file is fetched from its
origin (the ``MUUrl`` its metadata came with), checked against size, SHA-1 and SHA-256, and put
into the store — the downstream's next content pass then finds it at ``/Content``.

One fetching thread per worker takes the asked files from a bounded queue (each file once at a
time; beyond ``QUEUE`` waiting files a request is logged and dropped: the downstream asks again on
its next pass). The fetch is the downstream role's own (resumable into ``incoming/``, verified
before the store, 3 mismatches at most), with a short retry rule: a downstream is waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

from devupdate import db
from devupdate.wsus.catalog.models import CatalogFile
from devupdate.wsus.downstream import files as content
from devupdate.wsus.downstream.transport import RetryPolicy, Upstream

log = logging.getLogger("devupdate.wsus.upstream")

QUEUE = 1000
POLICY = RetryPolicy(base=2.0, factor=2.0, cap=30.0, attempts=3)


class OriginFetcher:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.queue: queue.Queue[content.Wanted] = queue.Queue(QUEUE)
        self.pending: set[str] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="wsus-origin-fetch", daemon=True)
        self.thread.start()

    def ask(self, items: Sequence[content.Wanted]) -> int:
        """Queue the files not queued yet; how many were."""
        queued = 0
        for item in items:
            with self.lock:
                if item.sha1 in self.pending:
                    continue
                self.pending.add(item.sha1)
            try:
                self.queue.put_nowait(item)
                queued += 1
            except queue.Full:
                with self.lock:
                    self.pending.discard(item.sha1)
                log.warning("DownloadFiles: %d files already waiting; %s left for the next request", QUEUE,
                            item.sha1)
        return queued

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                self._fetch(item)
            except Exception:  # noqa: BLE001 - one file's failure must not stop the thread
                log.exception("DownloadFiles: fetching %s from %s failed", item.sha1, item.mu_url)
            finally:
                with self.lock:
                    self.pending.discard(item.sha1)

    def _fetch(self, item: content.Wanted) -> None:
        fetcher = content.Fetcher(Upstream(item.mu_url or "http://invalid/", policy=POLICY), self.store,
                                  content.FileCounts(), catalog_only=True)
        outcome, value = fetcher.fetch(item)
        if outcome != "stored":
            log.warning("DownloadFiles: %s from %s: %s (%s)", item.sha1, item.mu_url, outcome, value)
            return
        db.database.connect(reuse_if_open=True)
        content.record_stored(item, value)
        log.info("DownloadFiles: %s fetched from its origin and stored", item.sha1)


_fetchers: dict[int, OriginFetcher] = {}
_lock = threading.Lock()


def fetcher_for(store: Any) -> OriginFetcher:
    with _lock:
        found = _fetchers.get(id(store))
        if found is None or found.store is not store:
            found = _fetchers[id(store)] = OriginFetcher(store)
        return found


def fetchable(sha1s: Sequence[str]) -> list[content.Wanted]:
    """The files among ``sha1s`` that are not present and have an origin URL."""
    found: dict[str, content.Wanted] = {}
    for start in range(0, len(sha1s), 400):
        for sha1, sha256, size, name, url in db.tuples(
                CatalogFile.select(CatalogFile.sha1, CatalogFile.sha256, CatalogFile.size, CatalogFile.file_name,
                                   CatalogFile.mu_url)
                .where(CatalogFile.sha1.in_(list(sha1s[start:start + 400])) & ~CatalogFile.present
                       & CatalogFile.mu_url.is_null(False))):
            found.setdefault(str(sha1), content.Wanted(str(sha1), sha256, int(size), str(name), str(url)))
    return list(found.values())
