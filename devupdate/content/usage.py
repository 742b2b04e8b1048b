"""Filestore usage as the CLI, the JSON API, the console and the metrics report it."""

from __future__ import annotations

from typing import Any

from filestore import FileStore


def usage_rows(store: FileStore) -> list[dict[str, Any]]:
    """One row per area: bytes used against the quota, with the warning and full flags."""
    return [{"Area": u.area, "UsedBytes": u.used_bytes, "QuotaBytes": u.quota_bytes,
             "UsedPercent": None if not u.quota_bytes else round(100 * u.used_bytes / u.quota_bytes, 1),
             "Objects": u.objects, "Warning": u.warning, "Full": u.full} for u in store.usage_all()]
