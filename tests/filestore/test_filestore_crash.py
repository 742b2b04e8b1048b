"""Crashes: a writer killed with SIGKILL, os.replace failing, leftovers of dead writers."""

from __future__ import annotations

import errno
import io
import os
import signal
import time

import pytest
from fs_helpers import MiB, areas_json, disk_usage, slurp, temp_files, worker

from filestore import FileStore


def test_kill_9_mid_put_then_restart_is_clean(make_store, areas) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    store.put("images", io.BytesIO(b"already here" * 100))
    before = store.usage("images")

    proc = worker("hold", store.root, areas_json(areas), "images", 3 * MiB)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        (temp,) = temp_files(store.root)
        deadline = time.monotonic() + 10  # the last chunk may still be in the writer thread
        while temp.stat().st_size < 3 * MiB and time.monotonic() < deadline:
            time.sleep(0.01)
        assert temp.parent == store.root / "images" and temp.stat().st_size == 3 * MiB
        assert store.usage("images").used_bytes >= before.used_bytes + 3 * MiB  # reserved

        make_store()  # a store opened meanwhile must leave a live writer alone
        assert temp.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    after = make_store()
    assert temp_files(after.root) == []
    assert after.usage("images") == before
    assert disk_usage(after.root / "images") == (before.used_bytes, before.objects)


def test_quota_reclaims_space_of_a_dead_writer(make_store, areas) -> None:  # type: ignore[no-untyped-def]
    store = make_store()  # opened before the crash: no start-up sweep will help it
    proc = worker("hold", store.root, areas_json(areas), "images", 12 * MiB)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.communicate(timeout=30)
    assert len(temp_files(store.root)) == 1
    # 12 MiB + 10 MiB > 20 MiB only while the dead writer's reservation counts
    assert store.put("images", io.BytesIO(b"n" * (10 * MiB)), size=10 * MiB).created
    assert temp_files(store.root) == []
    assert store.usage("images").used_bytes == 10 * MiB


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_9_inside_rename(make_store, areas, when: str) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL right before the rename (temp written and fsynced) or right after it
    (before the ledger heard of it): a new store must agree with the disk."""
    store = make_store()
    before = store.usage("images")
    proc = worker("die-in-replace", store.root, areas_json(areas), "images", when, "payload")
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    after = make_store()
    assert temp_files(after.root) == []
    usage = after.usage("images")
    if when == "before":
        assert usage == before and disk_usage(after.root / "images") == (0, 0)
    else:
        assert (usage.used_bytes, usage.objects) == (len("payload"), 1)
        assert disk_usage(after.root / "images") == (len("payload"), 1)
        assert after.verify() == []


def _failing_replace(*args: object) -> None:
    raise OSError(errno.EIO, "simulated crash between write and rename")


def test_failed_rename_leaves_nothing(store: FileStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store.put("images", io.BytesIO(b"kept"))
    store.write_named("logs/client", "a.log", io.BytesIO(b"old"))
    before = store.usage_all()
    monkeypatch.setattr(os, "replace", _failing_replace)

    with pytest.raises(OSError, match="simulated crash"):
        store.put("images", io.BytesIO(b"lost" * 1000))
    staged = store.stage("images", io.BytesIO(b"staged"))
    with pytest.raises(OSError, match="simulated crash"):
        staged.commit()
    with pytest.raises(OSError, match="simulated crash"):
        store.write_named("logs/client", "a.log", io.BytesIO(b"new"), overwrite=True)

    assert temp_files(store.root) == []
    assert store.usage_all() == before
    assert slurp(store.open_named("logs/client", "a.log")) == b"old"
    monkeypatch.undo()
    assert FileStore(store.root, {u.area: store._areas[u.area].config for u in before}).usage_all() == before


def test_interrupt_mid_stream_leaves_nothing(store: FileStore) -> None:
    class Interrupted(io.RawIOBase):
        sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf):  # type: ignore[no-untyped-def]
            if self.sent >= 3 * MiB:
                raise KeyboardInterrupt
            buf[:] = b"i" * len(buf)
            self.sent += len(buf)
            return len(buf)

    with pytest.raises(KeyboardInterrupt):
        store.put("images", Interrupted())
    assert temp_files(store.root) == [] and store.usage("images").used_bytes == 0


def test_orphan_from_before_is_removed_at_start(store: FileStore, make_store) -> None:  # type: ignore[no-untyped-def]
    orphan = store.root / "logs" / "client" / ".tmp-999999-deadbeef"
    orphan.write_bytes(b"left by a crash")  # nobody holds its lock
    assert make_store() and not orphan.exists()
