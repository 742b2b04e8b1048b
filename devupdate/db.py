"""The database: one peewee ``DatabaseProxy`` bound at start to SQLite or PostgreSQL.

SQLite (the embedded default) runs in WAL mode with foreign keys and a busy timeout so several
worker processes share it; PostgreSQL is chosen by ``DEVUPDATE_DATABASE_URL=postgresql://…``.
Writers that read-modify-write a row take it with :func:`write_transaction` + :func:`locked`,
which maps to ``BEGIN IMMEDIATE`` on SQLite and ``SELECT … FOR UPDATE`` on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import peewee

from devupdate.errors import SettingsError

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": "normal"}


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def utcnow() -> dt.datetime:
    """Naive UTC, the one form both databases store and compare the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso_utc(value: dt.datetime | None) -> str | None:
    """A stored naive-UTC time as the API, CLI and audit trail show it: ``2026-11-22T08:59:58Z``."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def open_database(url: str) -> peewee.Database:
    """Build (not connect) the database named by ``url`` and bind the proxy to it."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them
        path = unquote(parts.path[1:])
        db = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=30)
    elif parts.scheme in ("postgres", "postgresql"):
        try:
            import psycopg2  # noqa: F401
        except ImportError as exc:
            raise SettingsError("PostgreSQL needs psycopg2: pip install 'devupdate[postgres]'") from exc
        db = peewee.PostgresqlDatabase(
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


def locked(query: peewee.SelectQuery) -> peewee.SelectQuery:
    """Row lock for a read inside :func:`write_transaction` (SQLite already holds the write lock)."""
    return query if is_sqlite() else query.for_update()
