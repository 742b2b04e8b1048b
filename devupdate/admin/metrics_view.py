"""The HTTP edges of observability: ``/metrics`` (internal networks, or any API token) and, with
``DEVUPDATE_JSON_LOGS=true``, one JSON line per request on stderr (time, level, request_id, method,
path, status, outcome, duration_ms, client, user, bytes, pid). ``level`` is info, warning (4xx) or
error (5xx); ``request_id`` is the caller's ``X-Request-Id`` when it is a plain token (nginx's
``$request_id``), else a new one, and is sent back in the answer's ``X-Request-Id``; ``outcome`` is
the update check's (offered, current, refused, invalid, error), null on other paths.
``duration_ms`` ends when the response is handed to the server: a streamed download's transfer time
is not in it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import time
import uuid

from flask import Flask, Response, g, request

from devupdate import metrics
from devupdate.admin.routing import authenticate_request, error_response

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_CHECK_OUTCOME = "devupdate.check_outcome"  # set by the update check (devupdate.devices.check.OUTCOME)


def request_id(given: str | None) -> str:
    """The caller's id when it is a plain token (it ends up in a log line), else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def level_of(status: int) -> int:
    return logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO


def _metrics_allowed(app: Flask) -> tuple[bool, int]:
    """Internal networks may scrape; others need an API token (any role)."""
    address = app.extensions["network"].client_address(request.remote_addr or "",
                                                       request.headers.get("X-Forwarded-For"))
    if app.extensions["network"].is_internal(address):
        return True, 200
    if not request.headers.get("Authorization"):
        return False, 401
    return (authenticate_request() is not None), 401


class JsonRequestLog:
    """One JSON line per request on stderr; installed only when ``DEVUPDATE_JSON_LOGS`` is true."""

    def __init__(self, stream=None):
        self.logger = logging.getLogger("devupdate.requests")
        if not self.logger.handlers:
            handler = logging.StreamHandler(stream or sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False

    def install(self, app: Flask) -> None:
        network = app.extensions["network"]

        @app.before_request
        def _started() -> None:
            request.environ["devupdate.started"] = time.perf_counter()
            request.environ["devupdate.request_id"] = request_id(request.headers.get("X-Request-Id"))

        @app.after_request
        def _logged(response):
            started = request.environ.get("devupdate.started")
            rid = request.environ.get("devupdate.request_id") or request_id(None)
            response.headers["X-Request-Id"] = rid
            level = level_of(response.status_code)
            entry = {
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": logging.getLevelName(level).lower(), "request_id": rid,
                "method": request.method, "path": request.path, "status": response.status_code,
                "outcome": request.environ.get(_CHECK_OUTCOME),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3) if started else None,
                "client": network.client_address(request.remote_addr or "", request.headers.get("X-Forwarded-For")),
                "user": g.get("log_user") or g.get("device_user") or None,
                "bytes": response.content_length, "pid": os.getpid(),
            }
            self.logger.log(level, json.dumps(entry, ensure_ascii=False))
            return response


def install(app: Flask, runtime) -> None:
    """``/metrics`` and, when configured, JSON request logs."""

    @app.get("/metrics")
    def metrics_view():
        allowed, status = _metrics_allowed(app)
        if not allowed:
            return error_response(status, "unauthenticated", "metrics answer internal networks, or a bearer token",
                                  {"WWW-Authenticate": 'Bearer realm="devupdate"'})
        return Response(metrics.render(runtime.store), mimetype=None, content_type=metrics.CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    if runtime.settings.json_logs:
        JsonRequestLog().install(app)
