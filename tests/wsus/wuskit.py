"""The Windows Update Agent's authorization sequence for the client-operation tests, over real SOAP
1.1 on a running server: GetConfig → GetAuthorizationCookie → GetCookie (→ RegisterComputer), with
the element names and namespaces of the captured native requests (``wsus-m0-native/scan/000001``–
``000004``). ``mint_cookie(server)`` gives a client cookie of that server to put into a captured
request (``with_cookie``); ``seal_in_process`` seals one directly (for expired or odd cookies) when
the test process has the server's database bound (the ``database`` fixture).

    cookie = mint_cookie(server, computer="0f0e…")
    body = with_cookie(captured_body, cookie)              # <cookie>…</cookie> replaced
    requests.post(server.url + CLIENT_PATH, data=body, headers=soap_headers("SyncUpdates"))
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import requests
from wsus.catalogkit import NATIVE

SD = "http://www.microsoft.com/SoftwareDistribution"
CLIENT_NS = f"{SD}/Server/ClientWebService"
AUTH_NS = f"{SD}/Server/SimpleAuthWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
CLIENT_PATH = "/ClientWebService/client.asmx"
AUTH_PATH = "/SimpleAuthWebService/SimpleAuth.asmx"
CLIENT = "e1da06a3-5601-43c9-bac3-52d5db701494"  # the captured client's SusClientId
#: RegisterComputer's computerInfo as the captured native client sent it (scan/000004)
COMPUTER_INFO = (
    "<DnsName>{dns}</DnsName><OSMajorVersion>10</OSMajorVersion><OSMinorVersion>0</OSMinorVersion>"
    "<OSBuildNumber>26200</OSBuildNumber><OSServicePackMajorNumber>0</OSServicePackMajorNumber>"
    "<OSServicePackMinorNumber>0</OSServicePackMinorNumber><OSLocale>en-US</OSLocale>"
    "<ComputerManufacturer>QEMU</ComputerManufacturer><ComputerModel>Standard PC (Q35 + ICH9, 2009)</ComputerModel>"
    "<BiosVersion>unknown</BiosVersion><BiosName>unknown</BiosName><BiosReleaseDate>2022-02-02T00:00:00Z"
    "</BiosReleaseDate><ProcessorArchitecture>AMD64</ProcessorArchitecture><SuiteMask>256</SuiteMask>"
    "<OldProductType>1</OldProductType><NewProductType>48</NewProductType><SystemMetrics>0</SystemMetrics>"
    "<ClientVersionMajorNumber>1507</ClientVersionMajorNumber><ClientVersionMinorNumber>2601"
    "</ClientVersionMinorNumber><ClientVersionBuildNumber>30012</ClientVersionBuildNumber>"
    "<ClientVersionQfeNumber>0</ClientVersionQfeNumber><OSDescription>Windows 10 Pro</OSDescription>"
    "<OEM>QEMU</OEM><DeviceType>Standard PC (Q35 + ICH9, 2009)</DeviceType><FirmwareVersion>unknown"
    "</FirmwareVersion><MobileOperator>Not Present</MobileOperator>")


@dataclass(frozen=True)
class Cookie:
    """A client cookie as WUA keeps it: the clear-text expiration and the sealed data (base64)."""

    expiration: str
    encrypted: str

    def xml(self, name: str = "cookie") -> str:
        return (f"<{name}><Expiration>{self.expiration}</Expiration>"
                f"<EncryptedData>{self.encrypted}</EncryptedData></{name}>")


def soap_headers(operation: str, *, version: str = "1.1", namespace: str = CLIENT_NS) -> dict[str, str]:
    action = f"{namespace}/{operation}"
    if version == "1.2":
        return {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}


def envelope(inner: str, *, version: str = "1.1") -> bytes:
    ns = SOAP12 if version == "1.2" else SOAP11
    return f'<s:Envelope xmlns:s="{ns}"><s:Body>{inner}</s:Body></s:Envelope>'.encode()


def call(server, operation: str, inner: str, *, version: str = "1.1") -> requests.Response:
    """POST ``<operation xmlns=…>inner</operation>`` to the service of ``operation``."""
    namespace, path = (AUTH_NS, AUTH_PATH) if operation == "GetAuthorizationCookie" else (CLIENT_NS, CLIENT_PATH)
    body = envelope(f'<{operation} xmlns="{namespace}">{inner}</{operation}>', version=version)
    return requests.post(server.url + path, data=body, headers=soap_headers(operation, version=version,
                                                                             namespace=namespace), timeout=30)


def post(server, path: str, body: bytes, operation: str, *, version: str = "1.1") -> requests.Response:
    namespace = AUTH_NS if operation == "GetAuthorizationCookie" else CLIENT_NS
    return requests.post(server.url + path, data=body,
                         headers=soap_headers(operation, version=version, namespace=namespace), timeout=30)


def found(response: requests.Response, name: str) -> str | None:
    """The text of the first element ``name`` (any namespace) of a response, or None."""
    for element in ET.fromstring(response.content).iter():
        if element.tag.rsplit("}", 1)[-1] == name:
            return (element.text or "").strip()
    return None


def fault_code(response: requests.Response) -> str | None:
    """The fault's ``ErrorCode`` (None for an answer that is no fault)."""
    return found(response, "ErrorCode") if response.status_code == 500 else None


