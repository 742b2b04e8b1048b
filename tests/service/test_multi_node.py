"""Two ``devupdate serve`` nodes on one PostgreSQL and one shared data directory (docs/multi-node.md):
an import and an approval through node 1's API are served by node 2 within 2 s; node 1 killed with
``kill -9`` under load loses no audit row of a check it answered, and node 2 keeps answering; the
periodic log cleanup runs once per period across both nodes; each node's metrics are its own."""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers.cabs import FIXED_TIME, make_update, package_files
from helpers.load import CheckLoad, seconds_until_served
from helpers.pgcluster import PgCluster
from helpers.tools import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "devices"))
from fleet import CX600, INTERNAL, V0, V1, audit_files, fleet, server_env  # noqa: E402
from test_logs_cli_cleanup import area_files, children, cleanup_holders, put  # noqa: E402

from devupdate.devices import cleanup_job  # noqa: E402
from devupdate.packages import build_package  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cluster():
    with PgCluster.create() as cluster:
        yield cluster


@pytest.fixture
def pg_database_url(cluster):
    return cluster.url


def api(server, method: str, path: str, token: str, body: bytes | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, "/api/v1" + path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def check_answer(server, phone) -> list[dict]:
    """The files offered to ``phone`` by ``server``, as dicts of the File elements."""
    import xml.etree.ElementTree as ET

    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=10)
    try:
        conn.request("POST", "/RequestHandler/ucdevice.upx", body=phone.request_xml())
        response = conn.getresponse()
        assert response.status == 200
        root = ET.fromstring(response.read())
        return [{child.tag: child.text for child in element} for element in root.find("Files")]
    finally:
        conn.close()


def download(server, url: str) -> bytes:
    parts = urlsplit(url.replace(INTERNAL, server.url))
    conn = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        assert response.status == 200, response.status
        return response.read()
    finally:
        conn.close()


def metric_total(server, name: str) -> float:
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M))


def node_audit(install, node: str) -> list[list[str]]:
    """Rows (as lists) of the audit files ``node`` wrote."""
    import csv
    import io

    rows = []
    for path in audit_files(install):
        if f"_{node}_" in path.name:
            rows += list(csv.reader(io.StringIO(path.read_text("utf-8"), newline="")))[1:]
    return rows


def mac(value: str) -> str:
    return value.replace("-", "").replace(":", "").upper()


def test_two_nodes_share_one_database_and_data_directory(install, live_server, tmp_path):
    install.cli("db", "upgrade")
    install.cli("config", "set", "LogCleanUpInterval", "2")
    rt = install.runtime()
    for n in range(4):
        put(rt.store, "logs/client", f"Watson/0004F2AABBCC/old{n}.dmp", 3 + n)
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/recent.dmp", 1)
    token = json.loads(install.cli("tokens", "create", "release", "--role", "admin", "--json").stdout)["Secret"]
    node1 = live_server(workers=2, **server_env(DEVUPDATE_SERVER_NAME="node1"))
    node2 = live_server(workers=2, **server_env(DEVUPDATE_SERVER_NAME="node2"))
    phone = fleet(1, installed=V0)[0]
    assert check_answer(node2, phone) == []

    # an import and an approval through node 1's API, served by node 2
    update = make_update(*CX600[1:3], V1, locale=CX600[4], revision=CX600[3], device_type=CX600[0])
    images, catalogs = package_files([update], 20_000)
    cab = tmp_path / "UCUpdates.cab"
    build_package(cab, [update], images, catalogs, description_name="UCUpdates.xml", compress=True, mtime=FIXED_TIME)
    status, result = api(node1, "POST", "/imports?filename=UCUpdates.cab", token, cab.read_bytes())
    assert status == 201, result
    status, result = api(node1, "POST", f"/rules/{update.id}/approve", token)
    assert status == 200, result
    served = seconds_until_served(node2, phone, 2)
    assert served < 2.0, served
    offered = check_answer(node2, phone)
    assert [f["FileName"] for f in offered] == [update.files[0].name, update.files[0].catalog]
    image = download(node2, offered[0]["Url"])
    assert hashlib.sha256(image).hexdigest() == offered[0]["SHA256"] == hashlib.sha256(images[offered[0]["FileName"]]
                                                                                       ).hexdigest()

    # the periodic cleanup: one run, by one worker of one of the nodes
    assert wait_for(lambda: area_files(install.home, "logs/client") == ["Watson/0004F2AABBCC/recent.dmp"], 20)
    workers = {1: children(node1.proc.pid), 2: children(node2.proc.pid)}
    time.sleep(cleanup_job.LOCK_RETRY + 1)  # every worker of both nodes has tried the lock by now
    holders = cleanup_holders(install)
    assert len(holders) == 1 and holders <= workers[1] | workers[2], (holders, workers)
    state = json.loads((install.home / cleanup_job.LOCK_NAME).read_text())
    assert state["runs"] == 1 and state["last"]["files_removed"] == 4

    # node 1 killed with kill -9 under load: node 2 keeps answering, node 1's answered checks are audited
    phones = fleet(4000, installed=V0, seed=11)
    with CheckLoad([node1.url, node2.url], phones, threads=3) as load:
        load.wait_answers(300, server=0)
        load.wait_answers(300, server=1)
        os.killpg(node1.proc.pid, signal.SIGKILL)
        load.stopped.add(0)
        killed = time.monotonic()
        node1.proc.wait(timeout=10)
        load.wait_answers(300, server=1)
        # node 2 may take over the cleanup, and must not run it again early
        put(rt.store, "logs/client", "Watson/0004F2AABBCC/old-again.dmp", 30)
        successor = wait_for(lambda: cleanup_holders(install) or None, 30)
        assert successor and successor <= workers[2], (successor, workers)
        load.wait_answers(100, server=1)

    assert json.loads((install.home / cleanup_job.LOCK_NAME).read_text())["runs"] == 1
    assert "Watson/0004F2AABBCC/old-again.dmp" in area_files(install.home, "logs/client")
    assert load.unexpected({1}) == [], load.unexpected({1})[:5]
    assert [o for o in load.snapshot() if o.server == 1 and o.status != 200] == []
    assert len(load.answered(1, since=killed)) >= 400
    answered = collections.Counter(mac(o.device) for o in load.answered(0))
    audited = collections.Counter(mac(row[3]) for row in node_audit(install, "node1") if row[12] == "200 OK")
    missing = answered - audited
    assert not missing, f"{sum(missing.values())} of {sum(answered.values())} answered checks not in node1's audit log"
    # each node's metrics count its own checks (node 2's: exactly what node 2 audited)
    assert metric_total(node2, "devupdate_update_checks_total") == len(node_audit(install, "node2"))
    print(f"\nnode 2 served the approval after {served:.2f} s; node 1 answered {sum(answered.values())} checks "
          f"before kill -9, all audited; node 2 answered {len(load.answered(1))}")
