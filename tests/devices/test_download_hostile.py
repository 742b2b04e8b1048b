"""Hostile download paths, sent over raw sockets so that no client library normalizes them."""

from __future__ import annotations

import hashlib
import socket

from test_download_http import import_image


def raw_request(port: int, target: bytes, method: bytes = b"GET", headers: bytes = b"") -> tuple[int, bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
                     b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def test_traversal_and_odd_paths_are_404(install, live_server, tmp_path):
    path, data = import_image(install, tmp_path, 30_000)
    sha = hashlib.sha256(data).hexdigest()
    server = live_server(workers=1)
    port = server.port
    good = f"/DeviceUpdateFiles_Int/{path}".encode()

    status, head, body = raw_request(port, good)
    assert status == 200 and body == data

    hostile = [
        b"/DeviceUpdateFiles_Int/../../etc/passwd",
        b"/DeviceUpdateFiles_Int/../../../../../../etc/passwd",
        b"/DeviceUpdateFiles_Int/%2e%2e/%2e%2e/etc/passwd",
        b"/DeviceUpdateFiles_Int/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        b"/DeviceUpdateFiles_Int/..%2f..%2fetc%2fpasswd",
        b"/DeviceUpdateFiles_Int/..%5c..%5cetc%5cpasswd",
        b"/DeviceUpdateFiles_Int/..\\..\\etc\\passwd",
        b"/DeviceUpdateFiles_Int//etc/passwd",
        b"/DeviceUpdateFiles_Int/%00/etc/passwd",
        good + b"%00",
        good + b"%00.txt",
        good + b"/",
        good + b"/..",
        good.replace(b"/Polycom/", b"/Polycom/../Polycom/"),  # normalizes to a real file: still refused
        good.replace(b"/Polycom/", b"/./Polycom/"),
        good.replace(b"/Polycom/", b"//Polycom/"),
        good.replace(b"/Polycom/", b"%2fPolycom/"),  # encoded slash inside a real path
        good.replace(b"/Polycom/", b"%2FPolycom%2F"),
        f"/DeviceUpdateFiles_Int/images/{sha[:2]}/{sha}".encode(),  # the filestore layout is not reachable
        f"/DeviceUpdateFiles_Int/{sha}".encode(),
    ]
    for target in hostile:
        for method in (b"GET", b"HEAD"):
            status, head, body = raw_request(port, target, method)
            assert status == 404, (target, method, head)
            assert b"root:" not in body and data[:64] not in body

    # a raw NUL byte never reaches the application: gunicorn refuses the request line itself
    status, _, body = raw_request(port, good + b"\x00")
    assert status == 400 and data[:64] not in body
    status, _, body = raw_request(port, b"/DeviceUpdateFiles_Int/..\x00/..\x00/etc/passwd")
    assert status == 400 and b"root:" not in body

    # the external side asks for credentials before it says anything about a path
    status, head, _ = raw_request(port, b"/DeviceUpdateFiles_Ext/../../etc/passwd")
    assert status == 401 and b"WWW-Authenticate: Basic" in head

    # HEAD: the GET headers, no body
    status, head, body = raw_request(port, good, b"HEAD")
    assert status == 200 and body == b"" and f"Content-Length: {len(data)}".encode() in head
    # other methods are not allowed on downloads
    status, _, _ = raw_request(port, good, b"DELETE")
    assert status == 405
