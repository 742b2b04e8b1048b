"""``/wsus/report``: the WSUS compliance reports per computer, update and target group ([wsus] §1d
W9). The same functions as ``devupdate wsus report``; pages as the other listings."""

from __future__ import annotations

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import READ, Param, json_response, query_text, route
from devupdate.admin.schemas import WSUS_COMPUTER
from devupdate.wsus.compliance import reports

GROUP = Param("group", {"type": "string", "minLength": 1, "maxLength": 258, "pattern": r"^[^\x00]*[^\x00\s][^\x00]*$",
                        "description": "a target group's name (any case) or GUID"},
              "Only computers that belong to this group (directly or in a group below it)")

COMPUTER = Param("computer", WSUS_COMPUTER, "Computer: TargetID, ComputerID or DNS name", "path", True)


def _computer_key(row: dict) -> paging.Key:
    return ((row["DnsName"] or "").lower(), row["ComputerId"])


def _update_key(row: dict) -> paging.Key:
    return (-row["Failed"], -row["Needed"], row["UpdateID"])


@route("GET", "/wsus/report/computers", role="operator",
       summary="Compliance per computer: updates needed, installed, failed; last sync, status and scan",
       params=(GROUP, *paging.PARAMS), responses={200: "WsusComputerReportPage", **READ, 404: "Error"})
def report_wsus_computers() -> Response:
    page = paging.page_request("wsus-report-computers", (paging.TEXT, paging.TEXT))
    after = (str(page.after[0]), str(page.after[1])) if page.after else None
    rows = reports.computers(group=query_text("group", 258), limit=page.limit + 1, after=after)
    return paging.respond(page, rows, _computer_key)


@route("GET", "/wsus/report/computers/{computer}", role="operator",
       summary="One computer's compliance: its counts and its state per update, with the event that set it",
       params=(COMPUTER,), responses={200: "WsusComputerCompliance", **READ, 404: "Error", 409: "Error"})
def report_wsus_computer(computer: str) -> Response:
    return json_response(reports.computer(computer))


@route("GET", "/wsus/report/updates", role="operator",
       summary="Compliance per update: computers needing it, installed, failed, not applicable, unknown",
       params=(GROUP, *paging.PARAMS), responses={200: "WsusUpdateReportPage", **READ, 404: "Error"})
def report_wsus_updates() -> Response:
    page = paging.page_request("wsus-report-updates", (paging.INT, paging.INT, paging.TEXT))
    after = (int(page.after[0]), int(page.after[1]), str(page.after[2])) if page.after else None
    rows = reports.updates(group=query_text("group", 258), limit=page.limit + 1, after=after)
    return paging.respond(page, rows, _update_key)


@route("GET", "/wsus/report/groups", role="operator",
       summary="Compliance per target group (tree order): its computers and the sums of their counts",
       responses={200: "WsusGroupReportList", **READ})
def report_wsus_groups() -> Response:
    return json_response(reports.groups())
