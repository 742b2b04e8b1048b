"""Inventory and compliance end to end: phones check in, ``devupdate devices list`` shows them."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fleet import AASTRA, CX600, V0, V1, V3, client, fleet, import_release, phonesim, server_env
from helpers.tools import wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]


def devices(install, *args: str) -> list[dict]:
    return json.loads(install.cli("devices", "list", "--json", *args).stdout)


def _stamp(text: str, start: dt.datetime, end: dt.datetime) -> str:
    value = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    assert start.replace(microsecond=0) <= value <= end
    return text


def test_devices_appear_and_compliance(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    current, old, newer, lab = fleet(1, installed=V1, seed=1)[0], fleet(1, installed=V0, seed=2)[0], \
        fleet(1, installed=V3, seed=3)[0], fleet(1, installed=V0, seed=4)[0]
    serial_only = fleet(1, installed=V0, seed=5)[0]
    serial_only.mac = ""
    unmanaged = fleet(1, installed=V0, family=AASTRA, seed=6)[0]
    install.cli("test-devices", "add", "lab", "--mac", lab.mac)
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    server = live_server(workers=2, **server_env())
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    internal, external = client(server), client(server, user="phones", password="s3cret-pass")
    for phone in (current, old, lab, serial_only, unmanaged):
        assert internal.check(phone).status == 200
    assert external.check(newer, path="/RequestHandlerExt/ucdevice.upx").status == 200
    assert internal.check(old).status == 200  # a second check of the same device
    checked = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    # written off the request path, within the flush interval (2 s)
    listed = wait_for(lambda: len(devices(install)) == 6 and devices(install), timeout=4.0)
    assert listed, "devices did not appear within the flush interval"
    end = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def expected(phone, status, installed, network="internal", checks=1, test=False, user=None):
        entry = {"DeviceId": phone.device_id, "MACAddress": phone.mac.replace("-", "") or None,
                 "SerialNumber": phone.serial.upper(), "DeviceType": phone.device_type, "Brand": phone.vendor,
                 "Model": phone.model, "Revision": phone.revision, "Locale": phone.locale,
                 "Versions": {"CPE.nbt": installed}, "UserID": user or phone.user_id, "Address": "127.0.0.1",
                 "Network": network, "TestDevice": test}
        found = next(d for d in listed if d["DeviceId"] == phone.device_id)
        entry["FirstSeen"] = _stamp(found["FirstSeen"], start, checked)
        entry["LastSeen"] = _stamp(found["LastSeen"], start, checked)
        entry.update({"Checks": checks, "Status": status, "Updates": [] if status == "Unmanaged" else [
            {"RuleId": release.rule_id, "UpdateType": "CPE", "InstalledVersion": installed, "ApprovedVersion": V1,
             "Status": "Current" if installed == V1 else "Outdated", "LastReport": None}]})
        return entry

    outdated = sorted([expected(old, "Outdated", V0, checks=2), expected(newer, "Outdated", V3, network="external"),
                       expected(lab, "Outdated", V0, test=True), expected(serial_only, "Outdated", V0)],
                      key=lambda d: d["DeviceId"])
    assert devices(install, "--outdated") == outdated
    everything = sorted(outdated + [expected(current, "Current", V1), expected(unmanaged, "Unmanaged", V0)],
                        key=lambda d: d["DeviceId"])
    assert devices(install) == everything
    assert devices(install, "--model", "6725IP") == [expected(unmanaged, "Unmanaged", V0)]
    assert devices(install, "--model", "cx600", "--outdated") == outdated
    assert end >= checked

    # the table form names the same devices
    table = install.cli("devices", "list", "--outdated").stdout.splitlines()
    assert table[0].split() == ["DeviceId", "Model", "Locale", "Status", "Installed", "Approved", "Test", "LastSeen"]
    assert sorted(line.split()[0] for line in table[1:]) == [d["DeviceId"] for d in outdated]

    # after the phones update, they are current
    old.modules["CPE.nbt"] = V1
    assert internal.check(old).status == 200
    assert wait_for(lambda: [d["DeviceId"] for d in devices(install, "--outdated")] ==
                    sorted(d["DeviceId"] for d in outdated if d["DeviceId"] != old.device_id), timeout=4.0)


def test_inventory_flushed_at_shutdown_and_storm(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    server = live_server(workers=2, **server_env())
    phones = fleet(500, seed=8)
    results = phonesim.run_checks(client(server), phones, concurrency=32)
    assert all(r.status == 200 for r in results)
    assert server.stop() == 0  # SIGTERM right away: the workers flush what they hold
    listed = devices(install)
    assert sorted(d["DeviceId"] for d in listed) == sorted(p.device_id for p in phones)
    assert {d["Status"] for d in listed} == {"Outdated"}
