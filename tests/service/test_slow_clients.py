"""Slow and greedy clients (issue 8, item 3), driven with raw sockets on loopback.

Phones reach ``devupdate serve`` directly, so the server itself must not let a few sockets that
trickle a request (or read an answer at a crawl) take the threads real phones need: heads and
bodies are read under deadlines (``408``), connections are bounded per source address across all
workers (``429`` with ``Retry-After``; trusted proxies exempt), and checks go on being answered
while hundreds of slow sockets are open. The attackers send at their own pace (that is what they
are); every wait of the test itself polls for a condition with a bound.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from xml.etree import ElementTree as ET

import pytest
from helpers.cabs import make_image, make_package, make_update
from helpers.tools import free_port, wait_for, wait_port

CHECK = (b'<?xml version="1.0" encoding="utf-8"?><Request><DeviceType>UCPhone</DeviceType>'
         b"<MACAddress>00-04-F2-AA-BB-CC</MACAddress><Vendor>Polycom</Vendor><Model>CX600</Model>"
         b"<Revision>A</Revision><Locale>ENU</Locale></Request>")
CHECK_PATH = b"/RequestHandler/ucdevice.upx"


def connect(port: int, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One whole answer (by Content-Length), within ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split(" ", 2)[1]), headers, body


def check(port: int, source: str = "127.0.0.1", sock: socket.socket | None = None, timeout: float = 5.0):
    """A real update check; (status, headers, body). ``sock`` reuses a kept-alive connection."""
    own = sock is None
    sock = sock or connect(port, source)
    try:
        sock.sendall(b"POST " + CHECK_PATH + b" HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(CHECK), CHECK))
        return read_answer(sock, timeout)
    finally:
        if own:
            sock.close()


def xml_code(body: bytes) -> str:
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return root.findtext("Code")


class Trickle:
    """Sockets that send a request head one header line at a time, every ``interval`` seconds."""

    def __init__(self, port: int, sources: list[str], interval: float, path: bytes = CHECK_PATH):
        self.socks = [connect(port, source) for source in sources]
        for sock in self.socks:
            sock.sendall(b"POST " + path + b" HTTP/1.1\r\n")
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        line = 0
        while not self._stop.wait(self._interval):
            line += 1
            for sock in self.socks:
                try:
                    sock.sendall(b"X-Slow-%d: still coming\r\n" % line)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            sock.close()


def sources(count: int, third: int = 1) -> list[str]:
    """``count`` distinct loopback addresses 127.0.<third>.1…"""
    return [f"127.0.{third + n // 250}.{n % 250 + 1}" for n in range(count)]


def test_slow_heads_leave_threads_for_phones(install, live_server):
    """10 sockets sending one header line every 2 s used to take every thread (0 of 3 checks
    answered); with 10 and then 200 of them open, every check is answered at once."""
    install.cli("db", "upgrade")
    server = live_server(workers=1, DEVUPDATE_THREADS="4", DEVUPDATE_HEADER_TIMEOUT="60")
    slow = [Trickle(server.port, ["127.0.0.1"] * 10, interval=2.0)]
    try:
        for _ in range(3):
            status, headers, body = check(server.port)
            assert (status, headers["content-type"]) == (200, "text/xml; charset=utf-8"), body
            assert b"<NumOfFiles>0</NumOfFiles>" in body
        slow.append(Trickle(server.port, sources(200), interval=2.0))
        for n in range(3):
            status, _, body = check(server.port, source=f"127.0.9.{n + 1}")
            assert status == 200, body
    finally:
        for trickle in slow:
            trickle.close()


def test_slow_heads_and_short_bodies_get_408(install, live_server):
    """A head still incomplete after ``header_timeout`` and a body shorter than its Content-Length
    are answered 408 with the device XML error, and closed — 200 of them at once too."""
    install.cli("db", "upgrade")
    server = live_server(workers=1, DEVUPDATE_HEADER_TIMEOUT="2", DEVUPDATE_BODY_TIMEOUT="2")
    short = connect(server.port)
    short.sendall(b"POST " + CHECK_PATH + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<Request>")
    started = time.monotonic()
    status, headers, body = read_answer(short, timeout=30)
    assert (status, headers["content-type"], xml_code(body)) == (408, "text/xml; charset=utf-8", "BodyTimeout")
    assert headers["connection"] == "close" and short.recv(100) == b""
    assert time.monotonic() - started < 20

    trickle = Trickle(server.port, sources(200), interval=0.5)
    try:
        answers = {}
        for sock in trickle.socks:
            try:
                answers[sock.getsockname()[0]] = read_answer(sock, timeout=30)
            except OSError as exc:  # the attacker's own sends may race the close
                answers[sock.getsockname()[0]] = (0, {}, repr(exc).encode())
        refused = [(status, xml_code(body)) for status, _, body in answers.values() if status]
        assert len(refused) >= 190, answers  # a socket may see the reset of its own late line first
        assert set(refused) == {(408, "RequestTimeout")}
    finally:
        trickle.close()
    assert check(server.port)[0] == 200


def test_connections_per_source_are_bounded_across_workers(install, live_server):
    """``max_connections_per_source`` open connections per address, whichever worker took them;
    one more is refused 429 with Retry-After; other addresses and trusted proxies are not."""
    install.cli("db", "upgrade")
    server = live_server(workers=2, DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE="4",
                         DEVUPDATE_TRUSTED_PROXIES="127.0.0.9", DEVUPDATE_HEADER_TIMEOUT="30")
    held = [connect(server.port, "127.0.0.5") for _ in range(8)]
    try:
        results = [check(server.port, sock=sock) for sock in held]  # kept alive afterwards
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] * 4 + [429] * 4, results
        status, headers, body = next(r for r in results if r[0] == 429)
        assert headers["retry-after"] == "30" and headers["content-type"] == "text/xml; charset=utf-8"
        assert xml_code(body) == "TooManyConnections"
        assert check(server.port, source="127.0.0.6")[0] == 200  # another address
        proxied = [connect(server.port, "127.0.0.9") for _ in range(8)]
        try:
            assert [check(server.port, sock=sock)[0] for sock in proxied] == [200] * 8  # a trusted proxy
        finally:
            for sock in proxied:
                sock.close()
    finally:
        for sock in held:
            sock.close()
    # the closed ones no longer count
    assert wait_for(lambda: check(server.port, source="127.0.0.5")[0] == 200, timeout=15)


def test_a_client_that_reconnects_at_once_is_not_counted_twice(install, live_server):
    """Phones close after their answer and the next check opens a new connection at once: the
    answered connection must stop counting before the worker's loop has seen it close. Eight
    clients under a limit of twelve, each reconnecting 40 times, are never refused."""
    install.cli("db", "upgrade")
    server = live_server(workers=2, DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE="12")
    statuses: list[int] = []

    def client() -> None:
        for _ in range(40):
            sock = connect(server.port, "127.0.0.7")
            try:
                sock.sendall(b"POST " + CHECK_PATH + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(CHECK), CHECK))
                statuses.append(read_answer(sock, 10)[0])
            finally:
                sock.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200] * 320, {status: statuses.count(status) for status in set(statuses)}


@pytest.fixture
def big_image(install, tmp_path):
    update = make_update("Polycom", "CX600", "4.0.7577.4372")
    cab = make_package(tmp_path, [update], image_sizes=24 * 1024 * 1024, name="big.cab")
    install.cli("db", "upgrade")
    install.cli("import", str(cab))
    return f"/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/4.0.7577.4372/{update.files[0].name}".encode()


def test_downloads_read_at_a_crawl_hold_no_thread(install, live_server, big_image):
    """With one thread, three downloads whose clients read nothing still leave it to the checks
    (the file is sent by the event loop as the client reads)."""
    server = live_server(workers=1, DEVUPDATE_THREADS="1")
    stalled = [connect(server.port, rcvbuf=4096) for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(b"GET " + big_image + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(3):
            status, _, body = check(server.port, timeout=5)
            assert status == 200, body
        # and the stalled ones still get their whole file when they start reading
        sock = stalled[0]
        sock.settimeout(30)
        received = 0
        while received < 24 * 1024 * 1024:
            chunk = sock.recv(1 << 20)
            assert chunk, received
            received += len(chunk)
    finally:
        for sock in stalled:
            sock.close()


def test_tls_downloads_read_at_a_crawl_hold_no_thread(install, live_server, big_image):
    """The same over HTTPS (``serve --tls``), where there is no sendfile: the event loop feeds the
    file to TLS as the client reads, so a stalled client holds no thread, and the bytes are exact."""
    tls_port = free_port()
    env = {"DEVUPDATE_TLS_PORT": str(tls_port), "DEVUPDATE_THREADS": "1"}
    install.cli("cert", "create", **env)
    live_server(workers=1, args=("--tls",), **env)
    wait_port(tls_port)
    context = ssl.create_default_context(cafile=str(install.home / "tls" / "ca.crt"))

    def tls(rcvbuf: int | None = None) -> ssl.SSLSocket:
        return context.wrap_socket(connect(tls_port, rcvbuf=rcvbuf), server_hostname="localhost")

    stalled = [tls(rcvbuf=4096) for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(b"GET " + big_image + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for _ in range(3):
            status, _, body = check(tls_port, sock=tls(), timeout=5)
            assert status == 200, body
        sock = stalled[0]
        status, headers, data = read_answer_head(sock, timeout=30)
        assert status == 200 and int(headers["content-length"]) == 24 * 1024 * 1024
        digest = hashlib.sha256(data)
        received = len(data)
        while received < 24 * 1024 * 1024:
            chunk = sock.recv(1 << 20)
            assert chunk, received
            digest.update(chunk)
            received += len(chunk)
        name = big_image.rsplit(b"/", 1)[1].decode()
        assert digest.hexdigest() == hashlib.sha256(make_image(name, 24 * 1024 * 1024, "4.0.7577.4372")).hexdigest()
    finally:
        for sock in stalled:
            sock.close()


def read_answer_head(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """An answer's status and headers, and the body bytes that came with them."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return (int(lines[0].split(" ", 2)[1]),
            {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body)


