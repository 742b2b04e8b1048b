"""Reporting end to end on a running ``devupdate serve``, as two Windows clients would do it: the
authorization sequence (GetConfig → GetAuthorizationCookie → GetCookie → RegisterComputer), the
captured native ReportEventBatch requests with the cookie so obtained, a second computer replaying
the first one's captured batches (every event dropped: their TargetID is not its own), and then the
compliance reports of the CLI and the API, per computer, update and group."""

from __future__ import annotations

import json

import pytest
import requests
from reportkit import ACTION, CLIENT, KB, PATH, batch, captured, event
from test_catalog_api import Api
from wuskit import mint_cookie, with_cookie

pytestmark = pytest.mark.timeout(180)
PC2 = "5b0e6f4a-8d51-4c3e-9a4b-2f6c7d8e9f01"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION}


def report(server, body: bytes) -> None:
    response = requests.post(server.url + PATH, data=body, headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    assert b"<ReportEventBatchResult>true</ReportEventBatchResult>" in response.content


def test_two_clients_report_and_the_reports_show_it(install, live_server):
    server = live_server(workers=2, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    first = mint_cookie(server, CLIENT, dns_name="desk-17.contoso.test")
    second = mint_cookie(server, PC2, dns_name="lab-02.contoso.test")
    install.cli("wsus", "groups", "add", "Pilot")
    install.cli("wsus", "computers", "assign", "desk-17.contoso.test", "Pilot")

    for number in ("000016", "000017", "000018"):
        report(server, with_cookie(captured(number), first))
        report(server, with_cookie(captured(number), second))  # the first computer's events: all dropped
    report(server, batch(event(156, misc=(f"V={KB}",), target=PC2, time="2026-10-04T16:00:00Z"),
                         cookie=second.xml()))

    computers = {row["DnsName"]: row for row in json.loads(install.cli("wsus", "report", "computers",
                                                                        "--json").stdout)}
    desk, lab = computers["desk-17.contoso.test"], computers["lab-02.contoso.test"]
    assert (desk["ComputerId"], desk["Needed"], desk["Installed"], desk["Failed"], desk["EventsDropped"]) == (
        CLIENT, 5, 0, 2, 0)
    assert (desk["LastScanError"], desk["LastScanTime"]) == ("0x80240438", "2026-10-04T15:20:47Z")
    assert (lab["ComputerId"], lab["Needed"], lab["Installed"], lab["Failed"], lab["EventsDropped"]) == (
        PC2, 0, 1, 0, 15)
    assert lab["LastScanTime"] is None and lab["LastStatusTime"] is not None

    updates = {row["UpdateID"]: row for row in json.loads(install.cli("wsus", "report", "updates",
                                                                      "--json").stdout)}
    assert (updates[KB]["Failed"], updates[KB]["Installed"], updates[KB]["Unknown"]) == (1, 1, 0)
    assert sum(1 for row in updates.values() if row["Needed"] == 1 and row["Unknown"] == 1) == 5

    groups = {row["Name"]: row for row in json.loads(install.cli("wsus", "report", "groups", "--json").stdout)}
    assert (groups["All Computers"]["Computers"], groups["All Computers"]["Failed"],
            groups["All Computers"]["ComputersFailed"]) == (2, 2, 1)
    assert (groups["Pilot"]["Computers"], groups["Pilot"]["Needed"], groups["Pilot"]["Failed"]) == (1, 5, 2)
    assert (groups["Unassigned Computers"]["Computers"], groups["Unassigned Computers"]["Installed"]) == (1, 1)

    token = install.cli("tokens", "create", "ci-operator", "--role", "operator").stdout.strip().splitlines()[-1]
    api = Api(server.url, token)
    assert api.call("GET", "/wsus/report/groups", 200)[1] == list(
        json.loads(install.cli("wsus", "report", "groups", "--json").stdout))
    assert api.call("GET", "/wsus/report/computers?group=Pilot", 200)[1]["Items"] == json.loads(
        install.cli("wsus", "report", "computers", "--group", "Pilot", "--json").stdout)
    shown = json.loads(install.cli("wsus", "computers", "show", "lab-02.contoso.test", "--json").stdout)
    assert shown["LastStatusTime"] == lab["LastStatusTime"]
