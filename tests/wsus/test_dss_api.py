"""The downstream sync over the JSON API: the history, a run on demand, the needed list — every
answer checked against the OpenAPI document, refusals 4xx with a reason, changes audited."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from catalogkit import docs_dir
from fakeupstream import FakeUpstream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "admin"))
from apikit import make_api  # noqa: E402

UPDATE = "aaaaaaaa-0000-4000-8000-000000000001"


@pytest.fixture
def api(install):
    return make_api(install)


def test_sync_on_demand_then_the_history(install):
    docs_dir()
    fake = FakeUpstream(updates=[]).start()
    api = make_api(install, wsus_upstream_url=fake.url)
    try:
        assert api.get("/wsus/sync").json["Runs"] == []
        started = api.call("POST", "/wsus/sync", json={})
        assert started.status_code == 202 and started.json["Upstream"] == fake.url
        deadline = time.monotonic() + 60
        while True:
            runs = api.get("/wsus/sync").json["Runs"]
            if runs and runs[0]["Outcome"] != "running":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        fake.stop()
    assert runs[0]["Outcome"] == "ok" and runs[0]["Trigger"] == "api"
    assert runs[0]["Summary"]["NewRevisions"] == 1
    assert api.get("/wsus/sync/runs").json == {"Items": runs, "Limit": 50, "Total": None, "Next": None}
    refused = api.get("/wsus/sync/runs?cursor=WyJ3c3VzLXN5bmMtcnVucyIsIiIsInRleHQiXQ")
    assert (refused.status_code, refused.json["error"]["code"]) == (400, "bad-cursor")
    assert "not a whole number" in refused.json["error"]["message"]
    assert api.get("/wsus/sync").json["Upstreams"][0]["SyncAnchor"].startswith("9438,")


def test_sync_refusals(api):
    no_upstream = api.call("POST", "/wsus/sync", json={})
    assert no_upstream.status_code == 409 and no_upstream.json["error"]["code"] == "no-upstream"
    assert api.call("POST", "/wsus/sync", json={"Upstream": "http://elsewhere.example"}).status_code == 400
    assert api.call("POST", "/wsus/sync", role="operator", json={}).status_code == 403


def test_needed_list(api):
    added = api.call("POST", "/wsus/needed", json={"UpdateID": UPDATE, "RevisionNumber": 3, "Source": "mdm"})
    assert added.status_code == 201 and added.json["RevisionNumber"] == 3
    assert [e["UpdateID"] for e in api.get("/wsus/needed").json] == [UPDATE]
    assert api.call("POST", "/wsus/needed", json={"UpdateID": "nope"}).status_code == 400
    assert api.call("POST", "/wsus/needed", json={"UpdateID": UPDATE, "Extra": 1}).status_code == 400
    assert api.call("DELETE", f"/wsus/needed/{UPDATE}").status_code == 200
    gone = api.call("DELETE", f"/wsus/needed/{UPDATE}")
    assert gone.status_code == 404 and "is not on the needed list" in gone.json["error"]["message"]
    from devupdate.audit.models import AuditEvent

    assert {e.action for e in AuditEvent.select()} >= {"wsus.needed.add", "wsus.needed.remove"}
