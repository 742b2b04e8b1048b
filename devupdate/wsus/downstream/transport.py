"""Talking to the upstream over HTTP, with the retry rule of D6 (spec/wsus.md §1c).

Network errors, timeouts, HTTP 5xx without a SOAP fault and ``ServerBusy`` are retried with
exponential back-off and full jitter (30 s base, factor 2, 30 min cap, 8 attempts per step by
default); after the last attempt the error goes to the run, which fails, and the next run resumes
from the stored anchors. Every other fault is handed to the run as :class:`UpstreamFault`, which
decides (§4.2). Nothing here touches the database.
"""

from __future__ import annotations

import http.client
import logging
import random
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

from devupdate.wsus.downstream import messages
from devupdate.wsus.downstream.messages import BadAnswer, UpstreamFault

log = logging.getLogger("devupdate.wsus.downstream")

USER_AGENT = "devupdate-dss/1"
SERVER_BUSY = "ServerBusy"
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 30.0
    factor: float = 2.0
    cap: float = 1800.0
    attempts: int = 8

    def delay(self, failures: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base·factor^(failures-1))]."""
        return rng.uniform(0.0, min(self.cap, self.base * self.factor ** max(0, failures - 1)))


class Unreachable(Exception):
    """The upstream did not answer usefully after every attempt of one step."""


@dataclass
class Traffic:
    """What one run sent and waited: counted into its summary."""

    requests: int = 0
    retries: int = 0
    busy: int = 0
    backoff_seconds: float = 0.0
    operations: dict[str, int] = field(default_factory=dict)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class Upstream:
    """One upstream server: its base URL, the retry rule, and a record of the traffic."""

    def __init__(self, url: str, *, policy: RetryPolicy = RetryPolicy(), timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 authorization: str = ""):
        self.base = url.rstrip("/") + "/"
        self.authorization = authorization  # the Authorization header an upstream devupdate asks for
        self.policy = policy
        self.timeout = timeout
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.traffic = Traffic()

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}

    def url(self, path: str) -> str:
        return urljoin(self.base, path.lstrip("/"))

    def own_path(self, path: str, default: str) -> str:
        """``path`` when it resolves on this upstream (same scheme, host and port), else ``default``:
        a path the upstream names (GetAuthConfig's ``ServiceUrl``) gets this run's credentials, which
        must never go to another host."""
        if _origin(self.url(path)) == _origin(self.base):
            return path
        log.warning("sync from %s: the upstream names the service URL %r on another host; using %s",
                    self.base, path[:200], default)
        return default

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it works, backing off on the transient failures of D6."""
        failures = 0
        while True:
            try:
                return attempt()
            except UpstreamFault as exc:
                if exc.error_code != SERVER_BUSY:
                    raise
                self.traffic.busy += 1
                problem: Exception = exc
            except (TimeoutError, OSError, Transient) as exc:
                problem = exc
            failures += 1
            if failures >= self.policy.attempts:
                raise Unreachable(f"{what}: {problem} (gave up after {failures} attempts)") from problem
            wait = self.policy.delay(failures, self.rng)
            self.traffic.retries += 1
            self.traffic.backoff_seconds += wait
            log.warning("%s: %s; attempt %d of %d in %.1f s", what, problem, failures + 1, self.policy.attempts, wait)
            self.sleep(wait)

    def call(self, path: str, namespace: str, operation: str, body: bytes) -> ET.Element:
        """POST one SOAP request; the ``<operation>Result`` element, or the fault as
        :class:`UpstreamFault`."""
        return self.call_streamed(path, namespace, operation, body,
                                  lambda read: messages.result(read(messages.MAX_ANSWER_BYTES + 1), operation))

    def call_streamed(self, path: str, namespace: str, operation: str, body: bytes,
                      read_answer: Callable[[Callable[[int], bytes]], T]) -> T:
        """POST one SOAP request and hand the answer's ``read`` to ``read_answer`` while it streams
        (its result is returned); an HTTP error's body is read whole and its fault raised as
        :class:`UpstreamFault`. A connection that breaks mid-answer is retried like any other (D6)."""
        action = f"{namespace}/{operation}"

        def attempt() -> T:
            self.traffic.requests += 1
            self.traffic.operations[operation] = self.traffic.operations.get(operation, 0) + 1
            req = urllib.request.Request(self.url(path), data=body, method="POST", headers={
                "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"', "User-Agent": USER_AGENT,
                **self.headers()})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as answer:
                    try:
                        return read_answer(answer.read)
                    except http.client.HTTPException as exc:  # IncompleteRead, a broken chunk
                        raise Transient(f"{operation}: the answer broke off ({exc!r})") from None
            except urllib.error.HTTPError as exc:
                data = exc.read(messages.MAX_ANSWER_BYTES + 1)
                try:
                    messages.result(data, operation)  # a SOAP fault raises UpstreamFault here
                except BadAnswer:
                    if exc.code >= 500:
                        raise Transient(f"HTTP {exc.code} without a SOAP fault") from None
                    raise BadAnswer(f"{operation}: HTTP {exc.code} from {self.url(path)}") from None
                raise BadAnswer(f"{operation}: HTTP {exc.code} with a SOAP answer") from None

        # a fault (ServerBusy included) is raised inside the retry loop
        return self.retrying(operation, attempt)


class Transient(Exception):
    """A failure D6 retries: a 5xx without a SOAP fault, a dropped connection."""
