"""``/healthz``: is this worker fit to serve? The database answers (and, on SQLite, takes a write
within a second) and the worker's snapshot of the rules is not older than ``snapshot_max_age``.

A load balancer takes a node whose ``/healthz`` answers 503 out of rotation; the reason says
what to fix: ``database: <the driver's error>`` or ``snapshot is N s old (bound B s)``.
"""

from __future__ import annotations

from devupdate import db

#: how long the SQLite write probe waits for another process's write lock (ms)
SQLITE_PROBE_BUSY_MS = 1000


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe_database() -> int | None:
    """The schema version; raises when the database cannot be read (or, on SQLite, written)."""
    from devupdate import schema

    version = schema.current_version()
    if db.is_sqlite():  # WAL readers never wait, so only a write shows a database locked by another process
        conn = db.database.connection()
        conn.execute(f"PRAGMA busy_timeout = {SQLITE_PROBE_BUSY_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {db.SQLITE_PRAGMAS['busy_timeout']}")
    return version


def status(snapshots) -> tuple[int, dict]:
    """HTTP status and JSON body of ``/healthz`` for this worker."""
    reasons = []
    version = None
    try:
        version = probe_database()
    except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
        reasons.append(f"database: {_first_line(exc)}")
    stale = snapshots.stale_reason() if snapshots is not None else None
    if stale:
        reasons.append(stale)
    if reasons:
        return 503, {"status": "unavailable", "reason": "; ".join(reasons)}
    return 200, {"status": "ok", "schema": version}
