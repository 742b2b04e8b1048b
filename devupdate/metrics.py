"""Prometheus metrics at ``/metrics`` and structured (JSON) request logs.

Counted where they happen (one call each, microseconds, no lock held across I/O):
- ``devupdate_update_checks_total{side,outcome}``, ``devupdate_offered_files_total{side}`` and the
  ``devupdate_update_check_seconds{side}`` histogram — :func:`check_answered` in the update check;
- ``devupdate_download_bytes_total{side}`` and ``devupdate_downloads_total{side,status}`` —
  :func:`download_sent` in the image download view;
- ``devupdate_password_hashes_total`` — :func:`password_hashed`, every scrypt run (device users and
  console accounts): the work that password guessing makes the server do;
- ``devupdate_auth_throttled_total{reason}`` — :func:`auth_throttled`, external-side requests
  refused before any password check (``rate-limited``: 429, ``busy``: 503).

Read at scrape time, so they are right whichever process changed them (CLI, API, another node):
- ``devupdate_imports_total{outcome}`` (import records in the database),
- ``devupdate_devices_known`` and ``devupdate_devices_seen{window}`` (the inventory),
- ``devupdate_rules_pending`` (rules waiting for approval),
- ``devupdate_filestore_used_bytes`` / ``_quota_bytes`` / ``_objects`` ``{area}`` (this node's store).
The database-derived families describe the whole installation: with several nodes, aggregate
them with ``max``, not ``sum``.

gunicorn runs several worker processes; ``devupdate serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at
``<home>/run/prometheus`` (emptied at start) before any worker starts, so every worker's counters
live in shared files and ``/metrics`` on any worker reports the whole server
(:func:`prepare_multiprocess`, :func:`worker_exited`). Without it (tests, ``flask run``) the
counters are per process.

``DEVUPDATE_JSON_LOGS=true``: one JSON line per request on stderr (time, method, path, status,
duration_ms, client, user, bytes, pid). ``duration_ms`` ends when the response is handed to the
server: a streamed download's transfer time is not in it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("devupdate.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Families:
    """The live metric families, created on first use — in the worker, after ``devupdate serve`` has
    set ``PROMETHEUS_MULTIPROC_DIR`` — so importing this module early never fixes the value class."""

    def __init__(self) -> None:
        if os.environ.get(MULTIPROC_ENV) and values.ValueClass is values.MutexValue:
            values.ValueClass = values.get_value_class()  # prometheus_client was imported before the variable
        counter, histogram = prometheus_client.Counter, prometheus_client.Histogram
        self.checks = counter("devupdate_update_checks", "Update checks, by side (Int/Ext) and outcome (offered: "
                              "files in the answer; current: nothing to offer; refused: access control; invalid: "
                              "malformed request; error: server error)", ["side", "outcome"])
        self.offered = counter("devupdate_offered_files", "Files offered to devices by update checks", ["side"])
        self.latency = histogram("devupdate_update_check_seconds", "Time to answer an update check", ["side"],
                                 buckets=_LATENCY_BUCKETS)
        self.downloads = counter("devupdate_downloads", "Image download responses, by side and status",
                                 ["side", "status"])
        self.download_bytes = counter("devupdate_download_bytes", "Image bytes sent to devices (response sizes; "
                                      "a download cut short still counts whole)", ["side"])
        self.password_hashes = counter("devupdate_password_hashes", "scrypt runs: password checks not answered "
                                       "from the cache, and new password hashes")
        self.auth_throttled = counter("devupdate_auth_throttled", "External-side requests refused before their "
                                      "password was checked (rate-limited: too many failures from the source; "
                                      "busy: every hashing slot taken)", ["reason"])


_families: _Families | None = None
_children: dict[tuple, Any] = {}


def families() -> _Families:
    global _families
    if _families is None:
        _families = _Families()
    return _families


def _child(name: str, *labels: str) -> Any:
    key = (name, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = getattr(families(), name).labels(*labels)
    return child


def check_answered(side: str, outcome: str, files: int, seconds: float) -> None:
    """One update check: ``outcome`` is offered | current | refused | invalid | error."""
    _child("checks", side, outcome).inc()
    if files:
        _child("offered", side).inc(files)
    _child("latency", side).observe(seconds)


def download_sent(side: str, status: int, size: int) -> None:
    """One download response of ``size`` body bytes (0 for 304, HEAD and refusals)."""
    _child("downloads", side, str(status)).inc()
    if size:
        _child("download_bytes", side).inc(size)


def password_hashed() -> None:
    """One scrypt run (see :mod:`devupdate.devices.users`)."""
    families().password_hashes.inc()


def auth_throttled(reason: str) -> None:
    """An external-side request refused before its password was checked: rate-limited | busy."""
    _child("auth_throttled", reason).inc()


# --- scrape-time state ------------------------------------------------------------------------

class StateCollector:
    """Gauges and totals read when scraped: filestore areas and database counts."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        used = GaugeMetricFamily("devupdate_filestore_used_bytes", "Bytes stored per filestore area "
                                 "(writes in flight included)", labels=["area"])
        quota = GaugeMetricFamily("devupdate_filestore_quota_bytes", "Quota per filestore area", labels=["area"])
        objects = GaugeMetricFamily("devupdate_filestore_objects", "Files per filestore area", labels=["area"])
        for usage in self.store.usage_all():
            used.add_metric([usage.area], usage.used_bytes)
            objects.add_metric([usage.area], usage.objects)
            if usage.quota_bytes is not None:
                quota.add_metric([usage.area], usage.quota_bytes)
        yield from (used, quota, objects)
        try:
            yield from self._database()
        except Exception as exc:  # noqa: BLE001 - the filestore part still answers
            log.warning("metrics: database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            up = GaugeMetricFamily("devupdate_database_up", "1 when the database answered this scrape")
            up.add_metric([], 0)
            yield up

    def _database(self):
        import peewee

        from devupdate import db
        from devupdate.devices.inventory import Device
        from devupdate.imports.models import ImportRecord
        from devupdate.rules.models import Rule

        db.database.connect(reuse_if_open=True)
        imports = CounterMetricFamily("devupdate_imports", "Cab imports by outcome (imported, nothing-new, "
                                      "refused), from the CLI and the API", labels=["outcome"])
        counts = dict(ImportRecord.select(ImportRecord.outcome, peewee.fn.COUNT(ImportRecord.id))
                      .group_by(ImportRecord.outcome).tuples())
        for outcome in ("imported", "nothing-new", "refused"):
            imports.add_metric([outcome], counts.pop(outcome, 0))
        for outcome, count in counts.items():
            imports.add_metric([outcome], count)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        known = GaugeMetricFamily("devupdate_devices_known", "Devices in the inventory")
        known.add_metric([], Device.select().count())
        seen = GaugeMetricFamily("devupdate_devices_seen", "Devices that checked for updates within the window",
                                 labels=["window"])
        for window, delta in (("1h", dt.timedelta(hours=1)), ("24h", dt.timedelta(days=1)),
                              ("7d", dt.timedelta(days=7))):
            seen.add_metric([window], Device.select().where(Device.last_seen >= now - delta).count())
        pending = GaugeMetricFamily("devupdate_rules_pending", "Rules with a version waiting for approval")
        pending.add_metric([], Rule.select().where(Rule.pending_version.is_null(False)).count())
        up = GaugeMetricFamily("devupdate_database_up", "1 when the database answered this scrape")
        up.add_metric([], 1)
        return [imports, known, seen, pending, up]


def render(store) -> bytes:
    """The exposition text: live counters (every worker's, in multiprocess mode) plus scrape-time state."""
    families()
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        live = prometheus_client.generate_latest(registry)
    else:
        live = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    state = prometheus_client.CollectorRegistry()
    state.register(StateCollector(store))
    return live + prometheus_client.generate_latest(state)


# --- server wiring ----------------------------------------------------------------------------

def prepare_multiprocess(home: Path) -> Path:
    """Called by ``devupdate serve`` in the master before workers fork: a fresh shared directory."""
    path = Path(home) / "run" / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def worker_exited(pid: int) -> None:
    """gunicorn ``worker_exit``: drop the dead worker's live-gauge files (its counters stay summed)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _metrics_allowed(app) -> tuple[bool, int]:
    """Internal networks may scrape; others need an API token (any role)."""
    from flask import request

    address = app.extensions["network"].client_address(request.remote_addr or "",
                                                       request.headers.get("X-Forwarded-For"))
    if app.extensions["network"].is_internal(address):
        return True, 200
    if not request.headers.get("Authorization"):
        return False, 401
    from devupdate.admin.api import authenticate_request

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

    def install(self, app) -> None:
        from flask import g, request

        network = app.extensions["network"]

        @app.before_request
        def _started() -> None:
            request.environ["devupdate.started"] = time.perf_counter()

        @app.after_request
        def _logged(response):
            started = request.environ.get("devupdate.started")
            entry = {
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3) if started else None,
                "client": network.client_address(request.remote_addr or "", request.headers.get("X-Forwarded-For")),
                "user": g.get("log_user") or g.get("device_user") or None,
                "bytes": response.content_length, "pid": os.getpid(),
            }
            self.logger.info(json.dumps(entry, ensure_ascii=False))
            return response


def install(app, runtime) -> None:
    """``/metrics`` and, when configured, JSON request logs."""
    from flask import Response

    from devupdate.admin.api import error_response

    @app.get("/metrics")
    def metrics():
        allowed, status = _metrics_allowed(app)
        if not allowed:
            return error_response(status, "unauthenticated", "metrics answer internal networks, or a bearer token",
                                  {"WWW-Authenticate": 'Bearer realm="devupdate"'})
        return Response(render(runtime.store), mimetype=None, content_type=CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    if runtime.settings.json_logs:
        JsonRequestLog().install(app)
