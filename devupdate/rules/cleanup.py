"""``files cleanup`` (Clear-CsDeviceUpdateFile): drop images no rule references any more.

A version stops being referenced when approve/reset/restore/remove moves past it; it stays
downloadable for ``file_cleanup_grace`` seconds so a phone mid-download is never cut off.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import utcnow, write_transaction
from devupdate.imports.models import ImportJournal
from devupdate.rules.models import Blob, RuleVersion, VersionFile
from filestore import FileStore

IMAGES = "images"


def cleanup_files(store: FileStore, *, grace_seconds: int, actor: str) -> dict[str, Any]:
    cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
    with write_transaction():
        expired = list(RuleVersion.select().where(RuleVersion.unreferenced_since < cutoff))
        for version in expired:
            version.delete_instance(recursive=True)
        unused = list(Blob.select().where(Blob.sha256.not_in(VersionFile.select(VersionFile.blob))))
        for blob in unused:
            blob.delete_instance()
        report = {"VersionsRemoved": [f"{v.rule_id}/{v.version}" for v in expired],
                  "ObjectsRemoved": len(unused), "BytesFreed": sum(blob.size for blob in unused),
                  "GraceSeconds": grace_seconds}
        if expired or unused:
            record(actor, "files.cleanup", "images", after=report)
    for blob in unused:  # after commit: a rollback must never leave rows pointing at deleted files
        store.delete(IMAGES, blob.sha256)
    report["OrphansRemoved"] = _remove_orphans(store)
    return report


def _remove_orphans(store: FileStore) -> int:
    """Objects that no row names and no running import has journaled (e.g. left by a crash)."""
    # Order matters: an import journals, then renames, then commits its rows. Listing first and
    # reading the journal and rows afterwards means every listed object is either journaled or known.
    listed = list(store.objects(IMAGES))
    if ImportJournal.select().exists():
        return 0  # an import is in flight (or awaits recovery): its objects are not orphans yet
    known = {sha for (sha,) in Blob.select(Blob.sha256).tuples()}
    removed = 0
    for sha256 in listed:
        if sha256 not in known and store.delete(IMAGES, sha256):
            removed += 1
    return removed
