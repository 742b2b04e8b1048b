"""The request audit log writer in-process: format, daily files, roll-over, several processes
appending at once, quota, sync."""

from __future__ import annotations

import csv
import io
import multiprocessing
import time
from pathlib import Path

import pytest

from devupdate.audit import requestlog
from devupdate.audit.requestlog import AuditRow, LogLimits, RequestLog
from filestore import AreaConfig, FileStore

HEADER = ("Logging DateTime,User Host Address,Device Type,Mac Address,Serial Number,Vendor,Model,Revision,"
          "Locale,Request Modules,Response Modules,User ID,Result\r\n")
T0 = 1795251598.123  # 2026-11-21T08:59:58.123Z


def store_at(root: Path, quota: int | None = None) -> FileStore:
    return FileStore(root, {"logs/audit": AreaConfig(quota_bytes=quota)})


def row(n: int = 0, **fields) -> AuditRow:
    values = dict(address="10.0.0.7", device_type="UCPhone", mac=f"0004F2{n:06X}", serial=f"CX600-{n:04d}",
                  vendor="Polycom", model="CX600", revision="A", locale="ENU",
                  request_modules="CPE.nbt;4.0.7577.4366;2026-11-21T08:59:58Z",
                  response_modules="CPE.nbt;CPE.cat;4.0.7577.4372;2026-11-20T14:03:11Z#CPE.cat;;4.0.7577.4372;"
                                   "2026-11-20T14:03:11Z",
                  user_id="alice@contoso.com", result="200 OK")
    values.update(fields)
    return AuditRow(**values)


def files(root: Path) -> list[Path]:
    directory = root / "logs" / "audit" / "imageUpdates"
    return sorted(directory.glob("RequestHandlerAuditLog_*.log"),
                  key=lambda p: (p.stem.split("_")[2], int(p.stem.split("_")[3]) if p.stem.count("_") > 2 else 0))


def read_rows(path: Path) -> list[list[str]]:
    text = path.read_bytes().decode("utf-8")
    assert text.startswith(HEADER)
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text[len(HEADER):], newline="")))


def test_header_and_row_format(tmp_path):
    clock = iter([T0, T0 + 1.5]).__next__
    log = RequestLog(store_at(tmp_path), "ucweb01.contoso.com", limits=LogLimits(), clock=clock)
    log.write(row(1))
    log.write(AuditRow(address="203.0.113.9", mac="00-04-F2-AA-BB-ZZ", user_id='evil, "quoted"\nname',
                       result="400 BadMacAddress"))
    log.close()
    [path] = files(tmp_path)
    assert path.name == "RequestHandlerAuditLog_ucweb01.contoso.com_20261121.log"
    assert path.read_bytes() == (
        HEADER.encode()
        + b"2026-11-21T08:59:58.123Z,10.0.0.7,UCPhone,0004F2000001,CX600-0001,Polycom,CX600,A,ENU,"
          b"CPE.nbt;4.0.7577.4366;2026-11-21T08:59:58Z,"
          b"CPE.nbt;CPE.cat;4.0.7577.4372;2026-11-20T14:03:11Z#CPE.cat;;4.0.7577.4372;2026-11-20T14:03:11Z,"
          b"alice@contoso.com,200 OK\r\n"
        + b'2026-11-21T08:59:59.623Z,203.0.113.9,,00-04-F2-AA-BB-ZZ,,,,,,,,"evil, ""quoted"" name",'
          b"400 BadMacAddress\r\n")
    assert read_rows(path)[1][11] == 'evil, "quoted" name'


def test_server_name_is_made_safe():
    assert requestlog.safe_server_name("web/../01 x") == "web-..-01-x"
    assert requestlog.file_relpath("web01", "20261121", 3) == \
        "imageUpdates/RequestHandlerAuditLog_web01_20261121_3.log"
    assert requestlog.parse_file_name("RequestHandlerAuditLog_web01_20261121_3.log") == ("web01", "20261121", 3)
    assert requestlog.parse_file_name("RequestHandlerAuditLog_web_01_20261121.log") == ("web_01", "20261121", 0)
    assert requestlog.parse_file_name("other.log") is None


def test_daily_files(tmp_path):
    times = iter([T0, T0 + 15 * 3600, T0 + 16 * 3600, T0 + 40 * 3600])
    log = RequestLog(store_at(tmp_path), "web01", limits=LogLimits(), clock=times.__next__)
    for n in range(4):
        log.write(row(n))
    log.close()
    assert [p.name for p in files(tmp_path)] == ["RequestHandlerAuditLog_web01_20261121.log",
                                                  "RequestHandlerAuditLog_web01_20261122.log",
                                                  "RequestHandlerAuditLog_web01_20261123.log"]
    assert [len(read_rows(p)) for p in files(tmp_path)] == [2, 1, 1]  # 23:59:58, then 00:59:58 and 00:59:58