def test_a_download_nobody_reads_is_dropped_after_send_timeout(install, live_server, big_image):
    """A client that stops reading a download for ``send_timeout`` seconds is disconnected (its
    file and connection freed), and says so in the log."""
    server = live_server(workers=1, DEVUPDATE_SEND_TIMEOUT="1")
    sock = connect(server.port, rcvbuf=4096)
    try:
        sock.sendall(b"GET " + big_image + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: "dropped a download to 127.0.0.1: it read nothing for 1 s" in server.output(),
                        timeout=30), server.output()
        sock.settimeout(30)
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        assert 0 < received < 24 * 1024 * 1024  # what the kernel buffers held, then the end
    finally:
        sock.close()
    assert check(server.port)[0] == 200


def test_large_slow_uploads_take_at_most_half_the_threads(install, live_server):
    """Bodies over the loop's buffer stream in a thread; with two threads, two uploads trickling
    a large body leave one thread to the checks (the second upload waits for its turn)."""
    install.cli("db", "upgrade")
    server = live_server(workers=1, DEVUPDATE_THREADS="2", DEVUPDATE_BODY_TIMEOUT="60")
    size = 1_000_000  # under MaxLogFileSize
    uploads = [connect(server.port) for _ in range(2)]
    try:
        for n, sock in enumerate(uploads):
            sock.sendall(b"POST /RequestHandler/Files?type=Watson&mac=0004F2AABBCC&name=big%d.txt HTTP/1.1\r\n"
                         b"Host: x\r\nContent-Length: %d\r\n\r\n" % (n, size) + b"x" * 300_000)
        for _ in range(3):
            status, _, body = check(server.port, timeout=5)
            assert status == 200, body
        for sock in uploads:  # and both complete once their bodies arrive
            sock.sendall(b"x" * (size - 300_000))
            status, _, body = read_answer(sock, timeout=30)
            assert status == 201 and b"<Size>%d</Size>" % size in body, body
    finally:
        for sock in uploads:
            sock.close()
