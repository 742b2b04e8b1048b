"""``/audit``: the admin audit trail, newest first, a page at a time, targets by name; ``/audit/export``:
all of it (filtered) as CSV."""

from __future__ import annotations

from flask import Response, stream_with_context

from devupdate.admin import paging
from devupdate.admin.routing import READ, Param, query_text, route
from devupdate.audit.readable import count_events, export_csv, list_events
from devupdate.audit.trail import TEXT_PATTERN, TIME_PATTERN, Filter

_TIME = {"type": "string", "maxLength": 40, "pattern": TIME_PATTERN,
         "description": "UTC: YYYY-MM-DD (2000–2099), YYYY-MM-DDTHH:MM[:SS]Z, or an age: 7d, 12h",
         "examples": ["2026-12-01", "2026-12-01T08:30:00Z", "7d"]}
FILTERS = (Param("action", {"type": "string", "maxLength": 50, "pattern": TEXT_PATTERN},
                 "Action prefix, e.g. 'rule.' or 'import'"),
           Param("actor", {"type": "string", "maxLength": 100, "pattern": TEXT_PATTERN},
                 "Only this actor, e.g. token:uploader"),
           Param("target", {"type": "string", "maxLength": 100, "pattern": TEXT_PATTERN},
                 "Target contains this text, or names a rule whose name does (CX600)"),
           Param("since", _TIME, "From this time (inclusive)"),
           Param("until", _TIME, "Up to this time (exclusive; a date: up to the end of that day)"))


def _filter() -> Filter:
    return Filter.parse(action=query_text("action", 50), actor=query_text("actor", 100),
                        target=query_text("target", 100), since=query_text("since", 40),
                        until=query_text("until", 40))


@route("GET", "/audit", role="operator", summary="The admin audit trail, newest first, targets by name",
       params=(*paging.PARAMS, *FILTERS), responses={200: "AuditPage", **READ})
def list_audit() -> Response:
    page = paging.page_request("audit", (paging.INT,))
    where = _filter()
    events = list_events(where, limit=page.limit + 1, before=page.after[0] if page.after else None)
    return paging.respond(page, events, lambda event: (event["Id"],), total=count_events(where))


@route("GET", "/audit/export", role="operator", params=FILTERS, responses={200: "", **READ},
       summary="The filtered audit trail as CSV (every matching entry, newest first; spreadsheet-safe cells)")
def export_audit_csv() -> Response:
    where = _filter()  # refused here, before the first byte is sent
    return Response(stream_with_context(export_csv(where)), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
