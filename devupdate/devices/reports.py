"""Status reports of the device API: the last state each device reported for each package version.

Like the inventory, the request path only puts the report in an in-memory dict; a background job
writes the dict with one upsert per batch. One row per (device, rule, version): a report sent twice
changes nothing, and a report of a lower rank (``downloading`` after ``installed``) never replaces a
higher one (:data:`devupdate.devices.jsonapi.RANK`), so reports that arrive late or twice are harmless.
The rollout halt (``rules/rollout``) reads the ``failed`` and ``downloaded`` rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from devupdate import db
from devupdate.db import BaseModel, utcnow
from devupdate.devices.jsonapi import RANK
from devupdate.jobs import PeriodicJob, Retry

log = logging.getLogger("devupdate.reports")


class DeviceReport(BaseModel):
    """The latest status one device reported for one version of one rule's package."""

    id = peewee.AutoField()
    device_id = peewee.CharField(max_length=80)
    rule_id = peewee.CharField(max_length=36, index=True)
    package = peewee.CharField(max_length=100)
    version = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=12)  # downloading | downloaded | installed | failed
    rank = peewee.IntegerField()
    code = peewee.CharField(max_length=64, default="")
    message = peewee.CharField(max_length=1024, default="")
    first_reported = peewee.DateTimeField(default=utcnow)
    reported_at = peewee.DateTimeField(default=utcnow)  # when this state was last reported

    class Meta:
        indexes = ((("device_id", "rule_id", "version"), True),)


COLUMNS = ("device_id", "rule_id", "package", "version", "state", "rank", "code", "message", "first_reported",
           "reported_at")
UPDATED = ("package", "state", "rank", "code", "message", "reported_at")


@dataclass
class _Report:
    values: list[Any]  # in COLUMNS order, the times as POSIX seconds until written


def _upsert_sql(placeholders: str) -> str:
    table = f'"{DeviceReport._meta.table_name}"'
    wins = f'excluded."rank" >= {table}."rank"'
    sets = ", ".join(f'"{c}" = CASE WHEN {wins} THEN excluded."{c}" ELSE {table}."{c}" END' for c in UPDATED)
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    return (f"INSERT INTO {table} ({columns}) VALUES {placeholders} "
            f'ON CONFLICT ("device_id", "rule_id", "version") DO UPDATE SET {sets}')


def _when(posix: float, sqlite: bool) -> Any:
    stamp = dt.datetime.fromtimestamp(posix, dt.UTC).replace(tzinfo=None)
    return str(stamp) if sqlite else stamp


def write(rows: list[list[Any]], batch: int = 500) -> None:
    """Upsert reports (``COLUMNS`` order, times as POSIX seconds), ``batch`` rows per transaction."""
    if not rows:
        return
    sqlite = db.is_sqlite()
    params = [tuple(row[:8]) + (_when(row[8], sqlite), _when(row[9], sqlite)) for row in rows]
    execute: Callable[..., Any] | None
    if sqlite:
        sql, execute = _upsert_sql("(" + ", ".join("?" for _ in COLUMNS) + ")"), None
    else:
        from psycopg2.extras import execute_values as execute

        sql = _upsert_sql("%s")
    for start in range(0, len(params), batch):
        chunk = params[start:start + batch]
        with db.database.atomic():
            cursor = db.database.cursor()
            if execute is None:
                cursor.executemany(sql, chunk)
            else:
                execute(cursor, sql, chunk, page_size=len(chunk))


class ReportRecorder:
    """Collects reports on the request path (one dict update); its job writes them every
    ``flush_seconds`` and at shutdown, keeping them across database outages."""

    def __init__(self, flush_seconds: float = 2.0, batch: int = 500, clock: Callable[[], float] = time.time):
        self.flush_seconds, self.batch, self.clock = flush_seconds, batch, clock
        self._pending: dict[tuple[str, str, str], list[Any]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.written = 0
        self.job = PeriodicJob("report-flush", self._step, flush_seconds, retry=Retry(
            "device API: writing status reports", first=flush_seconds, maximum=15.0, logger=log))

    def observe(self, device_id: str, rule_id: str, package: str, version: str, state: str, code: str,
                message: str) -> None:
        now = self.clock()
        key = (device_id, rule_id, version)
        row = [device_id, rule_id, package, version, state, RANK[state], code, message, now, now]
        with self._lock:
            self._merge(key, row)

    def _merge(self, key: tuple[str, str, str], row: list[Any]) -> None:
        held = self._pending.get(key)
        if held is None:
            self._pending[key] = row
            return
        first = min(held[8], row[8])
        if row[5] >= held[5]:
            held[:] = row
        held[8] = first

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _write(self) -> int:
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            try:
                db.database.connect(reuse_if_open=True)
                write(list(pending.values()), self.batch)
            except Exception:
                with self._lock:  # keep them, merged with what arrived meanwhile
                    newer, self._pending = self._pending, pending
                    for key, row in newer.items():
                        self._merge(key, row)
                raise
            self.written += len(pending)
            return len(pending)

    def _step(self) -> None:
        """The job's step: its return is the job's next delay, so the count written is not returned
        (a 0 made the job run again at once, a busy loop in every worker)."""
        self._write()

    def flush(self) -> int:
        """Write what is pending now; on failure keep it (never raises)."""
        try:
            written = self._write()
        except Exception as exc:  # noqa: BLE001 - database away: logged once per outage, retried
            self.job.retry.failed(exc)
            return 0
        self.job.retry.succeeded()
        return written

    def start(self) -> None:
        self.job.start()

    def close(self) -> None:
        self.job.stop(wait=10)
        self.flush()
