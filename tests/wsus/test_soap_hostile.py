"""Hostile SOAP against a running ``devupdate serve`` (spec/wsus.md §1f S1–S4, S8, §2.3, §8.6):
every body below gets a documented SOAP fault (InvalidParameters with Message ``body`` or
``SOAPAction``) or ``413``/``415`` — never a 500 without an envelope, never a traceback, and the
server goes on answering."""

from __future__ import annotations

import socket
import struct
import xml.etree.ElementTree as ET

import pytest
import requests

SD = "http://www.microsoft.com/SoftwareDistribution"
CLIENT_NS = f"{SD}/Server/ClientWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
PATH = "/ClientWebService/Client.asmx"


def wrap(inner: str, version: str = "1.1") -> bytes:
    ns = SOAP12 if version == "1.2" else SOAP11
    return f'<s:Envelope xmlns:s="{ns}"><s:Body>{inner}</s:Body></s:Envelope>'.encode()


GET_CONFIG = f'<GetConfig xmlns="{CLIENT_NS}"><protocolVersion>2.90</protocolVersion></GetConfig>'
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY a "aaaaaaaaaa">'
                  + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
                  + "]>" + wrap(f'<GetConfig xmlns="{CLIENT_NS}"><protocolVersion>&i;</protocolVersion>'
                                "</GetConfig>").decode()).encode()
EXTERNAL = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            + wrap(f'<GetConfig xmlns="{CLIENT_NS}"><protocolVersion>&e;</protocolVersion></GetConfig>').decode()
            ).encode()
PARAMETER_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
                    + wrap(GET_CONFIG))
