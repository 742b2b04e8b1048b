"""``/wsus/report``: the WSUS compliance reports per computer, update and target group ([wsus] §1d
W9). The same functions as ``devupdate wsus report``; pages as the other listings."""

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
from devupdate.wsus.compliance import reports

GROUP = Param("group", {"type": "string", "minLength": 1, "maxLength": 258, "pattern": r"^[^\x00]*[^\x00\s][^\x00]*$",
                        "description": "a target group's name (any case) or GUID"},
              "Only computers that belong to this group (directly or in a group below it)")


def _page(key: str, rows: list, limit: int, offset: int) -> Response:
    more = len(rows) > limit
    return json_response({key: rows[:limit], "Limit": limit, "Offset": offset,
                          "NextOffset": offset + limit if more else None})


@route("GET", "/wsus/report/computers", role="operator",
       summary="Compliance per computer: updates needed, installed, failed; last sync, status and scan",
       params=(GROUP, LIMIT, OFFSET), responses={200: "WsusComputerReportPage", **READ, 404: "Error"})
def report_wsus_computers() -> Response:
    limit, offset = query_int("limit", 50, 1, MAX_PAGE), query_int("offset", 0, 0, MAX_OFFSET)
    rows = reports.computers(group=query_text("group", 258), limit=limit + 1, offset=offset)
    return _page("Computers", rows, limit, offset)


@route("GET", "/wsus/report/updates", role="operator",
       summary="Compliance per update: computers needing it, installed, failed, not applicable, unknown",
       params=(GROUP, LIMIT, OFFSET), responses={200: "WsusUpdateReportPage", **READ, 404: "Error"})
def report_wsus_updates() -> Response:
    limit, offset = query_int("limit", 50, 1, MAX_PAGE), query_int("offset", 0, 0, MAX_OFFSET)
    rows = reports.updates(group=query_text("group", 258), limit=limit + 1, offset=offset)
    return _page("Updates", rows, limit, offset)


@route("GET", "/wsus/report/groups", role="operator",
       summary="Compliance per target group (tree order): its computers and the sums of their counts",
       responses={200: "WsusGroupReportList", **READ})
def report_wsus_groups() -> Response:
    return json_response(reports.groups())
