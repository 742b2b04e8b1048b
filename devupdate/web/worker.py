"""The gunicorn worker of ``devupdate serve``: one event loop does the network waiting, threads
run the application only on requests that have fully arrived.

gunicorn's threaded worker hands a connection to a thread as soon as its first byte arrives; a
client sending one header line every few seconds then holds that thread for as long as it likes,
and ten such clients stopped the service. Here the event loop reads every request head and body
(bodies up to ``BUFFER_LIMIT``, decoded strictly, see :mod:`devupdate.web.framing`) without a
thread, under deadlines:

- the head must be complete ``header_timeout`` seconds after the connection (or its next request)
  started, the body ``body_timeout`` seconds after the head, plus one second per
  ``min_body_rate`` bytes received: otherwise ``408``;
- at most ``max_connections_per_source`` open connections per client address across all workers
  (trusted proxies exempt): more are answered ``429`` with ``Retry-After``;
- larger bodies (image uploads, big logs) stream in a thread, at most half of the threads at a
  time, under the same deadlines; the others wait (``503`` after ``send_timeout``);
- requests a feature gates (:mod:`devupdate.web.admission`; the SOAP services) go to a thread
  only when their class has a free slot; otherwise they wait in the loop, holding no thread, for
  at most the class's wait, and beyond its queue they are turned away at once by the loop in the
  feature's own vocabulary (``ServerBusy``) — decided on the head, before the body is read, so
  the answer does not wait for the body (which is then read and dropped, the connection kept);
- file downloads: the thread sends the headers, the loop sends the file as fast as the client
  reads (``sendfile``; over TLS block by block); a client that reads nothing for ``send_timeout``
  seconds is dropped.

Every refusal answers in the vocabulary of its path (:mod:`devupdate.web.errors`).
"""

from __future__ import annotations

import errno
import io
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from gunicorn import sock as gsock
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import ThreadWorker

from devupdate.web import admission, sources
from devupdate.web.bodies import path_limit
from devupdate.web.connection import CONNECTION, Connection
from devupdate.web.errors import refusal, refused
from devupdate.web.framing import ChunkedDecoder, FramingError
from devupdate.web.head import Head, header, parse, path_so_far

BUFFER_LIMIT = 256 * 1024  # bodies up to this size are read by the loop; larger ones stream in a thread
MAX_HEAD = 64 * 1024
RECV = 256 * 1024
LINGER = 2.0  # after a refusal: how long the rest of the request is read and dropped before closing
SWEEP = 0.25
_CLIENT_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)  # the peer stopped reading or went away
_STATUS = ((http_errors.LimitRequestLine, 414, "RequestLineTooLong"),
           (http_errors.LimitRequestHeaders, 431, "HeadersTooLarge"),
           (http_errors.UnsupportedTransferCoding, 501, "UnsupportedTransferCoding"),
           (http_errors.ExpectationFailed, 417, "ExpectationFailed"),
           (http_errors.ParseException, 400, "BadRequest"))
KEEP, CLOSE = "keep", "close"


def _no_header(_name: str) -> str | None:
    return None


class WorkerSettings(Protocol):
    """What the worker reads of the service's settings (the web kit does not import them)."""

    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def min_body_rate(self) -> float: ...
    @property
    def send_timeout(self) -> float: ...
    @property
    def max_connections_per_source(self) -> int: ...
    @property
    def trusted_proxies(self) -> Iterable[str]: ...


class _ServedApplication(Protocol):
    """The gunicorn application that starts this worker (``devupdate.server.DevupdateServer``)."""

    @property
    def settings(self) -> WorkerSettings: ...


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    min_body_rate: float = 500.0
    send_timeout: float = 60.0
    per_source: int = 64

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Limits:
        return cls(settings.header_timeout, settings.body_timeout, settings.min_body_rate,
                   settings.send_timeout, settings.max_connections_per_source)


class Conn:
    """One client connection and where its current request stands."""

    __slots__ = ("sock", "client", "server", "bucket", "refuse", "buf", "state", "deadline", "events", "head",
                 "body", "decoder", "raw", "body_started", "out", "job", "requests", "streaming", "eof", "claim",
                 "pending", "queued_at", "scope", "skip")

    def __init__(self, sock, client, server, bucket, refuse):
        self.sock, self.client, self.server = sock, client, server
        self.bucket, self.refuse = bucket, refuse
        self.buf = bytearray()
        self.state = "head"  # handshake | head | body | skip | queued | admission | busy | send | closing
        self.deadline = 0.0
        self.events = 0
        self.head: Head | None = None
        self.body = bytearray()
        self.decoder: ChunkedDecoder | None = None
        self.raw = 0  # raw body bytes received (for the rate deadline)
        self.body_started = 0.0
        self.out = b""
        self.job: SendJob | None = None
        self.requests = 0
        self.streaming = False
        self.eof = False
        self.claim: admission.Claim | None = None  # the gate slot this request holds, or waits for
        self.pending: io.BytesIO | None = None  # the body of a request waiting for admission
        self.queued_at = 0.0
        self.scope = Connection()  # what lives as long as this connection (connection-bound authentication)
        self.skip = 0  # body bytes of a request turned away on its head still to drop


