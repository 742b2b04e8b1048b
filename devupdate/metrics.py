"""Prometheus metrics: the live counters, the scrape-time state features register, the exposition.

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
``devupdate_filestore_used_bytes`` / ``_quota_bytes`` / ``_objects`` ``{area}`` (this node's store)
and what each feature registers with :func:`register_state` where its tables live
(``devupdate_imports_total{outcome}``, ``devupdate_devices_known``, ``devupdate_devices_seen{window}``,
``devupdate_rules_pending``), plus ``devupdate_database_up``. The database-derived families describe
the whole installation: with several nodes, aggregate them with ``max``, not ``sum``.

gunicorn runs several worker processes; ``devupdate serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at
``<home>/run/<server name>-<port>/prometheus`` (emptied at start) before any worker starts, so every worker's counters
live in shared files and ``/metrics`` on any worker reports the whole server
(:func:`prepare_multiprocess`, :func:`worker_exited`). Without it (tests, ``flask run``) the
counters are per process.

The ``/metrics`` route and the JSON request log are HTTP edges: ``admin/metrics_view.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import values
from prometheus_client.core import GaugeMetricFamily

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
        self.job_runs = counter("devupdate_job_runs", "Runs of background jobs (snapshot refresh, inventory "
                                "flush, log cleanup …) by outcome (ok, failed)", ["job", "outcome"])
        self.job_seconds = histogram("devupdate_job_seconds", "Duration of background job runs", ["job"],
                                     buckets=_LATENCY_BUCKETS + (5.0, 10.0, 30.0, 60.0))
        self.job_last_success = prometheus_client.Gauge(
            "devupdate_job_last_success_timestamp_seconds", "Unix time of the last successful run of each job "
            "(the newest of any worker)", ["job"], multiprocess_mode="max")


_families: _Families | None = None
_children: dict[tuple, Any] = {}
_created = threading.Lock()


def families() -> _Families:
    """The families, created once: the first checks of a worker arrive together, and a second
    registration of the same names raises (it did, as an HTML 500, on a first burst)."""
    global _families
    if _families is None:
        with _created:
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


def job_ran(job: str, ok: bool, seconds: float) -> None:
    """One run of a background job (:class:`devupdate.jobs.PeriodicJob` calls it)."""
    _child("job_runs", job, "ok" if ok else "failed").inc()
    _child("job_seconds", job).observe(seconds)
    if ok:
        _child("job_last_success", job).set(time.time())


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

#: name → function returning metric families read from the database at scrape time
_state: dict[str, Callable[[], Iterable[Any]]] = {}


def register_state(name: str, collect: Callable[[], Iterable[Any]]) -> None:
    """A feature's scrape-time families (``collect`` queries its own tables); registered where the
    feature defines its tables, which every serving process imports."""
    _state[name] = collect


class StateCollector:
    """Gauges and totals read when scraped: filestore areas and the registered database state."""

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
        up = GaugeMetricFamily("devupdate_database_up", "1 when the database answered this scrape")
        try:
            state = self._database()
        except Exception as exc:  # noqa: BLE001 - the filestore part still answers
            log.warning("metrics: database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            up.add_metric([], 0)
        else:
            yield from state
            up.add_metric([], 1)
        yield up

    @staticmethod
    def _database() -> list[Any]:
        from devupdate import db

        db.database.connect(reuse_if_open=True)
        return [family for name in sorted(_state) for family in _state[name]()]


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

def prepare_multiprocess(home: Path, node: str = "") -> Path:
    """Called by ``devupdate serve`` in the master before workers fork: a fresh shared directory,
    one per node (``node``: server name and port) — several nodes may share the data directory, and
    each reports its own workers (emptying a shared one would wipe the other node's counters)."""
    path = Path(home) / "run" / (node or "default") / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def worker_exited(pid: int) -> None:
    """gunicorn ``worker_exit``: drop the dead worker's live-gauge files (its counters stay summed)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
