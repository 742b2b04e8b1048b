"""Quotas: refusal before writing, stop mid-stream, staged bytes, many processes."""

from __future__ import annotations

import io
import json

import pytest
from fs_helpers import MiB, areas_json, disk_usage, finish, slurp, temp_files, worker

from filestore import AreaConfig, FileStore, QuotaExceeded


class CountingStream(io.RawIOBase):
    """Endless-ish stream that records how much was read from it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf):  # type: ignore[no-untyped-def]
        n = min(len(buf), self.total - self.read_bytes)
        buf[:n] = b"\xa5" * n
        self.read_bytes += n
        return n


def test_refused_before_start_when_size_known(store: FileStore) -> None:
    store.put("images", io.BytesIO(b"x" * (15 * MiB)))
    stream = CountingStream(6 * MiB)
    with pytest.raises(QuotaExceeded) as err:
        store.put("images", stream, size=6 * MiB)
    assert stream.read_bytes == 0  # not a byte read, nothing created
    e = err.value
    assert (e.area, e.quota, e.used, e.attempted) == ("images", 20 * MiB, 15 * MiB, 6 * MiB)
    assert str(e) == ("area 'images' quota 20.0 MiB would be exceeded (used 15.0 MiB, "
                      "writing 6.0 MiB); raise the area's quota or remove files from it")
    assert temp_files(store.root) == []


def test_stopped_mid_stream_leaves_nothing(store: FileStore) -> None:
    store.put("images", io.BytesIO(b"y" * (3 * MiB)))
    before = store.usage("images")
    stream = CountingStream(100 * MiB)
    with pytest.raises(QuotaExceeded) as err:
        store.put("images", stream)
    assert stream.read_bytes <= 17 * MiB + 2 * (1 << 20)  # stopped at the quota, not at EOF
    assert err.value.used == 3 * MiB and err.value.attempted > 17 * MiB
    assert store.usage("images") == before
    assert list(store.objects("images")) == [next(iter(store.objects("images")))]
    assert temp_files(store.root) == []
    assert disk_usage(store.root / "images") == (3 * MiB, 1)


def test_exactly_full_is_allowed(store: FileStore) -> None:
    obj = store.put("images", CountingStream(20 * MiB))
    assert obj.size == 20 * MiB
    usage = store.usage("images")
    assert usage.full and usage.warning
    with pytest.raises(QuotaExceeded):
        store.put("images", io.BytesIO(b"1"))


def test_custom_message(store: FileStore) -> None:
    e = QuotaExceeded("images", 10, 9, 5, message="raise DEVUPDATE_QUOTA_IMAGES")
    assert str(e) == "raise DEVUPDATE_QUOTA_IMAGES"
    e.message = "changed"
    assert str(e) == "changed"


def test_staged_bytes_hold_quota(store: FileStore) -> None:
    staged = store.stage("images", CountingStream(12 * MiB))
    with pytest.raises(QuotaExceeded):
        store.stage("images", CountingStream(12 * MiB), size=12 * MiB)
    with pytest.raises(QuotaExceeded):
        store.stage("images", CountingStream(12 * MiB))
    staged.discard()
    store.stage("images", CountingStream(12 * MiB)).commit()
    assert store.usage("images").used_bytes == 12 * MiB
    assert temp_files(store.root) == []


def test_warning_threshold(store: FileStore) -> None:
    store.write_named("logs/client", "a.log", io.BytesIO(b"l" * (2 * MiB)))
    u = store.usage("logs/client")
    assert (u.warning, u.full, u.quota_bytes, u.warn_fraction) == (False, False, 5 * MiB, 0.5)
    store.write_named("logs/client", "b.log", io.BytesIO(b"l" * (MiB)))
    assert store.usage("logs/client").warning
    unlimited = store.usage("logs/audit")
    assert unlimited.quota_bytes is None and not unlimited.warning and not unlimited.full


def test_append_and_named_are_quota_checked(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(**{"logs/audit": AreaConfig(quota_bytes=100)})
    store.append_named("logs/audit", "audit.csv", b"r" * 60)
    with pytest.raises(QuotaExceeded):
        store.append_named("logs/audit", "audit.csv", b"r" * 41)
    with pytest.raises(QuotaExceeded):
        store.write_named("logs/audit", "other.csv", io.BytesIO(b"w" * 41))
    store.append_named("logs/audit", "audit.csv", b"r" * 40)
    assert slurp(store.open_named("logs/audit", "audit.csv")) == b"r" * 100
    assert store.usage("logs/audit").used_bytes == 100 and temp_files(store.root) == []


def test_zero_quota_refuses_everything(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(incoming=AreaConfig(quota_bytes=0))
    with pytest.raises(QuotaExceeded):
        store.put("incoming", io.BytesIO(b"1"))
    assert store.put("incoming", io.BytesIO(b"")).size == 0


def test_two_processes_never_exceed_quota_together(make_store, areas) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    root = store.root
    procs = [worker("fill", root, areas_json(areas), "images", 25, 1536 * 1024 + i, i)
             for i in range(2)]
    results = [json.loads(finish(p)) for p in procs]
    quota = areas["images"].quota_bytes
    created = sum(sum(r["created"]) for r in results)
    assert created <= quota
    assert all(r["refused"] > 0 for r in results) or sum(r["refused"] for r in results) > 10
    assert min(len(r["created"]) for r in results) > 0  # both got some in: they really raced
    used, files = disk_usage(root / "images")
    assert used == created <= quota
    usage = store.usage("images")
    assert (usage.used_bytes, usage.objects) == (used, files)
    assert temp_files(root) == []


def test_area_config_validation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        AreaConfig(quota_bytes=-1)
    with pytest.raises(ValueError):
        AreaConfig(warn_fraction=1.5)
    with pytest.raises(ValueError, match="overlap"):
        FileStore(tmp_path, {"logs": AreaConfig(), "logs/client": AreaConfig()})
