"""Faults of the client-server protocol over real HTTP, in SOAP 1.1 and 1.2 (spec/wsus.md §3.5, §4.2,
§4.3): SyncUpdates's validation order with two faults at once (the earlier check answers); for every
error code a client can get, the reaction §4.2 gives it leads back to a working call; the cookie
lifetimes (client and auth cookies 1 h, or the settings', sealed expiry deciding, NewCookie keeping
the expiry); oversized arrays naming the parameter."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest
import wuskit
from wuskit import Cookie, call, fault_code, found

from devupdate.wsus.client import cookies, keys
from devupdate.wsus.soap.envelope import format_datetime
from devupdate.wsus.soap.getconfig import config_stamp

PC = "3c3c3c3c-0000-4000-8000-0000000000c3"
STALE = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def server(rt, live_server):
    keys.forget_cache()
    yield live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    keys.forget_cache()


def sealed(subject: str = PC, *, kind: str = cookies.CLIENT, issued: datetime | None = None, lifetime: int = 3600,
           config: datetime | None = None) -> Cookie:
    state = cookies.new_state(kind, subject, now=issued or datetime.now(UTC), lifetime=lifetime, protocol="2.90",
                              config=config or config_stamp())
    return Cookie(format_datetime(state.expires_at), cookies.to_text(keys.seal(state)))


def sync(server, cookie: Cookie, parameters: str | None = "<SkipSoftwareSync>false</SkipSoftwareSync>", *,
         version: str = "1.1"):
    inner = cookie.xml() + (f"<parameters>{parameters}</parameters>" if parameters is not None else "")
    return call(server, "SyncUpdates", inner, version=version)


def fault(response) -> tuple[str | None, str | None]:
    assert response.status_code == 500, response.text[:500]
    return fault_code(response), found(response, "Message")


def ints(count: int) -> str:
    return "<int>1</int>" * count


def test_sync_updates_validation_order(server):
    """§3.5: cookie → parameters present → array limits → SystemSpec with a software pass → config
    stamp → registration. Each pair of faults at once is answered by the earlier check."""
    wuskit.mint_cookie(server, PC, registered=False)  # known, not registered
    expired = sealed(issued=datetime.now(UTC) - timedelta(hours=2))
    stale = sealed(config=STALE)
    fresh = sealed()
    spec = "<SystemSpec><Device><HardwareIDs><string>PCI\\VEN_1AF4</string></HardwareIDs></Device></SystemSpec>"
    cases = [
        (sync(server, expired, None), ("CookieExpired", "cookie")),  # cookie before parameters
        (sync(server, stale, None), ("InvalidParameters", "parameters")),  # parameters before the config stamp
        (sync(server, stale, f"<InstalledNonLeafUpdateIDs>{ints(401)}</InstalledNonLeafUpdateIDs>{spec}"
                     "<SkipSoftwareSync>false</SkipSoftwareSync>"),
         ("InvalidParameters", "parameters.InstalledNonLeafUpdateIDs")),  # array limits before SystemSpec
        (sync(server, stale, f"{spec}<SkipSoftwareSync>false</SkipSoftwareSync>"),
         ("InvalidParameters", "parameters.SystemSpec")),  # SystemSpec before the config stamp
        (sync(server, stale), ("ConfigChanged", "cookie")),  # config stamp before registration
        (sync(server, fresh), ("RegistrationRequired", "cookie")),
    ]
    for response, expected in cases:
        assert fault(response) == expected
    # every array of the operation, one over its limit, names itself
    for name, item, limit in (("OtherCachedUpdateIDs", "<int>1</int>", 20_000),
                              ("CachedDriverIDs", "<int>1</int>", 20_000),
                              ("SystemSpec", "<Device><HardwareIDs><string>x</string></HardwareIDs></Device>", 2_000),
                              ("FilterCategoryIds", "<CategoryIdentifier><Id>dd78b8a1-0b20-45c1-add6-4da72e9364cf"
                                                    "</Id></CategoryIdentifier>", 199)):
        over = f"<{name}>{item * (limit + 1)}</{name}><SkipSoftwareSync>true</SkipSoftwareSync>"
        assert fault(sync(server, stale, over)) == ("InvalidParameters", f"parameters.{name}"), name
        at = f"<{name}>{item * limit}</{name}><SkipSoftwareSync>true</SkipSoftwareSync>"
        assert fault(sync(server, stale, at)) == ("ConfigChanged", "cookie"), name  # at the limit: the next check


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_every_fault_a_client_gets_and_its_reaction(server, version):
    """§4.2's client reactions, followed as WUA does, end in a call that works."""

    def ok(response):
        assert response.status_code == 200, response.text[:500]
        return response

    def config() -> str:
        return found(ok(call(server, "GetConfig", "<protocolVersion>2.90</protocolVersion>", version=version)),
                     "LastChange")

    def authorize() -> str:
        return found(ok(call(server, "GetAuthorizationCookie", f"<clientId>{PC}</clientId><dnsName>pc</dnsName>",
                             version=version)), "CookieData")

    def cookie(auth: str, last_change: str, old: Cookie | None = None) -> Cookie:
        response = ok(call(server, "GetCookie", wuskit.get_cookie_body(auth, last_change, old=old), version=version))
        return Cookie(found(response, "Expiration"), found(response, "EncryptedData"))

    def refresh(c: Cookie):
        return ok(call(server, "RefreshCache", c.xml() + "<globalIDs><UpdateIdentity><UpdateID>"
                       "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe</UpdateID><RevisionNumber>200</RevisionNumber>"
                       "</UpdateIdentity></globalIDs>", version=version))

    def register(c: Cookie):
        return ok(call(server, "RegisterComputer", c.xml() + "<computerInfo>" + wuskit.COMPUTER_INFO.format(dns="pc")
                       + "</computerInfo>", version=version))

    def scan(c: Cookie):
        return sync(server, c, version=version)

    last_change = config()
    current = cookie(authorize(), last_change)
    # RegistrationRequired → RegisterComputer, retry
    assert fault(scan(current)) == ("RegistrationRequired", "cookie")
    register(current)
    ok(scan(current))
    # InvalidCookie (forged) → GetConfig → GetAuthorizationCookie → GetCookie → RefreshCache
    forged = Cookie(current.expiration, base64.b64encode(base64.b64decode(current.encrypted)[:-1] + b"\x00").decode())
    assert fault(scan(forged)) == ("InvalidCookie", "cookie")
    current = cookie(authorize(), config())
    refresh(current)
    ok(scan(current))
    # ServerChanged (a key id this server does not hold) → as InvalidCookie
    other = Cookie(current.expiration, base64.b64encode(b"\x01\x00\x00\x00\x07" + os.urandom(150)).decode())
    assert fault(scan(other)) == ("ServerChanged", "cookie")
    assert fault(refresh_raw := call(server, "RefreshCache", other.xml(), version=version)) == (
        "ServerChanged", "cookie") and refresh_raw.status_code == 500  # RefreshCache needs the new cookie
    current = cookie(authorize(), config())
    refresh(current)
    ok(scan(current))
    # CookieExpired → GetAuthorizationCookie → GetCookie (the cached config stays valid)
    expired = sealed(issued=datetime.now(UTC) - timedelta(seconds=3601))
    assert fault(scan(expired)) == ("CookieExpired", "cookie")
    current = cookie(authorize(), last_change)
    ok(scan(current))
    # ConfigChanged → GetConfig → GetAuthorizationCookie → GetCookie; a GetCookie with the old stamp
    # is refused, which is why the reaction starts with GetConfig
    stale = sealed(config=STALE)
    assert fault(scan(stale)) == ("ConfigChanged", "cookie")
    refused = call(server, "GetCookie", wuskit.get_cookie_body(authorize(), "2020-01-01T00:00:00Z"), version=version)
    assert fault(refused) == ("ConfigChanged", "lastChange")
    current = cookie(authorize(), config())
    ok(scan(current))
    # InvalidAuthorizationCookie → restart the authorization
    bad_auth = call(server, "GetCookie", wuskit.get_cookie_body("AAAA" * 40, last_change), version=version)
    assert fault(bad_auth) == ("InvalidAuthorizationCookie", "authCookies")
    two = wuskit.get_cookie_body(authorize(), last_change).replace(
        "</AuthorizationCookie>", "</AuthorizationCookie><AuthorizationCookie><PlugInId>SimpleTargeting</PlugInId>"
        "<CookieData>AAAA</CookieData></AuthorizationCookie>", 1)
    assert fault(call(server, "GetCookie", two, version=version)) == ("InvalidAuthorizationCookie", "authCookies")
    current = cookie(authorize(), last_change, old=current)
    ok(scan(current))
    # InvalidParameters → not retried unchanged: the same request gets the same fault, and nothing changed
    oversized = f"<InstalledNonLeafUpdateIDs>{ints(401)}</InstalledNonLeafUpdateIDs>"
    first, again = sync(server, current, oversized, version=version), sync(server, current, oversized, version=version)
    assert fault(first) == fault(again) == ("InvalidParameters", "parameters.InstalledNonLeafUpdateIDs")
    assert found(first, "ID") != found(again, "ID")  # a new fault GUID each time
    ok(scan(current))
    if version == "1.2":
        assert first.headers["Content-Type"].startswith("application/soap+xml")
        assert found(first, "Value") == "soap:Sender" and found(other_fault := scan(other), "Value") == \
            "soap:Receiver" and fault_code(other_fault) == "ServerChanged"