def test_roll_over_at_max_file_size(tmp_path):
    log = RequestLog(store_at(tmp_path), "web01", limits=LogLimits(max_file_size=2048), clock=lambda: T0)
    line = len(requestlog.format_row(row(0), T0))
    for n in range(100):
        log.write(row(n))
    log.close()
    paths = files(tmp_path)
    assert [p.name for p in paths][:3] == ["RequestHandlerAuditLog_web01_20261121.log",
                                           "RequestHandlerAuditLog_web01_20261121_1.log",
                                           "RequestHandlerAuditLog_web01_20261121_2.log"]
    per_file = (2048 - len(HEADER)) // line + 1  # a file takes rows until it has passed the limit
    for path in paths[:-1]:
        assert 2048 <= path.stat().st_size < 2048 + line
        assert len(read_rows(path)) == per_file
    rows = [r for p in paths for r in read_rows(p)]
    assert [r[3] for r in rows] == [f"0004F2{n:06X}" for n in range(100)]


def _worker(root: str, worker: int, count: int) -> None:
    log = RequestLog(store_at(Path(root)), "web01", limits=LogLimits(max_file_size=64_000, cache_limit=16_000))
    log.start()
    for n in range(count):
        log.write(row(worker * 100_000 + n, user_id=f"worker{worker}-" + "x" * (n % 300)))
    log.close()


def test_processes_append_whole_rows(tmp_path):
    """Four processes × 3,000 rows into the same files (with roll-over): every row whole, none lost."""
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_worker, args=(str(tmp_path), w, 3000)) for w in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    paths = files(tmp_path)
    assert len(paths) > 5
    rows = [r for p in paths for r in read_rows(p)]
    assert len(rows) == 12_000
    assert all(len(r) == 13 and r[12] == "200 OK" for r in rows)
    macs = sorted(int(r[3][6:], 16) for r in rows)
    assert macs == sorted(w * 100_000 + n for w in range(4) for n in range(3000))
    for r in rows:
        worker, _, pad = r[11].partition("-")
        n = int(r[3][6:], 16) - int(worker[6:]) * 100_000
        assert pad == "x" * (n % 300)
    # no temporary files left behind
    assert [p.name for p in (tmp_path / "logs" / "audit" / "imageUpdates").iterdir() if p.name.startswith(".")] == []


def test_quota_drops_rows_and_counts_them(tmp_path):
    store = store_at(tmp_path, quota=4096)
    log = RequestLog(store, "web01", limits=LogLimits(), clock=lambda: T0)
    for n in range(40):
        log.write(row(n))
    log.sync()
    log.close()
    assert log.dropped > 0 and log.rows + log.dropped == 40
    total = sum(p.stat().st_size for p in files(tmp_path))
    assert total <= 4096
    assert store.usage("logs/audit").used_bytes == total


def test_sync_thread_syncs_after_cache_limit(tmp_path):
    log = RequestLog(store_at(tmp_path), "web01", limits=LogLimits(cache_limit=2048, flush_seconds=3600))
    synced = []
    real_sync = log.sync
    log.sync = lambda: (synced.append(log._unsynced), real_sync())
    log.start()
    for n in range(3):  # < 2048 bytes: no sync yet
        log.write(row(n))
    time.sleep(0.3)
    assert synced == []
    for n in range(20):
        log.write(row(n))
    deadline = time.monotonic() + 5
    while (not synced or log._unsynced >= 2048) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert synced and synced[0] >= 2048
    assert log._unsynced < 2048  # reset by the sync
    log.close()


def test_sync_thread_syncs_every_flush_interval(tmp_path):
    log = RequestLog(store_at(tmp_path), "web01", limits=LogLimits(flush_seconds=0.2))
    synced = []
    real_sync = log.sync
    log.sync = lambda: (synced.append(time.monotonic()), real_sync())
    log.start()
    log.write(row(1))
    time.sleep(1.1)
    log.close()
    assert 3 <= len(synced) <= 7


@pytest.mark.parametrize("minutes", [1])
def test_limits_from_configuration(minutes):
    limits = requestlog.limits_from_configuration({"MaxLogFileSize": 4096, "MaxLogCacheLimit": 2048,
                                                   "LogFlushInterval": minutes})
    assert limits == LogLimits(4096, 2048, 60.0)


@pytest.mark.parametrize("value, written", [
    ('=HYPERLINK("x")', '"\'=HYPERLINK(""x"")"'),
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1+1", "' =1+1"), ("\r=1+1", "' =1+1"), ("  =1", "'  =1"), ("\x01@x", "' @x"),
    ("a=b", "a=b"), ("0004F2-AA", "0004F2-AA"), ("", ""),
])
def test_formula_cells_are_neutralised(value, written):
    """OWASP CSV injection: a cell starting (after blanks) with = + - @ is prefixed with a quote;
    tab and CR become spaces like every control character, so they cannot hide the formula."""
    assert requestlog.cell(value) == written
    line = requestlog.format_row(row(1, model=value), T0).decode()
    assert line.split(",", 6)[6].startswith(written + ",")
    assert next(csv.reader([line]))[6] == next(csv.reader([written or '""']))[0]
