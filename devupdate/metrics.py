"""Prometheus metrics: the live counters, the scrape-time state features register, the exposition.

Counted where they happen (one call each, microseconds, no lock held across I/O):
- ``devupdate_update_checks_total{side,outcome}``, ``devupdate_offered_files_total{side}`` and the
  ``devupdate_update_check_seconds{side}`` histogram — :func:`check_answered` in the update check;
- ``devupdate_download_bytes_total{side}`` and ``devupdate_downloads_total{side,status}`` —
  :func:`download_sent` in the image download view;
- ``devupdate_wsus_content_requests_total{status}`` and ``devupdate_wsus_content_bytes_total`` —
  :func:`content_answered` in WSUS ``/Content``;
- ``devupdate_password_hashes_total`` — :func:`password_hashed`, every scrypt run (device users and
  console accounts): the work that password guessing makes the server do;
- ``devupdate_auth_throttled_total{reason}`` — :func:`auth_throttled`, external-side requests
  refused before any password check (``rate-limited``: 429, ``busy``: 503);
- ``devupdate_sign_in_failures_total{surface,reason}`` — :func:`sign_in_failed`, wrong credentials
  of a phone's user (``device``) or a console account (``console``);
- ``devupdate_log_uploads_total{side,status}`` and ``devupdate_log_upload_bytes_total{side}`` —
  :func:`log_uploaded` in the device log upload.

Read at scrape time, so they are right whichever process changed them (CLI, API, another node):
``devupdate_filestore_used_bytes`` / ``_quota_bytes`` / ``_objects`` ``{area}`` (this node's store)
and what each feature registers with :func:`register_state` where its tables live
(``devupdate_imports_total{outcome}``, ``devupdate_devices_known``, ``devupdate_devices_seen{window}``,
``devupdate_rules_pending``, the compliance gauges of ``devices/compliance.py``), plus
``devupdate_database_up``, ``devupdate_build_info``, the answering process's ``process_*`` and every
live worker's ``devupdate_worker_resident_memory_bytes`` / ``devupdate_worker_cpu_seconds_total``.
The database-derived families describe the whole installation: with several nodes, aggregate them
with ``max``, not ``sum``.

gunicorn runs several worker processes; ``devupdate serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at
``<home>/run/<server name>-<port>/prometheus`` (emptied at start) before any worker starts, so every worker's counters
live in shared files and ``/metrics`` on any worker reports the whole server
(:func:`prepare_multiprocess`, :func:`worker_exited`). Without it (tests, ``flask run``) the
counters are per process.

The ``/metrics`` route and the JSON request log are HTTP edges: ``admin/metrics_view.py``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
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
        self.job_runs = counter("devupdate_job_runs", "Runs of background jobs (snapshot refresh, inventory "
                                "flush, log cleanup …) by outcome (ok, failed)", ["job", "outcome"])
        self.job_seconds = histogram("devupdate_job_seconds", "Duration of background job runs", ["job"],
                                     buckets=_LATENCY_BUCKETS + (5.0, 10.0, 30.0, 60.0))
        self.soap_requests = counter("devupdate_wsus_soap_requests", "WSUS SOAP requests by service, operation "
                                     "and outcome (ok, or the fault's ErrorCode)", ["service", "operation", "outcome"])
        self.soap_latency = histogram("devupdate_wsus_soap_seconds", "Time to answer a WSUS SOAP request",
                                      ["service", "operation"], buckets=_LATENCY_BUCKETS)
        self.reported_events = counter("devupdate_wsus_reported_events", "Events of ReportEventBatch by outcome "
                                       "(taken; duplicate: EventInstanceID already stored; dropped: another "
                                       "computer's TargetID or another namespace)", ["outcome"])
        self.soap_in_flight = prometheus_client.Gauge(
            "devupdate_wsus_soap_in_flight", "WSUS SOAP requests at work now, by service and operation (all "
            "workers)", ["service", "operation"], multiprocess_mode="livesum")
        self.soap_queue = histogram("devupdate_wsus_soap_queue_seconds", "Time a WSUS SOAP request waited for an "
                                    "admission slot of its operation class (light, heavy), admitted or not",
                                    ["weight"], buckets=_LATENCY_BUCKETS)
        self.soap_rejected = counter("devupdate_wsus_soap_rejected", "WSUS SOAP requests turned away with ServerBusy "
                                     "by admission control, by operation, class and reason (full: no place in the "
                                     "queue; timeout: waited the class's longest wait)",
                                     ["service", "operation", "weight", "reason"])
        self.content_requests = counter("devupdate_wsus_content_requests", "WSUS /Content answers by HTTP status "
                                        "(200, 206, 304, 404, 405, 412, 416, 503)", ["status"])
        self.content_bytes = counter("devupdate_wsus_content_bytes", "File bytes sent by WSUS /Content (response "
                                     "body sizes of GET 200 and 206; an answer cut short still counts whole)")
        self.status_reports = counter("devupdate_device_status_reports", "Status reports of the device API "
                                      "(/api/device/v1/status) by state (downloading, downloaded, installed, "
                                      "failed) and outcome (taken; refused: access control; invalid)",
                                      ["state", "outcome"])
        self.sign_in_failures = counter("devupdate_sign_in_failures", "Sign-ins refused for wrong credentials, by "
                                        "surface (device: a phone's user on the external side; console: a "
                                        "console account) and reason (bad-credentials; NTLM: no-handshake, "
                                        "handshake-expired for an AUTHENTICATE without its connection's "
                                        "handshake)", ["surface", "reason"])
        self.log_uploads = counter("devupdate_log_uploads", "Device log uploads by side and HTTP status (201 "
                                   "stored; 413 too large; 507 quota …)", ["side", "status"])
        self.log_upload_bytes = counter("devupdate_log_upload_bytes", "Bytes of device logs stored", ["side"])
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


def soap_answered(service: str, operation: str, outcome: str, seconds: float) -> None:
    """One SOAP answer; ``operation`` is ``-`` when the request named none this server knows."""
    _child("soap_requests", service, operation, outcome).inc()
    _child("soap_latency", service, operation).observe(seconds)


def wsus_events_reported(taken: int, duplicate: int, dropped: int) -> None:
    """The events of one ReportEventBatch, by what became of them."""
    for outcome, count in (("taken", taken), ("duplicate", duplicate), ("dropped", dropped)):
        if count:
            _child("reported_events", outcome).inc(count)


def soap_waited(weight: str, seconds: float) -> None:
    """A SOAP request of class ``weight`` got its slot (or gave up) after ``seconds`` of waiting."""
    _child("soap_queue", weight).observe(seconds)


def soap_rejected(service: str, operation: str, weight: str, reason: str) -> None:
    _child("soap_rejected", service, operation, weight, reason).inc()


def soap_working(service: str, operation: str, delta: int) -> None:
    """``delta`` (+1 as a handler starts, -1 as it ends) on the in-flight gauge."""
    _child("soap_in_flight", service, operation).inc(delta)


def status_reported(state: str, outcome: str) -> None:
    """One device API status report; ``state`` is ``-`` when it was refused before being read."""
    _child("status_reports", state, outcome).inc()


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


def content_answered(status: int, size: int) -> None:
    """One WSUS ``/Content`` answer with ``size`` file bytes in its body (0 for HEAD and refusals)."""
    _child("content_requests", str(status)).inc()
    if size:
        families().content_bytes.inc(size)


def password_hashed() -> None:
    """One scrypt run (see :mod:`devupdate.devices.users`)."""
    families().password_hashes.inc()


def auth_throttled(reason: str) -> None:
    """An external-side request refused before its password was checked: rate-limited | busy."""
    _child("auth_throttled", reason).inc()


def sign_in_failed(surface: str, reason: str = "bad-credentials") -> None:
    """A sign-in refused for its credentials: ``surface`` is device | console."""
    _child("sign_in_failures", surface, reason).inc()


def log_uploaded(side: str, status: int, size: int) -> None:
    """One device log upload answered with ``status``; ``size`` bytes stored (0 when refused)."""
    _child("log_uploads", side, str(status)).inc()
    if size:
        _child("log_upload_bytes", side).inc(size)


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


def _settled(path: str) -> bool:
    """True when a worker's counter file has its header: a worker creates the file empty and then
    sizes it, and a scrape in between must skip it rather than fail (the size only ever grows)."""
    try:
        return os.stat(path).st_size >= _MMAP_HEADER
    except FileNotFoundError:  # a dead worker's live gauges, removed since the directory was listed
        return False


_MMAP_HEADER = 8  # prometheus_client's file header: the used length and padding


def _workers_families(path: str) -> bytes:
    """Every worker's live counters, read from the shared directory."""
    from prometheus_client import multiprocess

    class SettledFiles(multiprocess.MultiProcessCollector):
        def collect(self):
            files = [name for name in glob.glob(os.path.join(path, "*.db")) if _settled(name)]
            return self.merge(files, accumulate=True)

    registry = prometheus_client.CollectorRegistry()
    SettledFiles(registry, path=path)
    return prometheus_client.generate_latest(registry)


