"""Content-addressed objects: put, dedupe, stage/commit, open, delete, verify."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from fs_helpers import MiB, disk_usage, slurp, temp_files

from filestore import FileStore, ObjectNotFound, Staged, StoredObject, UnknownArea
from filestore.paths import TEMP_PREFIX


class ReadOnly:
    """A stream with only read(), like some WSGI inputs."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 1000) if n > 0 else n)  # short reads on purpose


def test_put_open_and_dedupe(store: FileStore) -> None:
    data = b"firmware image " * 1000
    seen: list[int] = []
    obj = store.put("images", io.BytesIO(data), progress=seen.append)
    assert obj == StoredObject(hashlib.sha256(data).hexdigest(), hashlib.sha1(data).hexdigest(),
                               len(data), created=True)
    assert seen[-1] == len(data)
    with store.open("images", obj.sha256) as f:
        assert f.read() == data
    assert store.exists("images", obj.sha256)
    assert store.path("images", obj.sha256) == store.root / "images" / obj.sha256[:2] / obj.sha256
    assert store.path("images", obj.sha256.upper()) == store.path("images", obj.sha256)

    again = store.put("images", io.BytesIO(data))
    assert again == StoredObject(obj.sha256, obj.sha1, obj.size, created=False)
    usage = store.usage("images")
    assert (usage.used_bytes, usage.objects) == (len(data), 1)
    assert list(store.objects("images")) == [obj.sha256]
    assert temp_files(store.root) == []


