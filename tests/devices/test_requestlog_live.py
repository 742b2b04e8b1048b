"""The request audit log under a real server: several workers, kill -9, roll-over."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

import pytest
from fleet import AUDIT_HEADER, CX600, V1, audit_files, audit_rows, client, fleet, import_release, phonesim, server_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]


@pytest.fixture
def release(install, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    return release


def test_two_workers_many_requests(install, live_server, release):
    """3,000 checks (a tenth of them refused) over 32 connections on 2 workers: exactly 3,000 whole rows."""
    server = live_server(workers=2, **server_env())
    phones = fleet(3000, seed=21)
    for phone in phones[::10]:
        phone.locale = "XYZ"  # refused: UnknownLocale
    results = phonesim.run_checks(client(server), phones, concurrency=32)
    assert sum(r.status == 200 for r in results) == 2700
    assert sum(r.code == "UnknownLocale" for r in results) == 300
    rows = audit_rows(install)
    assert len(rows) == 3000
    # refused rows carry the MAC as sent, answered ones the normalized MAC
    assert sorted(row["Mac Address"].replace("-", "") for row in rows) == sorted(p.device_id for p in phones)
    by_mac = {row["Mac Address"].replace("-", ""): row for row in rows}
    for phone in phones:
        row = by_mac[phone.device_id]
        if phone.locale == "XYZ":
            assert (row["Result"], row["Locale"], row["Response Modules"]) == ("400 UnknownLocale", "XYZ", "")
        else:
            expected = release.expected()
            assert row == {
                "Logging DateTime": row["Logging DateTime"], "User Host Address": "127.0.0.1",
                "Device Type": "UCPhone", "Mac Address": phone.device_id, "Serial Number": phone.serial,
                "Vendor": "Polycom", "Model": "CX600", "Revision": "A", "Locale": "ENU",
                "Request Modules": "CPE.nbt;4.0.7577.4363;2026-01-01T00:00:00Z",
                "Response Modules": f"{expected[0]['FileName']};{expected[0]['SignatureFileName']};{V1};"
                                    f"{release.imported}#{expected[1]['FileName']};;{V1};{release.imported}",
                "User ID": phone.user_id, "Result": "200 OK"}
    assert [p.name for p in audit_files(install)] == [
        f"RequestHandlerAuditLog_ucweb01_{time.strftime('%Y%m%d', time.gmtime())}.log"]


def test_kill_9_loses_no_answered_row(install, live_server, release):
    server = live_server(workers=2, **server_env())
    answered: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def hammer(worker: int) -> None:
        cl = client(server, timeout=5)
        n = 0
        while not stop.is_set():
            phone = fleet(1, seed=1000 * worker + n)[0]
            phone.mac = f"02-00-{worker:02X}-{n >> 16 & 0xFF:02X}-{n >> 8 & 0xFF:02X}-{n & 0xFF:02X}"
            n += 1
            try:
                result = cl.check(phone)
            except (OSError, http.client.HTTPException):
                return
            if result.status == 200:
                with lock:
                    answered.append(phone.device_id)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    os.killpg(server.proc.pid, signal.SIGKILL)  # master and workers, mid-flight, no shutdown hooks
    server.proc.wait()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(answered) > 100
    rows = audit_rows(install)  # every file: header, whole rows, ends with a line end
    logged = {row["Mac Address"] for row in rows}
    assert set(answered) <= logged
    assert len(rows) == len(logged)  # no duplicates, nothing torn
    assert len(rows) - len(answered) <= 8  # at most the checks in flight when the server died


def test_roll_over_at_small_max_log_file_size(install, live_server, release):
    install.cli("config", "set", "MaxLogFileSize", "2048")
    server = live_server(workers=2, **server_env())
    phones = fleet(200, seed=31)
    results = phonesim.run_checks(client(server), phones, concurrency=8)
    assert all(r.status == 200 for r in results)
    paths = audit_files(install)
    day = time.strftime("%Y%m%d", time.gmtime())
    assert [p.name for p in paths] == [f"RequestHandlerAuditLog_ucweb01_{day}.log"] + [
        f"RequestHandlerAuditLog_ucweb01_{day}_{n}.log" for n in range(1, len(paths))]
    longest = max(len(line) for p in paths for line in p.read_bytes().split(b"\r\n")) + 2
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(AUDIT_HEADER.encode() + b"\r\n")
        # a file rolls once it has passed the limit; every request thread (2 workers × 4) may add
        # the row it had in hand when another one rolled
        assert path.stat().st_size < 2048 + 8 * longest
    for path in paths[:-1]:
        assert path.stat().st_size >= 2048
    assert len(paths) >= sum(p.stat().st_size for p in paths) // (2048 + 8 * longest)
    rows = audit_rows(install)
    assert sorted(r["Mac Address"] for r in rows) == sorted(p.device_id for p in phones)