def _ok(response: requests.Response) -> requests.Response:
    if response.status_code != 200:
        raise AssertionError(f"{response.status_code}: {response.text[:2000]}")
    return response


def get_config(server) -> str:
    """``LastChange`` of GetConfig, the text GetCookie's ``lastChange`` echoes."""
    value = found(_ok(call(server, "GetConfig", "<protocolVersion>2.90</protocolVersion>")), "LastChange")
    assert value
    return value


def authorization_cookie(server, computer: str = CLIENT, *, dns_name: str = "REDACTED3",
                         target_groups: str | None = None) -> str:
    """GetAuthorizationCookie's ``CookieData`` for ``computer``."""
    groups = "" if target_groups is None else f"<targetGroupName>{escape(target_groups)}</targetGroupName>"
    value = found(_ok(call(server, "GetAuthorizationCookie",
                           f"<clientId>{computer}</clientId>{groups}<dnsName>{escape(dns_name)}</dnsName>")),
                  "CookieData")
    assert value
    return value


def get_cookie_body(auth_data: str, last_change: str, *, old: Cookie | None = None,
                    old_expiration: str = "2026-10-04T15:03:36Z") -> str:
    """GetCookie's parameters as the native client sends them (scan/000003)."""
    old_xml = old.xml("oldCookie") if old else f"<oldCookie><Expiration>{old_expiration}</Expiration></oldCookie>"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"<authCookies><AuthorizationCookie><PlugInId>SimpleTargeting</PlugInId><CookieData>{auth_data}"
            f"</CookieData></AuthorizationCookie></authCookies>{old_xml}<lastChange>{last_change}</lastChange>"
            f"<currentTime>{now}</currentTime><protocolVersion>2.90</protocolVersion>")


def get_cookie(server, auth_data: str, last_change: str, *, old: Cookie | None = None) -> Cookie:
    response = _ok(call(server, "GetCookie", get_cookie_body(auth_data, last_change, old=old)))
    expiration, encrypted = found(response, "Expiration"), found(response, "EncryptedData")
    assert expiration and encrypted
    return Cookie(expiration, encrypted)


def register(server, cookie: Cookie, *, dns_name: str = "REDACTED3") -> requests.Response:
    return _ok(call(server, "RegisterComputer",
                    cookie.xml() + "<computerInfo>" + COMPUTER_INFO.format(dns=escape(dns_name)) + "</computerInfo>"))


def mint_cookie(server, computer: str = CLIENT, *, registered: bool = True, target_groups: str | None = None,
                dns_name: str = "REDACTED3") -> Cookie:
    """A client cookie of ``server`` for ``computer`` through the real sequence (registered unless
    told otherwise), as WUA would hold it before StartCategoryScan / SyncUpdates / reporting."""
    last_change = get_config(server)
    cookie = get_cookie(server, authorization_cookie(server, computer, dns_name=dns_name,
                                                     target_groups=target_groups), last_change)
    if registered:
        register(server, cookie, dns_name=dns_name)
    return cookie


def with_cookie(body: bytes, cookie: Cookie, name: str = "cookie") -> bytes:
    """``body`` (e.g. a captured request) with its ``<name>…</name>`` element replaced by ``cookie``."""
    pattern = re.compile(rb"<" + name.encode() + rb">.*?</" + name.encode() + rb">", re.S)
    replaced, count = pattern.subn(lambda _m: cookie.xml(name).encode(), body, count=1)
    assert count == 1, f"no <{name}> in the body"
    return replaced


def captured_request(exchange: str) -> bytes:
    return (NATIVE / exchange / "request.body").read_bytes()


def seal_in_process(computer: str = CLIENT, *, kind: str = "client", now: datetime | None = None,
                    lifetime: int = 3600, high_water: int = 0, protocol: str = "2.90") -> Cookie:
    """A cookie sealed by this process with the server's keys (its database bound here)."""
    from devupdate.wsus.client import cookies, keys
    from devupdate.wsus.soap.envelope import format_datetime
    from devupdate.wsus.soap.getconfig import config_stamp

    state = cookies.new_state(kind, computer, now=now or datetime.now(UTC), lifetime=lifetime, protocol=protocol,
                              config=config_stamp(), high_water=high_water)
    return Cookie(format_datetime(state.expires_at), cookies.to_text(keys.seal(state)))


def open_in_process(cookie: Cookie, *, kind: str = "client"):
    """The state a cookie of the server carries (its database bound here)."""
    from devupdate.wsus.client import cookies, keys

    class _Lifetimes:
        wsus_auth_cookie_lifetime = wsus_client_cookie_lifetime = 3600
        wsus_dss_cookie_lifetime = 240 * 60

    return keys.unseal(cookies.from_text(cookie.encrypted), kind=kind, settings=_Lifetimes(), check_expiry=False)
