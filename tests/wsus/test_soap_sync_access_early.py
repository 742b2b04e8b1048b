"""S6 before the body ([wsus] §1f, §7) over a real socket: a caller outside the sync networks is
refused by ServerSync and DssAuth as soon as the headers are in, before the server reads (up to the
rollup limit) and parses what it sends; on Reporting without a SOAPAction it may send no more than
the largest non-rollup body. (A body up to the front's buffer, such as any DssAuth one, is read by
the event loop before the application sees the request: bounded there.)"""

from __future__ import annotations

import socket

import pytest

SD = "http://www.microsoft.com/SoftwareDistribution"
ELSEWHERE = "10.99.0.0/16"  # the sync networks: not the loopback the test calls from


@pytest.fixture
def server(live_server):
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_SYNC_NETWORKS=ELSEWHERE)


def _head_only(server, path: str, length: int, action: str | None) -> bytes:
    """Send the headers and the start of a ``length``-byte body, then read what comes back (the
    server must answer without the rest)."""
    host, port = server.url.split("//", 1)[1].split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: text/xml; charset=utf-8",
             f"Content-Length: {length}", "Connection: close"]
    if action:
        lines.append(f'SOAPAction: "{action}"')
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"<s:Envelope")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(("path", "action", "length"), [  # each within the limit of what it names
    ("/ServerSyncWebService/ServerSyncWebService.asmx", f"{SD}/GetUpdateData", 1024**2),
    ("/ServerSyncWebService/ServerSyncWebService.asmx", None, 1024**2),
    ("/ReportingWebService/ReportingWebService.asmx", f"{SD}/RollupComputers", 64 * 1024**2),
])
def test_a_caller_outside_the_sync_networks_is_refused_before_its_body(server, path, action, length):
    answer = _head_only(server, path, length, action)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 403 FORBIDDEN"
    assert b"server sync is not open to 127.0.0.1: add its network to DEVUPDATE_WSUS_SYNC_NETWORKS" in rest


def test_reporting_without_an_action_gets_only_the_client_limit_outside_the_sync_networks(server):
    answer = _head_only(server, "/ReportingWebService/ReportingWebService.asmx", 8 * 1024**2 + 1, None)
    assert answer.partition(b"\r\n")[0] == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
