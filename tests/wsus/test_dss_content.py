"""The downstream sync's content and retry rules against the fake upstream (D5, D6, D3; spec/wsus.md
§8.4): a connection dropped mid-file is resumed with ``Range`` + ``If-Range`` (the requests the
upstream saw prove it) and the stored bytes are the upstream's; a corrupt file is fetched again and,
after 3 mismatches, marked ``corrupt-upstream``; ``ServerBusy`` backs off with growing, jittered
waits; a ``kill -9`` mid-run leaves the anchors where the last completed phase put them, and the
next run completes the catalog."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from catalogkit import docs_dir
from fakeupstream import FakeUpstream

from devupdate.content.models import StoredObject
from devupdate.wsus.catalog.images import CATEGORIES, ImageFile, PhoneImage, image_document
from devupdate.wsus.catalog.models import CatalogFile, Revision
from devupdate.wsus.downstream import service
from devupdate.wsus.downstream.models import SyncedFile, SyncRun, UpstreamState


def _image(version: str, payload: bytes) -> tuple[PhoneImage, dict[str, bytes]]:
    cat = b"catalog of " + version.encode()
    files = (ImageFile(f"UCUpdates_{version}.nbt", hashlib.sha1(payload).hexdigest(),
                       hashlib.sha256(payload).hexdigest(), len(payload)),
             ImageFile(f"UCUpdates_{version}.cat", hashlib.sha1(cat).hexdigest(), hashlib.sha256(cat).hexdigest(),
                       len(cat)))
    image = PhoneImage(rule_id="8f2b5c9e-1d3a-4e6f-9a7b-0c1d2e3f4a5b", device_type="UCPhone", brand="Polycom",
                       model="CX600", revision="rev1", locale="ENU", update_type="Firmware", version=version,
                       imported_at=dt.datetime(2026, 11, 1, 12, 0, 0), files=files)
    return image, {files[0].sha1: payload, files[1].sha1: cat}


def _upstream(payload: bytes, **options) -> tuple[FakeUpstream, PhoneImage]:
    docs_dir()
    image, files = _image("4.0.7468", payload)
    documents = {(c.update_id, 1): c.document(1) for c in CATEGORIES}
    documents[(image.update_id, 1)] = image_document(image, 1)
    fake = FakeUpstream(lazy=False, categories=[(c.update_id, 1) for c in CATEGORIES],
                        updates=[(image.update_id, 1)], documents=documents, files=files, **options)
    return fake.start(), image


PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture
def fake_drop():
    fake, image = _upstream(PAYLOAD, drop_after=1024 * 1024 + 7)
    yield fake, image
    fake.stop()


def _sync(rt, fake, **kwargs):
    sleeps: list[float] = []
    done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=sleeps.append, **kwargs)
    return done, sleeps


def test_a_dropped_connection_is_resumed_with_range_and_the_bytes_are_the_upstreams(rt, fake_drop):
    fake, image = fake_drop
    done, sleeps = _sync(rt, fake)
    nbt = image.files[0]
    assert done["NewRevisions"] == 4 and done["HeldRevisions"] == 0  # 3 categories + the image
    files = done["Files"]
    assert files["Fetched"] == 2 and files["Resumed"] == 1 and files["Corrupt"] == 0  # the .cat is shorter
    # what the upstream saw: a plain GET, then one resuming where the drop left the part, with If-Range
    seen = fake.content_requests(nbt.sha1)
    assert len(seen) == 2
    assert "Range" not in seen[0]["headers"]
    assert seen[1]["headers"]["Range"] == f"bytes={1024 * 1024 + 7}-"
    assert seen[1]["headers"]["If-Range"] == f'"{nbt.sha1}"'
    assert seen[0]["path"] == f"/Content/{nbt.sha1[-2:].upper()}/{nbt.sha1.upper()}.nbt"
    # stored byte for byte, by SHA-256, and the catalog says so; nothing left in incoming/
    with rt.store.open("images", nbt.sha256) as handle:
        assert handle.read() == PAYLOAD
    assert StoredObject.exists(nbt.sha256)
    assert all(row.present for row in CatalogFile.select())
    assert not list((rt.settings.filestore_root / "incoming").rglob("*.part"))
    assert len(sleeps) == 1  # one back-off for the drop (retry base 30 s, full jitter)
    assert 0 <= sleeps[0] <= 30
    # a second run transfers nothing
    fake.requests.clear()
    again, _ = _sync(rt, fake)
    assert again["NewRevisions"] == 0 and again["Files"]["Fetched"] == 0 and again["Files"]["Bytes"] == 0
    assert "GetUpdateData" not in fake.operations()
    assert not [r for r in fake.requests if r["method"] == "GET"]


def test_a_corrupt_file_is_fetched_again_then_marked(rt, caplog):
    fake, image = _upstream(b"x" * 5000)
    bad = image.files[0].sha1
    fake.corrupt.add(bad)
    try:
        done, _ = _sync(rt, fake)
    finally:
        fake.stop()
    assert done["Files"]["Corrupt"] == 1 and done["Files"]["Mismatches"] == 3 and done["Files"]["Fetched"] == 1
    assert len(fake.content_requests(bad)) == 3
    marked = SyncedFile.get_by_id(bad)
    assert marked.state == "corrupt-upstream" and "SHA-1" in marked.last_error
    assert not CatalogFile.get(CatalogFile.sha1 == bad).present
    assert "is corrupt upstream after 3 attempts" in caplog.text
    assert not list((rt.settings.filestore_root / "incoming").rglob("*.part"))
    status = service.status()
    assert status["MarkedFiles"] == [{"SHA1": bad, "State": "corrupt-upstream", "Reason": marked.last_error}]


def test_server_busy_backs_off_exponentially_with_jitter(rt):
    fake, _image_ = _upstream(b"y" * 100, busy={"GetUpdateData": 3, "GetConfigData": 1})
    try:
        done, sleeps = _sync(rt, fake)
    finally:
        fake.stop()
    assert done["ServerBusy"] == 4 and done["Retries"] == 4
    assert len(sleeps) == 4
    # full jitter under 30 s · 2^(n-1): the first wait of each step ≤ 30 s, the third ≤ 120 s
    assert sleeps[0] <= 30 and sleeps[1] <= 30 and sleeps[2] <= 60 and sleeps[3] <= 120
    assert done["NewRevisions"] == 4


def test_server_busy_past_the_attempts_fails_the_run_and_the_next_resumes(rt):
    fake, _image_ = _upstream(b"z" * 100, busy={"GetUpdateData": 8})
    try:
        with pytest.raises(service.SyncFailed) as failed:
            _sync(rt, fake)
        assert "gave up after 8 attempts" in failed.value.message
        assert SyncRun.get().outcome == "failed"
        assert UpstreamState.get_by_id(fake.url).sync_anchor is None  # the phase did not complete
        done, _ = _sync(rt, fake)
    finally:
        fake.stop()
    assert done["NewRevisions"] == 4
    assert UpstreamState.get_by_id(fake.url).sync_anchor is not None


def test_kill_9_mid_run_keeps_the_anchors_consistent_and_a_restart_completes(install, tmp_path):
    payload = os.urandom(256 * 1024)
    fake, image = _upstream(payload)
    install.runtime()
    env = install.environ(DEVUPDATE_WSUS_SYNC_RETRY_BASE="600")
    fake.gone.add(image.files[0].sha1)  # the content pass gets a 404 and asks DownloadFiles …
    fake.busy["DownloadFiles"] = 100  # … which is busy: the run backs off (minutes) and is killed there
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "wsus", "sync", "--upstream", fake.url, "--json"],
                            env=env, cwd=install.home.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while "DownloadFiles" not in fake.operations():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # killed mid-run: the metadata phases completed and committed their anchors; the run row says running
        rt = install.runtime()
        state = UpstreamState.get_by_id(fake.url)
        assert state.sync_anchor is not None and state.config_anchor is not None
        assert Revision.select().where(Revision.update_id == image.update_id).exists()
        assert SyncRun.get().outcome == "running"
        # restart: the dead run is marked interrupted, the content comes, the catalog is complete
        fake.gone.clear()
        fake.busy["DownloadFiles"] = 0
        done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    finally:
        fake.stop()
        if proc.poll() is None:
            proc.kill()
    assert [r.outcome for r in SyncRun.select().order_by(SyncRun.id)] == ["interrupted", "ok"]
    assert done["NewRevisions"] == 0 and done["Files"]["Fetched"] == 1  # the .cat came before the kill
    assert all(row.present for row in CatalogFile.select())
    assert json.loads(SyncRun.select().order_by(SyncRun.id.desc()).get().summary)["Anchors"]["SyncAnchor"] \
        == UpstreamState.get_by_id(fake.url).sync_anchor
