"""The service survives its PostgreSQL server restarting under load (a private cluster, restarted
with ``pg_ctl restart -m fast`` as an operator would): checks keep being answered, rule changes
made afterwards reach every worker within 2 s, the inventory writes again, and ``/healthz`` says
503 with the reason while the database is away and ``ok`` once it is back."""

from __future__ import annotations

import http.client
import json
import re
import sys
import time
from pathlib import Path

import pytest
from helpers.load import CheckLoad, healthz, seconds_until_served
from helpers.pgcluster import PgCluster
from helpers.tools import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "devices"))
from fleet import CX600, V0, V1, fleet, import_release, server_env  # noqa: E402

from devupdate.schema import MIGRATIONS  # noqa: E402

pytestmark = pytest.mark.timeout(300)
SCHEMA = MIGRATIONS[-1].version


@pytest.fixture
def cluster():
    with PgCluster.create() as cluster:
        yield cluster


@pytest.fixture
def pg_database_url(cluster):
    """This module's installations use the private cluster, whatever database the suite runs on."""
    return cluster.url


def api_status(server, path: str, token: str) -> int:
    """Status of a GET on a new connection (so the calls spread over workers and their threads)."""
    conn = http.client.HTTPConnection(server.url.split("//")[1], timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def inventory_newest(cluster) -> float:
    """POSIX time of the newest ``last_seen`` in the inventory (0 when empty)."""
    import psycopg2

    conn = psycopg2.connect(cluster.url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT EXTRACT(EPOCH FROM MAX(last_seen)) FROM device")
            value = cur.fetchone()[0]
            return float(value or 0)
    finally:
        conn.close()


def test_postgres_restart_under_load(install, cluster, live_server, tmp_path):
    install.cli("db", "upgrade")
    token = json.loads(install.cli("tokens", "create", "ops", "--role", "operator", "--json").stdout)["Secret"]
    release = import_release(install, tmp_path, V1)[CX600]
    server = live_server(workers=2, **server_env(DEVUPDATE_SNAPSHOT_MAX_AGE="3"))
    phones = fleet(64, installed=V0)
    probe = phones[0]
    assert healthz(server) == (200, {"status": "ok", "schema": SCHEMA})

    with CheckLoad([server.url], phones, threads=4) as load:
        load.wait_answers(100)

        # 1. pg_ctl restart -m fast: every connection of every worker is cut
        cluster.restart()
        restarted = time.time()
        load.wait_answers(100)
        install.cli("rules", "approve", release.rule_id)
        approve_seconds = seconds_until_served(server, probe, 2)
        assert approve_seconds < 2.0, approve_seconds
        # the inventory writes again: devices seen after the restart reach the database
        assert wait_for(lambda: inventory_newest(cluster) > restarted, 20), "inventory not written after restart"
        # request threads reconnect too: API calls (each thread's connection was cut) all answer
        statuses = [api_status(server, "/api/v1/rules", token) for _ in range(24)]
        assert statuses == [200] * 24, statuses
        assert healthz(server)[0] == 200

        # 2. the database away for a while: checks still answered from the snapshot, /healthz 503 with why
        cluster.stop()
        load.wait_answers(100)
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(healthz(server)), 20) or healthz(server)
        assert status == 503 and body["status"] == "unavailable", body
        assert body["reason"].startswith("database: "), body
        # the snapshot can no longer be checked for changes: once older than the bound, that is said too
        status, body = wait_for(lambda: (lambda r: r if "snapshot is" in r[1].get("reason", "") else None)(
            healthz(server)), 20) or healthz(server)
        assert re.search(r"snapshot is \d+ s old \(bound 3 s\)", body["reason"]), body
        load.wait_answers(100)
        cluster.start()
        started = time.time()
        ok = (200, {"status": "ok", "schema": SCHEMA})
        assert wait_for(lambda: all(healthz(server) == ok for _ in range(8)), 15), healthz(server)
        install.cli("rules", "restore", release.rule_id, "--yes")
        restore_seconds = seconds_until_served(server, probe, 0)
        assert restore_seconds < 2.0, restore_seconds
        assert wait_for(lambda: inventory_newest(cluster) > started, 20), "inventory not written after recovery"
        load.wait_answers(50)

    outcomes = load.snapshot()
    assert load.unexpected() == [], load.unexpected()[:5]
    assert {o.status for o in outcomes} == {200}, sorted({(o.status, o.kind) for o in outcomes})
    log = server.output()
    assert "connection already closed" not in log
    # an outage is logged once per job and worker when it starts and once when it ends, not every attempt
    assert 1 <= log.count("snapshot refresh failed") <= 4, log.count("snapshot refresh failed")
    assert log.count("snapshot refresh works again") == log.count("snapshot refresh failed")
    print(f"\n{len(outcomes)} checks answered; approve served after {approve_seconds:.2f} s, "
          f"restore after recovery {restore_seconds:.2f} s")
