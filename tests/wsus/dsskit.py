"""A downstream server's side of MS-WSUSSS for the upstream tests, over real SOAP 1.1 on a running
server: the authorization sequence (GetAuthConfig → DssAuth GetAuthorizationCookie → GetCookie)
with the element names of the captured requests (``wsus-m0-wsusss/exchanges/000001``–``000003``),
and replay of the captured exchanges with this server's cookie and anchors put in.

    cookie = dss_cookie(server)                            # a DSS cookie of that server
    response = call(server, "GetRevisionIdList", cookie.xml() + "<filter>…</filter>")
    response, exchange = replay(server, "000009", cookie=cookie)
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import requests
from wsus.catalogkit import EXCHANGES
from wsus.wuskit import Cookie, envelope, found

SD = "http://www.microsoft.com/SoftwareDistribution"
DSS_AUTH_NS = f"{SD}/Server/DssAuthWebService"
SYNC_PATH = "/ServerSyncWebService/ServerSyncWebService.asmx"
DSS_AUTH_PATH = "/DssAuthWebService/DssAuthWebService.asmx"
ACCOUNT = "6f1c2f6e-3f0b-4d3a-9b1e-0d2f6a1c5e12"  # the captured probe's accountGuid
ACCOUNT_NAME = "probe.lab.invalid"


def headers(operation: str, **extra: str) -> dict[str, str]:
    namespace = DSS_AUTH_NS if operation == "GetAuthorizationCookie" else SD
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{namespace}/{operation}"', **extra}


def call(server, operation: str, inner: str, **extra_headers: str) -> requests.Response:
    """POST ``<operation xmlns=…>inner</operation>`` to ServerSync (DssAuth for GetAuthorizationCookie)."""
    namespace, path = ((DSS_AUTH_NS, DSS_AUTH_PATH) if operation == "GetAuthorizationCookie" else (SD, SYNC_PATH))
    body = envelope(f'<{operation} xmlns="{namespace}">{inner}</{operation}>')
    return requests.post(server.url + path, data=body, headers=headers(operation, **extra_headers), timeout=60)


def _ok(response: requests.Response) -> requests.Response:
    if response.status_code != 200:
        raise AssertionError(f"{response.status_code}: {response.text[:2000]}")
    return response


def authorization_cookie(server, account: str = ACCOUNT, name: str = ACCOUNT_NAME, **extra_headers: str) -> str:
    value = found(_ok(call(server, "GetAuthorizationCookie", f"<accountName>{name}</accountName>"
                                                            f"<accountGuid>{account}</accountGuid>",
                           **extra_headers)), "CookieData")
    assert value
    return value


def get_cookie_body(auth_data: str, protocol: str = "1.20") -> str:
    return (f"<authCookies><AuthorizationCookie><PlugInId>DssTargeting</PlugInId><CookieData>{auth_data}"
            f"</CookieData></AuthorizationCookie></authCookies><protocolVersion>{protocol}</protocolVersion>")


def dss_cookie(server, account: str = ACCOUNT, **extra_headers: str) -> Cookie:
    """A DSS cookie of ``server`` through the real sequence."""
    _ok(call(server, "GetAuthConfig", "", **extra_headers))
    auth = authorization_cookie(server, account, **extra_headers)
    response = _ok(call(server, "GetCookie", get_cookie_body(auth), **extra_headers))
    expiration, encrypted = found(response, "Expiration"), found(response, "EncryptedData")
    assert expiration and encrypted
    return Cookie(expiration, encrypted)


def anchor(server, cookie: Cookie) -> str:
    """A fresh anchor of ``server`` (GetConfigData's ``NewConfigAnchor``)."""
    value = found(_ok(call(server, "GetConfigData", cookie.xml())), "NewConfigAnchor")
    assert value
    return value


def identities(response: requests.Response) -> list[tuple[str, int]]:
    """The (UpdateID, RevisionNumber) pairs of a GetRevisionIdList answer, in order."""
    root = ET.fromstring(response.content)
    return [(item.findtext(f"{{{SD}}}UpdateID") or "", int(item.findtext(f"{{{SD}}}RevisionNumber") or 0))
            for item in root.iter(f"{{{SD}}}UpdateIdentity")]


def exchange_dir(number: str) -> Path:
    return EXCHANGES / number


def recorded_headers(exchange: Path) -> dict[str, str]:
    out = {}
    for line in (exchange / "request.headers").read_text().split("\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() not in ("host", "content-length", "connection"):
            out[name.strip()] = value.strip()
    return out


_ANCHORS = re.compile(rb"<(Anchor|configAnchor)>[^<]*</\1>")


def replay(server, number: str, *, cookie: Cookie | None = None, auth_data: str | None = None,
           anchor_value: str | None = None) -> tuple[requests.Response, Path]:
    """POST the captured request of ``exchanges/<number>`` unchanged but for this server's cookie
    (``<cookie>``), authorization cookie (``<CookieData>``) and anchors, when given."""
    exchange = exchange_dir(number)
    body = (exchange / "request.body").read_bytes()
    if cookie is not None and b"<cookie>" in body:
        body = re.sub(rb"<cookie>.*?</cookie>", cookie.xml().encode(), body, count=1, flags=re.S)
    if auth_data is not None:
        body = re.sub(rb"<CookieData>[^<]*</CookieData>", f"<CookieData>{auth_data}</CookieData>".encode(), body)
    if anchor_value is not None and b"garbage" not in body:
        body = _ANCHORS.sub(lambda m: b"<%s>%s</%s>" % (m.group(1), anchor_value.encode(), m.group(1)), body)
    path = (exchange / "request.headers").read_text().split()[1]
    return requests.post(server.url + path, data=body, headers=recorded_headers(exchange), timeout=60), exchange


def without(document: bytes, *local_names: str) -> bytes:
    """``document`` with every element of the given local names removed (with what is inside)."""
    root = ET.fromstring(document)
    for parent in list(root.iter()):
        for item in list(parent):
            if item.tag.rsplit("}", 1)[-1] in local_names:
                parent.remove(item)
    return ET.tostring(root)
