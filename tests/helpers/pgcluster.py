"""A private PostgreSQL cluster a test starts, restarts and stops itself.

The shared test server must never be restarted, so tests that take the database away run their
own: ``initdb`` into a fresh directory (owned by the ``postgres`` user — PostgreSQL refuses to run
as root, so as root every command goes through ``runuser -u postgres``), listening on a free
loopback port only, trust authentication, no Unix socket outside its own directory::

    with PgCluster.create() as cluster:
        url = cluster.url              # postgresql://postgres@127.0.0.1:PORT/devupdate
        cluster.restart()              # pg_ctl restart -m fast: every connection is cut
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers.tools import free_port


def _bindir() -> Path | None:
    """Where initdb and pg_ctl live (Debian keeps them out of PATH, in pg_config --bindir)."""
    for candidate in (shutil.which("pg_config"),):
        if candidate:
            try:
                out = subprocess.run([candidate, "--bindir"], capture_output=True, text=True, timeout=10)
            except OSError:
                continue
            path = Path(out.stdout.strip())
            if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
                return path
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


class PgCluster:
    """One cluster in a temporary directory; ``stop()`` (or the context manager) removes it."""

    def __init__(self, bindir: Path, root: Path, port: int):
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.logfile = root / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/devupdate"

    @classmethod
    def create(cls) -> PgCluster:
        """initdb + start + ``CREATE DATABASE devupdate``; skips the test when PostgreSQL is not installed."""
        bindir = _bindir()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
        root = Path(tempfile.mkdtemp(prefix="devupdate-pg-"))
        cluster = cls(bindir, root, free_port())
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--no-sync", "--no-instructions")
        with open(cluster.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                       f"unix_socket_directories = '{root}'\nfsync = off\nmax_connections = 200\n")
        cluster.start()
        cluster.psql("CREATE DATABASE devupdate")
        return cluster

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                                 f"\n{self.log()}")
        return proc

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """What an operator does: every backend is terminated, the server is down for a moment."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-m", mode, "-w", "-t", "60",
                  "restart")

    def psql(self, sql: str, database: str = "postgres") -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                                connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.statusmessage
        finally:
            conn.close()

    def psql_rows(self, sql: str, database: str = "devupdate") -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                                connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()
