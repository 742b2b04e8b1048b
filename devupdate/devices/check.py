"""The update check: ``/RequestHandler/ucdevice.upx`` (internal) and ``/RequestHandlerExt/ucdevice.upx``
(external), POST XML or the GET form (device-protocol.md §3–§5).

:func:`answer` is access → parse → select → render over the in-memory snapshot, then one audit
row (one ``write``) and one inventory observation (one dict update): no database query and no
file open per request. Every outcome — answered, refused by access control, malformed — gets an
audit row, and malformed input is always a ``4xx`` XML error, never a ``500``. The same function
is served by the blueprint and, for GET/POST, straight from WSGI (:class:`CheckFastPath`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, request

from devupdate import metrics
from devupdate.audit.requestlog import (
    AuditRow,
    LogLimits,
    RequestLog,
    limits_from_configuration,
    request_modules,
    response_modules,
)
from devupdate.devices.access import BASIC_ONLY, CHALLENGE, SCHEMES_EXTENSION, Access, Refusal, Schemes, decide
from devupdate.devices.failures import FailureLimiter
from devupdate.devices.image_fetches import DownloadRecorder
from devupdate.devices.inventory import InventoryRecorder
from devupdate.devices.reports import ReportRecorder
from devupdate.devices.request import MAX_REQUEST_BYTES, RequestError, parse_query, parse_xml, raw_fields
from devupdate.devices.response import render
from devupdate.devices.snapshot import SnapshotHolder
from devupdate.devices.users import UserStore
from devupdate.selection import DeviceRequest, select
from devupdate.web import connection as connections
from devupdate.web.bodies import ENCODING, FRAMING, TOO_LARGE, BodyError, declared_length, read_all, refuse_encoding
from devupdate.web.errors import render_error
from devupdate.web.network import NetworkPolicy

log = logging.getLogger("devupdate.check")

CONTENT_TYPE = "text/xml; charset=utf-8"
EXTENSION = "device_checks"
FETCHES = "image_downloads"  # the DownloadRecorder of a rollout's image downloads

bp = Blueprint("device_checks", __name__)


@dataclass
class CheckService:
    """What the check view needs, built once per worker."""

    snapshots: SnapshotHolder
    audit: RequestLog
    inventory: InventoryRecorder
    base_urls: dict[str, str]  # 'Int' | 'Ext' -> public base URL of that side
    network: NetworkPolicy
    users: UserStore
    auth_failures: FailureLimiter | None = None
    schemes: Schemes = BASIC_ONLY
    reports: ReportRecorder | None = None  # the device API's status reports


# --- helpers (no Flask) ------------------------------------------------------------------------------

_RAW_FIELDS = ("devicetype", "macaddress", "serialnumber", "vendor", "model", "revision", "locale", "userid")


def raw_fields_from_xml(body: bytes) -> dict[str, str]:
    """Best effort, for the audit row of a refused check: the top-level fields as sent."""
    return raw_fields(body, _RAW_FIELDS)


def refused_row(address: str, fields: dict[str, str], status: int, code: str, user: str = "") -> AuditRow:
    return AuditRow(address=address, device_type=fields.get("devicetype", ""), mac=fields.get("macaddress", ""),
                    serial=fields.get("serialnumber", ""), vendor=fields.get("vendor", ""),
                    model=fields.get("model", ""), revision=fields.get("revision", ""),
                    locale=fields.get("locale", ""), user_id=fields.get("userid", "") or user,
                    result=f"{status} {code}")


def answered_row(address: str, req: DeviceRequest, files, user: str) -> AuditRow:
    return AuditRow(address=address, device_type=req.device_type, mac=req.mac, serial=req.serial,
                    vendor=req.vendor, model=req.model, revision=req.revision, locale=req.locale,
                    request_modules=request_modules(req.modules), response_modules=response_modules(files),
                    user_id=req.user_id or user, result="200 OK")


# --- request edge ------------------------------------------------------------------------------------

def read_body(environ: dict) -> bytes:
    """At most ``MAX_REQUEST_BYTES``; a larger declared length is refused before reading anything."""
    try:  # straight from the server's input (it bounds it by Content-Length and decodes chunking)
        refuse_encoding(environ)
        return read_all(environ["wsgi.input"], limit=MAX_REQUEST_BYTES, announced=declared_length(environ))
    except BodyError as exc:
        if exc.reason == TOO_LARGE:
            raise RequestError("TooLarge", f"request body over {MAX_REQUEST_BYTES} bytes", 413) from None
        if exc.reason == FRAMING:  # the server could not decode the body (e.g. a malformed chunk size)
            raise RequestError(exc.code, exc.message, exc.status) from None
        if exc.reason == ENCODING:
            raise RequestError("UnsupportedEncoding", exc.message, 415) from None
        raise RequestError("IncompleteBody", "the request body ended before its announced length") from None


def _query_fields(args) -> dict[str, str]:
    return {key.lower(): value.strip()[:256] for key, value in args.items() if key.lower() in _RAW_FIELDS}


def _query(environ: dict) -> tuple[dict[str, str], list[str]]:
    """The GET form's fields (first value of each name) and its ``Module`` values, in order."""
    args: dict[str, str] = {}
    modules: list[str] = []
    for key, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, errors="replace"):
        if key.lower() == "module":
            modules.append(value)
        else:
            args.setdefault(key, value)
    return args, modules


