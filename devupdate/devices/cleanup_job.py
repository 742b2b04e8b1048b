"""Automatic log cleanup while the service runs (management.md §3, device-protocol.md §7).

Every worker process starts a :class:`LogCleanupJob` thread, but only the one holding a
non-blocking ``flock`` on ``<home>/log-cleanup.lock`` works; the others retry the lock every
``LOCK_RETRY`` seconds, so when the holder dies (worker restart, crash) another worker takes over
within seconds. The lock file also records the last run, so a takeover does not run again early.

Schedule: ``LogCleanUpTimeOfDay`` unset → every hour (the first run shortly after start);
``hh:mm`` → once a day at that local time. Each run deletes logs last written more than
``LogCleanUpInterval`` days ago via :func:`devupdate.devices.logs.cleanup` — the same code as
``devupdate logs cleanup``. Configuration changes are picked up within ``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path

from devupdate.devices.logs import ConfigCache, cleanup, config_cache

log = logging.getLogger("devupdate.logcleanup")

LOCK_NAME = "log-cleanup.lock"
LOCK_RETRY = 5.0
CHECK_EVERY = 30.0
START_DELAY = 2.0
HOURLY = 3600.0


def last_scheduled(now: float, time_of_day: str | None) -> float:
    """The most recent instant the job was due at (``now`` itself for hourly mode)."""
    if time_of_day is None:
        return now
    hour, minute = (int(part) for part in time_of_day.split(":"))
    local = dt.datetime.fromtimestamp(now)
    today = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if today > local:
        today -= dt.timedelta(days=1)
    return today.timestamp()


def is_due(now: float, last_run: float | None, time_of_day: str | None) -> bool:
    if time_of_day is None:
        return last_run is None or now - last_run >= HOURLY
    if last_run is None:
        return False  # a new installation waits for the first hh:mm
    return last_run < last_scheduled(now, time_of_day)


class LogCleanupJob:
    def __init__(self, store, home: Path, config: ConfigCache = config_cache):
        self.store = store
        self.path = Path(home) / LOCK_NAME
        self.config = config
        self._fd: int | None = None
        self._state: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lock and state ----------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the node-wide lock without waiting; True while this process holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        try:
            raw = os.pread(fd, 65536, 0)
            self._state = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self._state = {}
        if not isinstance(self._state, dict):
            self._state = {}
        log.info("log cleanup: process %d runs the cleanup on this node", os.getpid())
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None

    def _save(self) -> None:
        assert self._fd is not None
        data = json.dumps(self._state, sort_keys=True).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    @property
    def last_run(self) -> float | None:
        value = self._state.get("last_run")
        return float(value) if isinstance(value, int | float) else None

    # --- one step ------------------------------------------------------------------------------

    def step(self, now: float | None = None) -> dict | None:
        """If this process holds the lock and a run is due, run it; returns the run's summary."""
        if not self.try_lock():
            return None
        now = time.time() if now is None else now
        config = self.config.get()
        time_of_day = config.get("LogCleanUpTimeOfDay")
        days = int(config["LogCleanUpInterval"])  # type: ignore[call-overload]
        last = self.last_run
        if last is None and time_of_day is not None:  # a new installation waits for its first hh:mm
            if not isinstance(self._state.get("first_seen"), int | float):
                self._state["first_seen"] = now
                self._save()
            last = float(self._state["first_seen"])
        if not is_due(now, last, time_of_day):
            return None
        report = cleanup(self.store, days, now=now)
        summary = {"time": now, "pid": os.getpid(), "days_back": days, "files_removed": len(report.removed),
                   "bytes_freed": report.bytes_freed}
        self._state["last_run"] = now
        self._state["last"] = summary
        self._state["runs"] = int(self._state.get("runs", 0)) + 1
        self._save()
        log.info("log cleanup: removed %d file(s), %d bytes, older than %d day(s)",
                 len(report.removed), report.bytes_freed, days)
        return summary

    # --- thread --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-cleanup", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = START_DELAY
        while not self._stop.wait(delay):
            try:
                self.step()
            except Exception:  # keep the thread alive: a database or disk hiccup is retried
                log.exception("log cleanup failed; retrying later")
            delay = CHECK_EVERY if self._fd is not None else LOCK_RETRY
        self.release()
