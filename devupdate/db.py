"""The database: one peewee ``DatabaseProxy`` bound at start to SQLite or PostgreSQL.

SQLite (the embedded default) runs in WAL mode with foreign keys and a busy timeout so several
worker processes share it; PostgreSQL is chosen by ``DEVUPDATE_DATABASE_URL=postgresql://…``.
Writers that read-modify-write a row take it with :func:`write_transaction` + :func:`locked`,
which maps to ``BEGIN IMMEDIATE`` on SQLite and ``SELECT … FOR UPDATE`` on PostgreSQL.

Every thread keeps its connection; on PostgreSQL a connection the server has dropped (restart,
failover, idle timeout) is noticed before the next statement outside a transaction and replaced,
so background threads and request threads alike carry on once the server is back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import select
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import peewee

from devupdate.errors import SettingsError

log = logging.getLogger("devupdate.db")

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": "normal"}


class BaseModel(peewee.Model):
    """A table. A model keyed by peewee's automatic ``id`` spells it out (``id = peewee.AutoField()``,
    the same column) so that the type checker knows it."""

    class Meta:
        database = database
        legacy_table_names = False


def utcnow() -> dt.datetime:
    """Naive UTC, the one form both databases store and compare the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def tuples(query: peewee.BaseQuery) -> Iterable[tuple[Any, ...]]:
    """``query.tuples()``: the rows as tuples. (peewee's stubs type ``tuples()`` as the query itself,
    so a model query would seem to yield model instances.)"""
    return query.tuples()


def iso_utc(value: dt.datetime | None) -> str | None:
    """A stored naive-UTC time as the API, CLI and audit trail show it: ``2026-11-22T08:59:58Z``."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


#: seconds to wait for the PostgreSQL server to accept a connection (an unreachable server must not
#: hang a request thread or a background job for the kernel's TCP timeout of minutes)
CONNECT_TIMEOUT = 10


def _dropped(conn) -> bool:
    """True when the server has closed this psycopg2 connection and no transaction can be lost by
    replacing it.

    psycopg2 only learns of a drop when a statement fails (``closed`` is still 0 after ``pg_ctl
    restart``), so look at the socket: an idle connection in autocommit mode is sent nothing unless
    the server says goodbye (the termination notice, then EOF) — readable means gone. A connection
    whose transaction is open is never replaced (its ``COMMIT`` must fail, not succeed elsewhere)."""
    if conn.closed:
        return True
    from psycopg2.extensions import TRANSACTION_STATUS_IDLE

    if conn.get_transaction_status() != TRANSACTION_STATUS_IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class ReconnectingPostgresqlDatabase(peewee.PostgresqlDatabase):
    """``PostgresqlDatabase`` whose per-thread connection survives a server restart.

    Before each statement that starts outside a transaction (a ``BEGIN`` included), a connection
    the server dropped is closed and a new one opened — the statement then runs on it. Inside a
    transaction nothing is retried: the failure reaches the caller, whose transaction is lost
    either way, and the next statement reconnects."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
        super().__init__(*args, **kwargs)
        self._pid = 0

    def _connect(self):
        pid = os.getpid()
        if pid != self._pid:  # who holds a connection (and its advisory locks), as pg_stat_activity shows it
            self.connect_params["application_name"] = f"devupdate pid {pid}"
            self._pid = pid
        # peewee's stubs leave out Database._connect, the hook connect() opens connections with
        return super()._connect()  # type: ignore[misc]

    def cursor(self, named_cursor=None):
        # peewee's stubs leave out Database._state, the per-thread connection state
        state: peewee._ConnectionState = self._state  # type: ignore[attr-defined]
        if not state.closed and not state.transactions and _dropped(state.conn):
            log.info("database connection lost (server restarted or closed it); reconnecting")
            try:
                state.conn.close()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass
            state.reset()
        return super().cursor(named_cursor)


def open_database(url: str) -> peewee.Database:
    """Build (not connect) the database named by ``url`` and bind the proxy to it."""
    parts = urlsplit(url)
    db: peewee.Database
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them
        path = unquote(parts.path[1:])
        db = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=30)
    elif parts.scheme in ("postgres", "postgresql"):
        try:
            import psycopg2  # noqa: F401
        except ImportError as exc:
            raise SettingsError("PostgreSQL needs psycopg2: pip install 'devupdate[postgres]'") from exc
        db = ReconnectingPostgresqlDatabase(
            unquote(parts.path.lstrip("/")) or "devupdate", user=unquote(parts.username or "") or None,
            password=unquote(parts.password or "") or None, host=parts.hostname or None,
            port=parts.port or None)
    else:
        raise SettingsError(f"DEVUPDATE_DATABASE_URL={url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")
    database.initialize(db)
    return db


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that serializes writers: concurrent read-modify-write never loses an update."""
    if is_sqlite():
        with database.atomic("IMMEDIATE"):
            yield
    else:
        with database.atomic():
            yield


_Select = TypeVar("_Select", bound=peewee.Select)


def locked(query: _Select) -> _Select:
    """Row lock for a read inside :func:`write_transaction` (SQLite already holds the write lock)."""
    return query if is_sqlite() else query.for_update()
