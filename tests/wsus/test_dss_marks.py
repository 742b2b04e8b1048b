"""Files the sync gave up on (D5): listed, and cleared so the next run fetches them again — from the
command line and the JSON API (answers checked against the OpenAPI document), refusals with a
reason, clearing audited."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from test_dss_content import _upstream

from devupdate.audit.models import AuditEvent
from devupdate.wsus.catalog.models import CatalogFile
from devupdate.wsus.downstream import files, service
from devupdate.wsus.downstream.models import SyncedFile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "admin"))
from apikit import make_api  # noqa: E402

PAYLOAD = b"x" * 5000
NBT = hashlib.sha1(PAYLOAD).hexdigest()
GONE = "ab" * 20


@pytest.fixture
def corrupt(rt):
    """A run that marked the image's .nbt corrupt-upstream (and another file unavailable by hand)."""
    fake, image = _upstream(PAYLOAD)
    fake.corrupt.add(NBT)
    done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    assert done["Files"]["Corrupt"] == 1
    files.mark(GONE, files.UNAVAILABLE, "FileDigestsMissing from DownloadFiles")
    yield fake, image
    fake.stop()


def test_cli_lists_the_marked_files_and_a_retry_fetches_again(rt, install, corrupt):
    fake, image = corrupt
    listed = json.loads(install.invoke("wsus", "sync", "files", "--corrupt", "--json").output)
    assert [(f["SHA1"], f["State"], f["Attempts"], f["FileName"]) for f in listed] == [
        (NBT, "corrupt-upstream", 3, image.files[0].file_name)]
    assert listed[0]["Reason"].startswith("SHA-1 ") and listed[0]["Changed"].endswith("Z")
    every = json.loads(install.invoke("wsus", "sync", "files", "--json").output)
    assert [(f["SHA1"], f["State"], f["FileName"]) for f in every] == [
        (GONE, "unavailable", None), (NBT, "corrupt-upstream", image.files[0].file_name)]
    plain = install.invoke("wsus", "sync", "files", "--unavailable")
    assert plain.exit_code == 0 and GONE in plain.output and NBT not in plain.output
    # the upstream is repaired; the mark cleared, the next run fetches, verifies and stores it
    fake.corrupt.clear()
    again = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    assert again["Files"]["Fetched"] == 0  # still marked: not tried by itself
    cleared = install.invoke("wsus", "sync", "files", "retry", NBT.upper())
    assert cleared.exit_code == 0
    assert cleared.output == f"{NBT} (corrupt-upstream) cleared: the next sync fetches it again\n"
    assert SyncedFile.get_or_none(SyncedFile.sha1 == NBT) is None
    done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    assert done["Files"]["Fetched"] == 1 and done["Files"]["Corrupt"] == 0
    assert CatalogFile.get(CatalogFile.sha1 == NBT).present
    with rt.store.open("images", image.files[0].sha256) as handle:
        assert handle.read() == PAYLOAD
    event = AuditEvent.get(AuditEvent.action == "wsus.sync.file.retry")
    assert event.target == NBT and json.loads(event.before)["State"] == "corrupt-upstream"
    # --all with a state clears only those
    assert install.invoke("wsus", "sync", "files", "retry", "--all", "--corrupt").output == "no marked files\n"
    assert json.loads(install.invoke("wsus", "sync", "files", "retry", "--all", "--json").output)[0]["SHA1"] == GONE
    assert SyncedFile.select().count() == 0


@pytest.mark.parametrize(("args", "message"), [
    (("retry",), "name the files' SHA-1s or give --all"),
    (("retry", NBT, "--all"), "name the files' SHA-1s or give --all"),
    (("retry", "xyz"), "'xyz' is not a SHA-1 (40 hex digits"),
    (("retry", "cd" * 20), f"{'cd' * 20} is not marked (see 'devupdate wsus sync files')"),
])
def test_cli_refusals_say_why(install, args, message):
    install.runtime()
    result = install.invoke("wsus", "sync", "files", *args)
    assert result.exit_code == 1
    assert message in result.output


def test_api_lists_and_clears_the_marks(install, corrupt):
    api = make_api(install)
    every = api.get("/wsus/sync/files")
    assert every.status_code == 200 and [f["SHA1"] for f in every.json["Items"]] == [GONE, NBT]
    assert (every.json["Limit"], every.json["Total"], every.json["Next"]) == (50, None, None)
    first = api.get("/wsus/sync/files?limit=1")
    assert [f["SHA1"] for f in first.json["Items"]] == [GONE]
    assert first.headers["Link"] == f'<{first.json["Next"]}>; rel="next"'
    second = api.get(first.json["Next"].removeprefix("/api/v1"))
    assert ([f["SHA1"] for f in second.json["Items"]], second.json["Next"]) == ([NBT], None)
    only = api.get("/wsus/sync/files?state=corrupt-upstream")
    assert [(f["SHA1"], f["State"], f["Attempts"]) for f in only.json["Items"]] == [(NBT, "corrupt-upstream", 3)]
    assert api.get("/wsus/sync/files?state=broken").status_code == 400
    # refusals: 4xx with a reason, nothing cleared
    assert api.call("POST", "/wsus/sync/files/retry", role="operator", json={"All": True}).status_code == 403
    for body in ({}, {"All": True, "SHA1": [NBT]}, {"SHA1": []}, {"SHA1": ["nope"]}, {"All": False},
                 {"SHA1": [NBT], "Extra": 1}, {"All": True, "State": "broken"}):
        refused = api.call("POST", "/wsus/sync/files/retry", json=body)
        assert refused.status_code == 400, (body, refused.json)
        assert refused.json["error"]["message"]
    missing = api.call("POST", "/wsus/sync/files/retry", json={"SHA1": [NBT, "cd" * 20]})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not-marked"
    assert SyncedFile.select().count() == 2
    cleared = api.call("POST", "/wsus/sync/files/retry", json={"SHA1": [NBT.upper()]})
    assert cleared.status_code == 200 and [f["SHA1"] for f in cleared.json] == [NBT]
    rest = api.call("POST", "/wsus/sync/files/retry", json={"All": True, "State": "unavailable"})
    assert [f["SHA1"] for f in rest.json] == [GONE]
    assert api.get("/wsus/sync/files").json["Items"] == []
    assert api.get("/wsus/sync").json["MarkedFiles"] == []