@dataclass(frozen=True)
class Answer:
    """What the check answers: status and body; the headers follow from them."""

    status: int
    body: bytes
    retry_after: int = 0
    content_type: str = CONTENT_TYPE
    challenges: tuple[str, ...] = (CHALLENGE,)  # WWW-Authenticate values of a 401

    def headers(self) -> list[tuple[str, str]]:
        headers = [("Content-Type", self.content_type), ("Cache-Control", "no-store"),
                   ("Content-Length", str(len(self.body)))]
        if self.status == 401:
            headers.extend(("WWW-Authenticate", challenge) for challenge in self.challenges)
        if self.retry_after:
            headers.append(("Retry-After", str(self.retry_after)))
        return headers


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, render_error(code, message))


def answer(service: CheckService, side: str, environ: dict) -> Answer:
    """One update check, WSGI environ in, answer out: access → parse → select → render, then one
    audit row, one inventory observation and the metrics. Every outcome is logged; nothing raises:
    whatever fails, even outside the handlers below, the device gets the XML error, the log why."""
    try:
        return _answer(service, side, environ)
    except Exception:  # noqa: BLE001 - never the HTTP server's own (HTML) 500 page on a device path
        log.exception("update check failed outside its handlers (%s %s)", environ.get("REQUEST_METHOD"),
                      environ.get("PATH_INFO"))
        return _error(500, "InternalError", "the update check failed; see the server log")


def access_of(service: CheckService, side: str, environ: dict) -> Access | Refusal:
    """Who may ask on ``side``: the one access decision of every device request served from WSGI
    (the Lync check and the device API), so a change to external authentication applies to both."""
    return decide(side, environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                  environ.get("HTTP_AUTHORIZATION"), service.network, service.users,
                  url_scheme=environ.get("wsgi.url_scheme", "http"),
                  forwarded_proto=environ.get("HTTP_X_FORWARDED_PROTO"), limiter=service.auth_failures,
                  schemes=service.schemes, connection=connections.of(environ))


OUTCOME = "devupdate.check_outcome"  # environ key: the check's outcome, for the request log


def _counted(environ: dict, side: str, outcome: str, files: int, started: float) -> None:
    environ[OUTCOME] = outcome
    metrics.check_answered(side, outcome, files, time.perf_counter() - started)


def _answer(service: CheckService, side: str, environ: dict) -> Answer:
    started = time.perf_counter()
    access = access_of(service, side, environ)
    is_get = environ["REQUEST_METHOD"] in ("GET", "HEAD")
    if isinstance(access, Refusal):
        fields = _query_fields(_query(environ)[0]) if is_get else {}
        service.audit.write(refused_row(access.client_address, fields, access.status, access.code, access.user))
        _counted(environ, side, "refused", 0, started)
        return Answer(access.status, render_error(access.code, access.message), access.retry_after,
                      challenges=access.challenges)
    address, user, side = access.client_address, access.user, access.side
    body = b""
    try:
        if is_get:
            args, modules = _query(environ)
            req = parse_query(args, modules)
        else:
            body = read_body(environ)
            req = parse_xml(body)
        files = select(service.snapshots.current, req)
        payload = render(files, service.base_urls[side], side)
    except RequestError as exc:
        fields = _query_fields(_query(environ)[0]) if is_get else raw_fields_from_xml(body) if body else {}
        service.audit.write(refused_row(address, fields, exc.status, exc.code, user))
        _counted(environ, side, "invalid", 0, started)
        return _error(exc.status, exc.code, exc.message)
    except Exception:  # noqa: BLE001 - a bug or a broken connection must still be logged and answered
        log.exception("update check failed")
        service.audit.write(refused_row(address, {}, 500, "InternalError", user))
        _counted(environ, side, "error", 0, started)
        return _error(500, "InternalError", "the update check failed; see the server log")
    service.audit.write(answered_row(address, req, files, user))
    service.inventory.observe(req, address, side, user)
    _counted(environ, side, "offered" if files else "current", len(files), started)
    return Answer(200, payload)


# --- HTTP edges: the Flask blueprint, and the same check straight from WSGI ------------------------------

def _view(side: str) -> Response:
    result = answer(current_app.extensions[EXTENSION], side, request.environ)
    return Response(result.body, status=result.status, headers=result.headers())


@bp.route("/RequestHandler/ucdevice.upx", methods=["GET", "POST"])
def check_internal() -> Response:
    return _view("Int")


@bp.route("/RequestHandlerExt/ucdevice.upx", methods=["GET", "POST"])
def check_external() -> Response:
    return _view("Ext")


