"""The admin audit trail as people read it: targets by name ("Polycom CX600 ENU"), a target filter
that also finds a rule by its name, and the CSV export — for ``devupdate audit``, ``/api/v1/audit``
and the console's audit page. Above the features whose tables it reads names from (``names``);
writing stays in ``trail``, below them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from devupdate.audit.models import AuditEvent
from devupdate.audit.names import name_targets, rules_named
from devupdate.audit.requestlog import cell
from devupdate.audit.trail import Filter, event_dict

CSV_COLUMNS = ("Id", "Time", "Actor", "Action", "Target", "TargetName", "Outcome", "Before", "After", "Detail")
EXPORT_BATCH = 500


def _query(where: Filter):
    named = rules_named(where.target) if where.target else []
    return where.where(AuditEvent.select(), also_targets=named).order_by(AuditEvent.id.desc())


def list_events(where: Filter, *, limit: int = 50, offset: int = 0, before: int | None = None) -> list[dict[str, Any]]:
    """A page of the filtered trail, newest first, with ``TargetName``; ``before`` keeps events older
    than that Id (the API's keyset pages)."""
    query = _query(where)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    query = query.limit(max(1, min(limit, 1000))).offset(max(0, offset))
    return name_targets([event_dict(event) for event in query])


def count_events(where: Filter) -> int:
    return _query(where).order_by().count()


def _csv_cell(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    elif isinstance(value, int):
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return cell(text)


def export_csv(where: Filter) -> Iterator[str]:
    """The whole filtered trail as CSV lines (header first, newest first), read a batch at a time by
    id; cells a spreadsheet would run as a formula are neutralised (``requestlog.cell``)."""
    yield ",".join(CSV_COLUMNS) + "\r\n"
    below: int | None = None
    while True:
        query = _query(where).limit(EXPORT_BATCH)
        if below is not None:
            query = query.where(AuditEvent.id < below)
        events = name_targets([event_dict(event) for event in query])
        for event in events:
            yield ",".join(_csv_cell(event[column]) for column in CSV_COLUMNS) + "\r\n"
        if len(events) < EXPORT_BATCH:
            return
        below = events[-1]["Id"]
