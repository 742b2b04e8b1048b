"""The HTTP edge of the SOAP services (spec/wsus.md §2.1, §2.2, §1f): one Flask hook in front of
routing, because the ``.asmx`` paths match in any case.

For each request to a service path: plain HTTP is refused unless allowed (S5, ``403`` naming the
setting); ``GET ?wsdl`` returns the shipped WSDL with its address rewritten; a ``POST`` gets its
body limit from the SOAPAction's operation (the service's largest when the action names none) and
is refused before reading when it announces more (``413``), or with ``415`` for a
``Content-Encoding``; then the envelope is parsed under the depth and element caps, the operation
resolved, a slot taken (else ``ServerBusy``, S8) and the registered handler run. Whatever goes
wrong after the body arrived is a SOAP fault in the request's version: never a bare ``500``.

Admission (S8, spec/wsus.md §9): every operation is counted in its class (``light`` or ``heavy``,
its registration's weight), each with its in-flight slots, queue and wait per worker
(``[wsus] light_in_flight`` … ``heavy_wait``). Under ``devupdate serve`` the event loop admits a
POST before it takes a thread, classing it by its SOAPAction (no action: ``heavy``, the body
decides later); a request that finds its class full waits in the loop, and one beyond the queue
or past the wait gets the ``ServerBusy`` fault from the loop itself, without a thread (beyond the
queue: on its head, before its body is read, from pre-built bytes). A request
the loop did not admit (a body too large for the loop, another WSGI server) takes its slot here.
The server's own 5xx refusals and its ``429`` on these paths are SOAP faults too (:func:`_speak`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.http import HTTP_STATUS_CODES

from devupdate import metrics
from devupdate.web import admission, errors
from devupdate.web.bodies import BodyError, declared_length, read_all, refuse_encoding, register_path_limit
from devupdate.web.network import NetworkPolicy, in_networks
from devupdate.wsus.client import auth, printers, reporting, sync_ops  # noqa: F401 - they register their operations
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap import getconfig, ping  # noqa: F401 - they register their operations
from devupdate.wsus.soap.registry import HEAVY, LIGHT, WEIGHTS, Call, handler_for, weight_of
from devupdate.wsus.soap.services import (
    Service,
    action_of,
    operation_named,
    resolve,
    service_for,
)
from devupdate.wsus.upstream import access
from devupdate.wsus.upstream import auth_ops as upstream_auth  # noqa: F401 - they register their operations
from devupdate.wsus.upstream import deployments as upstream_deployments  # noqa: F401 - they register theirs
from devupdate.wsus.upstream import rollup as upstream_rollup  # noqa: F401 - they register their operations
from devupdate.wsus.upstream import sync_ops as upstream_sync  # noqa: F401 - they register their operations

log = logging.getLogger("devupdate.wsus.soap")
bp = Blueprint("wsus_soap", __name__)
EXTENSION = "wsus_soap"


class SoapEdge:
    def __init__(self, settings: Any, network: NetworkPolicy, database_ok: Callable[[], bool]):
        self.settings, self.network, self.database_ok = settings, network, database_ok
        self.sync_networks = access.networks(settings)  # S6: a bad value stops the start
        self.gates = {weight: admission.Gate(weight, admission.Capacity(*settings.wsus_admission(weight)))
                      for weight in WEIGHTS}

    def body_limit(self, service: Service, operation: str | None) -> int:
        classes = [service.body_class_of(operation)] if operation else service.body_classes_used
        return max(getattr(self.settings, f"wsus_max_body_{cls}") for cls in classes)

    def path_limit(self, path: str) -> int | None:
        """The largest body any operation of the service at ``path`` accepts (for the event loop)."""
        service = service_for(path.split("?", 1)[0])
        return None if service is None else self.body_limit(service, None)

    def classify(self, method: str, path: str, header: Callable[[str], str | None]) -> admission.Claim | None:
        """The event loop's question for a request whose head has arrived (it reads only the
        headers): which gate, and how to turn it away. Only POSTs to a service path are gated."""
        service = service_for(path)
        if service is None or method != "POST":
            return None
        content_type = header("Content-Type") or ""
        action = action_of(header("SOAPAction"), content_type)
        named = operation_named(service, action) if action else None
        # no action: the body decides, later (count it heavy); an action naming nothing: a fault at once
        weight = weight_of(service, named) if named else HEAVY if not action else LIGHT
        gate = self.gates[weight]
        operation = named or "-"

        def refuse(reason: str, waited: float, close: bool) -> bytes:
            version = soap.version_of(content_type)
            busy(service.key, operation, weight, reason, waited)
            fault_id = str(uuid.uuid4())
            # every refusal is counted (devupdate_wsus_soap_rejected_total); a line each would have a
            # flood write the log as fast as the loop answers it, and cost the loop a sixth of its time
            log.debug("SOAP fault %s on %s: ServerBusy (%s class %s after %.3f s)", fault_id, path, weight,
                      reason, waited)
            method_ = action or (service.action(named) if named else "")
            head, tail = _busy_answer(version, method_ if service.faults_name_method and method_ else None, close)
            return head + fault_id.encode() + tail

        return admission.Claim(gate, refuse, lambda waited: _count(metrics.soap_waited, weight, waited))


@lru_cache(maxsize=512)
def _busy_answer(version: str, method: str | None, close: bool) -> tuple[bytes, bytes]:
    """The whole HTTP answer with the ServerBusy fault of ``version`` and ``method``, before and
    after its ID, made once: the loop answers a flood with it, and each answer only needs its new
    GUID (always 36 characters, so the Content-Length holds)."""
    marker = "00000000-0000-0000-0000-00000000cafe"
    body = soap.render_fault(version, soap.SoapFault(soap.SERVER_BUSY, ""), marker, method)
    answer = errors.response(500, soap.CONTENT_TYPES[version], body, cache="private", close=close)
    head, _, tail = answer.partition(marker.encode())
    return head, tail


def busy(service: str, operation: str, weight: str, reason: str, waited: float) -> None:
    """Count a request turned away by admission control (it is a ServerBusy answer, too)."""
    _count(metrics.soap_rejected, service, operation, weight, reason)
    _count(metrics.soap_waited, weight, waited)
    _count(metrics.soap_answered, service, operation, soap.SERVER_BUSY, waited)


def _count(record: Callable[..., None], *args: Any) -> None:
    try:
        record(*args)
    except Exception:  # noqa: BLE001 - counting must never cost the answer
        log.exception("SOAP metrics failed")


def install(app: Flask, runtime: Any) -> None:
    edge = SoapEdge(runtime.settings, app.extensions["network"], _database_ok)
    app.extensions[EXTENSION] = edge
    register_path_limit(EXTENSION, edge.path_limit)
    admission.register(EXTENSION, edge.classify)
    errors.register_vocabulary(EXTENSION, _speak)
    app.register_blueprint(bp)
    if not runtime.settings.json_logs:  # JSON request logs need every request to pass Flask's hooks
        # Flask's documented way to wrap the WSGI app; its hints declare wsgi_app a method only
        app.wsgi_app = SoapFastPath(app.wsgi_app, edge)  # type: ignore[method-assign]


def _database_ok() -> bool:
    from devupdate import db

    try:
        db.database.execute_sql("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure is "unreachable" for Ping
        return False


def _plain(status: int, message: str, **headers: str) -> Response:
    response = Response(message.rstrip("\n") + "\n", status=status, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers)
    return response


@bp.before_app_request
def _soap_request() -> Response | None:
    service = service_for(request.path)
    if service is None:
        return None
    edge: SoapEdge = current_app.extensions[EXTENSION]
    incoming = Incoming(request.environ, request.path)
    https = incoming.https(edge)
    if not https and not edge.settings.wsus_allow_http_soap:
        return _plain(403, f"{service.paths[0]} is served over HTTPS only (devupdate serve --tls, port "
                           f"{edge.settings.tls_port}); to allow plain HTTP set DEVUPDATE_WSUS_ALLOW_HTTP_SOAP=true")
    if request.method in ("GET", "HEAD"):
        if "wsdl" in {key.lower() for key in request.args}:
            return _wsdl(service, edge, https)
        return _plain(405, f"POST a SOAP envelope to {service.paths[0]}, or GET {service.paths[0]}?wsdl",
                      Allow="GET, HEAD, POST")
    if request.method != "POST":
        return _plain(405, f"POST a SOAP envelope to {service.paths[0]}", Allow="GET, HEAD, POST")
    return answer_post(incoming, service, edge, https).flask()


class Incoming:
    """What the SOAP edge reads of a request, straight from its WSGI environ: the same for the Flask
    hook and for :class:`SoapFastPath`, which answers without Flask's request machinery."""

    __slots__ = ("environ", "path")

    def __init__(self, environ: dict[str, Any], path: str):
        self.environ, self.path = environ, path

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        return self.environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)

    @property
    def remote_addr(self) -> str:
        return self.environ.get("REMOTE_ADDR") or ""

    def https(self, edge: SoapEdge) -> bool:
        return edge.network.is_https(self.environ.get("wsgi.url_scheme", "http"), self.remote_addr,
                                     self.header("X-Forwarded-Proto"))


