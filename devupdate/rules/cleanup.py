"""``files cleanup`` (Clear-CsDeviceUpdateFile): drop images no rule references any more.

A version stops being referenced when approve/reset/restore/remove moves past it; it stays
downloadable for ``file_cleanup_grace`` seconds so a phone mid-download is never cut off. Removing
versions bumps the generation, so serving workers stop offering their download paths at once (the
bytes may live on for another rule that shares them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from devupdate.audit.trail import record
from devupdate.content import cleanup as content
from devupdate.db import utcnow, write_transaction
from devupdate.rules.catalog import release_versions
from devupdate.rules.lifecycle import bump_generation
from devupdate.rules.models import RuleVersion
from filestore import FileStore


def cleanup_files(store: FileStore, *, grace_seconds: int, actor: str) -> dict[str, Any]:
    cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
    with write_transaction():
        expired = list(RuleVersion.select().where(RuleVersion.unreferenced_since < cutoff))
        release_versions(expired)  # their catalog updates no longer hold the bytes
        for version in expired:
            version.delete_instance(recursive=True)
        if expired:
            bump_generation()
        unused = content.release_unreferenced()
        report = {"VersionsRemoved": [f"{v.rule_id}/{v.version}" for v in expired],
                  "ObjectsRemoved": len(unused), "BytesFreed": sum(stored.size for stored in unused),
                  "GraceSeconds": grace_seconds}
        if expired or unused:
            record(actor, "files.cleanup", "images", after=report)
    content.delete_files(store, unused)
    report["OrphansRemoved"] = content.remove_orphans(store)
    return report
