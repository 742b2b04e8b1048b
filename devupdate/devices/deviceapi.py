"""The device API, pull model (``POST /api/device/v1/check`` and ``/status``; the external side under
``/api/device-ext/v1/``): a device posts its identity and installed packages as JSON and gets every
package it should have, with URLs, sizes and SHA-256; it reports download and install progress.

The handlers are the Lync check's, step for step: the same access decision
(:func:`devupdate.devices.check.access_of`: internal networks, or external credentials), the same
bounded body read, the same identity validation, the same selection (``selection.targets``), one audit
row and one inventory observation per check; a status report is one dict update
(:class:`devupdate.devices.reports.ReportRecorder`), and one more for ``installed``, which the inventory
takes as the device's version of that package (``InventoryRecorder.installed``). No database query per
request. They are served from WSGI by the check's fast path, and by the blueprint below otherwise.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, jsonify, request

from devupdate import metrics
from devupdate.devices import jsonapi
from devupdate.devices.access import Refusal
from devupdate.devices.check import (
    EXTENSION,
    Answer,
    CheckService,
    Route,
    access_of,
    answered_row,
    read_body,
    refused_row,
)
from devupdate.devices.request import RequestError
from devupdate.selection import targets

log = logging.getLogger("devupdate.deviceapi")

INTERNAL_PREFIX = "/api/device/v1"
EXTERNAL_PREFIX = "/api/device-ext/v1"
_JSON = jsonapi.CONTENT_TYPE

bp = Blueprint("device_api", __name__)


def _error(status: int, code: str, message: str, retry_after: int = 0) -> Answer:
    return Answer(status, jsonapi.render_error(code, message), retry_after, content_type=_JSON)


def _refused(access: Refusal) -> Answer:
    return Answer(access.status, jsonapi.render_error(access.code, access.message), access.retry_after,
                  content_type=_JSON, challenges=access.challenges)


def _json_body(environ: dict) -> dict:
    """The request's JSON object; refuses another media type with 415 (a missing one is taken as JSON)."""
    media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise RequestError("UnsupportedMediaType", "send the body as Content-Type: application/json", 415)
    return jsonapi.load(read_body(environ))


def _guarded(name: str, handler):
    def run(service: CheckService, side: str, environ: dict) -> Answer:
        try:
            return handler(service, side, environ)
        except Exception:  # noqa: BLE001 - a device gets the JSON error, the log gets why
            log.exception("device API %s failed", name)
            return _error(500, "InternalError", f"the {name} failed; see the server log")
    return run


def _check(service: CheckService, side: str, environ: dict) -> Answer:
    started = time.perf_counter()
    access = access_of(service, side, environ)
    if isinstance(access, Refusal):
        service.audit.write(refused_row(access.client_address, {}, access.status, access.code, access.user))
        metrics.check_answered(side, "refused", 0, time.perf_counter() - started)
        return _refused(access)
    address, user, side = access.client_address, access.user, access.side
    try:
        req = jsonapi.device_request(_json_body(environ))
    except RequestError as exc:
        service.audit.write(refused_row(address, {}, exc.status, exc.code, user))
        metrics.check_answered(side, "invalid", 0, time.perf_counter() - started)
        return _error(exc.status, exc.code, exc.message)
    found = targets(service.snapshots.current, req)
    body = jsonapi.render_check(found, service.base_urls[side], side)
    offered = [f for target in found if not target.current for f in target.version.files]
    service.audit.write(answered_row(address, req, offered, user))
    service.inventory.observe(req, address, side, user)
    metrics.check_answered(side, "offered" if offered else "current", len(offered), time.perf_counter() - started)
    return Answer(200, body, content_type=_JSON)


def _status(service: CheckService, side: str, environ: dict) -> Answer:
    access = access_of(service, side, environ)
    if isinstance(access, Refusal):
        metrics.status_reported("-", "refused")
        return _refused(access)
    try:
        report = jsonapi.status_report(_json_body(environ))
    except RequestError as exc:
        metrics.status_reported("-", "invalid")
        return _error(exc.status, exc.code, exc.message)
    target = jsonapi.package_of(targets(service.snapshots.current, report.request), report.package)
    if target is None:
        metrics.status_reported(report.state, "invalid")
        return _error(404, "UnknownPackage", f"no rule of this device's family has the package {report.package!r}; "
                                             "report the names the check answered")
    assert service.reports is not None  # install() always sets it
    service.reports.observe(report.request.device_id, target.rule.rule_id, report.package, report.version,
                            report.state, report.code, report.message)
    if report.state == "installed":  # the inventory shows it, as the device's next check would
        service.inventory.installed(report.request, access.client_address, access.side, access.user, target.rule,
                                    report.package, report.version)
    metrics.status_reported(report.state, "taken")
    return Answer(202, jsonapi.render_status(report), content_type=_JSON)


check = _guarded("update check", _check)
status = _guarded("status report", _status)

#: what the WSGI fast path serves (path → side, handler, methods)
ROUTES: dict[str, Route] = {f"{INTERNAL_PREFIX}/check": ("Int", check, ("POST",)),
          f"{INTERNAL_PREFIX}/status": ("Int", status, ("POST",)),
          f"{EXTERNAL_PREFIX}/check": ("Ext", check, ("POST",)),
          f"{EXTERNAL_PREFIX}/status": ("Ext", status, ("POST",))}


def _serve(path: str) -> Response:
    if request.method != "POST":
        result = _error(405, "MethodNotAllowed", f"{path} answers POST only")
        response = Response(result.body, status=405, headers=result.headers())
        response.headers["Allow"] = "POST"
        return response
    side, handler, _ = ROUTES[path]
    result = handler(current_app.extensions[EXTENSION], side, request.environ)
    return Response(result.body, status=result.status, headers=result.headers())


for _path in ROUTES:
    bp.add_url_rule(_path, f"serve_{_path.strip('/').replace('/', '_').replace('-', '_')}",
                    lambda path=_path: _serve(path), methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


@bp.get(f"{INTERNAL_PREFIX}/openapi.json")
@bp.get(f"{EXTERNAL_PREFIX}/openapi.json")
def openapi() -> Response:
    """The device API's own OpenAPI document (it describes no secret: served without credentials)."""
    from devupdate.devices.deviceapi_openapi import document

    return jsonify(document())
