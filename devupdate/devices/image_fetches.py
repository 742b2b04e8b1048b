"""Downloads of the image a staged rollout rolls out, counted per client for the rollout watch.

A Lync phone says nothing after its check: whether it fetched the image it was offered is known only
from ``GET /DeviceUpdateFiles_*/…``. The download path names the rule and version (the snapshot
marks the images of an active rollout's version), not the device, so what is kept is who asked:
the client address (``X-Forwarded-For`` from trusted proxies only) and, on the external side, the
authenticated user. The watch attributes each row to the one device of the rule's family whose
last check came from that address (``devices/rollout_watch``). Like the inventory, the request path
only updates an in-memory dict; a job writes it with one upsert per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from devupdate import db
from devupdate.jobs import PeriodicJob, Retry
from devupdate.rules.models import RolloutDownload

log = logging.getLogger("devupdate.rollout")

COLUMNS = ("rule_id", "version", "address", "user_id", "first_at", "last_at", "count")


def _upsert_sql(placeholders: str) -> str:
    """Insert, or widen a known row's time span and add its count (flushes of several workers in any order)."""
    table = f'"{RolloutDownload._meta.table_name}"'
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    return (f"INSERT INTO {table} ({columns}) VALUES {placeholders} "
            f'ON CONFLICT ("rule_id", "version", "address", "user_id") DO UPDATE SET '
            f'"first_at" = CASE WHEN excluded."first_at" < {table}."first_at" THEN excluded."first_at" '
            f'ELSE {table}."first_at" END, '
            f'"last_at" = CASE WHEN excluded."last_at" > {table}."last_at" THEN excluded."last_at" '
            f'ELSE {table}."last_at" END, '
            f'"count" = {table}."count" + excluded."count"')


def write(rows: list[tuple], batch: int = 500) -> None:
    """Upsert rows in ``COLUMNS`` order, ``batch`` per transaction."""
    if not rows:
        return
    execute: Callable[..., Any] | None
    if db.is_sqlite():
        sql, execute = _upsert_sql("(" + ", ".join("?" for _ in COLUMNS) + ")"), None
    else:
        from psycopg2.extras import execute_values as execute

        sql = _upsert_sql("%s")
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        with db.database.atomic():
            cursor = db.database.cursor()
            if execute is None:
                cursor.executemany(sql, chunk)
            else:
                execute(cursor, sql, chunk, page_size=len(chunk))


class DownloadRecorder:
    """Collects image downloads on the request path (one dict update); its job writes them every
    ``flush_seconds`` and at shutdown, keeping them across database outages."""

    def __init__(self, flush_seconds: float = 2.0, batch: int = 500, clock: Callable[[], float] = time.time):
        self.flush_seconds, self.batch, self.clock = flush_seconds, batch, clock
        self._pending: dict[tuple[str, str, str, str], list[float]] = {}  # key -> [first, last, count]
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.written = 0
        self.job = PeriodicJob("download-flush", self._step, flush_seconds, retry=Retry(
            "rollouts: writing image downloads", first=flush_seconds, maximum=15.0, logger=log))

    def observe(self, rule_id: str, version: str, address: str, user: str) -> None:
        now = self.clock()
        key = (rule_id, version, address[:64], user[:256])
        with self._lock:
            held = self._pending.get(key)
            if held is None:
                self._pending[key] = [now, now, 1]
            else:
                held[1], held[2] = max(held[1], now), held[2] + 1

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
                write([(*key, first, last, int(count)) for key, (first, last, count) in pending.items()], self.batch)
            except Exception:
                with self._lock:  # keep them, merged with what arrived meanwhile
                    for key, (first, last, count) in pending.items():
                        held = self._pending.setdefault(key, [first, last, 0])
                        held[0], held[1], held[2] = min(held[0], first), max(held[1], last), held[2] + count
                raise
            self.written += len(pending)
            return len(pending)

    def _step(self) -> None:
        self._write()  # not returned: the step's return is the job's next delay

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