def test_large_put_multi_chunk_and_read_only_stream(store: FileStore) -> None:
    data = bytes(range(256)) * (9 * MiB // 256) + b"tail"
    seen: list[int] = []
    obj = store.put("images", io.BytesIO(data), progress=seen.append)
    assert obj.sha256 == hashlib.sha256(data).hexdigest()
    assert obj.sha1 == hashlib.sha1(data).hexdigest()
    assert seen == sorted(seen) and seen[-1] == len(data)
    assert store.path("images", obj.sha256).read_bytes() == data
    # a stream without readinto, returning short reads
    small = store.put("images", ReadOnly(b"x" * 5000))
    assert small.sha256 == hashlib.sha256(b"x" * 5000).hexdigest()
    assert store.usage("images").used_bytes == len(data) + 5000 == disk_usage(store.root / "images")[0]


def test_empty_object(store: FileStore) -> None:
    obj = store.put("images", io.BytesIO(b""), size=0)
    assert obj.size == 0 and obj.sha256 == hashlib.sha256(b"").hexdigest()
    assert slurp(store.open("images", obj.sha256)) == b""


def test_stage_commit_and_discard(store: FileStore) -> None:
    a = store.stage("images", io.BytesIO(b"a" * 3000))
    b = store.stage("images", io.BytesIO(b"b" * 2000), size=2000)
    assert isinstance(a, Staged) and (a.size, b.size) == (3000, 2000)
    assert a.sha256 == hashlib.sha256(b"a" * 3000).hexdigest()
    assert not store.exists("images", a.sha256)  # not visible before commit
    usage = store.usage("images")
    assert (usage.used_bytes, usage.objects) == (5000, 0)  # staged bytes count
    assert len(temp_files(store.root)) == 2

    obj = a.commit()
    assert obj.created and a.commit() is obj and store.exists("images", a.sha256)
    b.discard()
    b.discard()
    assert not store.exists("images", b.sha256)
    usage = store.usage("images")
    assert (usage.used_bytes, usage.objects) == (3000, 1)
    assert temp_files(store.root) == []

    with store.stage("images", io.BytesIO(b"c")) as c:
        pass  # leaving without commit discards
    assert not store.exists("images", c.sha256)
    assert store.usage("images").used_bytes == 3000 and temp_files(store.root) == []


def _is_temp(fd: int) -> bool:
    """The descriptor of a temp file being written (not the ledger's, not a directory's)."""
    return os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(TEMP_PREFIX)


def test_staged_fsync_runs_behind_the_writer_and_commit_waits_for_it(store: FileStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import filestore.store as module

    release, synced, real_fsync = threading.Event(), [], os.fsync

    def slow_fsync(fd: int) -> None:
        if _is_temp(fd):
            assert release.wait(10)
            synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(module.os, "fsync", slow_fsync)
    staged = store.stage("images", io.BytesIO(b"d" * 5000))  # returns while its fsync still waits
    assert synced == [] and not store.exists("images", staged.sha256)
    committing = threading.Thread(target=staged.commit)
    committing.start()
    committing.join(0.2)
    assert committing.is_alive() and not store.exists("images", staged.sha256)  # no name before the bytes
    release.set()
    committing.join(10)
    assert len(synced) == 1 and store.exists("images", staged.sha256)


def test_a_failed_staged_fsync_fails_the_commit_and_leaves_nothing(store: FileStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import filestore.store as module

    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if _is_temp(fd):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(module.os, "fsync", failing_fsync)
    staged = store.stage("images", io.BytesIO(b"e" * 5000))
    with pytest.raises(OSError, match="Input/output error"):
        staged.commit()
    assert not store.exists("images", staged.sha256) and temp_files(store.root) == []
    assert store.usage("images").used_bytes == 0


def test_delete_and_missing(store: FileStore) -> None:
    obj = store.put("images", io.BytesIO(b"gone soon"))
    assert store.delete("images", obj.sha256) is True
    assert store.delete("images", obj.sha256) is False
    assert not store.exists("images", obj.sha256)
    with pytest.raises(ObjectNotFound):
        store.open("images", obj.sha256)
    usage = store.usage("images")
    assert (usage.used_bytes, usage.objects) == (0, 0)


def test_unknown_area(store: FileStore) -> None:
    with pytest.raises(UnknownArea, match="configured areas"):
        store.put("nope", io.BytesIO(b"x"))
    with pytest.raises(UnknownArea):
        store.usage("logs")  # the parent of two areas is not an area


def test_verify_detects_corruption(store: FileStore) -> None:
    objs = [store.put("images", io.BytesIO(bytes([i]) * (100 + i))) for i in range(3)]
    store.write_named("logs/client", "W/x.dmp", io.BytesIO(b"named files are not hashed"))
    assert store.verify() == []
    path = store.path("images", objs[1].sha256)
    path.write_bytes(b"\x01" * 50 + b"rotten" + b"\x01" * 45)
    seen: list[int] = []
    problems = store.verify(progress=seen.append)
    assert [(p.area, p.sha256) for p in problems] == [("images", objs[1].sha256)]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert problems[0].problem == f"hash mismatch: content is {actual}"
    assert seen[-1] == sum(o.size for o in objs)
    assert store.verify("logs/client") == []


def test_put_repairs_damaged_copy(store: FileStore) -> None:
    data = b"z" * 4000
    obj = store.put("images", io.BytesIO(data))
    store.path("images", obj.sha256).write_bytes(data[:100])  # truncated on disk
    assert store.rescan("images")[0].used_bytes == 100
    again = store.put("images", io.BytesIO(data))
    assert not again.created and store.path("images", obj.sha256).read_bytes() == data
    assert store.verify() == []
    assert store.usage("images").used_bytes == 4000


def test_usage_is_shared_between_instances(make_store) -> None:  # type: ignore[no-untyped-def]
    one, two = make_store(), make_store()
    one.put("images", io.BytesIO(b"q" * 1234))
    assert two.usage("images").used_bytes == 1234
    assert [u.area for u in two.usage_all()] == ["images", "logs/client", "logs/audit", "incoming"]


def test_ledger_rebuilt_when_lost_or_damaged(store: FileStore, make_store) -> None:  # type: ignore[no-untyped-def]
    store.put("images", io.BytesIO(b"1" * 700))
    store.write_named("logs/client", "a/b.txt", io.BytesIO(b"2" * 300))
    ledgers = sorted((store.root / ".filestore").glob("*.ledger"))
    assert [p.name for p in ledgers] == ["images.ledger", "incoming.ledger", "logs%2Faudit.ledger",
                                         "logs%2Fclient.ledger"]
    (store.root / ".filestore" / "images.ledger").unlink()
    (store.root / ".filestore" / "logs%2Fclient.ledger").write_bytes(b"0000 garbage")
    fresh = make_store()
    assert (fresh.usage("images").used_bytes, fresh.usage("images").objects) == (700, 1)
    assert (fresh.usage("logs/client").used_bytes, fresh.usage("logs/client").objects) == (300, 1)


def test_rescan_counts_manual_changes(store: FileStore) -> None:
    obj = store.put("images", io.BytesIO(b"m" * 500))
    store.path("images", obj.sha256).unlink()  # an admin removed it by hand
    assert store.usage("images").used_bytes == 500  # the ledger cannot know ...
    (usage,) = store.rescan("images")  # ... until asked to look
    assert (usage.used_bytes, usage.objects) == (0, 0)
    assert Path(store.root / "images").is_dir()
