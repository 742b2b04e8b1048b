"""``devupdate logs list`` (real CLI subprocess) over logs stored the way uploads store them."""

from __future__ import annotations

import io
import json
import os

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z


def put(store, relpath: str, data: bytes, mtime: float) -> None:
    used = store.write_named("logs/client", relpath, io.BytesIO(data))
    assert used == relpath
    os.utime(store.named_path("logs/client", relpath), (mtime, mtime))


def test_logs_list_json_is_exact_and_filters(install):
    rt = install.runtime()
    put(rt.store, "Watson/0004F2AABBCC/crash.dmp", b"x" * 10, T0)
    put(rt.store, "Watson/0004F2AABBCC/crash_1.dmp", b"y" * 3, T0 + 60)
    put(rt.store, "DiagLog/SN-CX600-0042/diag.clg2", b"z" * 7, T0 + 120)
    put(rt.store, "config/0004F2000001/phone.xml", b"<a/>", T0 + 180)
    put(rt.store, "stray.txt", b"not an upload", T0)  # not <type>/<device>/<name>: not listed

    rows = json.loads(install.cli("logs", "list", "--json").stdout)
    assert rows == [
        {"Type": "config", "DeviceId": "0004F2000001", "FileName": "phone.xml",
         "Path": "Logs/Client/config/0004F2000001/phone.xml", "Size": 4, "LastWriteTime": "2026-09-21T14:16:20Z"},
        {"Type": "DiagLog", "DeviceId": "SN-CX600-0042", "FileName": "diag.clg2",
         "Path": "Logs/Client/DiagLog/SN-CX600-0042/diag.clg2", "Size": 7, "LastWriteTime": "2026-09-21T14:15:20Z"},
        {"Type": "Watson", "DeviceId": "0004F2AABBCC", "FileName": "crash.dmp",
         "Path": "Logs/Client/Watson/0004F2AABBCC/crash.dmp", "Size": 10, "LastWriteTime": "2026-09-21T14:13:20Z"},
        {"Type": "Watson", "DeviceId": "0004F2AABBCC", "FileName": "crash_1.dmp",
         "Path": "Logs/Client/Watson/0004F2AABBCC/crash_1.dmp", "Size": 3, "LastWriteTime": "2026-09-21T14:14:20Z"},
    ]

    def names(*args: str) -> list[str]:
        return [r["FileName"] for r in json.loads(install.cli("logs", "list", "--json", *args).stdout)]

    assert names("--type", "WATSON") == ["crash.dmp", "crash_1.dmp"]
    assert names("--device", "00:04:f2:aa:bb:cc") == ["crash.dmp", "crash_1.dmp"]
    assert names("--device", "0004.F2AA.BBCC", "--type", "diaglog") == []
    assert names("--device", "cx600-0042") == ["diag.clg2"]
    assert names("--device", "SN-CX600-0042") == ["diag.clg2"]
    assert names("--type", "CELog") == []

    table = install.cli("logs", "list", "--type", "DiagLog").stdout.splitlines()
    assert table == ["Type     DeviceId       FileName   Size  LastWriteTime",
                     "DiagLog  SN-CX600-0042  diag.clg2  7     2026-09-21T14:15:20Z"]
    assert install.cli("logs", "list", "--type", "CELog").stdout == "(none)\n"


def test_logs_list_on_an_empty_installation(install):
    install.cli("db", "upgrade")
    assert json.loads(install.cli("logs", "list", "--json").stdout) == []
