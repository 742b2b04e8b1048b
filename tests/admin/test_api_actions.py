"""The JSON API calls the CLI's service functions: the same results, the same refusals, every
change in the audit trail under the token's name."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from apikit import API, RULE_ID_CX600, cab_for, make_api
from helpers.cabs import make_update

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

V1, V2 = "4.0.7577.4366", "4.0.7577.4372"


@pytest.fixture
def api_app(install):
    return make_api(install)


def test_import_then_the_rule_lifecycle(api_app, install, tmp_path):
    from devupdate.imports.models import ImportRecord

    first = api_app.upload(cab_for(tmp_path / "a", V1))
    assert first.status_code == 201, first.data
    assert first.json["Outcome"] == "imported"
    assert first.json["FileName"] == "UCUpdates.cab"
    assert first.json["Rules"] == [{"Id": RULE_ID_CX600, "Version": V1, "Change": "created"}]
    again = api_app.upload(cab_for(tmp_path / "a", V1))
    assert again.status_code == 200 and again.json["Outcome"] == "nothing-new"
    assert ImportRecord.select().where(ImportRecord.outcome == "imported").count() == 1
    assert not list((install.home / "filestore" / "incoming").iterdir())  # the upload left nothing behind

    listed = api_app.get("/rules").json["Items"]
    assert [(r["Id"], r["PendingVersion"], r["ApprovedVersion"]) for r in listed] == [(RULE_ID_CX600, V1, None)]
    cli_listed = json.loads(install.cli("rules", "list", "--json").stdout)
    assert cli_listed == listed  # one implementation, one shape

    shown = api_app.get(f"/rules/{RULE_ID_CX600[:8]}").json
    assert shown["Identity"].endswith("/" + RULE_ID_CX600)
    assert [v["Version"] for v in shown["Versions"]] == [V1]
    assert {f["Role"] for f in shown["Versions"][0]["Files"]} == {"image", "catalog"}

    approved = api_app.call("POST", f"/rules/{RULE_ID_CX600}/approve")
    assert approved.status_code == 200
    assert (approved.json["ApprovedVersion"], approved.json["PendingVersion"]) == (V1, None)
    assert approved.json["ApprovedBy"] == "token:ci-admin"
    twice = api_app.call("POST", f"/rules/{RULE_ID_CX600}/approve")
    assert twice.status_code == 409 and twice.json["error"]["code"] == "no-pending-version"

    assert api_app.upload(cab_for(tmp_path / "b", V2)).json["Rules"][0]["Change"] == "new-version"
    reset = api_app.call("POST", f"/rules/{RULE_ID_CX600}/reset")
    assert (reset.json["ApprovedVersion"], reset.json["PendingVersion"]) == (V1, None)
    assert api_app.upload(cab_for(tmp_path / "b", V2)).status_code == 201  # pending again after the reset
    assert api_app.call("POST", f"/rules/{RULE_ID_CX600}/approve").json["RestoreVersion"] == V1
    restored = api_app.call("POST", f"/rules/{RULE_ID_CX600}/restore")
    assert (restored.json["ApprovedVersion"], restored.json["RestoreVersion"]) == (V1, None)

    assert api_app.get("/rules/0000").status_code == 404
    assert api_app.get("/rules/not-a-guid!").json["error"]["code"] == "bad-rule-ref"
    removed = api_app.call("DELETE", f"/rules/{RULE_ID_CX600}")
    assert removed.status_code == 200 and removed.json["Id"] == RULE_ID_CX600
    assert api_app.get("/rules").json == {"Items": [], "Limit": 50, "Total": 0, "Next": None}

    trail = api_app.get("/audit?actor=token:ci-admin&action=rule.").json["Items"]
    assert [(e["Action"], e["Outcome"]) for e in trail][::-1] == [
        ("rule.pending", "ok"), ("rule.approve", "ok"), ("rule.approve", "refused"), ("rule.pending", "ok"),
        ("rule.reset", "ok"), ("rule.pending", "ok"), ("rule.approve", "ok"), ("rule.restore", "ok"),
        ("rule.remove", "ok")]
    imports = api_app.get("/audit?action=import").json["Items"]
    assert {e["Actor"] for e in imports} == {"token:ci-admin"}


def test_import_refusals_keep_their_status_and_reason(install, tmp_path):
    api_app = make_api(install, max_cab_size=200_000, quota_images=60_000)
    from devupdate.rules.models import Rule

    garbage = tmp_path / "junk.cab"
    garbage.write_bytes(b"MSCF" + b"\0" * 200)
    refused = api_app.upload(garbage)
    assert refused.status_code == 400
    assert refused.json["error"]["message"].startswith("junk.cab ")  # the upload's name, not the temp file's
    assert ".tmp" not in refused.data.decode()

    empty = api_app.client.post("/api/v1/imports", data=b"", headers=api_app.auth())
    assert empty.status_code == 400 and empty.json["error"]["code"] == "empty-body"

    big = cab_for(tmp_path / "big", V1, size=300_000)
    too_large = api_app.upload(big)
    assert too_large.status_code == 413 and too_large.json["error"]["code"] == "cab-too-large"
    assert "DEVUPDATE_MAX_CAB_SIZE" in too_large.json["error"]["message"]

    class Endless(io.RawIOBase):  # a chunked upload (no Content-Length): stopped once it passes the limit
        sent = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            buffer[:] = b"x" * len(buffer)
            self.sent += len(buffer)
            return len(buffer)
    body = Endless()
    streamed = api_app.client.post("/api/v1/imports", headers=api_app.auth(),
                                   environ_overrides={"wsgi.input": body, "wsgi.input_terminated": True})
    assert streamed.status_code == 413 and streamed.json["error"]["code"] == "cab-too-large"
    assert body.sent < 200_000 + 2 * 1024 * 1024  # read no further than the limit and one chunk

    over_quota = api_app.upload(cab_for(tmp_path / "q", V1, models=(("Polycom", "CX600"), ("Polycom", "CX500"),
                                                                     ("HP", "4110")), size=30_000))
    assert over_quota.status_code == 507 and over_quota.json["error"]["code"] == "quota-exceeded"

    as_json = api_app.call("POST", "/imports", json={"cab": "no"})
    assert as_json.status_code == 415
    assert Rule.select().count() == 0
    assert not list((install.home / "filestore" / "incoming").iterdir())
    # every refused upload is in the trail, those refused before the import (size, empty) too;
    # a request that was not an upload at all (JSON) is not
    refusals = api_app.get("/audit?action=import").json["Items"]
    assert [(e["Outcome"], e["Detail"]["code"]) for e in refusals] == [
        ("refused", "quota-exceeded"), ("refused", "cab-too-large"), ("refused", "cab-too-large"),
        ("refused", "empty-body"), ("refused", refused.json["error"]["code"])]
    assert [e["Target"] for e in refusals][-1] == "junk.cab"
    assert refusals[2]["Detail"]["Size"] == big.stat().st_size and refusals[2]["Detail"]["SHA256"] == ""


def test_incoming_quota_refuses_a_streamed_upload_with_507(install, tmp_path):
    api_app = make_api(install, quota_incoming=50_000)
    response = api_app.upload(cab_for(tmp_path, V1, size=80_000))
    assert response.status_code == 507
    assert response.json["error"]["code"] == "incoming-quota-exceeded"
    assert "DEVUPDATE_QUOTA_INCOMING" in response.json["error"]["message"]


def test_test_devices_configuration_and_usage(api_app, install):
    added = api_app.call("POST", "/test-devices", json={"Name": "lab-1", "MACAddress": "00:04:f2:aa:bb:cc"})
    assert added.status_code == 201
    assert added.json == {"Name": "lab-1", "Scope": "global", "IdentifierType": "MACAddress",
                          "Identifier": "0004F2AABBCC"}
    site = api_app.call("POST", "/test-devices", json={"Name": "lab-1", "SerialNumber": "sn-77", "Site": "berlin"})
    assert site.status_code == 201 and site.json["Scope"] == "site:berlin"
    duplicate = api_app.call("POST", "/test-devices", json={"Name": "lab-1", "SerialNumber": "X1"})
    assert duplicate.status_code == 409 and duplicate.json["error"]["code"] == "duplicate-test-device"
    both = api_app.call("POST", "/test-devices", json={"Name": "lab-2", "SerialNumber": "X1", "MACAddress": "x"})
    assert both.status_code == 400 and both.json["error"]["code"] == "bad-identifier"
    bad_mac = api_app.call("POST", "/test-devices", json={"Name": "lab-2", "MACAddress": "00-11"})
    assert bad_mac.status_code == 400 and bad_mac.json["error"]["code"] == "bad-mac"
    for body in ({"Name": "lab-2", "SerialNumber": "A", "Colour": "red"}, {"Name": "lab-2", "SerialNumber": None},
                 {"Name": "lab-2", "SerialNumber": "A", "Site": None}, {"Name": 7, "SerialNumber": "A"}):
        assert api_app.call("POST", "/test-devices", json=body).json["error"]["code"] == "bad-body", body

    changed = api_app.call("PUT", "/test-devices/lab-1?site=berlin", json={"SerialNumber": "sn-78"})
    assert changed.json["Identifier"] == "SN-78"
    assert api_app.call("PUT", "/test-devices/ghost", json={"SerialNumber": "A"}).status_code == 404
    assert [d["Scope"] for d in api_app.get("/test-devices").json["Items"]] == ["global", "site:berlin"]
    assert [d["Name"] for d in api_app.get("/test-devices?site=berlin").json["Items"]] == ["lab-1"]
    listed = api_app.get("/test-devices").json["Items"]
    assert json.loads(install.cli("test-devices", "list", "--json").stdout) == listed
    assert api_app.call("DELETE", "/test-devices/lab-1").json["Scope"] == "global"
    assert api_app.call("DELETE", "/test-devices/lab-1").status_code == 404

    set_global = api_app.call("PUT", "/configuration/maxlogfilesize", json={"Value": 2048})
    assert set_global.json == {"Scope": "global", "Key": "MaxLogFileSize", "Before": 1024000, "After": 2048}
    set_site = api_app.call("PUT", "/configuration/ValidLogFileTypes?site=berlin", json={"Value": ["Watson", "Config"]})
    assert set_site.json["After"] == ["Watson", "Config"]
    none = api_app.call("PUT", "/configuration/LogCleanUpTimeOfDay", json={"Value": None})
    assert none.status_code == 200 and none.json["After"] is None
    refused = api_app.call("PUT", "/configuration/LogFlushInterval", json={"Value": "2h"})
    assert refused.status_code == 400 and "1–60" in refused.json["error"]["message"]
    unknown = api_app.call("PUT", "/configuration/Colour", json={"Value": "red"})
    assert unknown.status_code == 400 and unknown.json["error"]["code"] == "unknown-setting"
    berlin = api_app.get("/configuration?site=berlin").json
    assert (berlin["Scope"], berlin["MaxLogFileSize"], berlin["ValidLogFileTypes"]) == (
        "site:berlin", 2048, ["Watson", "Config"])
    assert api_app.get("/configuration").json["ValidLogFileTypes"] == ["Watson", "Config", "DiagLog", "CELog"]
    assert api_app.get("/configuration?site=bad/site").status_code == 400

    usage = api_app.get("/filestore/usage").json
    assert {u["Area"] for u in usage} == {"images", "logs/client", "logs/audit", "incoming"}
    cli_usage = json.loads(install.cli("filestore", "usage", "--json").stdout)
    assert [(u["Area"], u["QuotaBytes"]) for u in cli_usage] == [(u["Area"], u["QuotaBytes"]) for u in usage]

    actors = {(e["Action"], e["Actor"]) for e in api_app.get("/audit?limit=100").json["Items"]
              if e["Action"].startswith(("test-device.", "config."))}
    assert actors == {("test-device.add", "token:ci-admin"), ("test-device.set", "token:ci-admin"),
                      ("test-device.remove", "token:ci-admin"), ("config.set", "token:ci-admin")}


def test_audit_trail_is_paged_and_filtered(api_app):
    for i in range(7):
        api_app.call("POST", "/test-devices", json={"Name": f"p{i}", "SerialNumber": f"S{i}"})
    page = api_app.get("/audit?action=test-device.&limit=3").json
    assert (len(page["Items"]), page["Limit"], page["Total"]) == (3, 3, 7)
    assert [e["Target"] for e in page["Items"]] == ["global/p6", "global/p5", "global/p4"]
    middle = api_app.get(page["Next"].removeprefix(API)).json
    last = api_app.get(middle["Next"].removeprefix(API)).json
    assert [e["Target"] for e in last["Items"]] == ["global/p0"] and last["Next"] is None
    assert [e["Target"] for e in api_app.get("/audit?target=p3").json["Items"]] == ["global/p3"]
    assert api_app.get("/audit?actor=nobody").json["Items"] == []
    for bad in ("limit=0", "limit=501", "offset=0", "limit=x", "actor=%00", "cursor=x%21"):
        assert api_app.get(f"/audit?{bad}").status_code == 400, bad


def test_devices_compliance_and_device_logs(api_app, tmp_path):
    from devupdate.devices.logs import CLIENT_AREA

    api_app.upload(cab_for(tmp_path, V2))
    api_app.call("POST", f"/rules/{RULE_ID_CX600}/approve")
    update = make_update(version=V2)
    phones = phonesim.make_fleet(3, families=[(update.device_type, update.brand, update.model, update.revision,
                                               update.locale)], installed={"CX600_A_ENU_CPE.nbt": V1})
    phones[0].modules["CX600_A_ENU_CPE.nbt"] = V2
    client = api_app.client
    for phone in phones:
        answer = client.post("/RequestHandler/ucdevice.upx", data=phone.request_xml(), content_type="text/xml")
        assert answer.status_code == 200
    api_app.app.extensions["device_checks"].inventory.flush()

    devices = api_app.get("/devices").json["Items"]
    assert len(devices) == 3
    assert {d["DeviceId"]: d["Status"] for d in devices} == {
        phones[0].device_id: "Current", phones[1].device_id: "Outdated", phones[2].device_id: "Outdated"}
    outdated = api_app.get("/devices?outdated=true&model=cx600").json["Items"]
    assert sorted(d["DeviceId"] for d in outdated) == sorted(p.device_id for p in phones[1:])
    first = api_app.get("/devices?limit=2").json
    assert (len(first["Items"]), first["Total"]) == (2, 3)
    rest = api_app.get(first["Next"].removeprefix(API)).json
    assert [d["DeviceId"] for d in first["Items"] + rest["Items"]] == sorted(p.device_id for p in phones)
    assert api_app.get("/devices?outdated=maybe").status_code == 400

    store = api_app.runtime.store
    device = phones[0].device_id
    store.write_named(CLIENT_AREA, f"Watson/{device}/crash.dmp", io.BytesIO(b"dump" * 1000))
    store.write_named(CLIENT_AREA, f"Config/{device}/settings.txt", io.BytesIO(b"cfg"))
    logs = api_app.get(f"/logs?device={device}").json["Items"]
    assert [(entry["Type"], entry["FileName"], entry["Size"]) for entry in logs] == [
        ("Config", "settings.txt", 3), ("Watson", "crash.dmp", 4000)]
    assert [entry["FileName"] for entry in api_app.get("/logs?type=watson").json["Items"]] == ["crash.dmp"]
    download = api_app.get(f"/logs/Watson/{device}/crash.dmp")
    assert download.status_code == 200 and download.data == b"dump" * 1000
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert 'filename="crash.dmp"' in download.headers["Content-Disposition"]
    for missing in (f"/logs/Watson/{device}/nothing.dmp", f"/logs/Watson/{device}/..%2F..%2Fdevupdate.db",
                    "/logs/Watson/000000000000/crash.dmp"):
        assert api_app.get(missing).status_code == 404, missing