def test_cookie_lifetimes(server, install, live_server):
    """§4.3: client and auth cookies live 1 h (the settings' otherwise); the sealed expiry decides,
    not the clear-text Expiration; NewCookie keeps the expiry with new ciphertext."""
    before = datetime.now(UTC)
    auth = wuskit.authorization_cookie(server, PC)
    opened = wuskit.open_in_process(Cookie("", auth), kind=cookies.AUTH)
    assert before + timedelta(hours=1) - timedelta(seconds=1) <= opened.expires_at <= datetime.now(UTC) + timedelta(
        hours=1)
    client = wuskit.get_cookie(server, auth, wuskit.get_config(server))
    state = wuskit.open_in_process(client)
    assert before + timedelta(hours=1) - timedelta(seconds=1) <= state.expires_at <= datetime.now(UTC) + timedelta(
        hours=1)
    assert client.expiration == format_datetime(state.expires_at)
    wuskit.register(server, client)
    renewed = found(sync(server, client), "EncryptedData")
    assert renewed != client.encrypted
    assert wuskit.open_in_process(Cookie("", renewed)).expires_at == state.expires_at  # not extended by use
    # an hour and a second after issue: expired, whatever the clear-text Expiration says
    late = sealed(issued=datetime.now(UTC) - timedelta(seconds=3601))
    assert fault(sync(server, Cookie("9999-12-31T23:59:59Z", late.encrypted))) == ("CookieExpired", "cookie")
    assert sync(server, sealed(issued=datetime.now(UTC) - timedelta(seconds=3500))).status_code == 200
    late_auth = sealed(kind=cookies.AUTH, issued=datetime.now(UTC) - timedelta(seconds=3601))
    assert fault(call(server, "GetCookie", wuskit.get_cookie_body(late_auth.encrypted, wuskit.get_config(server)))) \
        == ("CookieExpired", "authCookies")
    # the settings' lifetimes
    short = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_CLIENT_COOKIE_LIFETIME="120",
                        DEVUPDATE_WSUS_AUTH_COOKIE_LIFETIME="60")
    before = datetime.now(UTC)
    auth = wuskit.authorization_cookie(short, PC)
    assert wuskit.open_in_process(Cookie("", auth), kind=cookies.AUTH).expires_at <= datetime.now(UTC) + timedelta(
        seconds=60)
    client = wuskit.get_cookie(short, auth, wuskit.get_config(short))
    expires = wuskit.open_in_process(client).expires_at
    assert before + timedelta(seconds=119) <= expires <= datetime.now(UTC) + timedelta(seconds=120)


