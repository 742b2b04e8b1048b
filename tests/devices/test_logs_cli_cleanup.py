"""Log cleanup: ``devupdate logs cleanup [--days-back N]`` and the automatic job of the running
service (one process per node, per LogCleanUpInterval / LogCleanUpTimeOfDay)."""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import signal
import time

import pytest
from helpers.tools import wait_for

from devupdate.devices import cleanup_job
from devupdate.devices.cleanup_job import LogCleanupJob, is_due, last_scheduled

DAY = 86400


def put(store, area: str, relpath: str, age_days: float, data: bytes = b"log", now: float | None = None) -> None:
    store.write_named(area, relpath, io.BytesIO(data))
    when = (time.time() if now is None else now) - age_days * DAY
    os.utime(store.named_path(area, relpath), (when, when))


def area_files(home, area: str) -> list[str]:
    root = home / "filestore" / area
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_cleanup_days_back_removes_only_older_logs(install):
    rt = install.runtime()
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/new.dmp", 1)
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/mid.dmp", 5, b"12345")
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/old.dmp", 20, b"1234567")
    put(rt.store, "logs/client", "DiagLog/SN-X1/old.clg", 8.1, b"12")
    put(rt.store, "logs/audit", "imageUpdates/RequestHandlerAuditLog_srv_20260101.log", 30, b"a,b\n")
    put(rt.store, "logs/audit", "imageUpdates/RequestHandlerAuditLog_srv_20261120.log", 0.5, b"a,b\n")

    report = json.loads(install.cli("logs", "cleanup", "--days-back", "7", "--json").stdout)
    removed = sorted((r["Area"], r["Path"], r["Size"]) for r in report["Removed"])
    assert removed == [
        ("logs/audit", "Logs/Server/Audit/imageUpdates/RequestHandlerAuditLog_srv_20260101.log", 4),
        ("logs/client", "Logs/Client/DiagLog/SN-X1/old.clg", 2),
        ("logs/client", "Logs/Client/Watson/0004F2AABBCC/old.dmp", 7),
    ]
    assert (report["DaysBack"], report["FilesRemoved"], report["BytesFreed"]) == (7, 3, 13)
    assert area_files(install.home, "logs/client") == ["Watson/0004F2AABBCC/mid.dmp", "Watson/0004F2AABBCC/new.dmp"]
    assert area_files(install.home, "logs/audit") == ["imageUpdates/RequestHandlerAuditLog_srv_20261120.log"]
    assert not (install.home / "filestore" / "logs" / "client" / "DiagLog").exists()  # empty folders go too
    usage = {r["Area"]: r for r in json.loads(install.cli("filestore", "usage", "--json").stdout)}
    assert (usage["logs/client"]["UsedBytes"], usage["logs/client"]["Objects"]) == (8, 2)

    # again: nothing more to do
    out = install.cli("logs", "cleanup", "--days-back", "7").stdout
    assert out == "removed 0 file(s), 0 bytes, last written more than 7 day(s) ago\n"

    # no --days-back: LogCleanUpInterval (here 3 days) decides
    install.cli("config", "set", "LogCleanUpInterval", "3")
    out = install.cli("logs", "cleanup").stdout
    assert out == ("removed Logs/Client/Watson/0004F2AABBCC/mid.dmp\n"
                   "removed 1 file(s), 5 bytes, last written more than 3 day(s) ago\n")
    assert area_files(install.home, "logs/client") == ["Watson/0004F2AABBCC/new.dmp"]

    bad = install.cli("logs", "cleanup", "--days-back", "-1", check=False)
    assert bad.returncode == 2 and "--days-back" in bad.stderr
    assert area_files(install.home, "logs/client") == ["Watson/0004F2AABBCC/new.dmp"]


# --- the schedule ---------------------------------------------------------------------------------

def local(*args: int) -> float:
    return dt.datetime(*args).timestamp()


def test_schedule_hourly_and_time_of_day():
    now = local(2026, 11, 21, 10, 30)
    assert is_due(now, None, None)
    assert not is_due(now, now - 3599, None)
    assert is_due(now, now - 3600, None)
    assert last_scheduled(now, "03:15") == local(2026, 11, 21, 3, 15)
    assert last_scheduled(now, "23:00") == local(2026, 11, 20, 23, 0)
    assert is_due(now, local(2026, 11, 21, 3, 14), "03:15")
    assert not is_due(now, local(2026, 11, 21, 3, 16), "03:15")
    assert not is_due(now, None, "03:15")


class FixedConfig:
    def __init__(self, **values):
        self.values = {"LogCleanUpInterval": 10, "LogCleanUpTimeOfDay": None, **values}

    def get(self):
        return self.values


