"""The hourly auto-approval run ([wsus] §1d W8) in one process of the whole installation: two
``devupdate serve`` (two nodes, two workers each) on one database start the job in every worker, one
of them holds the installation-wide lock (the advisory lock on PostgreSQL, the flock on SQLite) and
runs the rules at the interval; when it dies another worker takes over, without running early.
In-process: a second holder is excluded, the last run is read back by the next holder."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from catalogkit import category, software
from helpers.tools import wait_for

from devupdate.jobs import InstallationJob, NodeLock
from devupdate.wsus.catalog import service as catalog
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.targeting import autoapproval
from devupdate.wsus.targeting.models import TEST_ID, Deployment

pytestmark = pytest.mark.timeout(150)

PRODUCT = "c0c0c0c0-0000-4000-8000-0000000000c1"
A = "aaaaaaaa-0000-4000-8000-00000000000a"
B = "bbbbbbbb-0000-4000-8000-00000000000b"
INTERVAL = 5


def load(*texts: str) -> None:
    store.import_documents(parse_update(t.encode()) for t in texts)  # no rules run: the job's work


def on_test() -> list[tuple[str, str]]:
    return sorted((d.update_id, d.actor) for d in Deployment.select().where(Deployment.group == TEST_ID,
                                                                          ~Deployment.revoked))


def holders(install) -> set[int]:
    """PIDs holding the job's NodeLock: the flock on SQLite, the advisory lock on PostgreSQL (each
    connection names its process: application_name 'devupdate pid N'), in this database only: servers of
    test sessions running beside this one hold the same key in theirs."""
    path = install.home / f"{autoapproval.JOB_NAME}.lock"
    if not install.database_url:
        inode = os.stat(path).st_ino
        with open("/proc/locks") as locks:
            return {int(f[-4]) for f in (line.split() for line in locks)
                    if "FLOCK" in f and int(f[-3].split(":")[-1]) == inode}
    import psycopg2

    conn = psycopg2.connect(install.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
                        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        (NodeLock.NAMESPACE, NodeLock(autoapproval.JOB_NAME, path).key))
            return {int(name.rsplit(" ", 1)[1]) for (name,) in cur.fetchall()}
    finally:
        conn.close()


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return {int(p) for p in handle.read().split()}


def state(install) -> dict:
    """The job's record; read again while the holder is rewriting it (truncated, then written)."""
    path = install.home / f"{autoapproval.JOB_NAME}.lock"
    for _ in range(50):
        try:
            found = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            found = {}
        if found or not path.exists():
            return found
        time.sleep(0.05)
    return {}


def until(predicate, timeout: float, what: str):
    value = wait_for(predicate, timeout, 0.2)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


def test_one_holder_runs_and_the_next_reads_the_last_run(database, install, tmp_path):
    runs: list[int] = []
    first = InstallationJob("test-once", lambda: runs.append(1) or {"n": len(runs)}, 60, install.home)
    second = InstallationJob("test-once", lambda: runs.append(2), 60, install.home)
    other = ThreadPoolExecutor(1)  # on PostgreSQL another session is another thread's connection

    def in_other(call, *args):
        return other.submit(call, *args).result()

    try:
        done = first.step(now=1000.0)
        assert done is not None and done["runs"] == 1 and done["last"]["summary"] == {"n": 1}
        assert in_other(second.step, 2000.0) is None and runs == [1]  # excluded while the first holds it
        assert first.step(now=1059.0) is None  # not due yet
        first.lock.release()
        assert in_other(second.step, 1030.0) is None  # holds it now, but the last run was 30 s ago
        assert in_other(second.step, 1060.0)["runs"] == 2 and runs == [1, 2]
        assert in_other(second.until_due, 1070.0) == 50.0
    finally:
        in_other(second.lock.release)
        other.shutdown()


def test_two_nodes_on_one_database_run_the_rules_in_one_process(database, install, live_server):
    if not os.path.exists("/proc/locks"):
        pytest.skip("needs /proc/locks (Linux)")
    load(category(PRODUCT, "A product", "Product"))
    catalog.select_product(PRODUCT, actor="test")
    load(software(A, categories=(PRODUCT,)))
    database.close()
    env = {"DEVUPDATE_WSUS_AUTO_APPROVAL_INTERVAL": str(INTERVAL)}
    nodes = [live_server(workers=2, **env), live_server(workers=2, **env)]
    workers = until(lambda: set().union(*(children(n.proc.pid) for n in nodes))
                    if all(len(children(n.proc.pid)) == 2 for n in nodes) else None, 20, "four workers")

    until(lambda: state(install).get("runs", 0) >= 1, 30, "the first run")
    database.connect(reuse_if_open=True)
    assert on_test() == [(A, "rule:Test")]
    database.close()
    time.sleep(6)  # every worker has tried the lock by now (every 5 s)
    held = holders(install)
    assert len(held) == 1 and held <= workers
    holder = next(iter(held))
    first = state(install)
    assert first["last"]["pid"] == holder and set(first["last"]["summary"]) == {"Test", "Definition Updates",
                                                                                 "All Computers"}

    # a new update: approved by the next run of the holder; runs come once per interval, not per worker
    database.connect(reuse_if_open=True)
    load(software(B, categories=(PRODUCT,)))
    database.close()
    start_runs, started = state(install)["runs"], time.monotonic()
    until(lambda: state(install).get("runs", 0) >= start_runs + 2, 30, "two more runs")
    elapsed = time.monotonic() - started
    now = state(install)
    assert now["last"]["pid"] == holder
    assert now["runs"] - start_runs <= elapsed / INTERVAL + 1  # four workers each running would be ~4×
    database.connect(reuse_if_open=True)
    assert on_test() == [(A, "rule:Test"), (B, "rule:Test")]
    from devupdate.audit.models import AuditEvent

    assert AuditEvent.select().where(AuditEvent.action == "wsus.approve").count() == 2
    database.close()

    # the holder dies: another worker, of either node, takes over and keeps the interval
    os.kill(holder, signal.SIGKILL)
    successor = until(lambda: (holders(install) - {holder}) or None, 30, "a new lock holder")
    assert len(successor) == 1
    successor_pid = successor.pop()
    assert successor_pid in set().union(*(children(n.proc.pid) for n in nodes))
    before = state(install)
    until(lambda: state(install).get("runs", 0) > before["runs"], 30, "a run of the new holder")
    after = state(install)
    assert after["last"]["pid"] == successor_pid
    assert after["last_run"] - before["last_run"] >= INTERVAL - 0.5  # not early


def test_the_flock_kind_holds_the_lock_file(install, tmp_path, monkeypatch):
    """The flock kind (SQLite): while a holder runs the job, nobody else can flock its file."""
    monkeypatch.setattr(NodeLock, "_postgres", staticmethod(lambda: False))
    job = InstallationJob("test-flock", lambda: None, 60, tmp_path)
    assert job.step(now=1.0) is not None
    with open(tmp_path / "test-flock.lock", "rb") as handle:
        with pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    job.lock.release()