def _build_info() -> GaugeMetricFamily:
    import platform
    from importlib import metadata

    try:
        version = metadata.version("devupdate")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    info = GaugeMetricFamily("devupdate_build_info", "Always 1: the running version (nodes on different "
                             "versions during a rolling upgrade show here)", labels=["version", "python"])
    info.add_metric([version, platform.python_version()], 1)
    return info


class _BuildInfo:
    def collect(self):
        yield _build_info()


_WORKER_FILE = re.compile(r"_(\d+)\.db$")


def _proc_usage(pid: int) -> tuple[int, float] | None:
    """(resident bytes, CPU seconds) of a live process from /proc, or None (gone, or not Linux)."""
    try:
        with open(f"/proc/{pid}/statm") as statm, open(f"/proc/{pid}/stat") as stat:
            pages = int(statm.read().split()[1])
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return pages * os.sysconf("SC_PAGE_SIZE"), (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


class _Workers:
    """Memory and CPU of every live worker of this server (the pids of the shared counter files): the
    ``process_*`` families describe only the worker that answered the scrape."""

    def __init__(self, path: str):
        self.path = path

    def collect(self):
        rss = GaugeMetricFamily("devupdate_worker_resident_memory_bytes", "Resident memory of each live worker "
                                "of this server", labels=["pid"])
        cpu = CounterMetricFamily("devupdate_worker_cpu_seconds", "CPU time (user and system) of each live worker "
                                  "of this server", labels=["pid"])
        pids = sorted({int(m.group(1)) for name in os.listdir(self.path) if (m := _WORKER_FILE.search(name))})
        for pid in pids:
            usage = _proc_usage(pid)
            if usage is not None:
                rss.add_metric([str(pid)], usage[0])
                cpu.add_metric([str(pid)], usage[1])
        yield rss
        yield cpu


def render(store) -> bytes:
    """The exposition text: live counters (every worker's, in multiprocess mode) plus scrape-time state,
    the build and the answering process (``process_*``: with several workers, the one that answered)."""
    families()
    path = os.environ.get(MULTIPROC_ENV)
    state = prometheus_client.CollectorRegistry()
    if path:
        live = _workers_families(path)
        prometheus_client.ProcessCollector(registry=state)  # the default registry has it; the merged one not
        state.register(_Workers(path))
    else:
        live = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    state.register(_BuildInfo())
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
