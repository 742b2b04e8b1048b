"""The database part of a backup: SQLite's online backup API, or ``pg_dump`` / ``pg_restore``.

Both give a consistent snapshot while the service runs: SQLite copies pages under its own locking
(writers go on; the copy restarts on a change, then finishes), ``pg_dump`` reads inside one
repeatable-read transaction.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote, urlsplit

from devupdate.errors import DevupdateError

SQLITE, POSTGRESQL = "sqlite", "postgresql"
DUMP_NAMES = {SQLITE: "database.sqlite", POSTGRESQL: "database.pgdump"}


def kind_of(url: str) -> str:
    return SQLITE if urlsplit(url).scheme == "sqlite" else POSTGRESQL


def sqlite_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path[1:]))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DevupdateError(f"{name} not found: install the PostgreSQL client tools of the server's major "
                             "version (Debian: apt-get install postgresql-client)", code="no-pg-tools")
    return path


def _pg_env(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password for the command line, the password in ``PGPASSWORD``."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    return parts._replace(scheme="postgresql").geturl(), env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=24 * 3600)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DevupdateError(f"{what} failed: {detail[-1] if detail else f'exit {proc.returncode}'}",
                             code="backup-database-failed")


def _copy_sqlite(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def dump(url: str, target: Path) -> None:
    """A consistent copy of the database named by ``url`` into ``target``."""
    if kind_of(url) == SQLITE:
        source = sqlite_path(url)
        if not source.is_file():
            raise DevupdateError(f"no database at {source}: nothing to back up", code="no-database")
        _copy_sqlite(source, target)
        os.chmod(target, 0o600)
        return
    address, env = _pg_env(url)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(target),
          "--dbname", address], env, "pg_dump")
    os.chmod(target, 0o600)


def schema_of(url: str) -> int | None:
    """The schema version of the database, None when it has none of devupdate's tables (a missing
    SQLite file counts as empty)."""
    from devupdate import db, schema

    if kind_of(url) == SQLITE and not sqlite_path(url).exists():
        return None
    db.open_database(url).connect(reuse_if_open=True)
    try:
        return schema.current_version()
    finally:
        db.database.close()


def is_empty(url: str) -> bool:
    return schema_of(url) is None


def load(url: str, source: Path, *, replace: bool) -> None:
    """Put the dumped database back: the SQLite file is copied in whole (temp → fsync → rename);
    ``pg_restore`` runs in one transaction, so a failed restore leaves the database as it was."""
    from devupdate import db

    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    if kind_of(url) == SQLITE:
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".restoring")
        temp.unlink(missing_ok=True)
        _copy_sqlite(source, temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        os.replace(temp, path)
        return
    address, env = _pg_env(url)
    command = [_tool("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    if replace:
        command += ["--clean", "--if-exists"]
    _run([*command, "--dbname", address, str(source)], env, "pg_restore")
