"""The device listing's filters and sorting and the device page's data — one query (``compliance.list_devices``,
``compliance.device_detail``) behind ``devupdate devices list|show``, ``GET /devices[/{device}]`` and the console."""

from __future__ import annotations

import datetime as dt
import json

import apikit
from click.testing import CliRunner

from devupdate.audit.trail import record
from devupdate.db import utcnow
from devupdate.devices import compliance
from devupdate.devices.inventory import upsert

MID = "4.0.7577.4366"


def row(device_id, *, mac="", serial="", user="", days_ago=0.0, model="CX600", checks=1):
    seen = utcnow() - dt.timedelta(days=days_ago)
    return {"device_id": device_id, "mac": mac, "serial": serial, "device_type": "UCPhone", "brand": "Polycom",
            "model": model, "revision": "A", "locale": "ENU", "versions": json.dumps({"CPE.nbt": MID}),
            "user_id": user, "address": "10.0.0.9", "network": "internal", "first_seen": seen - dt.timedelta(days=1),
            "last_seen": seen, "checks": checks}


FLEET = [row("0004F2000001", mac="0004F2000001", user="alice@contoso.com", days_ago=40, checks=5),
         row("0004F2000002", mac="0004F2000002", serial="CX-2", user="bob@contoso.com", days_ago=3, model="CX3000"),
         row("SN-HP-1", serial="HP-1", user="carol@contoso.com", days_ago=0.1, model="4120", checks=9)]


def test_filters_sorting_and_detail(install):
    api = apikit.make_api(install)
    upsert(FLEET)
    record("test", "test-device.add", "global/lab", after={"Identifier": "0004F2000002"})

    def ids(**kwargs):
        return [r["DeviceId"] for r in compliance.list_devices(**kwargs)]
    assert ids(not_seen_since=compliance.parse_age("30d")) == ["0004F2000001"]
    assert ids(not_seen_since=compliance.parse_age("2")) == ["0004F2000001", "0004F2000002"]
    assert ids(model="cx*") == ["0004F2000001", "0004F2000002"] and ids(model="4120") == ["SN-HP-1"]
    assert ids(status="unmanaged") == [r["device_id"] for r in FLEET] and ids(status="current") == []
    assert ids(sort="-last-seen") == ["SN-HP-1", "0004F2000002", "0004F2000001"]
    assert ids(sort="-checks", limit=1) == ["SN-HP-1"]
    assert ids(search="bob", sort="model") == ["0004F2000002"]
    for bad, call in (("bad-age", lambda: compliance.parse_age("soon")),
                      ("bad-sort", lambda: compliance.parse_sort("colour")),
                      ("bad-status", lambda: compliance.parse_status("ok"))):
        try:
            call()
        except compliance.DevupdateError as exc:
            assert exc.code == bad
        else:
            raise AssertionError(bad)

    detail = compliance.device_detail("00-04-f2-00-00-02")
    assert detail["DeviceId"] == "0004F2000002" and detail["UserID"] == "bob@contoso.com"
    assert [(h["Package"], h["Version"]) for h in detail["History"]] == [("CPE.nbt", MID)]
    assert [a["Target"] for a in detail["Audit"]] == ["global/lab"]
    assert compliance.device_detail("cx-2")["DeviceId"] == "0004F2000002"

    # The API: the same filters, the page of one device, a refusal with its reason.
    listed = api.get("/devices?not_seen_since=30d")
    assert [r["DeviceId"] for r in listed.json["Items"]] == ["0004F2000001"]
    assert [r["DeviceId"] for r in api.get("/devices?sort=-checks&search=contoso&limit=2").json["Items"]] == [
        "SN-HP-1", "0004F2000001"]
    assert api.get("/devices?status=unmanaged&model=CX*").json["Items"][0]["DeviceId"] == "0004F2000001"
    page = api.get("/devices/0004F2000002")
    assert page.status_code == 200 and page.json["Audit"][0]["Action"] == "test-device.add"
    missing = api.get("/devices/0004F2FFFFFF")
    assert missing.status_code == 404 and "devupdate devices list" in missing.json["error"]["message"]
    assert api.get("/devices?not_seen_since=soon").status_code == 400

    # The CLI.
    from devupdate.cli import main

    runner = CliRunner()
    out = runner.invoke(main, ["devices", "list", "--not-seen-since", "30d", "--json"], env=install.environ())
    assert out.exit_code == 0, out.output
    assert [r["DeviceId"] for r in json.loads(out.output)] == ["0004F2000001"]
    out = runner.invoke(main, ["devices", "list", "--sort", "-last-seen", "--model", "CX*"], env=install.environ())
    assert out.exit_code == 0 and out.output.index("0004F2000002") < out.output.index("0004F2000001")
    out = runner.invoke(main, ["devices", "list", "--not-seen-since", "soon"], env=install.environ())
    assert out.exit_code != 0 and "30d, 12h or 2w" in out.output
    out = runner.invoke(main, ["devices", "show", "SN-HP-1"], env=install.environ())
    assert out.exit_code == 0 and "carol@contoso.com" in out.output and "CPE.nbt" in out.output


def test_rules_list_filters(install, tmp_path):
    api = apikit.make_api(install)
    assert api.upload(apikit.cab_for(tmp_path, models=(("Polycom", "CX600"), ("Polycom", "CX3000"),
                                                       ("HP", "4110")))).status_code in (200, 201)
    from devupdate.cli import main

    def models(*args):
        out = CliRunner().invoke(main, ["rules", "list", *args, "--json"], env=install.environ())
        assert out.exit_code == 0, out.output
        return sorted(r["Model"] for r in json.loads(out.output))
    assert models("--brand", "polycom", "--model", "CX*") == ["CX3000", "CX600"]
    assert models("--brand", "HP", "--state", "pending") == ["4110"]
    assert models("--state", "approved") == []
    assert models("--model", "CX6*", "--locale", "enu") == ["CX600"]
