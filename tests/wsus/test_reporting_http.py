"""The Reporting operations over real HTTP on a running ``devupdate serve`` (spec/wsus.md §3.9,
§3.10, §4, §7): the captured native ReportEventBatch requests posted unchanged but for a cookie this
server sealed, answered structurally as recorded; duplicates ignored; another computer's TargetID
dropped; every event id of the table changing the compliance state as the table says; oversized
batches refused with the parameter named; zeep, built from the WSDLs, calling ReportEventBatch,
ReportEventBatch2, GetRequiredInventoryType, ReportInventory and SyncPrinterCatalog."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
import requests
from helpers.xmlshape import differences
from reportkit import ACTION, CLIENT, KB, PATH, SD, SOAP11, batch, captured, event, with_cookie

from devupdate.wsus.client import cookies, keys
from devupdate.wsus.compliance.models import ComplianceState, ComputerStatus, ReportedEvent
from devupdate.wsus.soap.getconfig import config_stamp

zeep = pytest.importorskip("zeep", reason="zeep is a test dependency: pip install -e '.[test]'")

NATIVE_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION, "Accept-Encoding": "xpress",
                  "User-Agent": "Windows-Update-Agent/1507.2601.30012.0 Client-Protocol/2.90"}
OTHER = "0daf8592-9e3f-4a8a-9141-d83fafebd09f"


@pytest.fixture
def server(rt, live_server):
    keys.forget_cache()
    yield live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    keys.forget_cache()


def sealed(client: str = CLIENT, *, lifetime: int = 3600, now: datetime | None = None,
           stamp: datetime | None = None) -> cookies.CookieState:
    return cookies.new_state(cookies.CLIENT, client, now=now or datetime.now(UTC), lifetime=lifetime,
                             config=stamp or config_stamp())


def cookie_xml(state: cookies.CookieState | None = None) -> str:
    state = state or sealed()
    return (f"<cookie><Expiration>{state.expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
            f"<EncryptedData>{cookies.to_text(keys.seal(state))}</EncryptedData></cookie>")


def post(server, body: bytes, action: str = ACTION) -> requests.Response:
    return requests.post(server.url + PATH, data=body, timeout=30, headers={**NATIVE_HEADERS, "SOAPAction": action})


def fault_of(response: requests.Response) -> tuple[str | None, str | None]:
    assert response.status_code == 500, response.text
    detail = ET.fromstring(response.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/detail")
    assert detail is not None, response.text
    return detail.findtext("ErrorCode"), detail.findtext("Message")


def states(client: str = CLIENT) -> dict[str, str]:
    return {row.update_id: row.state for row in ComplianceState.select().where(ComplianceState.client_id == client)}


def test_captured_batches_replayed_answer_as_recorded(server):
    for number in ("000016", "000017", "000018"):
        response = post(server, with_cookie(captured(number), cookie_xml()))
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert "Content-Encoding" not in response.headers
        recorded = captured(number, "response.body")
        assert differences(response.content, recorded) == []
    assert ReportedEvent.select().count() == 15
    assert states()[KB] == "failed" and states()[OTHER] == "failed"
    assert sorted(set(states().values())) == ["failed", "needed"]

    again = post(server, with_cookie(captured("000017"), cookie_xml()))  # WUA resends after a lost answer
    assert again.status_code == 200 and b"<ReportEventBatchResult>true</ReportEventBatchResult>" in again.content
    assert ReportedEvent.select().count() == 15
    status = ComputerStatus.get_by_id(CLIENT)
    assert (status.events_taken, status.events_duplicate, status.events_dropped) == (15, 9, 0)
    assert states()[KB] == "failed"  # the repeated 156 (needed) changed nothing


def test_redacted_forged_expired_and_stale_cookies(server):
    assert fault_of(post(server, captured("000018"))) == ("InvalidCookie", "cookie")
    no_cookie = batch(event(183, update=KB), cookie="")
    assert fault_of(post(server, no_cookie)) == ("InvalidCookie", "cookie")
    expired = sealed(now=datetime.now(UTC) - timedelta(hours=2))
    assert fault_of(post(server, batch(event(183, update=KB), cookie=cookie_xml(expired)))) == (
        "CookieExpired", "cookie")
    blob = bytearray(keys.seal(sealed()))
    blob[-1] ^= 1
    forged = f"<cookie><Expiration>2026-10-04T16:03:35Z</Expiration><EncryptedData>{cookies.to_text(bytes(blob))}" \
             "</EncryptedData></cookie>"
    assert fault_of(post(server, batch(event(183, update=KB), cookie=forged))) == ("InvalidCookie", "cookie")
    unknown_key = cookies.to_text(bytes([1]) + bytes(4) + bytes(12) + bytes(40))  # a key id this server lacks
    other_server = f"<cookie><Expiration>2026-10-04T16:03:35Z</Expiration><EncryptedData>{unknown_key}" \
                   "</EncryptedData></cookie>"
    assert fault_of(post(server, batch(event(183, update=KB), cookie=other_server))) == ("ServerChanged", "cookie")
    # refused batches leave nothing behind: no event, no state, no computer status
    assert (ReportedEvent.select().count(), ComplianceState.select().count(), ComputerStatus.select().count()) == (
        0, 0, 0)
    # ReportEventBatch does not compare the config stamp (§4.3): a stale one still reports
    stale = sealed(stamp=datetime(2020, 1, 1, tzinfo=UTC))
    assert post(server, batch(event(183, update=KB), cookie=cookie_xml(stale))).status_code == 200
    assert ReportedEvent.select().count() == 1 and states() == {KB: "installed"}


def test_another_computers_target_id_is_dropped(server):
    intruder = str(uuid.uuid4())
    body = batch(event(183, update=KB, target=intruder), event(182, update=OTHER, target=intruder, hresult=-1),
                 event(184, update=OTHER), cookie=cookie_xml())
    response = post(server, body)
    assert response.status_code == 200 and b"<ReportEventBatchResult>true</ReportEventBatchResult>" in response.content
    assert states() == {OTHER: "installed-pending-reboot"}
    assert states(intruder) == {} and ReportedEvent.select().where(ReportedEvent.client_id == intruder).count() == 0
    assert ComputerStatus.get_by_id(CLIENT).events_dropped == 2
    # the intruder's own cookie cannot speak for the first computer either
    response = post(server, batch(event(183, update=OTHER, target=CLIENT), cookie=cookie_xml(sealed(intruder))))
    assert response.status_code == 200 and states() == {OTHER: "installed-pending-reboot"}
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert 'devupdate_wsus_reported_events_total{outcome="dropped"} 3.0' in metrics
    assert 'devupdate_wsus_reported_events_total{outcome="taken"} 1.0' in metrics


TABLE = [(183, "installed"), (190, "installed"), (197, "installed"), (184, "installed-pending-reboot"),
         (191, "installed-pending-reboot"), (182, "failed"), (195, "failed"), (198, "failed"), (161, "failed"),
         (141, "needed"), (162, "needed"), (167, "needed"), (181, "needed"), (147, "needed"), (148, "needed")]


def test_every_event_id_changes_the_state_as_the_table_says(server):
    updates = {event_id: str(uuid.UUID(int=event_id)) for event_id, _state in TABLE}
    listed = ";".join(u.upper() for u in updates.values())
    first = post(server, batch(event(156, misc=(f"U={listed}", "B=3"), time="2026-10-04T15:00:00Z"),
                               cookie=cookie_xml()))
    assert first.status_code == 200, first.text
    assert states() == dict.fromkeys(updates.values(), "needed")
    for number, (event_id, _state) in enumerate(TABLE):
        response = post(server, batch(event(event_id, update=updates[event_id], hresult=-2145099769,
                                            time=f"2026-10-04T15:01:{number:02d}Z"), cookie=cookie_xml()))
        assert response.status_code == 200, response.text
    assert states() == {updates[event_id]: state for event_id, state in TABLE}
    for event_id in (182, 195, 198, 161):  # failed, with the event's Win32HResult
        failed = ComplianceState.get(ComplianceState.update_id == updates[event_id])
        assert (failed.win32_hresult, failed.event_id, failed.revision_number) == (-2145099769, event_id, 200)
    for event_id in (183, 190, 197, 184, 191):  # no HRESULT kept with a success
        assert ComplianceState.get(ComplianceState.update_id == updates[event_id]).win32_hresult is None
    for event_id in (141, 162, 167, 181, 147, 148):  # the event log only: the 156 state stays
        assert ComplianceState.get(ComplianceState.update_id == updates[event_id]).event_id == 156
    logged = {row.event_id for row in ReportedEvent.select(ReportedEvent.event_id)}
    assert logged == {156} | {event_id for event_id, _state in TABLE}  # every event is in the log
    status = ComputerStatus.get_by_id(CLIENT)
    assert status.last_scan_at == datetime(2026, 10, 4, 15, 1, 13)
    assert (status.last_scan_error, status.last_scan_error_at) == (-2145099769, datetime(2026, 10, 4, 15, 1, 14))
    # AGENT_STATUS_30 again: what it lists, and every other root of this computer not applicable
    post(server, batch(event(156, misc=(f"V={updates[183]}", f"g={updates[190]}", f"h={updates[191]}",
                                        f"W={updates[182]}"), time="2026-10-04T16:00:00Z"), cookie=cookie_xml()))
    assert states() == {**dict.fromkeys(updates.values(), "not-applicable"), updates[183]: "installed",
                        updates[190]: "failed", updates[191]: "downloaded", updates[182]: "installed-pending-reboot"}
    # an older event arriving late changes nothing
    post(server, batch(event(183, update=updates[190], time="2026-10-04T15:59:59Z"), cookie=cookie_xml()))
    assert states()[updates[190]] == "failed"


@pytest.mark.parametrize(("events", "message"), [
    ([event(141)] * 1001, "eventBatch"),
    ([event(141, misc=tuple(f"K{i}=1" for i in range(65)))], "eventBatch.ReportingEvent.ExtendedData.MiscData"),
    ([event(141, instance="{not-a-guid}")], "eventBatch.ReportingEvent.BasicData.EventInstanceID"),
    ([event(40000)], "eventBatch.ReportingEvent.BasicData.EventID"),
])
def test_oversized_or_malformed_batches_are_invalid_parameters(server, events, message):
    response = post(server, batch(*events, cookie=cookie_xml()))
    assert fault_of(response) == ("InvalidParameters", message)
    root = ET.fromstring(response.content)
    assert root.findtext(f".//{{{SOAP11}}}Fault/detail/Method") == ACTION
    assert ReportedEvent.select().count() == 0


def test_a_thousand_events_and_bad_client_time(server):
    many = [event(183 if n % 2 else 141, update=KB, time=f"2026-10-04T15:{n // 60 % 60:02d}:{n % 60:02d}Z")
            for n in range(1000)]
    assert post(server, batch(*many, cookie=cookie_xml())).status_code == 200
    assert ReportedEvent.select().count() == 1000
    assert fault_of(post(server, batch(event(183), cookie=cookie_xml(), client_time="soon"))) == (
        "InvalidParameters", "clientTime")


@pytest.fixture(scope="module")
def wsdl():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "devupdate" / "wsus" / "soap" / "wsdl"
    return {"reporting": zeep.Client(str(root / "ServerReportingWebService.wsdl")),
            "client": zeep.Client(str(root / "ClientWebService.fixed.wsdl"))}


def zeep_cookie(state: cookies.CookieState) -> dict[str, object]:
    return {"Expiration": state.expires_at, "EncryptedData": keys.seal(state)}


@pytest.mark.parametrize("soap12", [False, True])
def test_zeep_reporting_operations(server, wsdl, soap12):
    service = wsdl["reporting"].create_service(f"{{{SD}}}WebServiceSoap{'12' if soap12 else ''}", server.url + PATH)
    factory = wsdl["reporting"].type_factory("ns0")
    now = datetime.now(UTC)
    basic = factory.BasicData(TargetID=factory.ComputerTargetIdentifier(Sid=CLIENT.upper()), SequenceNumber=1,
                              TimeAtTarget=now, EventInstanceID=str(uuid.uuid4()), NamespaceID=1, EventID=183,
                              SourceID=101, UpdateID=factory.UpdateRevisionIdentifier(UpdateID=KB, RevisionNumber=200),
                              Win32HResult=0, AppName="zeep")
    extended = factory.ExtendedData(ReplacementStrings={"string": ["0"]}, MiscData={"string": ["B=3"]},
                                    ProcessorArchitecture="Amd64Compatible",
                                    OSVersion=factory.DetailedVersion(Major=10, Minor=0, Build=26200, Revision=1,
                                                                      ServicePackMajor=0, ServicePackMinor=0),
                                    OSLocaleID=1033)
    reported = factory.ReportingEvent(BasicData=basic, ExtendedData=extended)
    state = sealed()
    assert service.ReportEventBatch(cookie=zeep_cookie(state), clientTime=now,
                                    eventBatch={"ReportingEvent": [reported, reported]}) is True
    assert states() == {KB: "installed"} and ReportedEvent.select().count() == 1
    assert service.ReportEventBatch2(computerId=CLIENT, clientTime=now,
                                     eventBatch={"ReportingEvent": [reported]}) is False
    assert ReportedEvent.select().count() == 1
    assert service.GetRequiredInventoryType(cookie=zeep_cookie(state), rulesId=str(uuid.uuid4()),
                                            rulesVersion="1") == 0
    assert service.ReportInventory(cookie=zeep_cookie(state), clientTime=now,
                                   inventory={"IsCompressed": False, "RawXml": "<Inventory/>"}) is True
    with pytest.raises(zeep.exceptions.Fault):
        service.GetRequiredInventoryType(cookie={"Expiration": now, "EncryptedData": b"\x01" * 40},
                                         rulesId=str(uuid.uuid4()))


@pytest.mark.parametrize("binding", ["ClientSoap", "ClientSoap12"])
def test_zeep_sync_printer_catalog(server, wsdl, binding):
    ns = f"{SD}/Server/ClientWebService"
    service = wsdl["client"].create_service(f"{{{ns}}}{binding}", server.url + "/ClientWebService/Client.asmx")
    state = sealed()
    result = service.SyncPrinterCatalog(cookie=zeep_cookie(state), installedNonLeafUpdateIDs={"int": [1, 2]},
                                        printerUpdateIDs={"int": [3]})
    assert result.Truncated is False and result.NewUpdates is None and result.ChangedUpdates is None
    assert result.NewCookie.Expiration == state.expires_at
    renewed = keys.unseal(result.NewCookie.EncryptedData, kind=cookies.CLIENT, settings=server.install.settings())
    assert renewed == state and result.NewCookie.EncryptedData != keys.seal(state)


def test_sync_printer_catalog_validation_order(server):
    url = server.url + "/ClientWebService/Client.asmx"
    ns = f"{SD}/Server/ClientWebService"

    def call(cookie: str, ids: int = 0, action: str = "SyncPrinterCatalog") -> requests.Response:
        body = (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><SyncPrinterCatalog xmlns="{ns}">{cookie}'
                f"<installedNonLeafUpdateIDs>{'<int>1</int>' * ids}</installedNonLeafUpdateIDs>"
                "</SyncPrinterCatalog></s:Body></s:Envelope>").encode()
        return requests.post(url, data=body, timeout=10, headers={"Content-Type": "text/xml; charset=utf-8",
                                                                  "SOAPAction": f'"{ns}/{action}"'})

    stale = cookie_xml(sealed(stamp=datetime(2020, 1, 1, tzinfo=UTC)))
    assert fault_of(call("<cookie><Expiration>2026-10-04T16:03:35Z</Expiration></cookie>")) == (
        "InvalidCookie", "cookie")
    assert fault_of(call(stale, ids=401)) == ("InvalidParameters", "installedNonLeafUpdateIDs")
    assert fault_of(call(stale, ids=400)) == ("ConfigChanged", "cookie")
    ok = call(cookie_xml(), ids=400, action="SyncUpdates")  # the action the spec's prose gives (§2.2)
    assert ok.status_code == 200 and b"<Truncated>false</Truncated><NewCookie><Expiration>" in ok.content


def test_the_limits_follow_the_settings(rt, live_server):
    keys.forget_cache()
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_MAX_REPORT_EVENTS="2",
                         DEVUPDATE_WSUS_MAX_MISC_DATA_ITEMS="1", DEVUPDATE_WSUS_MAX_EVENT_STRING_LENGTH="16")
    assert fault_of(post(server, batch(event(141), event(141), event(141), cookie=cookie_xml()))) == (
        "InvalidParameters", "eventBatch")
    assert fault_of(post(server, batch(event(141, misc=("B=1", "C=2")), cookie=cookie_xml()))) == (
        "InvalidParameters", "eventBatch.ReportingEvent.ExtendedData.MiscData")
    ok = post(server, batch(event(141, misc=("B=" + "9" * 40,), app_name="a" * 40), event(183, update=KB),
                            cookie=cookie_xml()))
    assert ok.status_code == 200, ok.text
    logged = ReportedEvent.get(ReportedEvent.event_id == 141)
    assert (logged.app_name, logged.misc_data) == ("a" * 16, '["B=' + "9" * 14 + '"]')
