"""Malformed chunked framing on every endpoint (issue 8, item 4), sent raw over loopback.

Each shape is a request whose chunked body is broken in one way. The server decodes bodies before
the application runs, so every endpoint answers it the same: one ``400`` in its own vocabulary
(the device XML error body on device paths, JSON on the API, text elsewhere), then the connection
closes — never a ``500``, never a second, server-made page after an answer.
"""

from __future__ import annotations

import json
import re
import socket
from xml.etree import ElementTree as ET

import pytest

MAC = "0004F2AABBCC"
SHAPES = {
    "size zz": b"zz\r\nabc\r\n0\r\n\r\n",
    "size -5": b"-5\r\nabcde\r\n0\r\n\r\n",
    "size 0x10": b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
    "NUL after the size": b"3\x00\r\nabc\r\n0\r\n\r\n",
    "no CRLF after the data": b"3\r\nabcXY0\r\n\r\n",
    "malformed trailer": b"3\r\nabc\r\n0\r\nnot a field\r\n\r\n",
}
CHECK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><Request><DeviceType>UCPhone</DeviceType>'
              b"<MACAddress>00-04-F2-AA-BB-CC</MACAddress><Vendor>Polycom</Vendor><Model>CX600</Model>"
              b"<Locale>ENU</Locale></Request>")


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request``, half-close, read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what the server sent into (status, headers, body) answers, by Content-Length."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"not an HTTP answer: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def xml_error(body: bytes) -> tuple[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error"
    return root.findtext("Code"), root.findtext("Message")


@pytest.fixture
def served(install, live_server):
    install.cli("db", "upgrade")
    token = install.cli("tokens", "create", "fuzz", "--role", "admin").stdout.strip().splitlines()[-1]
    server = live_server(workers=1)
    return server, token


def endpoints(token: str) -> dict[str, tuple[bytes, bytes]]:
    """name → (request head without the final CRLF, vocabulary: xml | json | any)."""
    return {
        "check": (b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nContent-Type: text/xml", b"xml"),
        "check, other spelling": (b"POST /requesthandler/UCDevice.upx HTTP/1.1\r\nContent-Type: text/xml", b"xml"),
        "log upload": (b"POST /RequestHandler/Files?type=Watson&mac=" + MAC.encode() + b"&name=a.txt HTTP/1.1", b"xml"),
        "download": (b"GET /DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/4.0.7577.4372/CPE.nbt HTTP/1.1",
                     b"xml"),
        "API": (b"POST /api/v1/test-devices HTTP/1.1\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode(), b"json"),
        "console": (b"POST /console/sign-in HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded", b"any"),
    }


def test_malformed_chunked_framing_is_one_400_on_every_endpoint(install, served):
    from devices.fleet import audit_rows

    server, token = served
    for endpoint, (head, vocabulary) in endpoints(token).items():
        for shape, body in SHAPES.items():
            data = exchange(server.port, head + b"\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
            answers = responses(data)
            where = f"{endpoint} / {shape}: {data[:400]!r}"
            assert len(answers) == 1, where  # one answer, then the connection closed
            status, headers, text = answers[0]
            assert status == 400, where
            if vocabulary == b"xml":
                assert headers["content-type"] == "text/xml; charset=utf-8", where
                code, message = xml_error(text)
                assert code == "BadChunkedBody" and message, where
            elif vocabulary == b"json":
                assert headers["content-type"] == "application/json", where
                assert json.loads(text)["error"]["code"] == "BadChunkedBody", where
            else:
                assert text.startswith(b"400 Bad Request: "), where
    assert "Traceback" not in server.output()
    # the refused checks are in the request audit log, like every check
    assert [row["Result"] for row in audit_rows(install)] == ["400 BadChunkedBody"] * 2 * len(SHAPES)


def test_a_well_formed_chunked_check_is_answered(served):
    server, _ = served
    body = b"%x\r\n%s\r\n0\r\nX-Trailer: fine\r\n\r\n" % (len(CHECK_BODY), CHECK_BODY)
    head = b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    (status, headers, text), = responses(exchange(server.port, head + body))
    assert (status, headers["content-type"]) == (200, "text/xml; charset=utf-8")
    assert re.search(rb"<NumOfFiles>0</NumOfFiles>", text)


def test_server_refusals_on_device_paths_are_the_xml_error(served):
    """What gunicorn or Flask refuse before any view runs — request line too long (414), too many or
    too long header fields (431), a garbled header (400), a method the path does not take (405) —
    answers a phone with the device protocol's XML error body, not an HTML page."""
    server, _ = served
    long_query = b"?MACAddress=" + b"A" * 9000
    cases = {
        "414 request line": (b"GET /RequestHandler/ucdevice.upx" + long_query + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        "431 too many fields": (b"GET /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\n" +
                                b"".join(b"X-F%d: v\r\n" % n for n in range(150)) + b"\r\n", 431),
        "431 field too long": (b"GET /DeviceUpdateFiles_Int/a/b HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 +
                               b"\r\n\r\n", 431),
        "400 garbled header": (b"POST /RequestHandler/Files HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400),
        "405 method": (b"DELETE /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
        "405 download": (b"POST /DeviceUpdateFiles_Ext/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n", 405),
        "404 device path": (b"GET /RequestHandler/nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    }
    for name, (request, want) in cases.items():
        data = exchange(server.port, request)
        (status, headers, text), = responses(data)
        assert (status, headers["content-type"]) == (want, "text/xml; charset=utf-8"), (name, data[:300])
        code, message = xml_error(text)
        assert code and message, (name, text)
    assert "Traceback" not in server.output()


def test_ambiguous_framing_is_refused_before_the_app(served):
    """What could make two parsers disagree about where a body ends (request smuggling) is refused
    by the server itself, in the device XML error on device paths."""
    server, _ = served
    start = b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\n"
    cases = {
        "length and chunked": (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400, "BadFraming"),
        "two lengths": (b"Content-Length: 3\r\nContent-Length: 3\r\n", 400, "BadContentLength"),
        "signed length": (b"Content-Length: +3\r\n", 400, "BadContentLength"),
        "other coding": (b"Transfer-Encoding: gzip, chunked\r\n", 501, "UnsupportedTransferCoding"),
        "folded header": (b"Content-Length: 3\r\n X-Folded: yes\r\n", 400, "BadHeader"),
        "space before colon": (b"Content-Length : 3\r\n", 400, "BadHeader"),
        "bare LF": (b"Content-Length: 3\nX-A: b\r\n", 400, "BadRequest"),
        "unknown expectation": (b"Content-Length: 3\r\nExpect: teapot\r\n", 417, "ExpectationFailed"),
    }
    for name, (headers, want, code) in cases.items():
        (status, head, text), = responses(exchange(server.port, start + headers + b"\r\nabc"))
        assert (status, head["content-type"], xml_error(text)[0]) == (want, "text/xml; charset=utf-8", code), name
    old = (b"POST /RequestHandler/ucdevice.upx HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n")
    (status, _, text), = responses(exchange(server.port, old))
    assert (status, xml_error(text)[0]) == (400, "BadFraming")


def test_pipelined_requests_are_answered_in_order(served):
    """Several requests in one send (a chunked one among them): each answered, in order, on one connection."""
    server, _ = served
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(CHECK_BODY), CHECK_BODY)
    requests = (b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (len(CHECK_BODY), CHECK_BODY) +
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
                b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                chunked +
                b"GET /DeviceUpdateFiles_Int/none/such HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = responses(exchange(server.port, requests))
    assert [status for status, _, _ in answers] == [200, 200, 200, 404]
    assert b"<NumOfFiles>0</NumOfFiles>" in answers[0][2] and b"<NumOfFiles>0</NumOfFiles>" in answers[2][2]
    assert json.loads(answers[1][2])["status"] == "ok"
    assert xml_error(answers[3][2])[0] == "NotFound"
