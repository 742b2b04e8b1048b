"""``/audit``: the admin audit trail, newest first, a page at a time."""

from __future__ import annotations

from flask import Response

from devupdate.admin.routing import (
    LIMIT,
    MAX_OFFSET,
    MAX_PAGE,
    OFFSET,
    READ,
    Param,
    json_response,
    query_int,
    query_text,
    route,
)
from devupdate.admin.schemas import NO_NUL
from devupdate.audit.trail import list_events


@route("GET", "/audit", role="operator", summary="The admin audit trail, newest first",
       params=(LIMIT, OFFSET,
               Param("action", {"type": "string", "maxLength": 50, "pattern": NO_NUL},
                     "Action prefix, e.g. 'rule.' or 'import'"),
               Param("actor", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Only this actor, e.g. token:uploader"),
               Param("target", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Target contains this text")),
       responses={200: "AuditPage", **READ})
def list_audit() -> Response:
    limit, offset = query_int("limit", 50, 1, MAX_PAGE), query_int("offset", 0, 0, MAX_OFFSET)
    events = list_events(limit=limit + 1, offset=offset, action=query_text("action", 50),
                         actor=query_text("actor", 100), target=query_text("target", 100))
    more = len(events) > limit
    return json_response({"Events": events[:limit], "Limit": limit, "Offset": offset,
                          "NextOffset": offset + limit if more else None})
