"""Cleanup deletes only what no owner references: a second owner keeps an object alive."""

from __future__ import annotations

import io

import pytest
from helpers.cabs import make_package, make_update

from devupdate.content import registry
from devupdate.content.areas import IMAGES
from devupdate.content.models import StoredObject
from devupdate.imports.service import import_cab
from devupdate.rules import lifecycle
from devupdate.rules.cleanup import cleanup_files


@pytest.fixture
def other_owner(monkeypatch):
    """A second owner (as WSUS files will be) referencing the objects named in ``keep``."""
    keep: set[str] = set()
    monkeypatch.setitem(registry._references, "other owner",
                        lambda: StoredObject.select(StoredObject.sha256).where(StoredObject.sha256.in_(keep)))
    return keep


def stored(rt) -> set[str]:
    return set(rt.store.objects(IMAGES))


def test_every_process_that_opens_the_schema_knows_the_owners():
    import devupdate.schema  # noqa: F401 - what every serving process and the CLI import

    assert "rule versions" in registry.owners()


def test_cleanup_keeps_what_another_owner_references_and_deletes_the_rest(rt, tmp_path, other_owner):
    update = make_update()
    import_cab(rt.store, rt.settings, make_package(tmp_path, [update]), actor="test")
    objects = {o.sha256: o for o in StoredObject.select()}
    assert set(objects) == stored(rt) and len(objects) == 2  # the image and its catalog
    image = next(sha for sha, o in objects.items() if o.size == max(o.size for o in objects.values()))
    other_owner.add(image)
    lifecycle.remove(update.id, "test")

    report = cleanup_files(rt.store, grace_seconds=0, actor="test")

    assert report["VersionsRemoved"] == [f"{update.id}/{update.version}"]
    assert (report["ObjectsRemoved"], report["OrphansRemoved"]) == (1, 0)
    assert [o.sha256 for o in StoredObject.select()] == [image]
    assert stored(rt) == {image}
    with rt.store.open(IMAGES, image) as handle:  # still readable, byte for byte
        assert len(handle.read()) == objects[image].size

    other_owner.clear()
    assert cleanup_files(rt.store, grace_seconds=0, actor="test")["ObjectsRemoved"] == 1
    assert StoredObject.select().count() == 0 and stored(rt) == set()


def test_orphans_wait_while_an_owner_has_writes_in_flight(rt, monkeypatch):
    orphan = rt.store.put(IMAGES, io.BytesIO(b"left by a crash"))
    monkeypatch.setitem(registry._in_flight, "other owner", lambda: True)
    assert cleanup_files(rt.store, grace_seconds=0, actor="test")["OrphansRemoved"] == 0
    assert stored(rt) == {orphan.sha256}
    monkeypatch.delitem(registry._in_flight, "other owner")
    assert cleanup_files(rt.store, grace_seconds=0, actor="test")["OrphansRemoved"] == 1
    assert stored(rt) == set()
