"""Named files: suffixing, overwrite, size limit, O_APPEND rows from many processes."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from fs_helpers import MiB, areas_json, disk_usage, finish, slurp, temp_files, worker

from filestore import FileStore, ObjectNotFound, TooLarge


def test_write_named_suffixes_instead_of_overwriting(store: FileStore) -> None:
    rel = "Watson/0004F2AABBCC/crash.dmp"
    names = [store.write_named("logs/client", rel, io.BytesIO(f"v{i}".encode())) for i in range(3)]
    assert names == [rel, "Watson/0004F2AABBCC/crash_1.dmp", "Watson/0004F2AABBCC/crash_2.dmp"]
    assert [slurp(store.open_named("logs/client", n)) for n in names] == [b"v0", b"v1", b"v2"]
    assert store.write_named("logs/client", "noext", io.BytesIO(b"a")) == "noext"
    assert store.write_named("logs/client", "noext", io.BytesIO(b"b")) == "noext_1"
    assert store.named_path("logs/client", rel) == store.root / "logs" / "client" / rel
    usage = store.usage("logs/client")
    assert (usage.used_bytes, usage.objects) == (8, 5) and temp_files(store.root) == []


def test_write_named_overwrite(store: FileStore) -> None:
    store.write_named("logs/client", "c/cfg.xml", io.BytesIO(b"long old content"))
    assert store.write_named("logs/client", "c/cfg.xml", io.BytesIO(b"new"), overwrite=True) == "c/cfg.xml"
    assert slurp(store.open_named("logs/client", "c/cfg.xml")) == b"new"
    usage = store.usage("logs/client")
    assert (usage.used_bytes, usage.objects) == (3, 1)


def test_too_large_leaves_nothing(store: FileStore) -> None:
    with pytest.raises(TooLarge, match="larger than the limit of 1000 bytes") as err:
        store.write_named("logs/client", "big.dmp", io.BytesIO(b"b" * 1001), max_size=1000)
    assert (err.value.area, err.value.relpath, err.value.max_size) == ("logs/client", "big.dmp", 1000)
    with pytest.raises(TooLarge):  # declared too large: refused before reading
        store.write_named("logs/client", "big.dmp", io.BytesIO(b""), size=2 * MiB, max_size=MiB)
    with pytest.raises(TooLarge):  # many chunks in
        store.write_named("logs/client", "big.dmp", io.BytesIO(b"b" * (3 * MiB)), max_size=2 * MiB + 5)
    assert temp_files(store.root) == [] and store.usage("logs/client").used_bytes == 0
    assert store.list_named("logs/client") == []
    assert store.write_named("logs/client", "ok.dmp", io.BytesIO(b"b" * 1000), max_size=1000) == "ok.dmp"


def test_list_open_delete_named(store: FileStore) -> None:
    for rel in ["Watson/AA/1.dmp", "Watson/AB/2.dmp", "Config/AA/c.xml", "top.txt"]:
        store.write_named("logs/client", rel, io.BytesIO(rel.encode()))
    assert [e.relpath for e in store.list_named("logs/client")] == [
        "Config/AA/c.xml", "Watson/AA/1.dmp", "Watson/AB/2.dmp", "top.txt"]
    assert [e.relpath for e in store.list_named("logs/client", "Watson/")] == ["Watson/AA/1.dmp",
                                                                              "Watson/AB/2.dmp"]
    assert [e.relpath for e in store.list_named("logs/client", "Watson/AB")] == ["Watson/AB/2.dmp"]
    assert [e.relpath for e in store.list_named("logs/client", "Wat")] == ["Watson/AA/1.dmp",
                                                                          "Watson/AB/2.dmp"]
    assert store.list_named("logs/client", "Nothing/") == []
    (entry,) = store.list_named("logs/client", "top")
    assert entry.size == len("top.txt") and entry.mtime > 0

    assert store.delete_named("logs/client", "Watson/AA/1.dmp") is True
    assert store.delete_named("logs/client", "Watson/AA/1.dmp") is False
    assert not (store.root / "logs/client/Watson/AA").exists()  # emptied directory pruned
    assert (store.root / "logs/client/Watson/AB").is_dir()
    with pytest.raises(ObjectNotFound):
        store.open_named("logs/client", "Watson/AA/1.dmp")
    with pytest.raises(ObjectNotFound):
        store.open_named("logs/client", "Watson")  # a directory is not a file
    usage = store.usage("logs/client")
    assert (usage.used_bytes, usage.objects) == disk_usage(store.root / "logs" / "client")


def test_append_and_fsync(store: FileStore) -> None:
    store.append_named("logs/audit", "2024/01/requests.csv", b"a,b\n")
    store.append_named("logs/audit", "2024/01/requests.csv", b"c,d\n")
    store.fsync_named("logs/audit", "2024/01/requests.csv")
    assert slurp(store.open_named("logs/audit", "2024/01/requests.csv")) == b"a,b\nc,d\n"
    usage = store.usage("logs/audit")
    assert (usage.used_bytes, usage.objects) == (8, 1)
    with pytest.raises(ObjectNotFound):
        store.fsync_named("logs/audit", "missing.csv")


def test_concurrent_appends_never_interleave(make_store, areas) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    rel, count = "audit/requests.csv", 2000
    procs = [worker("append", store.root, areas_json(areas), "logs/audit", rel, who, count)
             for who in ("A", "B")]
    for p in procs:
        finish(p)
    lines = slurp(store.open_named("logs/audit", rel)).decode().split("\n")
    assert lines.pop() == ""
    assert len(lines) == 2 * count
    seen = Counter()
    for line in lines:
        who, i, payload, end = line.split(",")
        n = int(i)
        assert end == "end" and payload == chr(ord("a") + n % 26) * ((n * 37) % 6000), line[:80]
        seen[who, n] += 1
    assert set(seen.values()) == {1} and len(seen) == 2 * count
    assert store.usage("logs/audit").used_bytes == store.named_path("logs/audit", rel).stat().st_size


def test_concurrent_write_named_gets_distinct_names(make_store, areas) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    rel = "Watson/0004F2AABBCC/crash.dmp"
    procs = [worker("named", store.root, areas_json(areas), "logs/client", rel, who, 15)
             for who in ("A", "B")]
    used = [name for p in procs for name in json.loads(finish(p))]
    assert len(set(used)) == 30
    contents = {slurp(store.open_named("logs/client", n)).decode() for n in used}
    assert contents == {f"{who}-{i}" for who in "AB" for i in range(15)}
    assert store.usage("logs/client").objects == 30