@dataclass
class SendJob:
    """The rest of a file response, sent by the loop."""

    respiter: object
    fd: int
    offset: int
    count: int
    keepalive: bool
    pending: bytes = b""  # over TLS: read from the file, not yet taken by the TLS layer

    def close(self) -> None:
        close = getattr(self.respiter, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001, S110 - closing a file we only read
                pass


class StreamBody:
    """``wsgi.input`` of a large body, read in the thread from the (blocking) socket under the
    loop's deadlines; broken framing, a cut body or a timeout raise :class:`FramingError`."""

    def __init__(self, conn: Conn, limits: Limits):
        head = conn.head
        assert head is not None, "a body streams only after its head was read"
        self._sock = conn.sock
        self._limits = limits
        self._decoder = conn.decoder
        # raw bytes still to come (a body that is not chunked has a length: Head.has_body)
        self._left: int | None = None if head.chunked else (head.length or 0) - len(conn.body)
        self._pending = bytearray(conn.body)
        self._raw = bytes(conn.buf)
        self._started = conn.body_started or time.monotonic()
        self._received = conn.raw
        self._continue = head.expect_continue and not conn.body and not conn.buf
        self.leftover = b""
        self.complete = not head.chunked and self._left == 0 or bool(self._decoder and self._decoder.done)
        conn.buf = bytearray()
        if self._raw:
            raw, self._raw = self._raw, b""
            self._take(raw)

    def _take(self, raw: bytes) -> None:
        if self._decoder is not None:
            self._pending += self._decoder.feed(raw)
            if self._decoder.done:
                self.complete, self.leftover = True, self._decoder.leftover
            return
        left = self._left
        assert left is not None, "without a decoder the body has a length"
        use = raw[:left]
        self.leftover += raw[len(use):]
        self._left = left - len(use)
        self._pending += use
        self.complete = self._left == 0

    def _fill(self) -> None:
        if self._continue:
            self._continue = False
            self._sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        deadline = self._started + self._limits.body_timeout + self._received / self._limits.min_body_rate
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FramingError("BodyTimeout", f"the body arrived slower than {self._limits.min_body_rate:.0f} "
                               "bytes/s", 408)
        self._sock.settimeout(min(remaining, self._limits.body_timeout))
        try:
            raw = self._sock.recv(RECV if self._left is None else min(RECV, self._left))
        except TimeoutError:
            raise FramingError("BodyTimeout", f"no part of the body arrived for {self._limits.body_timeout:.0f} s",
                               408) from None
        except OSError:
            raise FramingError("IncompleteBody", "the connection failed while the body was sent") from None
        finally:
            self._sock.settimeout(self._limits.send_timeout)
        if not raw:
            raise FramingError("IncompleteBody", "the body ended before its announced end")
        self._received += len(raw)
        self._take(raw)

    def read(self, size: int | None = -1) -> bytes:
        want = sys.maxsize if size is None or size < 0 else size
        while len(self._pending) < want and not self.complete:
            self._fill()
        out = bytes(self._pending[:want])
        del self._pending[:want]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        want = sys.maxsize if size is None or size < 0 else size
        while b"\n" not in self._pending and len(self._pending) < want and not self.complete:
            self._fill()
        end = self._pending.find(b"\n")
        end = len(self._pending) if end < 0 else end + 1
        out = bytes(self._pending[:min(end, want)])
        del self._pending[:len(out)]
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def __iter__(self):
        while line := self.readline():
            yield line


class DevupdateWorker(ThreadWorker):
    """See the module docstring."""

    def init_process(self):
        # gunicorn types the application as its base class; ours is the server that carries the settings
        settings = cast(_ServedApplication, self.app).settings
        self.limits = Limits.from_settings(settings)
        self._trusted = sources.Exempt(settings.trusted_proxies)
        self.sources = sources.table()
        self.sources.claim()
        self.conns: set[Conn] = set()
        self.refusing = 0
        self.streaming = 0
        self.max_streaming = max(1, self.cfg.threads // 2)
        self.waiting: deque[Conn] = deque()
        self.admitting: dict[admission.Gate, deque[Conn]] = {}
        self._local = threading.local()
        self._ssl = gsock.ssl_context(self.cfg) if self.cfg.is_ssl else None
        self._last_sweep = 0.0
        self._recv_buffer = bytearray(RECV)
        self._view = memoryview(self._recv_buffer)
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        app = self.wsgi

        def application(environ, start_response):
            # the body as the loop read it; framed as the client sent it (a decoded chunked body still
            # has no length: the application reads it to its end, wsgi.input_terminated)
            environ["wsgi.input"] = self._local.body
            environ[CONNECTION] = self._local.scope
            if self._local.admitted is not None:
                environ[admission.ADMITTED] = self._local.admitted
            environ.pop("CONTENT_LENGTH", None)
            head = self._local.head
            if head.chunked:
                environ["HTTP_TRANSFER_ENCODING"] = "chunked"
            elif head.length is not None:
                environ["CONTENT_LENGTH"] = str(head.length)
            return app(environ, start_response)
        self.wsgi = application

    # --- the loop ------------------------------------------------------------------------------------

    def run(self):
        queue = self.method_queue.fileno()
        assert queue is not None, "init_process() opened the method queue's pipe"
        self.poller.register(queue, selectors.EVENT_READ,
                             lambda fileobj, _mask: self.method_queue.run_callbacks(fileobj))
        for listener in self.sockets:
            listener.setblocking(False)
        accepting = False
        while self.alive:
            self.notify()
            want = len(self.conns) < self.worker_connections
            if want != accepting:
                for listener in self.sockets:
                    if want:
                        self.poller.register(listener, selectors.EVENT_READ, self._accept)
                    else:
                        self.poller.unregister(listener)
                accepting = want
            self._dispatch(self._next_wake(1.0))
            if not self.is_parent_alive():
                break
        if accepting:
            for listener in self.sockets:
                self.poller.unregister(listener)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for conn in list(self.conns):
            if conn.state == "head" and not conn.buf:
                self._close(conn)
        while self.conns and time.monotonic() < deadline:
            self.notify()
            self._dispatch(0.5)
        for conn in list(self.conns):
            if conn.job is not None:
                conn.job.close()
            self._close(conn)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def _dispatch(self, timeout: float) -> None:
        try:
            events = self.poller.select(timeout)
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
            events = []
        for key, mask in events:
            if isinstance(key.data, Conn):
                self._event(key.data, mask)
            else:
                key.data(key.fileobj, mask)
        now = time.monotonic()
        for gate, waiting in list(self.admitting.items()):  # oldest first: one wait for all of a gate's
            while waiting and waiting[0].deadline <= now:
                first = waiting[0]
                if first.state == "admission" and first in self.conns:
                    self._expire(first)  # turned away: leaves the queue
                if waiting and waiting[0] is first:  # never left behind at the head of the queue
                    waiting.popleft()
                    gate.leave_queue()
        if now - self._last_sweep >= SWEEP:
            self._last_sweep = now
            for conn in [c for c in self.conns if c.deadline <= now and c.state != "busy"]:
                self._expire(conn)

    def _next_wake(self, longest: float) -> float:
        """How long the loop may sleep: ``longest``, or until the first admission wait runs out (a
        request turned away after its wait gets its answer then, not at the next sweep)."""
        firsts = [waiting[0].deadline for waiting in self.admitting.values() if waiting]
        return min(longest, max(0.0, min(firsts) - time.monotonic())) if firsts else longest

    def _watch(self, conn: Conn, events: int) -> None:
        if events == conn.events:
            return
        if not events:
            self.poller.unregister(conn.sock)
        elif not conn.events:
            self.poller.register(conn.sock, events, conn)
        else:
            self.poller.modify(conn.sock, events, conn)
        conn.events = events

    def _accept(self, listener, _mask) -> None:
        for _ in range(32):
            try:
                client_sock, client = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            client_sock.setblocking(False)
            address = client[0] if isinstance(client, tuple) else ""
            bucket, refuse = None, False
            if address and not self._trusted(address):
                bucket = self.sources.bucket(address)
                if self.sources.count(bucket) >= self.limits.per_source:
                    if self.refusing >= 256:  # a flood: no answer at all
                        client_sock.close()
                        continue
                    bucket, refuse = None, True
                    self.refusing += 1
                else:
                    self.sources.add(bucket)
            conn = Conn(client_sock, client, listener.getsockname(), bucket, refuse)
            conn.deadline = time.monotonic() + min(self.limits.header_timeout, LINGER if refuse else 1e9)
            self.conns.add(conn)
            if self._ssl is not None:
                try:
                    conn.sock = self._ssl.wrap_socket(client_sock, server_side=True, do_handshake_on_connect=False,
                                                      suppress_ragged_eofs=True)
                except (OSError, ssl.SSLError):
                    self._close(conn)
                    continue
                conn.state = "handshake"
                self._handshake(conn)
            else:
                self._watch(conn, selectors.EVENT_READ)

    def _event(self, conn: Conn, mask: int) -> None:
        if conn.state == "handshake":
            self._handshake(conn)
        elif conn.state in ("head", "body", "skip"):
            self._read(conn)
        elif conn.state == "send":
            self._sendfile(conn)
        elif conn.state == "closing":
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            else:
                self._drain(conn)

    def _handshake(self, conn: Conn) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except (OSError, ssl.SSLError, ValueError):
            self._close(conn)
            return
        conn.state = "head"
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)

    # --- reading requests ---------------------------------------------------------------------------

    def _read(self, conn: Conn) -> None:
        view = self._view
        while conn.state in ("head", "body", "skip"):
            try:
                count = conn.sock.recv_into(self._recv_buffer)  # one reused buffer: no 256 KiB allocation per read
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (OSError, ssl.SSLError):
                self._close(conn)
                return
            if not count:
                conn.eof = True
                self._ended(conn)
                return
            if conn.state == "head" and not conn.buf and conn.requests:
                conn.deadline = time.monotonic() + self.limits.header_timeout  # a kept-alive connection's next request
            conn.buf += view[:count]
            self._advance(conn)
            if count < RECV and not (self._ssl is not None and conn.sock.pending()):
                return

    def _ended(self, conn: Conn) -> None:
        """The client stopped sending (closed or half-closed its side)."""
        if conn.state == "skip" or conn.state == "head" and not conn.buf:
            self._close(conn)
        elif conn.state == "head":
            self._refuse(conn, 400, "IncompleteRequest", "the request head ended before its blank line",
                         path_so_far(conn.buf))
        else:
            head = conn.head
            assert head is not None, "past the head state a request head was read"
            got = conn.decoder.size if conn.decoder else len(conn.body)
            of = "" if conn.decoder else f" of {head.length}"
            self._refuse(conn, 400, "IncompleteBody", f"the body ended after {got}{of} bytes", head.path)

    def _advance(self, conn: Conn) -> None:
        if conn.state == "skip":  # the body of a request turned away on its head: dropped
            taken = min(conn.skip, len(conn.buf))
            del conn.buf[:taken]
            conn.skip -= taken
            if not conn.skip:
                self._idle(conn)
            return
        if conn.state == "head":
            end = conn.buf.find(b"\r\n\r\n")
            limit = self.cfg.limit_request_line
            line_end = conn.buf.find(b"\r\n", 0, limit + 2)
            if line_end < 0 and len(conn.buf) > limit + 1 or line_end > limit:
                self._refuse(conn, 414, "RequestLineTooLong",
                             f"the request line is over {limit} bytes", path_so_far(conn.buf))
                return
            if end < 0:
                if len(conn.buf) > MAX_HEAD:
                    self._refuse(conn, 431, "HeadersTooLarge", f"the request head is over {MAX_HEAD} bytes",
                                 path_so_far(conn.buf))
                return
            raw = bytes(conn.buf[:end + 4])
            del conn.buf[:end + 4]
            try:
                head = parse(raw)
            except FramingError as exc:
                self._refuse(conn, exc.status, exc.error_code, exc.message, path_so_far(raw))
                return
            if conn.refuse:
                wait = str(int(self.limits.header_timeout))
                self._refuse(conn, 429, "TooManyConnections",
                             f"more than {self.limits.per_source} open connections from your address; "
                             f"close some and retry after {wait} s", head.path, (("Retry-After", wait),), head)
                return
            conn.head, conn.body, conn.raw = head, bytearray(), 0
            conn.decoder = ChunkedDecoder() if head.chunked else None
            conn.requests += 1
            now = time.monotonic()
            conn.body_started = now
            claim = admission.claim(head.method, head.path, lambda name: header(head, name))
            if claim is not None and claim.gate.full():  # decided on the head: its body is never read
                self._turn_away_unread(conn, claim)
                return
            if not head.has_body:
                self._run(conn)
                return
            limit = path_limit(head.path) if head.length is not None else None
            if limit is not None and head.length is not None and head.length > limit:
                self._refuse(conn, 413, "ContentTooLarge", f"the body is {head.length} bytes, above the limit "
                             f"of {limit}", head.path)
                return
            if head.length is not None and head.length > BUFFER_LIMIT:
                self._stream(conn)
                return
            conn.state = "body"
            conn.deadline = now + self.limits.body_timeout
            if head.expect_continue and not conn.buf:
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except (OSError, ssl.SSLError):
                    pass
        if conn.state != "body" or not conn.buf:
            return
        assert conn.head is not None, "in the body state a request head was read"
        conn.raw += len(conn.buf)
        conn.deadline = conn.body_started + self.limits.body_timeout + conn.raw / self.limits.min_body_rate
        if conn.decoder is not None:
            data, conn.buf = bytes(conn.buf), bytearray()
            try:
                conn.body += conn.decoder.feed(data)
            except FramingError as exc:
                self._refuse(conn, exc.status, exc.error_code, exc.message, conn.head.path, head=conn.head)
                return
            if conn.decoder.done:
                conn.buf = bytearray(conn.decoder.leftover)
                self._run(conn)
            elif len(conn.body) > BUFFER_LIMIT:
                self._stream(conn)
            return
        assert conn.head.length is not None, "a body that is not chunked has a length"
        need = conn.head.length - len(conn.body)
        conn.body += conn.buf[:need]
        del conn.buf[:need]
        conn.raw -= len(conn.buf)  # what follows the body is the next request's
        if len(conn.body) == conn.head.length:
            self._run(conn)

    # --- handing requests to threads ----------------------------------------------------------------

    def _run(self, conn: Conn) -> None:
        conn.state = "busy"
        self._watch(conn, 0)
        body = io.BytesIO(bytes(conn.body))
        conn.body = bytearray()
        head = conn.head
        assert head is not None, "a request runs once its head was read"
        claim = admission.claim(head.method, head.path, lambda name: header(head, name))
        if claim is not None:
            if claim.gate.try_take():
                conn.claim = claim
                claim.admitted(0.0)
            elif claim.gate.join_queue():
                conn.claim, conn.pending, conn.state = claim, body, "admission"
                conn.queued_at = time.monotonic()
                conn.deadline = conn.queued_at + claim.gate.capacity.wait
                self.admitting.setdefault(claim.gate, deque()).append(conn)
                return
            else:
                self._turn_away(conn, claim, admission.FULL, 0.0)
                return
        self._submit(conn, body)

    def _admit_waiting(self, gate: admission.Gate) -> None:
        """A slot of ``gate`` came free: hand it to the longest waiting request."""
        waiting = self.admitting.get(gate)
        while waiting and gate.try_take():
            conn = waiting.popleft()
            gate.leave_queue()
            claim, body = conn.claim, conn.pending
            if conn not in self.conns or conn.state != "admission" or claim is None or body is None:
                gate.release()
                continue
            conn.pending, conn.state = None, "busy"
            claim.admitted(time.monotonic() - conn.queued_at)
            self._submit(conn, body)

    def _unqueue(self, conn: Conn) -> None:
        """``conn`` leaves the admission queue without a slot (it waited too long, or it closed)."""
        claim, conn.claim, conn.pending = conn.claim, None, None
        if claim is None:
            return
        waiting = self.admitting.get(claim.gate)
        if waiting is not None and conn in waiting:
            waiting.remove(conn)
            claim.gate.leave_queue()

    def _turn_away(self, conn: Conn, claim: admission.Claim, reason: str, waited: float, *, then: str = "head",
                   close: bool = False) -> None:
        """Answer the gate's refusal (a whole response, from its feature). The connection stays open
        for the next request when the answer fits the socket at once (an HTTP/1.1 client that is
        told "retry later" need not reconnect, and a flood costs no handshakes); else it closes."""
        head = conn.head
        keep = head is not None and head.http11 and self.alive and not conn.eof and not close
        answer = claim.refuse(reason, waited, not keep)
        if keep:
            try:
                sent = conn.sock.send(answer)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                sent = 0
            except (OSError, ssl.SSLError):
                self._close(conn)
                return
            if sent == len(answer):
                if then == "skip":  # the rest of the refused request's body, dropped as it arrives
                    conn.state = "skip"
                    self._watch(conn, selectors.EVENT_READ)
                else:
                    self._idle(conn)
                return
            answer = answer[sent:]  # the rest on the way out; closing after a whole answer is allowed
        conn.out, conn.state = answer, "closing"
        conn.deadline = time.monotonic() + LINGER
        self._release_source(conn)
        self._flush(conn)

    def _turn_away_unread(self, conn: Conn, claim: admission.Claim) -> None:
        """The gate's refusal for a request whose head is all that was read: its answer does not wait
        for the body, nor for anything queued. A body of known length is then read and dropped and the
        connection kept for the next request; a chunked one (or a body still expecting ``100
        Continue``) ends the connection after the answer."""
        head = conn.head
        assert head is not None, "a request is turned away on its head once the head was read"
        self._watch(conn, 0)
        if not head.has_body:
            self._turn_away(conn, claim, admission.FULL, 0.0)
            return
        if head.chunked or head.length is None or head.expect_continue and not conn.buf:
            self._turn_away(conn, claim, admission.FULL, 0.0, close=True)  # not read any further
            return
        taken = min(head.length, len(conn.buf))
        del conn.buf[:taken]
        conn.skip = head.length - taken
        if not conn.skip:
            self._turn_away(conn, claim, admission.FULL, 0.0)
            return
        conn.state = "skip"  # _turn_away's kept connection goes idle: the rest of the body comes first
        conn.deadline = conn.body_started + self.limits.body_timeout + conn.skip / self.limits.min_body_rate
        self._turn_away(conn, claim, admission.FULL, 0.0, then="skip")

    def _stream(self, conn: Conn) -> None:
        if self.streaming >= self.max_streaming:
            conn.state = "queued"
            conn.deadline = time.monotonic() + self.limits.send_timeout
            self._watch(conn, 0)
            self.waiting.append(conn)
            return
        self.streaming += 1
        conn.streaming = True
        conn.state = "busy"
        self._watch(conn, 0)
        self._submit(conn, None)

    def _submit(self, conn: Conn, body) -> None:
        future = self.tpool.submit(self._serve, conn, body)
        future.add_done_callback(lambda done: self.method_queue.defer(self._served, conn, done))

    def _served(self, conn: Conn, future) -> None:
        try:
            result = future.result()
        except Exception:  # noqa: BLE001 - logged in the thread
            result = CLOSE
        for gate, queue in list(self.admitting.items()):  # the thread freed its slot (and a large body's
            if queue:  # thread its own): every gate with requests waiting is asked
                self._admit_waiting(gate)
        if conn.streaming:
            conn.streaming = False
            self.streaming -= 1
            while self.waiting and self.streaming < self.max_streaming:
                waiting = self.waiting.popleft()
                if waiting in self.conns and waiting.state == "queued":
                    waiting.body_started = time.monotonic()
                    self._stream(waiting)
        if conn not in self.conns:
            return
        try:
            conn.sock.setblocking(False)  # the thread used it blocking; the loop must never block
        except OSError:
            self._close(conn)
            return
        if isinstance(result, SendJob):
            conn.job, conn.state = result, "send"
            conn.deadline = time.monotonic() + self.limits.send_timeout
            self._watch(conn, selectors.EVENT_WRITE)
            self._sendfile(conn)
        elif result == KEEP and self.alive:
            self._idle(conn)
        else:
            self._linger(conn)

    def _idle(self, conn: Conn) -> None:
        conn.state, conn.head, conn.decoder = "head", None, None
        conn.deadline = time.monotonic() + (self.limits.header_timeout if conn.buf else self.cfg.keepalive)
        self._watch(conn, selectors.EVENT_READ)
        if conn.buf:  # pipelined: the next request is already here
            self._advance(conn)

    # --- in a thread ---------------------------------------------------------------------------------

    def _serve(self, conn: Conn, body):
        conn.sock.setblocking(True)
        conn.sock.settimeout(self.limits.send_timeout)
        if body is None:
            body = StreamBody(conn, self.limits)
        head = conn.head
        assert head is not None, "a request goes to a thread once its head was read"
        self._local.body, self._local.head, self._local.scope = body, head, conn.scope
        claim, conn.claim = conn.claim, None
        slot = self._local.admitted = admission.Slot(claim.gate) if claim is not None else None
        req = None
        try:
            try:
                req = next(RequestParser(self.cfg, iter([head.forwarded]), conn.client))
            except http_errors.ParseException as exc:
                status, code = next((s, c) for kind, s, c in _STATUS if isinstance(exc, kind))
                self.log.warning("Invalid request from ip=%s: %s", conn.client[0], exc)
                refused(head.path, conn.client[0], status, code)
                conn.sock.sendall(refusal(head.path, status, code, f"{type(exc).__name__}: {exc}"[:300],
                                          header=lambda name: header(head, name)))
                return CLOSE
            result = self._respond(req, conn, streaming=isinstance(body, StreamBody))
            if isinstance(body, StreamBody):
                conn.buf = bytearray(body.leftover)
                if not body.complete and result == KEEP:
                    result = CLOSE
            return result
        except (StopIteration, http_errors.NoMoreData):
            return CLOSE
        except ssl.SSLError:
            return CLOSE
        except OSError as exc:
            if exc.errno not in (*_CLIENT_GONE, None):
                self.log.exception("Socket error processing request.")
            return CLOSE
        except Exception as exc:  # noqa: BLE001 - gunicorn's answer: a 500, logged
            self.handle_error(req, conn.sock, conn.client, exc)
            return CLOSE
        finally:
            self._local.body = self._local.head = self._local.admitted = self._local.scope = None
            if slot is not None:  # the application frees it as its answer is ready (before it is sent: the
                slot.release()  # client's next request may reach the loop before the loop hears of this thread)

    def _respond(self, req, conn: Conn, *, streaming: bool):
        """gunicorn's ``handle_request``, except that a file body is handed back to the loop."""
        environ: MutableMapping[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
            if streaming or not self.alive or not self.cfg.keepalive or len(self.conns) >= self.worker_connections:
                resp.force_close()
            # gunicorn's stubs type start_response as returning None; PEP 3333's (and gunicorn's own
            # Response.start_response) returns the write callable
            respiter = self.wsgi(environ, resp.start_response)  # type: ignore[arg-type]
            job = None
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    job = self._offload(resp, respiter)
                    if job is None:
                        resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                if job is None:
                    resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - started)
                if job is None and hasattr(respiter, "close"):
                    respiter.close()
            if job is not None:
                return job
            if resp.should_close():
                # answered in full: the client may reconnect before the loop sees this one close
                self._release_source(conn)
                return CLOSE
            return KEEP
        except (Exception, SystemExit) as exc:
            if resp is not None and resp.headers_sent:
                if isinstance(exc, OSError) and exc.errno in _CLIENT_GONE:  # it stopped reading: nothing to report
                    self.log.debug("client closed the connection during the answer: %s", exc)
                else:
                    self.log.exception("Error handling request")
                return CLOSE
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001
                self.log.exception("Exception in post_request hook")

    def _offload(self, resp, respiter) -> SendJob | None:
        """Send the headers here; leave the file to the loop (a known length, a real file; sendfile on
        plain HTTP, blocks through TLS otherwise)."""
        if resp.response_length is None or resp.is_chunked() or resp._omits_body:
            return None
        filelike = getattr(respiter, "filelike", None)
        if filelike is None or not util.has_fileno(filelike):
            return None
        try:
            fd = filelike.fileno()
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except (OSError, io.UnsupportedOperation):
            return None
        resp.send_headers()
        resp.sent = resp.response_length
        return SendJob(respiter, fd, offset, resp.response_length, keepalive=not resp.should_close())

    # --- writing from the loop -----------------------------------------------------------------------

    def _send_tls(self, conn: Conn, job: SendJob) -> int | None:
        """Over TLS there is no sendfile: read a block, hand it to the TLS layer (the same block again
        until it is taken, as OpenSSL wants); None when the socket cannot take more now."""
        if not job.pending:
            job.pending = os.pread(job.fd, min(job.count, 1 << 16), job.offset)
            if not job.pending:
                return 0
        try:
            n = conn.sock.send(job.pending)
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return None
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return None
        self._watch(conn, selectors.EVENT_WRITE)
        job.pending = job.pending[n:]
        return n

    def _sendfile(self, conn: Conn) -> None:
        job = conn.job
        assert job is not None, "the send state has a job"
        sent = 0
        while job.count > 0 and sent < 8 << 20:
            try:
                if self._ssl is not None:
                    n = self._send_tls(conn, job)
                    if n is None:
                        return
                else:
                    n = os.sendfile(conn.sock.fileno(), job.fd, job.offset, min(job.count, 1 << 20))
            except (BlockingIOError, InterruptedError):
                return
            except (OSError, ssl.SSLError):
                n = 0
            if not n:  # the client went away, or the file is shorter than announced
                job.close()
                conn.job = None
                self._close(conn)
                return
            job.offset += n
            job.count -= n
            sent += n
            conn.deadline = time.monotonic() + self.limits.send_timeout
        if job.count:
            return
        job.close()
        conn.job = None
        if job.keepalive and self.alive:
            self._idle(conn)
        else:
            self._linger(conn)

    def _refuse(self, conn: Conn, status: int, code: str, message: str, path: str,
                headers: tuple[tuple[str, str], ...] = (), head: Head | None = None) -> None:
        level = self.log.info if status in (408, 429) else self.log.warning
        address = conn.client[0] if isinstance(conn.client, tuple) else ""
        level("refused %s from %s: %s %s", path or "?", address or "?", status, message)
        refused(path, address, status, code)
        conn.out = refusal(path, status, code, message, headers=headers,
                           header=(lambda name: header(head, name)) if head is not None else _no_header)
        conn.state = "closing"
        conn.deadline = time.monotonic() + LINGER
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except (OSError, ssl.SSLError):
                self._close(conn)
                return
            conn.out = conn.out[n:]
        if conn.eof:
            self._close(conn)
            return
        if self._ssl is None:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
        self._watch(conn, selectors.EVENT_READ)

    def _drain(self, conn: Conn) -> None:
        """After a refusal: read and drop what the client still sends, so closing does not reset the
        connection before the client has read the answer."""
        for _ in range(16):
            try:
                data = conn.sock.recv(RECV)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self._close(conn)
                return

    def _expire(self, conn: Conn) -> None:
        if conn.state == "head" and conn.buf:
            self._refuse(conn, 408, "RequestTimeout",
                         f"the request head did not arrive within {self.limits.header_timeout:.0f} s",
                         path_so_far(conn.buf))
        elif conn.state == "body":
            assert conn.head is not None, "in the body state a request head was read"
            self._refuse(conn, 408, "BodyTimeout", f"the body did not arrive in time (at least "
                         f"{self.limits.min_body_rate:.0f} bytes/s after {self.limits.body_timeout:.0f} s)",
                         conn.head.path)
        elif conn.state == "queued":
            assert conn.head is not None, "a queued upload's head was read"
            with_retry = (("Retry-After", str(int(self.limits.header_timeout))),)
            self._refuse(conn, 503, "Busy", "too many large uploads at once; retry later", conn.head.path, with_retry,
                         conn.head)
        elif conn.state == "admission":
            claim = conn.claim
            assert claim is not None, "a request waiting for admission has its claim"
            self._unqueue(conn)
            self._turn_away(conn, claim, admission.TIMEOUT, time.monotonic() - conn.queued_at)
        else:  # idle, a stalled download, a refusal nobody reads, a handshake that never ends
            if conn.job is not None:
                self.log.info("dropped a download to %s: it read nothing for %.0f s (%d bytes unsent)",
                              conn.client[0] if isinstance(conn.client, tuple) else "?", self.limits.send_timeout,
                              conn.job.count)
                conn.job.close()
                conn.job = None
            self._close(conn)

    def _release_source(self, conn: Conn) -> None:
        """Stop counting ``conn`` against its source (once; from the loop or the thread serving it)."""
        bucket, conn.bucket = conn.bucket, None
        if bucket is not None:
            self.sources.remove(bucket)

    def _linger(self, conn: Conn) -> None:
        """Close after the answer: half-close, read what the client still sends, then close. A
        connection answered in full no longer counts against its source's limit: a phone that
        closes and reconnects at once must not find its own last connection still counted."""
        self._release_source(conn)
        conn.out, conn.state = b"", "closing"
        conn.deadline = time.monotonic() + LINGER
        self._flush(conn)

    def _close(self, conn: Conn) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        conn.scope.close()
        if conn.events:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.events = 0
        self._release_source(conn)
        if conn.state == "admission":
            self._unqueue(conn)
        if conn.refuse:
            conn.refuse = False
            self.refusing -= 1
        try:
            conn.sock.close()
        except OSError:
            pass

    def handle_error(self, req, client, addr, exc):
        path = getattr(req, "path", "") or ""
        if isinstance(exc, (http_errors.ParseException, FramingError)):
            status, code = next(((s, c) for kind, s, c in _STATUS if isinstance(exc, kind)), (400, "BadRequest"))
            message = f"{type(exc).__name__}: {exc}"[:300]
        else:  # a bug: logged with its traceback, answered in the path's vocabulary (not gunicorn's HTML page)
            self.log.exception("Error handling request %s", path or "(no path read)")
            status, code, message = 500, "InternalError", "the request failed on the server; see the server log"
        headers = getattr(req, "headers", None) or []

        def lookup(name: str) -> str | None:
            return next((value for key, value in headers if key.lower() == name.lower()), None)
        try:
            client.sendall(refusal(path, status, code, message, header=lookup))
        except OSError:
            self.log.debug("Failed to send error message.")