DOCTYPE_ONLY = b"<!DOCTYPE s:Envelope>" + wrap(GET_CONFIG)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (these requests change nothing, which the last test checks)."""
    from helpers.installation import Installation, LiveServer

    home = tmp_path_factory.mktemp("hostile") / "home"
    home.mkdir()
    live = LiveServer(Installation(home, ""), workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true").start()
    yield live
    live.stop()


def post(server, body: bytes, *, action: str | None = None, content_type: str = "text/xml; charset=utf-8",
         **headers: str) -> requests.Response:
    if action is not None:
        headers["SOAPAction"] = action
    return requests.post(server.url + PATH, data=body, timeout=60, headers={"Content-Type": content_type, **headers})


def fault(response: requests.Response, version: str = "1.1") -> tuple[str, str]:
    assert response.status_code == 500, (response.status_code, response.text[:300])
    root = ET.fromstring(response.content)
    if version == "1.2":
        assert response.headers["Content-Type"] == "application/soap+xml; charset=utf-8"
        detail = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault/Detail")
    else:
        assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
        detail = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/detail")
    assert detail is not None, response.text[:300]
    assert len(detail.findtext("ID") or "") == 36
    return detail.findtext("ErrorCode"), detail.findtext("Message")


@pytest.mark.parametrize("name, body", [
    ("billion laughs", BILLION_LAUGHS), ("external entity", EXTERNAL), ("parameter entity", PARAMETER_ENTITY),
    ("doctype", DOCTYPE_ONLY), ("not well-formed", wrap(GET_CONFIG)[:-5]), ("not XML", b"\x00\xff garbage"),
    ("empty", b""), ("no envelope", GET_CONFIG.encode()),
    ("depth 1000", wrap(f'<GetConfig xmlns="{CLIENT_NS}">' + "<x>" * 1000 + "</x>" * 1000 + "</GetConfig>")),
    ("250,000 elements", wrap(f'<GetConfig xmlns="{CLIENT_NS}">' + "<x/>" * 250_000 + "</GetConfig>")),
    ("wrong envelope namespace", GET_CONFIG.join([b'<s:Envelope xmlns:s="urn:soap"><s:Body>'.decode(),
                                                  "</s:Body></s:Envelope>"]).encode()),
    ("utf-16 with a DTD", ('<?xml version="1.0" encoding="utf-16"?><!DOCTYPE x [<!ENTITY e "y">]>'
                           + wrap(GET_CONFIG).decode()).encode("utf-16")),
])
def test_refused_bodies_are_a_body_fault(server, name, body):
    assert fault(post(server, body, action=f'"{CLIENT_NS}/GetConfig"' if len(body) < 60_000 else None)) == (
        "InvalidParameters", "body"), name


@pytest.mark.parametrize("name, body, action", [
    ("unknown operation", wrap(f'<DropTables xmlns="{CLIENT_NS}"/>'), ""),
    ("unknown action", wrap(GET_CONFIG), f'"{CLIENT_NS}/DropTables"'),
    ("action/body mismatch", wrap(GET_CONFIG), f'"{CLIENT_NS}/SyncUpdates"'),
    ("another service's action", wrap(GET_CONFIG), f'"{SD}/GetConfig"'),
    ("wrong body namespace", wrap('<GetConfig xmlns="urn:evil"><protocolVersion>2.90</protocolVersion></GetConfig>'),
     ""),
    ("no body namespace", wrap("<GetConfig><protocolVersion>2.90</protocolVersion></GetConfig>"), ""),
    ("another service's operation", wrap(f'<GetAuthorizationCookie xmlns="{CLIENT_NS}"/>'), ""),
    ("100,000 elements in an unknown operation",
     wrap(f'<Flood xmlns="{CLIENT_NS}">' + "<x/>" * 100_000 + "</Flood>"), ""),
])
def test_dispatch_refusals_are_a_soapaction_fault(server, name, body, action):
    assert fault(post(server, body, action=action)) == ("InvalidParameters", "SOAPAction"), name


def test_soap12_faults_keep_the_12_shape(server):
    response = post(server, b"<nope", content_type="application/soap+xml; charset=utf-8")
    assert fault(response, "1.2") == ("InvalidParameters", "body")
    mismatch = post(server, wrap(GET_CONFIG, "1.2"),
                    content_type=f'application/soap+xml; charset=utf-8; action="{CLIENT_NS}/GetCookie"')
    assert fault(mismatch, "1.2") == ("InvalidParameters", "SOAPAction")


def test_bad_protocol_version_names_the_parameter(server):
    body = wrap(f'<GetConfig xmlns="{CLIENT_NS}"><protocolVersion>2.90; DROP</protocolVersion></GetConfig>')
    assert fault(post(server, body)) == ("InvalidParameters", "protocolVersion")


def raw_exchange(server, head: str, body: bytes = b"", read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout) as sock:
        sock.sendall(head.encode() + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_a_10_mb_body_is_refused_before_it_is_read(server):
    for action in (f'"{CLIENT_NS}/SyncUpdates"', f'"{CLIENT_NS}/GetConfig"', ""):
        head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: {action}\r\n"
                f"Content-Length: {10 * 1024 * 1024}\r\n\r\n")
        answer = raw_exchange(server, head, b"<s:Envelope")  # 11 bytes of 10 MiB: the answer comes anyway
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # SimpleAuth's limit is 64 KiB: refused on the head alone, before the event loop buffers the body
    auth = raw_exchange(server, "POST /SimpleAuthWebService/SimpleAuth.asmx HTTP/1.1\r\nHost: x\r\n"
                                f"Content-Type: text/xml\r\nContent-Length: {70 * 1024}\r\n\r\n", b"<")
    assert auth.startswith(b"HTTP/1.1 413 "), auth[:200]
    # GetConfig's is 64 KiB too, but only the SOAPAction tells, which the event loop does not read:
    # up to 256 KiB arrive (a fixed bound), then the SOAP layer refuses
    small = raw_exchange(server, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: "
                                 f'"{CLIENT_NS}/GetConfig"\r\nContent-Length: {70 * 1024}\r\n\r\n', b"<" * 70 * 1024)
    assert small.startswith(b"HTTP/1.1 413 "), small[:200]


def test_a_10_mb_body_sent_whole_and_chunked(server):
    body = wrap(f'<GetConfig xmlns="{CLIENT_NS}">' + "x" * (10 * 1024 * 1024) + "</GetConfig>")
    assert post(server, body).status_code == 413
    chunked = requests.post(server.url + PATH, data=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                            headers={"Content-Type": "text/xml"}, timeout=60)
    assert chunked.status_code == 413 and "above the limit" in chunked.text


def test_an_encoded_body_is_415(server):
    for encoding in ("gzip", "xpress", "deflate"):
        response = post(server, wrap(GET_CONFIG), **{"Content-Encoding": encoding})
        assert response.status_code == 415 and "unencoded" in response.text


def test_a_client_that_leaves_mid_answer_is_not_an_error(server):
    """Read the status line, then close: the rest of the answer meets a closed socket (EPIPE or a
    reset), which the server drops quietly — a client going away is not a server fault."""
    body = wrap(f'<GetConfig xmlns="{CLIENT_NS}"><protocolVersion>2.90</protocolVersion>'
                + "<x/>" * 20_000 + "</GetConfig>")
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert sock.recv(12).startswith(b"HTTP/1.1 ")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, unread
    assert post(server, wrap(GET_CONFIG), action=f'"{CLIENT_NS}/GetConfig"').status_code == 200
    assert "Traceback" not in server.output()


def test_nothing_left_behind(server):
    """After all of the above: the service answers, the log has no traceback, nothing was written."""
    ok = post(server, wrap(GET_CONFIG), action=f'"{CLIENT_NS}/GetConfig"')
    assert ok.status_code == 200 and b"GetConfigResult" in ok.content
    log = server.output()
    assert "Traceback" not in log and "InternalServerError" not in log
    incoming = server.install.home / "filestore"
    assert not [p for p in incoming.rglob("*") if p.is_file() and "incoming" in p.parts]
