"""No argument may reach outside the store: every name is checked, symlinks too."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from filestore import AreaConfig, FileStore, UnsafePath

BAD_NAMES = ["../x", "/etc/passwd", "a\\b", "a\x00b", "a/../../x", "", "a//b", "a/", "./a",
             "x\x1b[0m", "del\x7f", "c1\x85", ".tmp-1-x", "a/.tmp-x", "..", "." ]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_named_paths_rejected(store: FileStore, name: str) -> None:
    area = "logs/client"
    calls = [
        lambda: store.write_named(area, name, io.BytesIO(b"x")),
        lambda: store.append_named(area, name, b"x"),
        lambda: store.open_named(area, name),
        lambda: store.delete_named(area, name),
        lambda: store.named_path(area, name),
        lambda: store.fsync_named(area, name),
    ]
    for call in calls:
        with pytest.raises(UnsafePath):
            call()
    assert isinstance(UnsafePath("x"), ValueError)
    assert store.list_named(area) == []


@pytest.mark.parametrize("area", ["../images", "/images", "images/../incoming", "im\\ages", "",
                                  "images\x00", ".filestore", "logs/../images"])
def test_unsafe_area_rejected(store: FileStore, area: str) -> None:
    with pytest.raises(UnsafePath):
        store.put(area, io.BytesIO(b"x"))
    with pytest.raises(UnsafePath):
        store.usage(area)


@pytest.mark.parametrize("sha", ["../../etc/passwd", "ab", "g" * 64, "a" * 63 + "/", "A" * 65])
def test_bad_digest_rejected(store: FileStore, sha: str) -> None:
    for call in (store.open, store.path, store.exists, store.delete):
        with pytest.raises(UnsafePath):
            call("images", sha)


def test_unsafe_area_config_rejected(tmp_path: Path) -> None:
    for name in ["../up", "/abs", "a/../b", ".hidden"]:
        with pytest.raises(UnsafePath):
            FileStore(tmp_path / "s", {name: AreaConfig()})
    assert not (tmp_path / "up").exists()


def test_symlink_escape_rejected(store: FileStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    area_dir = store.root / "logs" / "client"
    (area_dir / "evil").symlink_to(outside)
    (area_dir / "link.txt").symlink_to(outside / "secret")

    for call in [
        lambda: store.write_named("logs/client", "evil/x", io.BytesIO(b"x")),
        lambda: store.write_named("logs/client", "evil/new/x", io.BytesIO(b"x")),
        lambda: store.append_named("logs/client", "evil/secret", b"x"),
        lambda: store.open_named("logs/client", "evil/secret"),
        lambda: store.open_named("logs/client", "link.txt"),
        lambda: store.delete_named("logs/client", "evil/secret"),
        lambda: store.list_named("logs/client", "evil/"),
    ]:
        with pytest.raises(UnsafePath, match="symlink"):
            call()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "s3cret"
    assert store.list_named("logs/client") == []  # symlinks are not stored files


def test_symlinked_object_directory_rejected(store: FileStore, tmp_path: Path) -> None:
    data = b"image bytes"
    obj = store.put("images", io.BytesIO(data))
    prefix = store.root / "images" / obj.sha256[:2]
    moved = tmp_path / "elsewhere"
    prefix.rename(moved)
    prefix.symlink_to(moved)
    for call in (store.open, store.path, store.exists, store.delete):
        with pytest.raises(UnsafePath):
            call("images", obj.sha256)
    with pytest.raises(UnsafePath):
        store.put("images", io.BytesIO(data))
    assert [p.name for p in moved.iterdir()] == [obj.sha256]
