"""GetAuthorizationCookie, GetCookie and RegisterComputer over real HTTP (spec/wsus.md §3.1, §3.3,
§3.4, §4.1–4.3): zeep built from the WSDLs runs the sequence in SOAP 1.1 and 1.2; every way a
cookie can be wrong gives its documented fault; the captured native requests replay structurally
equal to what real WSUS answered, and their redacted cookies are refused."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from helpers.xmlshape import differences
from wsus import wuskit
from wsus.wuskit import CLIENT, Cookie, call, fault_code, found

zeep = pytest.importorskip("zeep", reason="zeep is a test dependency: pip install -e '.[test]'")

WSDL = Path(__file__).resolve().parents[2] / "devupdate" / "wsus" / "soap" / "wsdl"
OTHER = "0f0e0d0c-0b0a-4908-8706-050403020100"


@pytest.fixture
def server(database, live_server):
    from devupdate.wsus.client import keys

    keys.forget_cache()
    yield live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    keys.forget_cache()


def computer_row(client_id: str = CLIENT):
    from devupdate.wsus.targeting.models import Computer

    return Computer.get_or_none(Computer.computer_id == client_id)


def register_call(cookie: str, *, version: str = "1.1") -> str:
    return cookie + "<computerInfo>" + wuskit.COMPUTER_INFO.format(dns="pc1") + "</computerInfo>"


def register_code(server, cookie: Cookie | str, **options) -> str | None:
    xml = cookie.xml() if isinstance(cookie, Cookie) else cookie
    return fault_code(call(server, "RegisterComputer", register_call(xml), **options))


# --- zeep, SOAP 1.1 and 1.2 ------------------------------------------------------------------------------

@pytest.mark.parametrize("soap12", [False, True])
def test_zeep_runs_the_authorization_sequence(server, soap12):
    suffix = "12" if soap12 else ""
    client = zeep.Client(str(WSDL / "ClientWebService.fixed.wsdl")).create_service(
        f"{{{wuskit.CLIENT_NS}}}ClientSoap{suffix}", server.url + "/ClientWebService/client.asmx")
    auth = zeep.Client(str(WSDL / "SimpleAuthWebService.wsdl")).create_service(
        f"{{{wuskit.AUTH_NS}}}SimpleAuthSoap{suffix}", server.url + "/SimpleAuthWebService/SimpleAuth.asmx")
    config = client.GetConfig(protocolVersion="2.90")
    issued = auth.GetAuthorizationCookie(clientId=CLIENT.upper(), dnsName="pc1.example.test")
    assert issued.PlugInId == "SimpleTargeting" and isinstance(issued.CookieData, bytes)
    assert issued.CookieData[0] == 0x01 and len(issued.CookieData) > 33
    before = datetime.now(UTC).replace(microsecond=0)
    cookie = client.GetCookie(authCookies={"AuthorizationCookie": [{"PlugInId": "SimpleTargeting",
                                                                     "CookieData": issued.CookieData}]},
                              oldCookie=None, lastChange=config.LastChange, currentTime=datetime.now(UTC),
                              protocolVersion="2.90")
    assert before + timedelta(hours=1) <= cookie.Expiration <= datetime.now(UTC) + timedelta(hours=1)
    assert cookie.EncryptedData[0] == 0x01 and cookie.EncryptedData != issued.CookieData
    info = {"DnsName": "pc1.example.test", "OSMajorVersion": 10, "OSMinorVersion": 0, "OSBuildNumber": 26200,
            "OSServicePackMajorNumber": 0, "OSServicePackMinorNumber": 0, "OSLocale": "en-US",
            "ComputerManufacturer": "QEMU", "ComputerModel": "Standard PC", "BiosVersion": "unknown",
            "BiosName": "unknown", "BiosReleaseDate": datetime(2022, 2, 2, tzinfo=UTC),
            "ProcessorArchitecture": "AMD64", "SuiteMask": 256, "OldProductType": 1, "NewProductType": 48,
            "SystemMetrics": 0, "ClientVersionMajorNumber": 1507, "ClientVersionMinorNumber": 2601,
            "ClientVersionBuildNumber": 30012, "ClientVersionQfeNumber": 0, "OSDescription": "Windows 10 Pro",
            "OEM": "QEMU", "DeviceType": "VM", "FirmwareVersion": "unknown", "MobileOperator": "Not Present"}
    assert client.RegisterComputer(cookie={"Expiration": cookie.Expiration, "EncryptedData": cookie.EncryptedData},
                                   computerInfo=info) is None
    row = computer_row()
    assert row is not None and row.registered is True and row.dns_name == "pc1.example.test"
    assert (row.os_major, row.os_build, row.processor_architecture, row.client_version, row.manufacturer,
            row.protocol_version) == (10, 26200, "AMD64", "1507.2601.30012.0", "QEMU", "2.90")
    # the cookie carries the (lower-cased) client id and this server's config stamp
    state = wuskit.open_in_process(Cookie("", base64.b64encode(cookie.EncryptedData).decode()))
    assert (state.subject, state.protocol, state.high_water) == (CLIENT, "2.90", 0)
    # a fault deserializes as one
    with pytest.raises(zeep.exceptions.Fault) as caught:
        client.RegisterComputer(cookie={"Expiration": cookie.Expiration, "EncryptedData": b"\x00" * 40},
                                computerInfo=info)
    assert caught.value.message == "Fault occurred"
    if not soap12:  # zeep reads a 1.2 Detail only in the envelope namespace; ours has none, as §4.1 says
        assert caught.value.detail.findtext("ErrorCode") == "InvalidCookie"


# --- GetAuthorizationCookie --------------------------------------------------------------------------------

def test_authorization_cookie_makes_and_updates_the_computer(server):
    wuskit.authorization_cookie(server, CLIENT.upper(), dns_name="first")
    row = computer_row()
    assert row is not None and row.dns_name == "first" and row.registered is False
    wuskit.authorization_cookie(server, CLIENT, dns_name="second.example.test", target_groups="Ring 1;Test")
    again = computer_row()
    assert again.id == row.id and again.dns_name == "second.example.test"
    assert again.client_group_names == "Ring 1;Test"
    from devupdate.wsus.targeting.models import TEST_ID, ComputerGroup

    # client-side groups: "Test" matched, the unknown "Ring 1" ignored
    assert [g.group_id for g in ComputerGroup.select().where(ComputerGroup.computer == row.id,
                                                             ComputerGroup.source == "client")] == [TEST_ID]


@pytest.mark.parametrize("inner,message", [
    ("<dnsName>pc</dnsName>", "clientId"),
    ("<clientId></clientId>", "clientId"),
    ("<clientId>not a guid!</clientId>", "clientId"),
    ("<clientId>" + "a" * 256 + "</clientId>", "clientId"),
    (f"<clientId>{CLIENT}</clientId><dnsName>bad name</dnsName>", "dnsName"),
    (f"<clientId>{CLIENT}</clientId><dnsName>{'d' * 256}</dnsName>", "dnsName"),
    (f"<clientId>{CLIENT}</clientId><targetGroupName>{'g' * 257}</targetGroupName>", "targetGroupName"),
    (f"<clientId>{CLIENT}</clientId><targetGroupName>{';'.join(['g' * 15] * 64)}</targetGroupName>",
     "targetGroupName"),  # 64 names fit the count, not the 1 KiB cookie
])
def test_authorization_cookie_bad_parameters(server, inner, message):
    response = call(server, "GetAuthorizationCookie", inner)
    assert (response.status_code, fault_code(response), found(response, "Message")) == (
        500, "InvalidParameters", message)
    assert found(response, "faultcode") == "s:Client"


# --- GetCookie -----------------------------------------------------------------------------------------

def get_cookie_code(server, inner: str) -> str | None:
    return fault_code(call(server, "GetCookie", inner))


def test_get_cookie_needs_exactly_one_good_authorization_cookie(server):
    stamp = wuskit.get_config(server)
    good = wuskit.authorization_cookie(server)
    one = wuskit.get_cookie_body(good, stamp)
    assert call(server, "GetCookie", one).status_code == 200
    none = one.replace(one[one.index("<authCookies>"):one.index("</authCookies>") + 14], "<authCookies/>")
    two = one.replace("</AuthorizationCookie>", "</AuthorizationCookie><AuthorizationCookie><PlugInId>"
                      f"SimpleTargeting</PlugInId><CookieData>{good}</CookieData></AuthorizationCookie>")
    other_plugin = one.replace("<PlugInId>SimpleTargeting", "<PlugInId>OtherTargeting")
    redacted = wuskit.get_cookie_body("A" * 1000 + "==", stamp)
    truncated = wuskit.get_cookie_body(good[:40], stamp)
    client_kind = wuskit.get_cookie_body(wuskit.seal_in_process().encrypted, stamp)  # a client cookie as auth
    for inner in (none, two, other_plugin, redacted, truncated, client_kind):
        response = call(server, "GetCookie", inner)
        assert (fault_code(response), found(response, "Message")) == ("InvalidAuthorizationCookie", "authCookies")
    expired_auth = wuskit.seal_in_process(kind="auth", now=datetime.now(UTC) - timedelta(hours=2)).encrypted
    assert get_cookie_code(server, wuskit.get_cookie_body(expired_auth, stamp)) == "CookieExpired"


def test_get_cookie_checks_last_change(server):
    good = wuskit.authorization_cookie(server)
    stamp = wuskit.get_config(server)
    assert get_cookie_code(server, wuskit.get_cookie_body(good, "2026-10-04T13:17:07.59Z")) == "ConfigChanged"
    missing = wuskit.get_cookie_body(good, stamp).replace(f"<lastChange>{stamp}</lastChange>", "")
    response = call(server, "GetCookie", missing)
    assert (fault_code(response), found(response, "Message")) == ("InvalidParameters", "lastChange")
    bad_version = wuskit.get_cookie_body(good, stamp).replace(">2.90<", ">two<")
    response = call(server, "GetCookie", bad_version)
    assert (fault_code(response), found(response, "Message")) == ("InvalidParameters", "protocolVersion")


def test_old_cookie_state_carries_over_and_must_be_ours(server):
    stamp = wuskit.get_config(server)
    good = wuskit.authorization_cookie(server)
    old = wuskit.seal_in_process(high_water=42, now=datetime.now(UTC) - timedelta(hours=5))  # long expired
    new = wuskit.get_cookie(server, good, stamp, old=old)
    state = wuskit.open_in_process(new)
    assert state.high_water == 42 and state.subject == CLIENT and not state.expired(datetime.now(UTC))
    # only an Expiration (the native client's first call): no old cookie
    assert wuskit.open_in_process(wuskit.get_cookie(server, good, stamp)).high_water == 0
    others = wuskit.seal_in_process(OTHER, high_water=9)
    response = call(server, "GetCookie", wuskit.get_cookie_body(good, stamp, old=others))
    assert (fault_code(response), found(response, "Message")) == ("InvalidCookie", "oldCookie")
    redacted = Cookie("2026-10-04T16:03:35.9967236Z", "A" * 400 + "=")
    assert get_cookie_code(server, wuskit.get_cookie_body(good, stamp, old=redacted)) == "InvalidCookie"
    auth_as_old = Cookie(new.expiration, good)
    assert get_cookie_code(server, wuskit.get_cookie_body(good, stamp, old=auth_as_old)) == "InvalidCookie"
    foreign = Cookie(new.expiration, base64.b64encode(b"\x01\xde\xad\xbe\xef" + os.urandom(120)).decode())
    assert get_cookie_code(server, wuskit.get_cookie_body(good, stamp, old=foreign)) == "ServerChanged"


# --- RegisterComputer: the cookie checks of every client operation ------------------------------------------

def test_register_computer_cookie_faults(server):
    cookie = wuskit.mint_cookie(server, registered=False)
    blob = base64.b64decode(cookie.encrypted)
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    cases = {
        "missing": ("", "InvalidCookie"),
        "redacted": (Cookie(cookie.expiration, "A" * 400 + "=").xml(), "InvalidCookie"),
        "truncated": (Cookie(cookie.expiration, base64.b64encode(blob[:-5]).decode()).xml(), "InvalidCookie"),
        "bit-flipped": (Cookie(cookie.expiration, base64.b64encode(bytes(flipped)).decode()).xml(), "InvalidCookie"),
        "forged": (Cookie(cookie.expiration, base64.b64encode(blob[:17] + os.urandom(len(blob) - 17)).decode()).xml(),
                   "InvalidCookie"),
        "oversized": (Cookie(cookie.expiration, base64.b64encode(blob + os.urandom(1100)).decode()).xml(),
                      "InvalidCookie"),
        "not base64": (Cookie(cookie.expiration, "%%%").xml(), "InvalidCookie"),
        "auth kind": (Cookie(cookie.expiration, wuskit.authorization_cookie(server)).xml(), "InvalidCookie"),
        "expired": (wuskit.seal_in_process(now=datetime.now(UTC) - timedelta(seconds=3601)).xml(), "CookieExpired"),
        "another server": (Cookie(cookie.expiration, base64.b64encode(b"\x01\x00\x00\x00\x07" + blob[5:]).decode())
                           .xml(), "ServerChanged"),
    }
    for name, (xml, code) in cases.items():
        assert register_code(server, xml) == code, name
    assert computer_row().registered is False
    # the clear-text Expiration does not count: a later one changes nothing, a past one neither
    assert register_code(server, Cookie("2020-01-01T00:00:00Z", cookie.encrypted)) is None
    assert computer_row().registered is True


def test_faults_in_soap_12(server):
    response = call(server, "RegisterComputer", register_call(""), version="1.2")
    assert response.status_code == 500 and response.headers["Content-Type"].startswith("application/soap+xml")
    assert (fault_code(response), found(response, "Value"), found(response, "Message")) == (
        "InvalidCookie", "soap:Sender", "cookie")
    changed = Cookie("2026-10-04T16:03:35Z", base64.b64encode(b"\x01\x00\x00\x00\x07" + os.urandom(150)).decode())
    response = call(server, "RegisterComputer", register_call(changed.xml()), version="1.2")
    assert (fault_code(response), found(response, "Value")) == ("ServerChanged", "soap:Receiver")
    response = call(server, "RegisterComputer", register_call(changed.xml()))
    assert (fault_code(response), found(response, "faultcode")) == ("ServerChanged", "s:Server")


def test_rotated_key_opens_for_one_lifetime_then_server_changed(server, install):
    from devupdate.wsus.client.models import CookieKey

    cookie = wuskit.mint_cookie(server, registered=False)
    old_key = base64.b64decode(cookie.encrypted)[1:5].hex()
    rotated = install.cli("wsus", "rotate-cookie-key", "--json")
    assert old_key in rotated.stdout
    assert register_code(server, cookie) is None  # within one lifetime: accepted
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    newer = wuskit.mint_cookie(server, registered=False)
    while base64.b64decode(newer.encrypted)[1:5].hex() == old_key:  # the worker seals with the new key within 5 s
        assert datetime.now(UTC) < deadline, "the server still seals with the retired key"
        newer = wuskit.mint_cookie(server, registered=False)
    # one client lifetime after the retirement (moved back in the database, as time would)
    retired = CookieKey.get_by_id(old_key).retired
    CookieKey.update(retired=retired - timedelta(seconds=3600)).where(CookieKey.key_id == old_key).execute()
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while register_code(server, cookie) != "ServerChanged":  # the worker's cached ring expires within 5 s
        assert datetime.now(UTC) < deadline, "the retired key still opens cookies"
    assert register_code(server, newer) is None


# --- the captured native exchanges --------------------------------------------------------------------------

def _headers(exchange: Path) -> dict[str, str]:
    headers = {}
    for line in (exchange / "request.headers").read_text().split("\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() not in ("host", "content-length", "connection"):
            headers[name.strip()] = value.strip()
    return headers


def replay(server, number: str, body: bytes | None = None) -> tuple[requests.Response, Path]:
    exchange = wuskit.NATIVE / "scan" / number
    if not exchange.is_dir():
        pytest.skip(f"captures not found at {exchange}")
    path = (exchange / "request.headers").read_text().split()[1]
    data = body if body is not None else (exchange / "request.body").read_bytes()
    return requests.post(server.url + path, data=data, headers=_headers(exchange), timeout=30), exchange


def test_captured_get_authorization_cookie_replays_structurally_equal(server):
    response, exchange = replay(server, "000002")
    assert response.status_code == 200
    assert differences(response.content, (exchange / "response.body").read_bytes(), vary=["…/CookieData"]) == []
    assert computer_row().dns_name == "REDACTED3"


def test_captured_get_cookie_redacted_is_refused_and_minted_replays_equal(server):
    response, _ = replay(server, "000003")
    assert fault_code(response) == "InvalidAuthorizationCookie"  # §3.3: the redacted auth cookie
    exchange = wuskit.NATIVE / "scan" / "000003"
    body = (exchange / "request.body").read_bytes()
    minted = wuskit.authorization_cookie(server)
    stamp = wuskit.get_config(server)
    body = body.replace(body[body.index(b"<CookieData>") + 12:body.index(b"</CookieData>")], minted.encode())
    # the recorded lastChange is the recording server's config stamp; this server's has to be echoed
    stale, _ = replay(server, "000003", body)
    assert fault_code(stale) == "ConfigChanged"
    body = body.replace(b"2026-10-04T13:17:07.59Z", stamp.encode())
    response, _ = replay(server, "000003", body)
    assert response.status_code == 200
    assert differences(response.content, (exchange / "response.body").read_bytes(),
                       vary=["…/Expiration", "…/EncryptedData"]) == []


def test_captured_register_computer_redacted_is_refused_and_minted_replays_equal(server):
    response, _ = replay(server, "000004")
    assert fault_code(response) == "InvalidCookie"
    assert computer_row() is None  # nothing stored for a refused cookie
    exchange = wuskit.NATIVE / "scan" / "000004"
    cookie = wuskit.mint_cookie(server, registered=False)
    response, _ = replay(server, "000004", wuskit.with_cookie((exchange / "request.body").read_bytes(), cookie))
    assert response.status_code == 200
    assert differences(response.content, (exchange / "response.body").read_bytes()) == []
    row = computer_row()
    assert (row.registered, row.dns_name, row.os_build, row.model, row.mobile_operator, row.suite_mask,
            row.bios_release_date) == (True, "REDACTED3", 26200, "Standard PC (Q35 + ICH9, 2009)", "Not Present",
                                       256, "2022-02-02T00:00:00Z")


def test_register_computer_cuts_strings_to_256(server):
    cookie = wuskit.mint_cookie(server, registered=False)
    inner = cookie.xml() + "<computerInfo>" + wuskit.COMPUTER_INFO.format(dns="pc").replace(
        "<OSDescription>Windows 10 Pro</OSDescription>", f"<OSDescription>{'w' * 5000}</OSDescription>") + \
        "</computerInfo>"
    assert call(server, "RegisterComputer", inner).status_code == 200
    assert computer_row().os_description == "w" * 256
    response = call(server, "RegisterComputer", cookie.xml())
    assert (fault_code(response), found(response, "Message")) == ("InvalidParameters", "computerInfo")


def test_every_captured_request_with_a_redacted_cookie_is_refused_and_stores_nothing(server):
    """Every native request that carries a cookie (scan and flow), posted unchanged: the redacted
    cookies (``A…`` runs) never open, whatever the operation, and nothing is written."""
    from devupdate.wsus.compliance.models import ReportedEvent
    from devupdate.wsus.targeting.models import Computer

    exchanges = sorted((wuskit.NATIVE / "scan").glob("0*")) + sorted((wuskit.NATIVE / "flow").glob("0*"))
    if not exchanges:
        pytest.skip("captures not found")
    seen, without_request = {}, []
    for exchange in exchanges:
        if not (exchange / "request.body").is_file():  # recorded without a body: stand-ins in test_replay_inventory
            without_request.append(f"{exchange.parent.name}/{exchange.name}")
            continue
        body = (exchange / "request.body").read_bytes()
        if b"<cookie>" not in body and b"<authCookies>" not in body:
            continue
        operation = body.split(b"<s:Body><", 1)[1].split(b" ", 1)[0].decode()
        response = requests.post(server.url + (exchange / "request.headers").read_text().split()[1], data=body,
                                 headers=_headers(exchange), timeout=30)
        expected = "InvalidAuthorizationCookie" if operation == "GetCookie" else "InvalidCookie"
        assert (response.status_code, fault_code(response)) == (500, expected), exchange
        seen[f"{exchange.parent.name}/{exchange.name}"] = operation
    assert set(seen.values()) == {"GetCookie", "RegisterComputer", "SyncUpdates",  # StartCategoryScan has none
                                  "GetExtendedUpdateInfo", "ReportEventBatch"}
    assert Computer.select().count() == 0 and ReportedEvent.select().count() == 0
    assert without_request == ["flow/000001", "flow/000014"]  # the only ones, and said so


def test_two_nodes_on_one_database_share_cookies_and_rotation(database, live_server, install):
    """Keys and the ServerId are in the database: a cookie of one node opens on the other, and once
    one node seals with the key a rotation made, the other opens its cookies at once (its cached
    ring reloads on the unknown key id, tested in-process in test_cookie_keys)."""
    a = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    b = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    cookie = wuskit.mint_cookie(a, registered=False)
    assert register_code(b, cookie) is None
    old_key = base64.b64decode(cookie.encrypted)[1:5].hex()
    assert register_code(b, wuskit.mint_cookie(b, registered=False)) is None  # b's ring is cached now
    install.cli("wsus", "rotate-cookie-key")
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    fresh = wuskit.mint_cookie(a, registered=False)
    while base64.b64decode(fresh.encrypted)[1:5].hex() == old_key:
        assert datetime.now(UTC) < deadline, "node a still seals with the retired key"
        fresh = wuskit.mint_cookie(a, registered=False)
    assert register_code(b, fresh) is None  # never ServerChanged for a key of this installation
    assert register_code(a, cookie) is None and register_code(b, cookie) is None  # the retired key, within its life


def test_master_key_over_http(database, live_server, install):
    """Nodes with the master key seal and open with wrapped keys; a node without it cannot."""
    from devupdate.wsus.client.models import CookieKey

    master = {"DEVUPDATE_WSUS_COOKIE_MASTER_KEY": "a5" * 32}
    install.cli("wsus", "rotate-cookie-key", **master)
    assert [row.secret[:2] for row in CookieKey.select()] == ["w:"]
    with_key = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", **master)
    cookie = wuskit.mint_cookie(with_key, registered=False)
    assert register_code(with_key, cookie) is None
    without = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    assert register_code(without, cookie) == "ServerChanged"
    response = call(without, "GetAuthorizationCookie", f"<clientId>{CLIENT}</clientId>")
    assert fault_code(response) == "InternalServerError"  # a configuration defect, named in the log
    assert "cookie_master_key" in without.log.read_text()
