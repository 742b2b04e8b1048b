"""Hostile rollups over real HTTP ([wsus] §4, §5.1, §7): a rollup number outside int32 and a time the
clock correction takes outside the calendar are ``InvalidParameters`` naming the element, and the batch
leaves nothing written; a computer of a server further down keeps that server as its parent however
often a relaying server sends its status."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from wsus.wuskit import envelope, fault_code, found

SD = "http://www.microsoft.com/SoftwareDistribution"
PATH = "/ReportingWebService/ReportingWebService.asmx"
B = "6f1c2f6e-3f0b-4d3a-9b1e-0d2f6a1c5e12"
C = "266f6222-c89d-43f2-9f8a-69340271e677"
UPDATE = "cccccccc-0000-4000-8000-000000000001"
WHERE = "computers.ComputerStatusRollupInfo"


@pytest.fixture
def upstream(live_server, database):
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")


def _post(server, operation: str, inner: str) -> requests.Response:
    return requests.post(server.url + PATH, data=envelope(f'<{operation} xmlns="{SD}">{inner}</{operation}>'),
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SD}/{operation}"'},
                         timeout=30)


def _status(computer: str, number: str = "1", change: str = "2026-12-01T00:00:00Z") -> str:
    return (f"<ComputerStatusRollupInfo><InstanceId>{uuid.uuid4()}</InstanceId><ComputerId>{computer}</ComputerId>"
            f"<EffectiveLastDetectionTime>2026-12-01T00:00:00Z</EffectiveLastDetectionTime><RollupNumber>{number}"
            "</RollupNumber><IsFullRollup>true</IsFullRollup><UpdateStatus><ComputerStatusRollupUpdateStatus>"
            f"<UpdateId>{UPDATE}</UpdateId><SummarizationState>2</SummarizationState><LastChangeTime>{change}"
            "</LastChangeTime></ComputerStatusRollupUpdateStatus></UpdateStatus></ComputerStatusRollupInfo>")


def _send(server, *items: str, client_time: str = "", parent: str = B) -> requests.Response:
    head = f"<clientTime>{client_time}</clientTime>" if client_time else ""
    return _post(server, "RollupComputerStatus",
                 f"{head}<parentServerId>{parent}</parentServerId><computers>{''.join(items)}</computers>")


def _report(install) -> dict[str, dict]:
    return {row["ComputerId"]: row for row in json.loads(install.cli("wsus", "report", "computers", "--json").stdout)}


@pytest.mark.parametrize("number", ["1000000000000000000000000000000", str(2**31), str(-2**31 - 1)])
def test_a_rollup_number_outside_int32_is_refused_and_nothing_of_the_batch_is_written(upstream, install, number):
    response = _send(upstream, _status("pc-good"), _status("pc-bad", number))
    assert (response.status_code, fault_code(response), found(response, "Message")) == (
        500, "InvalidParameters", f"{WHERE}.RollupNumber")
    assert _report(install) == {}
    assert _send(upstream, _status("pc-good", str(2**31 - 1))).status_code == 200
    assert set(_report(install)) == {"pc-good"}


def test_a_time_the_clock_correction_takes_out_of_the_calendar_is_refused(upstream, install):
    response = _send(upstream, _status("pc-good"), _status("pc-late", change="9999-12-31T00:00:00"),
                     client_time="0001-01-01T00:00:00")
    assert (response.status_code, fault_code(response), found(response, "Message")) == (
        500, "InvalidParameters", f"{WHERE}.UpdateStatus.LastChangeTime")
    computer = (f'<ComputerRollupInfo ComputerId="pc-x" ParentServerId="{B}" LastSyncTime="9999-12-31T00:00:00Z">'
                '<Details FullDomainName="pc-x.example.invalid"/></ComputerRollupInfo>')
    response = _post(upstream, "RollupComputers",
                     f"<clientTime>0001-01-01T00:00:00Z</clientTime><computers>{computer}</computers>")
    assert (fault_code(response), found(response, "Message")) == (
        "InvalidParameters", "computers.ComputerRollupInfo.LastSyncTime")
    assert _report(install) == {}


def test_a_relayed_computer_keeps_the_parent_rollup_computers_named(upstream, install, database):
    from devupdate.wsus.upstream.models import RolledUpComputer

    computer = (f'<ComputerRollupInfo ComputerId="pc-c1" ParentServerId="{C}" LastSyncTime="2026-12-01T00:00:00Z">'
                '<Details FullDomainName="pc-c1.example.invalid"/></ComputerRollupInfo>')
    assert _post(upstream, "RollupComputers", f"<computers>{computer}</computers>").status_code == 200
    for number in ("1", "2"):  # B relays C's computer twice
        assert _send(upstream, _status("pc-c1", number), parent=B).status_code == 200
        assert _report(install)["pc-c1"]["ReportedBy"] == C
        row = RolledUpComputer.get_by_id("pc-c1")
        assert (row.parent_server_id, row.rollup_number) == (C, int(number))
    # a computer no RollupComputers named yet is the relaying server's
    assert _send(upstream, _status("pc-new"), parent=B).status_code == 200
    assert RolledUpComputer.get_by_id("pc-new").parent_server_id == B