def test_job_steps_hold_one_lock_and_follow_time_of_day(install):
    from concurrent.futures import ThreadPoolExecutor

    rt = install.runtime()
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/old.dmp", 11, now=local(2026, 11, 22, 3, 0))
    config = FixedConfig(LogCleanUpTimeOfDay="03:00")
    first = LogCleanupJob(rt.store, install.home, config)
    # another holder (another flock on the same file; on PostgreSQL another session, i.e. thread): excluded
    second = LogCleanupJob(rt.store, install.home, config)
    other = ThreadPoolExecutor(1)

    def in_other(call, *args):
        return other.submit(call, *args).result()

    day1 = local(2026, 11, 21, 10, 0)
    assert first.step(day1) is None  # a new installation waits for 03:00
    assert in_other(second.step, day1) is None and not in_other(second.try_lock)
    assert first.step(local(2026, 11, 22, 2, 59)) is None
    assert area_files(install.home, "logs/client") == ["Watson/0004F2AABBCC/old.dmp"]
    summary = first.step(local(2026, 11, 22, 3, 0))
    assert summary is not None and summary["files_removed"] == 1 and summary["days_back"] == 10
    assert first.step(local(2026, 11, 22, 9, 0)) is None  # once a day
    first.release()
    # the next holder reads the last run from the lock file: no second run the same day
    assert in_other(second.try_lock)
    assert in_other(second.step, local(2026, 11, 22, 12, 0)) is None
    assert in_other(second.step, local(2026, 11, 23, 3, 1))["files_removed"] == 0
    in_other(second.release)
    other.shutdown()
    state = json.loads((install.home / cleanup_job.LOCK_NAME).read_text())
    assert state["runs"] == 2 and state["last_run"] == local(2026, 11, 23, 3, 1)


# --- the job in the running service ---------------------------------------------------------------

def flock_holders(path) -> set[int]:
    """PIDs holding a flock on ``path`` (from /proc/locks)."""
    inode = os.stat(path).st_ino
    holders = set()
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if "FLOCK" in fields and int(fields[-3].split(":")[-1]) == inode:
                holders.add(int(fields[-4]))
    return holders


def cleanup_holders(install) -> set[int]:
    """PIDs holding the log cleanup's NodeLock: the flock on SQLite, the advisory lock on PostgreSQL
    (each connection names its process: application_name 'devupdate pid N'), in this database only:
    servers of test sessions running beside this one hold the same key in theirs."""
    if not install.database_url:
        return flock_holders(install.home / cleanup_job.LOCK_NAME)
    import psycopg2

    from devupdate.jobs import NodeLock

    lock = NodeLock("log-cleanup", install.home / cleanup_job.LOCK_NAME)
    conn = psycopg2.connect(install.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
                        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        (NodeLock.NAMESPACE, lock.key))
            return {int(name.rsplit(" ", 1)[1]) for (name,) in cur.fetchall()}
    finally:
        conn.close()


def can_take_cleanup_lock(install) -> bool:
    if not install.database_url:
        with open(install.home / cleanup_job.LOCK_NAME, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
    import psycopg2

    from devupdate.jobs import NodeLock

    conn = psycopg2.connect(install.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)",
                        (NodeLock.NAMESPACE, NodeLock("log-cleanup", install.home).key))
            return cur.fetchone()[0]
    finally:
        conn.close()


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return {int(p) for p in handle.read().split()}


def wait_until(predicate, timeout: float, what: str):
    """``wait_for``, failing the test with ``what`` when it times out."""
    value = wait_for(predicate, timeout, 0.2)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


def test_automatic_cleanup_runs_in_exactly_one_worker(install, live_server):
    if not os.path.exists("/proc/locks"):
        pytest.skip("needs /proc/locks (Linux)")
    rt = install.runtime()
    install.cli("config", "set", "LogCleanUpInterval", "2")
    for n in range(5):
        put(rt.store, "logs/client", f"Watson/0004F2AABBCC/old{n}.dmp", 3 + n)
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/recent.dmp", 1)
    put(rt.store, "logs/audit", "imageUpdates/RequestHandlerAuditLog_srv_20200101.log", 400)

    server = live_server(workers=3)
    lock = install.home / cleanup_job.LOCK_NAME
    wait_until(lambda: area_files(install.home, "logs/client") == ["Watson/0004F2AABBCC/recent.dmp"], 20,
             "the automatic cleanup")
    assert area_files(install.home, "logs/audit") == []
    workers = wait_until(lambda: children(server.proc.pid) if len(children(server.proc.pid)) == 3 else None, 10,
                       "three workers")
    time.sleep(cleanup_job.LOCK_RETRY + 1)  # every worker has tried the lock by now
    holders = cleanup_holders(install)
    assert len(holders) == 1 and holders <= workers
    holder = holders.pop()
    state = json.loads(lock.read_text())
    assert state["runs"] == 1 and state["last"]["pid"] == holder
    assert (state["last"]["files_removed"], state["last"]["days_back"]) == (6, 2)
    assert not can_take_cleanup_lock(install)  # nobody else can take it

    # the holder dies: another worker takes over within seconds, and does not run again early
    put(rt.store, "logs/client", "Watson/0004F2AABBCC/old-again.dmp", 30)
    os.kill(holder, signal.SIGKILL)
    successor = wait_until(lambda: (cleanup_holders(install) - {holder}) or None, 30, "a new lock holder")
    assert len(successor) == 1 and successor.pop() in children(server.proc.pid)
    time.sleep(1)
    assert json.loads(lock.read_text())["runs"] == 1
    assert "Watson/0004F2AABBCC/old-again.dmp" in area_files(install.home, "logs/client")
