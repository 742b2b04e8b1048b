"""Background work: how the service's periodic jobs run, back off and share one holder across nodes.

- :class:`Retry` — exponential backoff for a job whose dependency (mostly the database) is away;
  it logs once when an outage starts, a reminder every few minutes, and once when it is over —
  not once per attempt;
- :class:`PeriodicJob` — a daemon thread calling ``step()`` every ``interval`` seconds, backing off
  with its :class:`Retry` while ``step`` raises, each run counted in the metrics (runs by outcome,
  duration, last success); the one way background work runs;
- :class:`NodeLock` — a lock with one holder across every process of every node of an installation
  (``pg_try_advisory_lock`` on PostgreSQL, ``flock`` on SQLite, whose database is one machine's
  file anyway), for jobs that must run once per period, not once per worker;
- :class:`InstallationJob` — a periodic job with one runner for the whole installation: every worker
  starts one, the one holding its :class:`NodeLock` runs it, the others take over within seconds
  when the holder dies; the lock file records the last run, so a takeover does not run early.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devupdate import metrics

log = logging.getLogger("devupdate.jobs")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class Retry:
    """Backoff between failed attempts: ``first``, doubling, at most ``maximum`` seconds."""

    REMIND_SECONDS = 300.0

    def __init__(self, what: str, *, first: float = 0.1, maximum: float = 1.0,
                 logger: logging.Logger = log, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.first = first
        self.maximum = maximum
        self.logger = logger
        self.clock = clock
        self.failures = 0
        self.since: float | None = None  # when the current outage started
        self._reminded = 0.0

    def failed(self, exc: BaseException) -> float:
        """Count a failure; returns the seconds to wait before the next attempt."""
        now = self.clock()
        if self.failures == 0 or self.since is None:
            self.since = self._reminded = now
            # the traceback once: a bug shows where it is, an outage costs one entry
            self.logger.warning("%s failed: %s; retrying every %g s at most until it works", self.what,
                                first_line(exc), self.maximum, exc_info=exc)
        elif now - self._reminded >= self.REMIND_SECONDS:
            self._reminded = now
            self.logger.warning("%s still failing after %.0f s (%d attempts): %s", self.what, now - self.since,
                                self.failures + 1, first_line(exc))
        self.failures += 1
        return min(self.maximum, self.first * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        if self.failures:
            self.logger.warning("%s works again after %.1f s (%d failed attempt(s))", self.what,
                                self.clock() - (self.since or self.clock()), self.failures)
        self.failures = 0
        self.since = None

    @property
    def outage_seconds(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since


class PeriodicJob:
    """Calls ``step()`` every ``interval`` seconds in a daemon thread (first after ``first_delay``).

    ``step`` may return the seconds until its next call instead of ``interval``; when it raises,
    the next call comes after the :class:`Retry` delay instead. ``wake()`` calls it early (a job
    that also runs on a threshold, such as bytes written). ``last_success`` (monotonic) tells
    how fresh the job's work is."""

    def __init__(self, name: str, step: Callable[[], float | None], interval: float, *,
                 retry: Retry | None = None, first_delay: float | None = None,
                 on_stop: Callable[[], None] | None = None):
        self.name = name
        self.step = step
        self.interval = interval
        self.retry = retry or Retry(name, first=min(interval, 1.0), maximum=max(interval, 1.0))
        self.first_delay = interval if first_delay is None else first_delay
        self.on_stop = on_stop
        self.last_success: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> float:
        """One call of ``step``; returns the delay until the next one. Counted in the metrics."""
        started = time.monotonic()
        try:
            delay = self.step()
            if delay is not None and (isinstance(delay, bool) or not isinstance(delay, float | int)):
                raise TypeError(f"{self.name}: step() returned {delay!r}, not a delay in seconds or None")
        except Exception as exc:  # noqa: BLE001 - the job carries on; Retry logs it once per outage
            metrics.job_ran(self.name, False, time.monotonic() - started)
            return self.retry.failed(exc)
        metrics.job_ran(self.name, True, time.monotonic() - started)
        self.retry.succeeded()
        self.last_success = time.monotonic()
        return self.interval if delay is None else delay

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run ``step`` now rather than at the end of the current delay (cheap; safe from any thread)."""
        self._wake.set()

    def stop(self, wait: float = 0.0) -> None:
        self._stop.set()
        self._wake.set()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=wait)

    def _run(self) -> None:
        delay = self.first_delay
        try:
            while True:
                self._wake.wait(delay)
                self._wake.clear()
                if self._stop.is_set():
                    break
                delay = self.run_once()
        finally:
            if self.on_stop is not None:
                try:
                    self.on_stop()
                except Exception:  # noqa: BLE001
                    log.exception("%s: cleanup at stop failed", self.name)


class NodeLock:
    """A non-blocking lock with one holder across the installation, held until released.

    On PostgreSQL: a session advisory lock on the calling thread's connection — call it from one
    thread (a job's). A lost connection loses the lock, so :meth:`acquire` checks that this session
    still holds it each time and takes it again (or reports that another node has it). On SQLite:
    ``flock`` on ``path``, released when the process dies."""

    NAMESPACE = 0x64657675  # 'devu': first key of our advisory locks

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = Path(path)
        self.key = zlib.crc32(name.encode()) & 0x7FFFFFFF
        self._fd: int | None = None
        self._held = False

    @staticmethod
    def _postgres() -> bool:
        from devupdate import db

        return db.database.obj is not None and not db.is_sqlite()

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        """True when this process holds the lock now (taken now, or still held); never waits."""
        if self._postgres():
            self._held = self._acquire_postgres()
        else:
            self._held = self._acquire_flock()
        return self._held

    def _acquire_postgres(self) -> bool:
        from devupdate import db

        db.database.connect(reuse_if_open=True)
        if self._held:
            still = db.database.execute_sql(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted "
                "AND classid = %s AND objid = %s AND objsubid = 2", (self.NAMESPACE, self.key)).fetchone()
            if still:
                return True
            log.warning("%s: lock lost with the database connection; taking it again", self.name)
        row = db.database.execute_sql("SELECT pg_try_advisory_lock(%s, %s)", (self.NAMESPACE, self.key)).fetchone()
        return bool(row and row[0])

    def _acquire_flock(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None
        elif self._held and self._postgres():
            from devupdate import db

            try:
                db.database.execute_sql("SELECT pg_advisory_unlock(%s, %s)", (self.NAMESPACE, self.key))
            except Exception:  # noqa: BLE001 - a dead connection has released it already
                pass
        self._held = False


class InstallationJob:
    """``run()`` every ``interval`` seconds, in one process of the whole installation at a time.

    Every worker of every node starts one; the process holding the :class:`NodeLock` ``name`` runs it
    and the others try the lock every ``lock_retry`` seconds, so when the holder dies another worker
    (of this node or another) takes over. ``<home>/<name>.lock`` — in the data directory the nodes
    share, the flock's file on SQLite — records the last run (its time, process and outcome), so the
    next holder waits for the rest of the interval instead of running at once. A new installation runs
    it ``first_delay`` after start. ``run()`` returns a summary (JSON-able) kept with the last run."""

    def __init__(self, name: str, run: Callable[[], Any], interval: float, home: Path, *,
                 lock_retry: float = 5.0, first_delay: float = 2.0, logger: logging.Logger = log,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.run = run
        self.interval = float(interval)
        self.lock_retry = float(lock_retry)
        self.path = Path(home) / f"{name}.lock"
        self.lock = NodeLock(name, self.path)
        self.logger = logger
        self.clock = clock
        self.job = PeriodicJob(name, self._tick, self.lock_retry, first_delay=first_delay,
                               retry=Retry(name, first=self.lock_retry, maximum=max(self.lock_retry, 60.0),
                                           logger=logger),
                               on_stop=self.lock.release)

    def state(self) -> dict[str, Any]:
        """What the lock file records: ``last_run`` (epoch seconds), ``runs``, ``last`` (pid, seconds,
        summary); empty before the first run."""
        try:
            raw = self.path.read_bytes()
            state = json.loads(raw) if raw.strip() else {}
        except (OSError, ValueError):
            state = {}
        return state if isinstance(state, dict) else {}

    def _save(self, state: dict[str, Any]) -> None:
        """In place (the file may carry the flock: replacing it would hand out a second lock)."""
        data = json.dumps(state, sort_keys=True, default=str).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def until_due(self, now: float | None = None) -> float:
        """Seconds until the next run is due (0: due now), from the recorded last run."""
        last = self.state().get("last_run")
        if not isinstance(last, int | float) or isinstance(last, bool):
            return 0.0
        now = self.clock() if now is None else now
        return max(0.0, float(last) + self.interval - now)

    def step(self, now: float | None = None) -> dict[str, Any] | None:
        """If this process holds the lock and a run is due, run it; returns what was recorded."""
        was_held = self.lock.held
        if not self.lock.acquire():
            return None
        if not was_held:
            self.logger.info("%s: process %d runs it for the installation", self.name, os.getpid())
        now = self.clock() if now is None else now
        if self.until_due(now) > 0:
            return None
        started = time.monotonic()
        summary = self.run()
        state = self.state()
        state.update(last_run=now, runs=int(state.get("runs", 0)) + 1,
                     last={"pid": os.getpid(), "time": now, "seconds": round(time.monotonic() - started, 3),
                           "summary": summary})
        self._save(state)
        return state

    def _tick(self) -> float:
        self.step()
        if not self.lock.held:
            return self.lock_retry
        # the holder sleeps until the run is due, but checks the lock at least every minute (a lost
        # PostgreSQL session loses it, and a run recorded by another holder moves the due time)
        return max(0.5, min(self.until_due(), 60.0))

    def start(self) -> InstallationJob:
        self.job.start()
        return self

    def stop(self, wait: float = 0.0) -> None:
        self.job.stop(wait)