class Answer:
    """An answer of the SOAP edge, before it is a Flask response or a WSGI one: ``body`` whole, or
    chunks written as they are made (no Content-Length); ``on_close`` runs once it is sent."""

    __slots__ = ("status", "content_type", "body", "headers", "on_close")

    def __init__(self, status: int, content_type: str, body: bytes | Iterable[bytes], headers: dict[str, str]):
        self.status, self.content_type, self.body, self.headers = status, content_type, body, headers
        self.on_close: list[Callable[[], None]] = []

    @property
    def is_streamed(self) -> bool:
        return not isinstance(self.body, bytes)

    def flask(self) -> Response:
        response = Response(self.body, status=self.status, content_type=self.content_type)
        response.headers.update(self.headers)
        for hook in self.on_close:
            response.call_on_close(hook)
        return response

    def wsgi(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [("Content-Type", self.content_type)]
        if isinstance(self.body, bytes):
            headers.append(("Content-Length", str(len(self.body))))
        headers.extend(self.headers.items())
        start_response(_status_line(self.status), headers)
        if isinstance(self.body, bytes) and not self.on_close:
            return [self.body]
        return _Closing([self.body] if isinstance(self.body, bytes) else self.body, self.on_close)


def _status_line(status: int) -> str:
    """As Flask writes it (``413 REQUEST ENTITY TOO LARGE``)."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown').upper()}"


class _Closing:
    """A WSGI body that runs its hooks when the server closes it (PEP 3333), as Flask's call_on_close."""

    def __init__(self, chunks: Iterable[bytes], hooks: list[Callable[[], None]]):
        self._chunks, self._hooks = chunks, hooks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            for hook in self._hooks:
                hook()


#: the services WUA talks to; their operations never need Flask (the server-sync ones read the app)
FAST_SERVICES = frozenset(("client", "simpleauth", "reporting"))


class SoapFastPath:
    """WSGI middleware answering the POSTs of :data:`FAST_SERVICES` with :func:`answer_post` directly.

    Flask's per-request machinery (request context, hooks, routing, the response object) is work a
    scan page does not need, and the pages arrive by the thousand; everything else (WSDL, other
    methods, plain HTTP when it is refused, the server-sync services) passes to Flask's hook above,
    which answers a POST with the very same function."""

    def __init__(self, app: Callable[..., Iterable[bytes]], edge: SoapEdge):
        self.app, self.edge = app, edge

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        path = "/" + environ.get("PATH_INFO", "").lstrip("/")
        service = service_for(path)
        if service is None or service.key not in FAST_SERVICES:
            return self.app(environ, start_response)
        incoming = Incoming(environ, path)
        https = incoming.https(self.edge)
        if not https and not self.edge.settings.wsus_allow_http_soap:
            return self.app(environ, start_response)
        from devupdate import db

        try:  # as the app's before_request hook: the thread's connection, reopened if it was closed
            db.database.connect(reuse_if_open=True)
        except Exception:  # noqa: BLE001 - database away: the operation's first query says so
            pass
        return answer_post(incoming, service, self.edge, https).wsgi(start_response)


def answer_post(incoming: Incoming, service: Service, edge: SoapEdge, https: bool) -> Answer:
    """The answer to a POST to ``service``, its slot released and the answer counted."""
    started = time.perf_counter()
    outcome: dict[str, str] = {}
    answer = _post(incoming, service, edge, https, outcome)
    admitted = incoming.environ.get(admission.ADMITTED)
    if isinstance(admitted, admission.Slot):  # the answer is ready: the slot is free before it is sent
        if answer.is_streamed:  # ... unless it is still to be read from the database while it is sent
            answer.on_close.append(admitted.release)
        else:
            admitted.release()
    if "counted" not in outcome:
        _count(metrics.soap_answered, service.key, outcome.get("operation", "-"), outcome.get("outcome", "refused"),
               time.perf_counter() - started)
    return answer


def _post(incoming: Incoming, service: Service, edge: SoapEdge, https: bool, outcome: dict[str, str]) -> Answer:
    """The answer to a POST; ``outcome`` is told the operation and ok / the fault's ErrorCode."""
    environ = incoming.environ
    path = incoming.path
    content_type = incoming.header("Content-Type") or ""
    action = action_of(incoming.header("SOAPAction"), content_type)
    version = soap.version_of(content_type)
    named = operation_named(service, action) if action else None
    method = action  # a fault's Method: the action sent, else the body's operation's
    remote = incoming.remote_addr
    client_address = edge.network.client_address(remote, incoming.header("X-Forwarded-For"))
    authorization = incoming.header("Authorization") or ""
    verified = (in_networks(remote, edge.network.trusted_proxies)
                and (incoming.header("X-SSL-Client-Verify") or "").strip().upper() == "SUCCESS")
    limit = edge.body_limit(service, named)
    try:
        # S6 before the body: a caller server sync is closed to never makes this server read (up to
        # the rollup limit) and parse what it sent
        if service.key in access.SYNC_SERVICES or access.guarded(service.key, named):
            access.check(edge.settings, edge.sync_networks, client_address, authorization, verified)
        elif named is None and not in_networks(client_address, edge.sync_networks):
            limit = _unguarded_limit(edge, service)  # the body may name a rollup: S6 refuses it after
    except access.Refused as refused:
        log.info("SOAP %s %s refused: %s", service.key, named or "-", refused)
        outcome["outcome"] = "http-403"
        return _plain_answer(403, str(refused))
    try:
        refuse_encoding(environ)
        body = read_all(environ["wsgi.input"], limit=limit, announced=declared_length(environ))
    except BodyError as exc:
        log.info("SOAP %s refused: %s", path, exc.message)
        outcome["outcome"] = f"http-{exc.status}"
        return _plain_answer(exc.status, exc.message)
    try:
        parsed = soap.parse_envelope(body, max_depth=edge.settings.wsus_max_xml_depth,
                                     max_elements=edge.settings.wsus_max_xml_elements)
        version = parsed.version
        if not method and parsed.name in service.operations:
            method = service.action(parsed.name)
        operation = resolve(service, action, parsed)
        outcome["operation"] = operation
        if len(body) > edge.body_limit(service, operation):  # the action named none, or another one
            outcome["outcome"] = "http-413"
            return _plain_answer(413, f"the body is {len(body)} bytes, above the limit of "
                                      f"{edge.body_limit(service, operation)} for {operation}")
        if access.guarded(service.key, operation):
            access.check(edge.settings, edge.sync_networks, client_address, authorization, verified)
        handler = handler_for(service, operation)
        if handler is None:
            log.info("SOAP %s %s: not implemented yet", service.key, operation)
            raise soap.invalid("SOAPAction")
        call = Call(service, operation, parsed, edge.settings, https, content_type, client_address, edge.database_ok,
                    authorization, verified)
        gate = None if environ.get(admission.ADMITTED) else edge.gates[weight_of(service, operation)]
        if gate is not None:
            try:
                _count(metrics.soap_waited, gate.name, gate.enter())
            except admission.Busy as refused:
                busy(service.key, operation, gate.name, refused.reason, refused.waited)
                outcome["counted"] = "yes"
                raise soap.SoapFault(soap.SERVER_BUSY, "") from None
        _count(metrics.soap_working, service.key, operation, 1)
        streamed = False
        try:
            answer = handler(call)
            streamed = soap.is_streamed(answer)
        finally:
            _count(metrics.soap_working, service.key, operation, -1)
            if gate is not None and not streamed:
                gate.release()
        outcome["outcome"] = "ok"
        if streamed:  # the lists are read while the answer is written: the slot is held until it is sent
            response = _streamed(path, version, answer, service.operation_namespace(operation))
            if gate is not None:
                response.on_close.append(gate.release)
            return response
        payload = soap.render_response(version, answer, service.operation_namespace(operation))
        return _soap_answer(200, version, payload)
    except access.Refused as refused:
        log.info("SOAP %s %s refused: %s", service.key, outcome.get("operation", "-"), refused)
        outcome["outcome"] = "http-403"
        return _plain_answer(403, str(refused))
    except soap.SoapFault as fault:
        outcome["outcome"] = fault.error_code
        return _fault(path, service, version, fault, method)
    except Exception as exc:  # noqa: BLE001 - every failure still answers an envelope (S8)
        from peewee import InterfaceError, OperationalError

        if isinstance(exc, OperationalError | InterfaceError):  # database away or locked: retry later
            log.warning("SOAP %s: database unavailable (%s); answering ServerBusy", path, exc)
            outcome["outcome"] = soap.SERVER_BUSY
            return _fault(path, service, version, soap.SoapFault(soap.SERVER_BUSY, ""), method)
        fault_id = str(uuid.uuid4())
        outcome["outcome"] = soap.INTERNAL_SERVER_ERROR
        log.exception("SOAP %s failed; fault ID %s", path, fault_id)
        return _fault(path, service, version, soap.SoapFault(soap.INTERNAL_SERVER_ERROR, ""), method, fault_id)


def _unguarded_limit(edge: SoapEdge, service: Service) -> int:
    """The largest body of the operations of ``service`` that S6 does not guard (Reporting without
    its rollups: a caller outside the sync networks can only be answered for those)."""
    return max(getattr(edge.settings, f"wsus_max_body_{service.body_class_of(op)}")
               for op in (*service.operations, None) if not access.guarded(service.key, op))


def _fault(path: str, service: Service, version: str, fault: soap.SoapFault, method: str,
           fault_id: str = "") -> Answer:
    fault_id = fault_id or str(uuid.uuid4())
    log.info("SOAP fault %s on %s: %s %s", fault_id, path, fault.error_code, fault.message)
    return _soap_answer(500, version, soap.render_fault(version, fault, fault_id,
                                                        method if service.faults_name_method and method else None))


def _streamed(path: str, version: str, answer: soap.El, namespace: str) -> Answer:
    """A 200 answer written while its lists are read (no Content-Length: chunked). A failure half-way
    cannot become a fault any more: it is logged and the connection dropped, so the downstream sees
    a broken answer and retries, never a short list that looks complete."""

    def chunks():
        try:
            yield from soap.render_stream(version, answer, namespace)
        except GeneratorExit:
            raise
        except Exception:
            log.exception("SOAP %s: the streamed answer failed half-way; the connection is dropped", path)
            raise

    return Answer(200, soap.CONTENT_TYPES[version], chunks(), {"Cache-Control": "private"})


def _soap_answer(status: int, version: str, payload: bytes) -> Answer:
    return Answer(status, soap.CONTENT_TYPES[version], payload, {"Cache-Control": "private"})


def _plain_answer(status: int, message: str) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", (message.rstrip("\n") + "\n").encode(),
                  {"Cache-Control": "no-store"})