Handler = Callable[[CheckService, str, dict], Answer]
Route = tuple[str, Handler, tuple[str, ...]]  # side, handler, methods
_STATUS = {200: "200 OK", 202: "202 ACCEPTED", 400: "400 BAD REQUEST", 401: "401 UNAUTHORIZED",
           403: "403 FORBIDDEN", 404: "404 NOT FOUND", 413: "413 REQUEST ENTITY TOO LARGE",
           415: "415 UNSUPPORTED MEDIA TYPE", 429: "429 TOO MANY REQUESTS", 500: "500 INTERNAL SERVER ERROR",
           503: "503 SERVICE UNAVAILABLE"}
_SIDE_OF = {"/RequestHandler/ucdevice.upx": "Int", "/RequestHandlerExt/ucdevice.upx": "Ext"}


class CheckFastPath:
    """WSGI middleware answering GET/POST update checks with :func:`answer` directly.

    Flask's per-request machinery (request context, routing, hooks, response object) costs about as
    much CPU as the whole check, and this is the request that arrives by the hundred thousand; the
    blueprint above serves the very same function for everything else (other methods, and when
    app-level request hooks must see every request, e.g. JSON request logs)."""

    def __init__(self, app, service: CheckService, routes: Mapping[str, Route] | None = None):
        self.app = app
        self.service = service
        #: path → (side, handler, methods): the Lync check, and what else is served the same way
        self.routes: dict[str, Route] = {path: (side, answer, ("GET", "POST")) for path, side in _SIDE_OF.items()}
        self.routes.update(routes or {})

    def __call__(self, environ: dict, start_response):
        found = self.routes.get(environ.get("PATH_INFO", ""))
        if found is None or environ.get("REQUEST_METHOD") not in found[2]:
            return self.app(environ, start_response)
        side, handler, _ = found
        result = handler(self.service, side, environ)
        start_response(_STATUS.get(result.status) or f"{result.status} ERROR", result.headers())
        return [result.body]


# --- wiring ------------------------------------------------------------------------------------------

def settle_heap(app: Flask) -> None:
    """For a serving worker, once it is up: load the snapshot now, then move everything alive
    (modules, app, snapshot) out of the cyclic garbage collector's view, so a full collection
    scans only what requests create instead of stalling the worker for tens of milliseconds
    every few hundred checks. (Called from gunicorn's ``post_worker_init``, not in tests.)"""
    service = app.extensions.get(EXTENSION)
    if service is not None:
        service.snapshots.current  # noqa: B018 - loads it
    gc.collect()
    gc.freeze()


def install(app: Flask, runtime, *, background: bool = True) -> CheckService:
    """Register the check routes and the case-insensitive path middleware; start the audit log's
    sync thread and the inventory's flush thread; register their flush for shutdown."""
    from devupdate import configuration
    from devupdate.devices.paths import DevicePathMiddleware

    settings = runtime.settings

    def load_limits() -> LogLimits:
        from devupdate import db

        db.database.connect(reuse_if_open=True)
        return limits_from_configuration(configuration.effective())

    try:
        limits = load_limits()
    except Exception:  # noqa: BLE001 - the sync thread retries; defaults meanwhile
        log.exception("request audit log: could not read the configuration; using defaults")
        limits = LogLimits()
    audit = RequestLog(runtime.store, settings.effective_server_name, limits=limits, load_limits=load_limits)
    snapshots = app.extensions["snapshots"]
    inventory = InventoryRecorder(snapshot=lambda: snapshots.current, retention_days=settings.activity_retention_days)
    reports = ReportRecorder()
    fetches = DownloadRecorder()
    app.extensions[FETCHES] = fetches
    service = CheckService(snapshots=app.extensions["snapshots"], audit=audit, inventory=inventory,
                           base_urls={"Int": settings.public_internal_url, "Ext": settings.public_external_url},
                           network=app.extensions["network"], users=app.extensions["users"],
                           auth_failures=app.extensions.get("auth_failures"), reports=reports,
                           schemes=app.extensions.get(SCHEMES_EXTENSION, BASIC_ONLY))
    app.extensions[EXTENSION] = service
    from devupdate.devices.paths import canonical_path
    from devupdate.web import errors as web_errors

    def server_refused(path: str, address: str, status: int, code: str) -> None:
        """The server refused a check before it reached the app (broken framing, too slow, too many
        connections): it gets its audit row too, like every check (device-protocol.md §7)."""
        side = _SIDE_OF.get(canonical_path(path))
        if side is not None:
            service.audit.write(refused_row(address, {}, status, code))
            metrics.check_answered(side, "invalid", 0, 0.0)

    web_errors.on_refusal(EXTENSION, server_refused)
    app.register_blueprint(bp)
    from devupdate.devices import deviceapi

    app.register_blueprint(deviceapi.bp)
    # outermost first: spelling of the path, then (unless every request must pass Flask's hooks) the check
    inner = app.wsgi_app if settings.json_logs else CheckFastPath(app.wsgi_app, service, deviceapi.ROUTES)
    # Flask's documented way to wrap the WSGI app; its hints declare wsgi_app a method only
    app.wsgi_app = DevicePathMiddleware(inner)  # type: ignore[method-assign]
    if background:
        audit.start()
        inventory.start()
        reports.start()
        fetches.start()
    app.extensions.setdefault("shutdown", []).extend([inventory.close, reports.close, fetches.close, audit.close])
    return service
