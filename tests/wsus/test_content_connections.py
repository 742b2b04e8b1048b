"""Content connections: 8 kept-alive connections from one address each download a range of a real
stored file at the same time (as Delivery Optimization does), are reused for a second round, and
an idle connection is closed by the server once the keep-alive timeout has passed, not before (a
short timeout set here, so the suite does not wait 60 s; the default is asserted to be ≥ 60 s,
spec/wsus.md §2.4)."""

from __future__ import annotations

import hashlib
import random
import selectors
import socket
import threading
import time

from helpers.cabs import make_image, make_package, make_update

from devupdate.settings import Settings

SIZE = 8 * 2**20 + 12345
KEEPALIVE = 3


def test_default_keepalive_is_at_least_60_s():
    assert Settings().keepalive_timeout >= 60
    assert Settings().max_connections_per_source >= 8


Answer = tuple[bytes, dict[str, str], bytes]


def _ranged_get(sock: socket.socket, port: int, path: str, first: int, last: int) -> Answer:
    """One ``GET`` with ``Range: bytes=first-last`` on a kept-alive connection: (status line, headers, body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes={first}-{last}\r\n"
                 "User-Agent: Microsoft-Delivery-Optimization/10.1\r\nConnection: Keep-Alive\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before the answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(min(1 << 20, length - len(body)))
        assert chunk, f"closed after {len(body)} of {length} body bytes"
        body += chunk
    assert len(body) == length, "more bytes than Content-Length"
    return status.encode(), headers, body


def _in_parallel(socks: list[socket.socket], port: int, path: str, ranges: list[tuple[int, int]]
                 ) -> tuple[list[Answer], list[float]]:
    """One ranged GET per connection, all sent at once; the answers and when each arrived."""
    start = threading.Barrier(len(socks))
    answers: list[Answer | BaseException | None] = [None] * len(socks)
    arrived = [0.0] * len(socks)

    def download(index: int) -> None:
        try:
            start.wait(timeout=30)
            answers[index] = _ranged_get(socks[index], port, path, *ranges[index])
            arrived[index] = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            answers[index] = exc

    threads = [threading.Thread(target=download, args=(index,)) for index in range(len(socks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for answer in answers:
        assert isinstance(answer, tuple), answer
    return answers, arrived  # type: ignore[return-value]


def test_eight_parallel_ranged_downloads_and_the_idle_timeout(install, live_server, tmp_path):
    update = make_update("Polycom", "CX600", "4.0.7577.4372")
    install.cli("db", "upgrade")
    install.cli("import", str(make_package(tmp_path, [update], image_sizes=SIZE)))
    data = make_image(update.files[0].name, SIZE, "4.0.7577.4372")
    sha1 = hashlib.sha1(data).hexdigest().upper()
    path = f"/Content/{sha1[-2:]}/{sha1}.nbt"
    server = live_server(workers=1, DEVUPDATE_KEEPALIVE_TIMEOUT=str(KEEPALIVE))
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(8)]
    try:
        # 1 MiB ranges in shuffled order (the last one short), eight requests in flight at once; then
        # the same connections again, each with another range
        ranges = [(n << 20, min(SIZE, (n + 1) << 20) - 1) for n in range((SIZE >> 20) + 1)]
        random.Random(5).shuffle(ranges)
        for asked in (ranges[:8], ranges[1:9]):
            answers, arrived = _in_parallel(socks, server.port, path, asked)
            for (status, headers, body), (first, last) in zip(answers, asked, strict=True):
                assert status.startswith(b"HTTP/1.1 206 "), status
                assert headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
                assert body == data[first:last + 1], (first, last)
        # idle: the server closes each connection once the keep-alive timeout has passed, not before
        deadline = time.monotonic() + KEEPALIVE + 10
        with selectors.DefaultSelector() as waiting:
            for index, sock in enumerate(socks):
                waiting.register(sock, selectors.EVENT_READ, index)
            while waiting.get_map() and time.monotonic() < deadline:
                for key, _ in waiting.select(timeout=max(0.0, deadline - time.monotonic())):
                    idle = time.monotonic() - arrived[key.data]
                    assert socks[key.data].recv(1) == b"", "the server sent something unasked"
                    assert idle > KEEPALIVE - 0.2, f"closed after {idle:.2f} s idle"
                    waiting.unregister(key.fileobj)
            assert not waiting.get_map(), f"{len(waiting.get_map())} connections still open {KEEPALIVE + 10} s on"
    finally:
        for sock in socks:
            sock.close()
