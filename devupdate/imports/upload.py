"""Importing a cab that arrives over HTTP as a stream (the console's upload page, the JSON API).

The body is written into the filestore's ``incoming`` area — quota-checked, never held in memory,
refused as soon as it passes ``max_cab_size`` — as a staged temp file, imported from there with
:func:`devupdate.imports.service.import_cab`, and discarded whatever happens (a crash leaves a temp
file the filestore sweeps at the next start).
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from devupdate.content.areas import INCOMING
from devupdate.errors import DevupdateError, QuotaFull, TooLarge
from devupdate.imports.service import ImportResult, import_cab, record_refusal
from devupdate.settings import Settings
from devupdate.web.bodies import INCOMPLETE, BodyError, BoundedBody
from filestore import FileStore, QuotaExceeded, Staged

log = logging.getLogger("devupdate.imports")

INCOMING_AREA = INCOMING


class _LimitedBody:
    """The request body (the web kit's bounded reader), its refusals in the import's vocabulary:
    413 as soon as it passes ``limit``, 400 when cut off, 415 when encoded."""

    def __init__(self, stream: BinaryIO, limit: int, announced: int | None):
        self.limit, self.announced = limit, announced
        self._body = BoundedBody(stream, limit=None, announced=announced)

    @property
    def total(self) -> int:
        return self._body.total

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._body.read(size)
        except BodyError as exc:
            if exc.reason == INCOMPLETE and self.announced is not None and "ended after" in exc.message:
                raise DevupdateError(f"the upload ended after {self.total} of {self.announced} bytes; send it "
                                     "again", code="incomplete-body") from None
            raise DevupdateError("the upload ended early (the connection was cut or its framing broke); "
                                 "send it again", code="incomplete-body") from None
        if self.total > self.limit:
            raise too_large(self.total, self.limit)
        return data


def too_large(size: int | None, limit: int) -> TooLarge:
    return TooLarge(f"the upload is {size if size else 'more than'} bytes, above the limit of {limit}; "
                    "raise DEVUPDATE_MAX_CAB_SIZE on the server to accept it", code="cab-too-large")


def import_upload(store: FileStore, settings: Settings, stream: BinaryIO, *, size: int | None, file_name: str,
                  actor: str) -> ImportResult:
    """Receive ``stream`` (``size`` bytes when announced) and import it; raises DevupdateError with
    the HTTP status to answer (413 too large, 507 incoming area full, 400 cut off or empty, or the
    import's own refusal). Every refusal is in the audit trail, those before the import too."""
    body = _LimitedBody(stream, settings.max_cab_size, size)
    try:
        staged = _receive(store, body, size, settings.max_cab_size)
    except DevupdateError as refusal:
        try:
            record_refusal(actor, file_name, max(body.total, size or 0), "", refusal)
        except Exception:  # noqa: BLE001 - the database is away: the client still gets the real reason
            log.exception("could not record the refused upload of %s", file_name)
        raise
    try:
        with staged.open() as handle:
            path = handle.name  # the staged temp file: same disk, counted in the incoming quota
        for attempt in range(2):
            try:
                return import_cab(store, settings, path, actor=actor, file_name=file_name)
            except DevupdateError as exc:
                # The same cab committed by a concurrent request (a retry racing its first attempt):
                # importing again now finds it done and answers nothing-new.
                if exc.code != "concurrent-import" or attempt:
                    raise
        raise AssertionError("unreachable")
    finally:
        staged.discard()


def _receive(store: FileStore, body: _LimitedBody, size: int | None, limit: int) -> Staged:
    """The whole upload, staged in the incoming area, or a refusal (nothing left behind)."""
    if size is not None and size > limit:
        raise too_large(size, limit)
    try:
        staged = store.stage(INCOMING_AREA, body, size=size)
    except QuotaExceeded as exc:
        raise QuotaFull(f"{exc}; raise DEVUPDATE_QUOTA_INCOMING or wait for uploads in progress",
                        code="incoming-quota-exceeded") from None
    if staged.size == 0:
        staged.discard()
        raise DevupdateError("the upload is empty; send the .cab itself", code="empty-body")
    return staged
