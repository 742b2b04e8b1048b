"""SQLite locked by another process for 10 s (``BEGIN EXCLUSIVE`` held, as a backup tool or a
stuck script would): checks are still answered from the snapshot, writes wait or are retried and
none is lost, ``/healthz`` says 503 ``database: database is locked`` meanwhile and ``ok`` after."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.load import CheckLoad, healthz, seconds_until_served
from helpers.tools import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "devices"))
from fleet import CX600, V0, V1, audit_rows, fleet, import_release, server_env  # noqa: E402

from devupdate.schema import MIGRATIONS  # noqa: E402

pytestmark = pytest.mark.timeout(300)
SCHEMA = MIGRATIONS[-1].version

LOCK_SECONDS = 10

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""


@pytest.fixture
def pg_database_url():
    """SQLite whatever database the suite runs on: this is about SQLite's file lock."""
    return ""


def inventory_checks(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT COALESCE(SUM(checks), 0) FROM device").fetchone()[0]
    finally:
        conn.close()


def test_sqlite_locked_for_ten_seconds(install, live_server, tmp_path):
    install.cli("db", "upgrade")
    release = import_release(install, tmp_path, V1)[CX600]
    server = live_server(workers=2, **server_env())
    phones = fleet(64, installed=V0)
    ok = (200, {"status": "ok", "schema": SCHEMA})
    assert healthz(server) == ok

    with CheckLoad([server.url], phones, threads=4) as load:
        load.wait_answers(100)
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(install.settings().database_path),
                                   str(LOCK_SECONDS)], stdout=subprocess.PIPE, text=True)
        try:
            assert locker.stdout.readline() == "locked\n"
            locked = time.monotonic()
            # an approval made now waits for the lock (not refused, not lost)
            approve = subprocess.Popen([sys.executable, "-m", "devupdate", "rules", "approve", release.rule_id],
                                       env=install.environ(), cwd=install.home.parent, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(healthz(server)), 8) \
                or healthz(server)
            assert (status, body) == (503, {"status": "unavailable", "reason": "database: database is locked"})
            load.wait_answers(100)  # checks answered from the snapshot meanwhile
            assert time.monotonic() - locked < LOCK_SECONDS, "the lock ended before the checks were seen"
            assert locker.stdout.readline() == "released\n"
        finally:
            locker.kill() if locker.poll() is None else None
            locker.wait()
        out, _ = approve.communicate(timeout=60)
        assert approve.returncode == 0, out
        served = seconds_until_served(server, phones[0], 2)
        assert served < 2.0, served
        assert wait_for(lambda: all(healthz(server) == ok for _ in range(8)), 10), healthz(server)
        load.wait_answers(100)

    assert load.unexpected() == [], load.unexpected()[:5]
    assert {o.status for o in load.snapshot()} == {200}
    # every answered check is in the audit log and counted in the inventory: nothing lost to the lock
    answered = sum(1 for row in audit_rows(install) if row["Result"] == "200 OK")
    assert answered >= len(load.answered())
    database = install.settings().database_path
    assert wait_for(lambda: inventory_checks(database) == answered, 30), (inventory_checks(database), answered)
    print(f"\n{answered} checks answered, approval served {served:.2f} s after the lock was released")
