"""The files the sync gave up on (D5): listed, and cleared so the next run fetches them again.

A file whose bytes did not match its metadata three times is marked ``corrupt-upstream``; one the
upstream does not know (``FileDigestsMissing``) ``unavailable``. Neither is tried again by itself
— once the upstream is repaired (its copy replaced, the file imported there), an admin clears the
mark here and the next run's content pass fetches, verifies and stores it as any other. Clearing
is audited; it never deletes content (a marked file has none here: nothing was stored).
"""

from __future__ import annotations

import re
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import iso_utc, tuples, write_transaction
from devupdate.errors import DevupdateError, NotFound
from devupdate.wsus.catalog.models import CatalogFile
from devupdate.wsus.downstream.files import CORRUPT, UNAVAILABLE
from devupdate.wsus.downstream.models import SyncedFile

STATES = (CORRUPT, UNAVAILABLE)
#: SHA-1s taken in one clear
MAX_CLEAR = 1000
_SHA1 = re.compile(r"[0-9a-fA-F]{40}\Z")


def _sha1(value: str) -> str:
    if not _SHA1.match(str(value).strip()):
        raise DevupdateError(f"{str(value)[:60]!r} is not a SHA-1 (40 hex digits, as 'devupdate wsus sync files' "
                             "lists them)", code="bad-sha1")
    return str(value).strip().lower()


def _state(state: str | None) -> str | None:
    if state is not None and state not in STATES:
        raise DevupdateError(f"state {state[:40]!r} is not one of {', '.join(STATES)}", code="bad-state")
    return state


def file_dict(row: SyncedFile, names: dict[str, str] | None = None) -> dict[str, Any]:
    return {"SHA1": row.sha1, "State": row.state, "Attempts": row.attempts, "Reason": row.last_error,
            "Changed": iso_utc(row.changed_at), "FileName": (names or {}).get(row.sha1)}


def _names(sha1s: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(sha1s), 400):
        for sha1, name in tuples(CatalogFile.select(CatalogFile.sha1, CatalogFile.file_name).where(
                CatalogFile.sha1.in_(sha1s[start:start + 400]))):
            found.setdefault(sha1, name)
    return found


def marked(state: str | None = None, limit: int = 100, after: str | None = None) -> list[dict[str, Any]]:
    """The marked files (``state``: only those), by SHA-1; ``after``: only SHA-1s past it (the API's keyset)."""
    query = SyncedFile.select().order_by(SyncedFile.sha1).limit(max(1, min(limit, MAX_CLEAR)))
    if after is not None:
        query = query.where(SyncedFile.sha1 > after)
    if _state(state) is not None:
        query = query.where(SyncedFile.state == state)
    rows = list(query)
    names = _names([row.sha1 for row in rows])
    return [file_dict(row, names) for row in rows]


def clear(sha1s: list[str] | None = None, *, state: str | None = None, actor: str) -> list[dict[str, Any]]:
    """Clear the marks of these files (None: every marked file, or every one in ``state``); the next run
    fetches them again. Returns the cleared files; a named SHA-1 that is not marked is
    :class:`NotFound` and nothing is cleared."""
    _state(state)
    wanted = None if sha1s is None else sorted({_sha1(s) for s in sha1s})
    if wanted is not None and not 0 < len(wanted) <= MAX_CLEAR:
        raise DevupdateError(f"give 1 to {MAX_CLEAR} SHA-1s (or all of them)", code="bad-sha1")
    with write_transaction():
        query = SyncedFile.select().order_by(SyncedFile.sha1)
        if wanted is not None:
            query = query.where(SyncedFile.sha1.in_(wanted))
        if state is not None:
            query = query.where(SyncedFile.state == state)
        rows = list(query.limit(MAX_CLEAR) if wanted is None else query)
        if wanted is not None:
            unknown = sorted(set(wanted) - {row.sha1 for row in rows})
            if unknown:
                raise NotFound(f"{unknown[0]} is not marked" + (f" {state}" if state else "")
                               + " (see 'devupdate wsus sync files')", code="not-marked")
        names = _names([row.sha1 for row in rows])
        cleared = [file_dict(row, names) for row in rows]
        if rows:
            SyncedFile.delete().where(SyncedFile.sha1.in_([row.sha1 for row in rows])).execute()
            for item in cleared:
                record(actor, "wsus.sync.file.retry", item["SHA1"],
                       before={"State": item["State"], "Reason": item["Reason"][:500]})
    return cleared
