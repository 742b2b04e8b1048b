"""Content of synced revisions (D5, §5.4): which files to fetch, fetching them resumably, verifying them.

Which: files of current revisions that are not present, unless the upstream is catalog-only; under
``LazySync`` only those of updates with an Install deployment here (approved locally, or mirrored
in replica mode). Files marked ``corrupt-upstream`` or ``unavailable`` are not tried again.

How: ``GET <upstream>/Content/<XX>/<SHA1>.<ext>`` (or the ``MUUrl`` of a catalog-only upstream)
streamed into the filestore's ``incoming`` area as ``wsus/<sha1>.part``. After an interruption the
next attempt sends ``Range: bytes=<have>-`` with ``If-Range: <ETag>``; a ``200`` starts again from
byte 0. The whole file is then checked against its size, SHA-1 and (when known) SHA-256 before it
is put into the store (temp → fsync → rename) and marked present in the catalog; a mismatch deletes
the part and fetches again, at most 3 times, then the file is marked ``corrupt-upstream`` and an
error is logged. A ``404`` asks the upstream to fetch it (``DownloadFiles``) and leaves it for the
next run. Downloads run 4 at a time; the database is written by the calling thread only.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devupdate.content import names as content_names
from devupdate.content.areas import IMAGES, INCOMING
from devupdate.content.models import StoredObject
from devupdate.db import tuples, utcnow, write_transaction
from devupdate.wsus.catalog.images import PRODUCT_ID
from devupdate.wsus.catalog.models import CatalogFile, Revision, UpdateCategory
from devupdate.wsus.downstream.models import SyncedFile
from devupdate.wsus.downstream.transport import USER_AGENT, Transient, Upstream
from devupdate.wsus.targeting.models import Deployment
from filestore import FileStore

log = logging.getLogger("devupdate.wsus.downstream")

CHUNK = 1 << 20
MAX_MISMATCHES = 3
CORRUPT, UNAVAILABLE = "corrupt-upstream", "unavailable"


@dataclass(frozen=True)
class Wanted:
    sha1: str
    sha256: str | None
    size: int
    file_name: str
    mu_url: str | None

    @property
    def part(self) -> str:
        return f"wsus/{self.sha1}.part"

    @property
    def content_path(self) -> str:
        return content_names.content_path(self.sha1, self.file_name)


@dataclass
class FileCounts:
    fetched: int = 0
    bytes: int = 0
    resumed: int = 0
    corrupt: int = 0
    mismatches: int = 0
    missing_upstream: int = 0
    failed: int = 0
    range_requests: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"Fetched": self.fetched, "Bytes": self.bytes, "Resumed": self.resumed, "Corrupt": self.corrupt,
                "Mismatches": self.mismatches, "MissingUpstream": self.missing_upstream, "Failed": self.failed}


def wanted(*, lazy: bool) -> list[Wanted]:
    """Files to fetch now (distinct by SHA-1)."""
    query = (CatalogFile.select(CatalogFile.sha1, CatalogFile.sha256, CatalogFile.size, CatalogFile.file_name,
                                CatalogFile.mu_url)
             .join(Revision, on=(CatalogFile.revision == Revision.id))
             .where(Revision.is_current, ~CatalogFile.present,
                    CatalogFile.sha1.not_in(SyncedFile.select(SyncedFile.sha1))))
    if lazy:  # phone images always: their rules need the files (phones.py)
        query = query.where(Revision.update_id.in_(
            Deployment.select(Deployment.update_id).where(Deployment.action == "Install", ~Deployment.revoked))
            | Revision.update_id.in_(UpdateCategory.select(UpdateCategory.update_id).where(
                UpdateCategory.category_id == PRODUCT_ID)))
    found: dict[str, Wanted] = {}
    for sha1, sha256, size, name, url in tuples(query.order_by(CatalogFile.sha1)):
        found.setdefault(sha1, Wanted(sha1, sha256, int(size), name, url))
    return list(found.values())


class _Mismatch(Exception):
    pass


class _NotThere(Exception):
    pass


class Fetcher:
    """Fetches and verifies one file at a time into ``incoming`` (thread-safe: no database)."""

    def __init__(self, upstream: Upstream, store: FileStore, counts: FileCounts, *, catalog_only: bool = False,
                 on_request: Callable[[str, dict[str, str]], None] | None = None):
        self.upstream = upstream
        self.store = store
        self.counts = counts
        self.catalog_only = catalog_only
        self.on_request = on_request

    def _url(self, item: Wanted) -> str:
        if self.catalog_only and item.mu_url:
            return item.mu_url
        return self.upstream.url(item.content_path)

    def _have(self, item: Wanted) -> int:
        try:
            return os.stat(self.store.named_path(INCOMING, item.part)).st_size
        except FileNotFoundError:
            return 0

    def _etag_name(self, item: Wanted) -> str:
        return f"wsus/{item.sha1}.etag"

    def _etag(self, item: Wanted) -> str | None:
        try:
            with self.store.open_named(INCOMING, self._etag_name(item)) as handle:
                return handle.read(512).decode("ascii", "replace").strip() or None
        except Exception:  # noqa: BLE001 - no etag kept: the resume is unconditional on a fresh start
            return None

    def discard(self, item: Wanted) -> None:
        self.store.delete_named(INCOMING, item.part)
        self.store.delete_named(INCOMING, self._etag_name(item))

    def _attempt(self, item: Wanted) -> None:
        """One GET, appended to the part (from where it stopped)."""
        have = self._have(item)
        if have > item.size:
            self.discard(item)
            have = 0
        if have == item.size and have:
            return
        headers = {"User-Agent": USER_AGENT}
        if not (self.catalog_only and item.mu_url):  # credentials go to the upstream only, never an origin
            headers.update(self.upstream.headers())
        etag = self._etag(item)
        if have:
            headers["Range"] = f"bytes={have}-"
            if etag:
                headers["If-Range"] = etag
        if self.on_request is not None:
            self.on_request(item.sha1, {k: v for k, v in headers.items() if k != "Authorization"})
        request = urllib.request.Request(self._url(item), headers=headers)
        try:
            answer = urllib.request.urlopen(request, timeout=self.upstream.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise _NotThere(f"{exc.code}") from None
            if exc.code == 416:  # our part is longer than theirs, or complete: start again
                self.discard(item)
                raise Transient(f"HTTP 416 for bytes={have}-") from None
            if exc.code >= 500:
                raise Transient(f"HTTP {exc.code}") from None
            raise _NotThere(f"{exc.code}") from None
        with answer:
            if have and answer.status == 206:
                self.counts.range_requests += 1
                self.counts.resumed += 1
            elif have:  # 200: the file changed or the server ignores ranges: from byte 0
                self.discard(item)
            new_etag = answer.headers.get("ETag")
            if new_etag and new_etag != etag:
                self.store.write_named(INCOMING, self._etag_name(item), _Bytes(new_etag.encode()), overwrite=True)
            try:
                while chunk := answer.read(CHUNK):
                    self.store.append_named(INCOMING, item.part, chunk)
                    self.counts.bytes += len(chunk)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                raise Transient(f"connection dropped after {self._have(item)} of {item.size} bytes ({exc})") from exc
            if self._have(item) < item.size:  # the body ended early: the connection was closed on us
                raise Transient(f"connection dropped after {self._have(item)} of {item.size} bytes")

    def _verify(self, item: Wanted) -> str:
        """The SHA-256 of the complete part, or :class:`_Mismatch`."""
        sha1, sha256, size = hashlib.sha1(usedforsecurity=False), hashlib.sha256(), 0
        with self.store.open_named(INCOMING, item.part) as handle:
            while chunk := handle.read(CHUNK):
                sha1.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
        if size != item.size:
            raise _Mismatch(f"{size} bytes, the metadata says {item.size}")
        if sha1.hexdigest() != item.sha1:
            raise _Mismatch(f"SHA-1 {sha1.hexdigest()}, the metadata says {item.sha1}")
        if item.sha256 and sha256.hexdigest() != item.sha256:
            raise _Mismatch(f"SHA-256 {sha256.hexdigest()}, the metadata says {item.sha256}")
        return sha256.hexdigest()

    def fetch(self, item: Wanted) -> tuple[str, Any]:
        """("stored", StoredObject) | ("corrupt", reason) | ("missing", reason) | ("failed", reason)."""
        mismatches = 0
        while True:
            try:
                self.upstream.retrying(f"GET {item.content_path}", lambda: self._attempt(item))
            except _NotThere as exc:
                return "missing", str(exc)
            except Exception as exc:  # noqa: BLE001 - Unreachable after the last attempt, or a store error
                return "failed", str(exc)
            try:
                sha256 = self._verify(item)
            except _Mismatch as exc:
                mismatches += 1
                self.counts.mismatches += 1
                log.warning("content %s: %s; fetching again (%d of %d)", item.content_path, exc, mismatches,
                            MAX_MISMATCHES)
                self.discard(item)
                if mismatches >= MAX_MISMATCHES:
                    return "corrupt", str(exc)
                continue
            with self.store.open_named(INCOMING, item.part) as handle:
                stored = self.store.put(IMAGES, handle, size=item.size)
            if stored.sha256 != sha256:  # changed under us in incoming: never store what was not checked
                self.discard(item)
                return "failed", "the part changed while it was stored"
            self.discard(item)
            return "stored", stored


class _Bytes:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, size: int = -1, /) -> bytes:
        out, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
        return out


def record_stored(item: Wanted, stored: Any) -> None:
    """The object row and the catalog's present flag, in one transaction."""
    with write_transaction():
        StoredObject.insert(sha256=stored.sha256, sha1=stored.sha1, size=stored.size).on_conflict_ignore().execute()
        CatalogFile.update(sha256=stored.sha256).where(CatalogFile.sha1 == item.sha1,
                                                       CatalogFile.sha256.is_null()).execute()
        CatalogFile.update(present=True).where(CatalogFile.sha1 == item.sha1,
                                               CatalogFile.sha256 == stored.sha256).execute()


