"""Automatic log cleanup while the service runs (management.md §3, device-protocol.md §7).

Every worker process of every node starts a :class:`LogCleanupJob`, but only the one holding the
installation's :class:`~devupdate.jobs.NodeLock` ``log-cleanup`` works (an advisory lock on
PostgreSQL, a ``flock`` on ``<home>/log-cleanup.lock`` on SQLite); the others retry the lock
every ``LOCK_RETRY`` seconds, so when the holder dies (worker restart, crash, a node killed)
another worker — of this node or another — takes over within seconds. ``<home>/log-cleanup.lock``
(in the data directory the nodes share) also records the last run, so a takeover does not run
again early.

Schedule: ``LogCleanUpTimeOfDay`` unset → every hour (the first run shortly after start);
``hh:mm`` → once a day at that local time. Each run deletes logs last written more than
``LogCleanUpInterval`` days ago via :func:`devupdate.devices.logs.cleanup` — the same code as
``devupdate logs cleanup``. Configuration changes are picked up within ``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

from devupdate import configuration
from devupdate.devices.logs import ConfigCache, cleanup, config_cache
from devupdate.jobs import NodeLock, PeriodicJob, Retry

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
        self.lock = NodeLock("log-cleanup", self.path)
        self._state: dict = {}
        self.job = PeriodicJob("log-cleanup", self._tick, CHECK_EVERY, first_delay=START_DELAY,
                               retry=Retry("log cleanup", first=LOCK_RETRY, maximum=CHECK_EVERY, logger=log),
                               on_stop=self.release)

    # --- lock and state ----------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the installation-wide lock without waiting; True while this process holds it."""
        was_held = self.lock.held
        if not self.lock.acquire():
            return False
        if not was_held:
            self._state = self._load()
            log.info("log cleanup: process %d runs the cleanup for the installation", os.getpid())
        return True

    def release(self) -> None:
        self.lock.release()

    def _load(self) -> dict:
        try:
            raw = self.path.read_bytes()
            state = json.loads(raw) if raw.strip() else {}
        except (OSError, ValueError):
            state = {}
        return state if isinstance(state, dict) else {}

    def _save(self) -> None:
        """In place (the file may carry the flock: replacing it would hand out a second lock)."""
        data = json.dumps(self._state, sort_keys=True).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def last_run(self) -> float | None:
        value = self._state.get("last_run")
        return float(value) if isinstance(value, int | float) else None

    # --- one step ------------------------------------------------------------------------------

    def step(self, now: float | None = None) -> dict | None:
        """If this process holds the lock and a run is due, run it; returns the run's summary."""
        if not self.try_lock():
            return None
        self._state = self._load()  # another holder (after a lost lock, another node) may have run since
        now = time.time() if now is None else now
        config = self.config.get()
        time_of_day = configuration.optional_text(config, "LogCleanUpTimeOfDay")
        days = configuration.whole(config, "LogCleanUpInterval")
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

    # --- job ---------------------------------------------------------------------------------

    def _tick(self) -> float:
        self.step()
        return CHECK_EVERY if self.lock.held else LOCK_RETRY

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()