SERVICES = [  # path, operation namespace, SOAPAction prefix, whether faults name the Method (§4.1)
    ("/ClientWebService/Client.asmx", f"{wuskit.SD}/Server/ClientWebService", f"{wuskit.SD}/Server/ClientWebService",
     True),
    ("/SimpleAuthWebService/SimpleAuth.asmx", f"{wuskit.SD}/Server/SimpleAuthWebService",
     f"{wuskit.SD}/Server/SimpleAuthWebService", True),
    ("/ReportingWebService/ReportingWebService.asmx", wuskit.SD, wuskit.SD, True),
    # ServerSync is no client service, but real WSUS names the Method there too (cap:wsus-m0-wsusss/exchanges/000017)
    ("/ServerSyncWebService/ServerSyncWebService.asmx", wuskit.SD, wuskit.SD, True),
    ("/DssAuthWebService/DssAuthWebService.asmx", f"{wuskit.SD}/Server/DssAuthWebService",
     f"{wuskit.SD}/Server/DssAuthWebService", False),
]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_fault_detail_layout_on_every_service(server, version):
    """§4.1: ErrorCode, Message, ID (a new GUID each) and, on the client services (and ServerSync, as
    recorded), Method (the quoted SOAPAction), all unqualified; SOAP 1.2 puts them in a Detail without
    namespace; a request error is s:Client / soap:Sender."""
    import re
    import xml.etree.ElementTree as ET

    import requests

    for path, namespace, prefix, names_method in SERVICES:
        action = f"{prefix}/NoSuchOperation"
        body = wuskit.envelope(f'<NoSuchOperation xmlns="{namespace}"/>', version=version)
        headers = ({"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'} if version == "1.2"
                   else {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'})
        response = requests.post(server.url + path, data=body, headers=headers, timeout=30)
        assert response.status_code == 500, (path, response.text[:300])
        root = ET.fromstring(response.content)
        detail = next(e for e in root.iter() if e.tag in ("detail", "Detail"))
        assert detail.tag == ("Detail" if version == "1.2" else "detail")  # no namespace
        fields = {child.tag: child.text for child in detail}
        assert list(fields) == ["ErrorCode", "Message", "ID"] + (["Method"] if names_method else []), path
        assert (fields["ErrorCode"], fields["Message"]) == ("InvalidParameters", "SOAPAction"), path
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", fields["ID"])
        if names_method:
            assert fields["Method"] == f'"{action}"'
        code = found(response, "Value") if version == "1.2" else found(response, "faultcode")
        assert code == ("soap:Sender" if version == "1.2" else "s:Client")