def mark(sha1: str, state: str, reason: str) -> None:
    with write_transaction():
        SyncedFile.insert(sha1=sha1, state=state, attempts=MAX_MISMATCHES if state == CORRUPT else 1,
                          last_error=reason[:1000], changed_at=utcnow()).on_conflict(
            conflict_target=[SyncedFile.sha1],
            update={SyncedFile.state: state, SyncedFile.last_error: reason[:1000], SyncedFile.changed_at: utcnow(),
                    SyncedFile.attempts: SyncedFile.attempts + 1}).execute()


def fetch_all(items: list[Wanted], fetcher: Fetcher, *, parallel: int = 4,
              on_missing: Callable[[list[Wanted]], None] | None = None) -> FileCounts:
    """Fetch ``items`` ``parallel`` at a time; the database written here, in this thread."""
    counts = fetcher.counts
    missing: list[Wanted] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel),
                                               thread_name_prefix="wsus-content") as pool:
        futures = {pool.submit(fetcher.fetch, item): item for item in items}
        for future in concurrent.futures.as_completed(futures):
            item = futures[future]
            outcome, value = future.result()
            if outcome == "stored":
                record_stored(item, value)
                counts.fetched += 1
            elif outcome == "corrupt":
                mark(item.sha1, CORRUPT, value)
                counts.corrupt += 1
                log.error("content %s is corrupt upstream after %d attempts (%s); marked %s", item.content_path,
                          MAX_MISMATCHES, value, CORRUPT)
            elif outcome == "missing":
                missing.append(item)
                counts.missing_upstream += 1
            else:
                counts.failed += 1
                counts.errors.append(f"{item.content_path}: {value}")
    if missing and on_missing is not None:
        on_missing(missing)
    return counts