#: the server's own refusals on a service path that answer as SOAP faults (HTTP 500, §4.1), by status:
#: load (429 too many connections from one address, 503 no upload slot) is ServerBusy, a defect
#: InternalServerError, a transfer coding this server does not speak a request error. The other
#: 4xx refusals (400, 408, 413, 414, 415, 417, 431) stay HTTP statuses, as S1 wants for 413/415 and
#: as IIS answers them before WSUS sees the request: there is no SOAP request to fault yet.
_SPOKEN = {429: (soap.SERVER_BUSY, ""), 503: (soap.SERVER_BUSY, ""), 500: (soap.INTERNAL_SERVER_ERROR, ""),
           501: (soap.INVALID_PARAMETERS, "Transfer-Encoding")}


def _speak(path: str, status: int, code: str, message: str,
           header: Callable[[str], str | None]) -> tuple[int, str, bytes] | None:
    """A refusal of the server (not the application) on a service path, as a SOAP fault when it is
    a 5xx or load; ``None`` leaves it to the plain-text form."""
    service = service_for(path)
    if service is None or status not in _SPOKEN and status < 500:
        return None
    error_code, fault_message = _SPOKEN.get(status, (soap.INTERNAL_SERVER_ERROR, ""))
    content_type = header("Content-Type") or ""
    version = soap.version_of(content_type)
    action = action_of(header("SOAPAction"), content_type)
    fault_id = str(uuid.uuid4())
    log.info("SOAP fault %s on %s: %s for the server's %s %s (%s)", fault_id, path, error_code, status, code,
             message)
    operation = operation_named(service, action) if action else None
    _count(metrics.soap_answered, service.key, operation or "-", error_code, 0.0)
    body = soap.render_fault(version, soap.SoapFault(error_code, fault_message), fault_id,
                             action if service.faults_name_method and action else None)
    return 500, soap.CONTENT_TYPES[version], body


_ADDRESS = re.compile(r'(<soap(?:12)?:address\s+location=")[^"]*(")')


@cache
def _wsdl_text(name: str) -> str:
    return (resources.files("devupdate.wsus.soap") / "wsdl" / name).read_text("utf-8")


def _wsdl(service: Service, edge: SoapEdge, https: bool) -> Response:
    """The service's WSDL with every ``soap:address`` set to this server's public URL (the external
    one over HTTPS, the internal one over plain HTTP) — never built from ``Host``."""
    base = (edge.settings.public_external_url if https else edge.settings.public_internal_url).rstrip("/")
    location = (base + service.paths[0]).replace("&", "&amp;").replace('"', "&quot;")
    body = _ADDRESS.sub(lambda match: match.group(1) + location + match.group(2), _wsdl_text(service.wsdl))
    response = Response(body.encode(), status=200, content_type="text/xml; charset=utf-8")
    response.headers["Cache-Control"] = "private"
    return response
