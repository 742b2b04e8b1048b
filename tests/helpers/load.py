"""Background update-check load for fault tests: threads sending checks until stopped, every
outcome recorded (which server, which device, status, what kind of body), so a test can say
exactly what the phones saw while it restarted a database or killed a node::

    with CheckLoad([server.url], phones, threads=4) as load:
        ...                                   # break something
        load.wait_answers(50)                 # keep going until 50 more checks were answered
    assert load.unexpected() == []
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import urlopen

from helpers.tools import wait_for

CHECK_PATH = "/RequestHandler/ucdevice.upx"


@dataclass(frozen=True)
class Outcome:
    when: float  # time.monotonic() when the answer (or the failure) arrived
    server: int  # index into the URL list
    device: str  # the phone's MAC
    status: int  # HTTP status, 0 when the connection failed
    kind: str  # "files:N" (a Response offering N files) | "error:CODE" (the XML error) | "other" | "failed"
    detail: str = ""


def classify(status: int, body: bytes) -> tuple[str, str]:
    """What kind of answer a phone got: the protocol's Response or XML Error, or anything else."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "other", body[:200].decode("latin-1")
    if status == 200 and root.tag == "Response":
        return f"files:{root.findtext('NumOfFiles')}", ""
    if status != 200 and root.tag == "Error":
        return f"error:{root.findtext('Code')}", ""
    return "other", body[:200].decode("latin-1")


class CheckLoad:
    """``threads`` loops per server URL, each sending checks for the next phone of ``phones``
    (cycled) over a kept-alive connection, reconnecting after any failure."""

    def __init__(self, urls: Sequence[str], phones: Sequence, threads: int = 3, pause: float = 0.0,
                 request: Callable[[object], bytes] | None = None):
        self.urls = list(urls)
        self.phones = list(phones)
        self.threads = threads
        self.pause = pause
        self.body = request or (lambda phone: phone.request_xml())
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.stopped: set[int] = set()  # servers no longer to be sent to (e.g. killed on purpose)

    def _phone(self):
        with self._lock:
            phone = self.phones[self._next % len(self.phones)]
            self._next += 1
            return phone

    def _loop(self, index: int) -> None:
        netloc = urlsplit(self.urls[index]).netloc
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set() and index not in self.stopped:
            phone = self._phone()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(netloc, timeout=10)
                conn.request("POST", CHECK_PATH, body=self.body(phone), headers={"Content-Type": "text/xml"})
                response = conn.getresponse()
                body = response.read()
                kind, detail = classify(response.status, body)
                outcome = Outcome(time.monotonic(), index, phone.mac, response.status, kind, detail)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(time.monotonic(), index, phone.mac, 0, "failed", repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.05)
            with self._lock:
                self.outcomes.append(outcome)
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def start(self) -> CheckLoad:
        for index in range(len(self.urls)):
            for n in range(self.threads):
                thread = threading.Thread(target=self._loop, args=(index,), name=f"load-{index}-{n}", daemon=True)
                thread.start()
                self._workers.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=15)

    def __enter__(self) -> CheckLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- reading what happened ------------------------------------------------------------------

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def answered(self, server: int | None = None, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.snapshot() if o.status == 200 and o.when >= since
                and (server is None or o.server == server)]

    def wait_answers(self, count: int, server: int | None = None, timeout: float = 30.0) -> None:
        """Block until ``count`` more checks were answered (by ``server``, or by any)."""
        start = time.monotonic()
        deadline = start + timeout
        while len(self.answered(server, since=start)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.answered(server, since=start))} of {count} checks answered "
                                     f"in {timeout} s; last: {self.snapshot()[-3:]}")
            time.sleep(0.05)

    def unexpected(self, servers: set[int] | None = None) -> list[Outcome]:
        """Every outcome that is not a protocol answer (200 Response or XML error), on ``servers``."""
        return [o for o in self.snapshot() if o.kind in ("other", "failed")
                and (servers is None or o.server in servers)]


# --- probing a server ---------------------------------------------------------------------------

def healthz(server) -> tuple[int, dict]:
    try:
        with urlopen(server.url + "/healthz", timeout=15) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def offered_everywhere(server, phone, want: int, probes: int = 12) -> bool:
    """``probes`` checks, each on a new connection (so they spread over the workers), all offer ``want`` files."""
    host = server.url.split("//")[1]
    for _ in range(probes):
        conn = http.client.HTTPConnection(host, timeout=10)
        try:
            conn.request("POST", CHECK_PATH, body=phone.request_xml(), headers={"Connection": "close"})
            response = conn.getresponse()
            if classify(response.status, response.read())[0] != f"files:{want}":
                return False
        finally:
            conn.close()
    return True


def seconds_until_served(server, phone, want: int, timeout: float = 10.0) -> float:
    started = time.monotonic()
    if not wait_for(lambda: offered_everywhere(server, phone, want), timeout, 0.05):
        raise AssertionError(f"not every worker offers {want} file(s) after {timeout} s:\n{server.output()[-3000:]}")
    return time.monotonic() - started
