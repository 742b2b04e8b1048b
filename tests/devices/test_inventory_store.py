"""The inventory's batched upsert and the compliance query, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from devupdate.devices import compliance
from devupdate.devices.inventory import Device, InventoryRecorder, upsert
from devupdate.selection import DeviceRequest, Module, OfferedFile, RuleEntry, Snapshot, VersionEntry, family


def request(mac: str = "0004F2000001", version: str = "4.0.7577.4366", **fields) -> DeviceRequest:
    values = dict(device_type="UCPhone", mac=mac, serial="CX600-0001", vendor="Polycom", model="CX600", revision="A",
                  locale="ENU", user_id="alice@contoso.com", modules=(Module("CPE.nbt", version),))
    values.update(fields)
    return DeviceRequest(**values)


def at(seconds: float) -> dt.datetime:
    return dt.datetime(2026, 11, 21, 9, 0, 0) + dt.timedelta(seconds=seconds)


def row(seen: float, **fields) -> dict:
    values = {"device_id": "0004F2000001", "mac": "0004F2000001", "serial": "CX600-0001", "device_type": "UCPhone",
              "brand": "Polycom", "model": "CX600", "revision": "A", "locale": "ENU",
              "versions": '{"CPE.nbt":"4.0.7577.4366"}', "user_id": "alice", "address": "10.0.0.7",
              "network": "internal", "first_seen": at(seen), "last_seen": at(seen), "checks": 1}
    values.update(fields)
    return values


def test_upsert_keeps_first_seen_newer_wins_checks_add_up(database):
    upsert([row(0, checks=3)])
    upsert([row(60, versions='{"CPE.nbt":"4.0.7577.4372"}', address="10.0.0.8", checks=2)])
    upsert([row(30, versions='{"CPE.nbt":"1.0"}', address="10.9.9.9", user_id="late")])  # an older flush, late
    device = Device.get(Device.device_id == "0004F2000001")
    assert (device.first_seen, device.last_seen, device.checks) == (at(0), at(60), 6)
    assert (device.versions, device.address, device.user_id) == ('{"CPE.nbt":"4.0.7577.4372"}', "10.0.0.8", "alice")


def test_upsert_in_batches(database):
    rows = [row(0, device_id=f"0004F2{n:06X}", mac=f"0004F2{n:06X}") for n in range(1234)]
    upsert(rows, batch=500)
    upsert(rows[:10], batch=500)
    assert Device.select().count() == 1234
    assert Device.get(Device.device_id == "0004F2000000").checks == 2


def test_recorder_coalesces_and_flushes(database):
    clock = iter([100.0, 101.0, 102.0, 103.0]).__next__
    recorder = InventoryRecorder(clock=clock)
    recorder.observe(request(version="1.0"), "10.0.0.7", "Int")
    recorder.observe(request(version="2.0"), "203.0.113.9", "Ext", "phones")
    recorder.observe(request(mac="", serial="SN_9", user_id=""), "10.0.0.9", "Int")
    assert recorder.pending == 2
    assert recorder.flush() == 2 and recorder.pending == 0
    first = Device.get(Device.device_id == "0004F2000001")
    assert (first.versions, first.network, first.address, first.checks) == ('{"CPE.nbt":"2.0"}', "external",
                                                                               "203.0.113.9", 2)
    assert first.first_seen == dt.datetime(1970, 1, 1, 0, 1, 40)
    second = Device.get(Device.device_id == "SN-SN_9")
    assert (second.mac, second.serial, second.user_id) == ("", "SN_9", "")
    assert recorder.flush() == 0


def test_recorder_keeps_observations_when_the_database_fails(database, monkeypatch):
    from devupdate.devices import inventory

    recorder = InventoryRecorder()
    recorder.observe(request(), "10.0.0.7", "Int")
    monkeypatch.setattr(inventory, "_execute_upsert", lambda chunk: (_ for _ in ()).throw(RuntimeError("down")))
    assert recorder.flush() == 0 and recorder.failures == 1
    recorder.observe(request(), "10.0.0.7", "Int")
    monkeypatch.undo()
    assert recorder.flush() == 1
    assert Device.get().checks == 2


def _snapshot(approved: str | None, pending: str | None = None, test_macs=()) -> Snapshot:
    def entry(version):
        if version is None:
            return None
        return VersionEntry(version, (OfferedFile("CPE.nbt", "CPE.cat", version, "t", "p", 1, "0" * 64),))
    rule = RuleEntry("rule-1", "cpe", frozenset({"cx600_a_enu_cpe.nbt"}), entry(approved), entry(pending))
    return Snapshot(generation=1, rules={family("UCPhone", "Polycom", "CX600", "A", "ENU"): (rule,)},
                    test_macs=frozenset(test_macs))


@pytest.mark.parametrize(("installed", "approved", "status"), [
    ("4.0.7577.4366", "4.0.7577.4366", "Current"),
    ("4.0.7577.04366", "4.0.7577.4366", "Current"),
    ("4.0.7577.4363", "4.0.7577.4366", "Outdated"),
    ("4.0.7577.4387", "4.0.7577.4366", "Outdated"),  # newer than approved: the check would downgrade it
    (None, "4.0.7577.4366", "Outdated"),
    ("4.0.7577.4366", None, "Unmanaged"),
])
def test_compliance_status(database, installed, approved, status):
    versions = json.dumps({"CPE.nbt": installed}) if installed else "{}"
    upsert([row(0, versions=versions)])
    [entry] = compliance.list_devices(snapshot=_snapshot(approved))
    assert entry["Status"] == status
    assert [u["Status"] for u in entry["Updates"]] == ([] if approved is None else [status])
    assert compliance.list_devices(snapshot=_snapshot(approved), outdated=True) == (
        [entry] if status == "Outdated" else [])


def test_compliance_filters_by_model_case_insensitively(database):
    upsert([row(0), row(0, device_id="X2", mac="", model="CX3000")])
    snapshot = _snapshot("4.0.7577.4366", test_macs={"0004F2000001"})
    assert [d["DeviceId"] for d in compliance.list_devices(snapshot=snapshot, model="cx600")] == ["0004F2000001"]
    assert [d["DeviceId"] for d in compliance.list_devices(snapshot=snapshot)] == ["0004F2000001", "X2"]
    assert compliance.list_devices(snapshot=snapshot, model="cx600")[0]["TestDevice"] is True
    assert [d["Status"] for d in compliance.list_devices(snapshot=snapshot)] == ["Current", "Unmanaged"]


@pytest.mark.parametrize("posix", [0.0, 100.5, 1795251598.123456, 1795251598.9999999, 1795251598.0000004])
def test_sqlite_time_text_is_what_peewee_writes(posix):
    from devupdate.devices.inventory import _datetime, _sqlite_time

    assert _sqlite_time(posix) == str(_datetime(posix))


def test_pages_read_only_as_far_as_they_need_and_agree_with_the_whole_list(database):
    installed = ["4.0.7577.4366", "4.0.7577.4363", None, "4.0.7577.4366", "4.0.7577.4387"] * 6
    upsert([row(n, device_id=f"D{n:03d}", versions=json.dumps({"CPE.nbt": v}) if v else "{}")
            for n, v in enumerate(installed)])
    snapshot = _snapshot("4.0.7577.4366")
    for outdated in (False, True):
        whole = compliance.list_devices(snapshot=snapshot, outdated=outdated)
        assert len(whole) == (30 if not outdated else 18)
        pages = [compliance.list_devices(snapshot=snapshot, outdated=outdated, limit=7, offset=start)
                 for start in range(0, len(whole) + 7, 7)]
        assert [entry for page in pages for entry in page] == whole
        assert [len(page) for page in pages][:2] == [7, 7] and pages[-1] == []


def test_fleet_groups_count_what_the_device_list_shows(database):
    installed = ["4.0.7577.4366", "4.0.7577.4363", None, "4.0.7577.4366"] * 5
    upsert([row(n, device_id=f"D{n:03d}", versions=json.dumps({"CPE.nbt": v}) if v else "{}")
            for n, v in enumerate(installed)] + [row(99, device_id="X2", mac="", model="CX3000")])
    snapshot = _snapshot("4.0.7577.4366")
    groups = compliance.fleet_groups(snapshot)
    assert sum(devices for _, devices in groups) == 21 and len(groups) == 4
    by_status: dict[str, int] = {}
    for entry, devices in groups:
        by_status[entry["Status"]] = by_status.get(entry["Status"], 0) + devices
    listed: dict[str, int] = {}
    for entry in compliance.list_devices(snapshot=snapshot):
        listed[entry["Status"]] = listed.get(entry["Status"], 0) + 1
    assert by_status == listed == {"Current": 10, "Outdated": 10, "Unmanaged": 1}
    from devupdate.admin.console import fleet

    assert fleet.version_distribution(groups) == fleet.version_distribution(
        (entry, 1) for entry in compliance.list_devices(snapshot=snapshot))


CPE_RULE = RuleEntry("rule-1", "cpe", frozenset({"cx600_a_enu_cpe.nbt"}), None, None, name="CPE")


def stored(device_id: str = "0004F2000001") -> tuple[dict[str, str], int, dt.datetime]:
    device = Device.get(Device.device_id == device_id)
    return json.loads(device.versions), device.checks, device.last_seen


def test_installed_reports_in_the_inventory_batch(database):
    """An ``installed`` report gives the rule's module the version, under the name the device used:
    merged into a check of the same batch, or over the stored versions; a later check replaces it."""
    clock = [1_795_000_000.0]
    recorder = InventoryRecorder(clock=lambda: clock[0])
    identity = request(modules=())
    two = (Module("CPE.nbt", "4.0.7577.4366"), Module("Other.bin", "1.0"))
    # same batch: a check, then the report
    recorder.observe(request(modules=two), "10.0.0.7", "Int")
    clock[0] += 1
    recorder.installed(identity, "10.0.0.7", "Int", "", CPE_RULE, "CPE", "4.0.7577.4372")
    assert recorder.flush() == 1
    assert stored()[:2] == ({"CPE.nbt": "4.0.7577.4372", "Other.bin": "1.0"}, 1)
    # a report alone: over what is stored (no check counted); twice is once
    clock[0] += 1
    for _ in range(2):
        recorder.installed(identity, "10.0.0.7", "Int", "", CPE_RULE, "cpe", "4.0.7577.4387")
    assert recorder.flush() == 1
    versions, checks, seen = stored()
    assert (versions, checks, seen) == ({"CPE.nbt": "4.0.7577.4387", "Other.bin": "1.0"}, 1, at_posix(clock[0]))
    # a report, then a check in the same batch: the check is the device's own, later word
    clock[0] += 1
    recorder.installed(identity, "10.0.0.7", "Int", "", CPE_RULE, "CPE", "9.9")
    recorder.observe(request(version="4.0.7577.4366"), "10.0.0.7", "Int")
    assert recorder.flush() == 1
    assert stored()[:2] == ({"CPE.nbt": "4.0.7577.4366"}, 2)
    # a device that never checked: known from its report, with no check; an image file name is the module
    recorder.installed(request(mac="0004F2000002", modules=()), "10.0.0.8", "Int", "", CPE_RULE, "CPE", "1.2")
    recorder.observe(request(mac="0004F2000003", modules=(Module("CX600_A_ENU_CPE.nbt", "1.0"),)), "10.0.0.9",
                     "Int")
    recorder.installed(request(mac="0004F2000003", modules=()), "10.0.0.9", "Int", "", CPE_RULE, "CPE", "1.2")
    assert recorder.flush() == 2
    assert stored("0004F2000002")[:2] == ({"CPE": "1.2"}, 0)
    assert stored("0004F2000003")[:2] == ({"CX600_A_ENU_CPE.nbt": "1.2"}, 1)


def test_installed_report_older_than_a_written_check_changes_nothing(database):
    """Workers flush on their own: a report older than a check already written loses to the check."""
    clock = [1_795_000_000.0]
    early = InventoryRecorder(clock=lambda: clock[0])
    early.installed(request(modules=()), "10.0.0.7", "Int", "", CPE_RULE, "CPE", "4.0.7577.4372")
    clock[0] += 5
    late = InventoryRecorder(clock=lambda: clock[0])
    late.observe(request(version="4.0.7577.4366"), "10.0.0.7", "Int")
    assert late.flush() == 1 and early.flush() == 1
    assert stored()[:2] == ({"CPE.nbt": "4.0.7577.4366"}, 1)


def at_posix(posix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(posix, dt.UTC).replace(tzinfo=None)


def _counted() -> dict[tuple, int]:
    from devupdate.devices import groups

    return {tuple(rest): devices for *rest, devices in groups.groups()}


def _grouped() -> dict[tuple, int]:
    import peewee

    from devupdate.devices import groups

    columns = [getattr(Device, name) for name in groups.COLUMNS]
    query = Device.select(*columns, peewee.fn.COUNT(Device.id)).group_by(*columns).tuples()
    return {tuple(rest): devices for *rest, devices in query}


def test_group_counters_follow_every_write(database):
    """The dashboard's counters equal the inventory grouped, after new devices, version changes, a late
    older flush (which changes nothing), a device reporting another model and status reports."""
    upsert([row(0, device_id=f"D{n}", versions=json.dumps({"CPE.nbt": f"1.{n % 2}"})) for n in range(5)])
    assert _counted() == _grouped() == {("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt": "1.0"}'): 3,
                                        ("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt": "1.1"}'): 2}
    upsert([row(60, device_id="D0", versions='{"CPE.nbt": "1.1"}'), row(60, device_id="D1", model="CX3000"),
            row(-30, device_id="D2", versions='{"CPE.nbt": "9.9"}')])  # D2: older than what is stored
    assert _counted() == _grouped() == {
        ("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt": "1.0"}'): 2,
        ("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt": "1.1"}'): 2,
        ("UCPhone", "Polycom", "CX3000", "A", "ENU", '{"CPE.nbt":"4.0.7577.4366"}'): 1}
    upsert([row(90, device_id=name, versions='{"CPE.nbt": "1.1"}') for name in ("D2", "D4")])  # a group empties
    assert ("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt": "1.0"}') not in _counted()
    from devupdate.devices.groups import DeviceGroup

    assert DeviceGroup.select().count() == 2  # the emptied group is gone, not kept at 0
    recorder = InventoryRecorder(clock=lambda: 1_795_000_000.0, snapshot=lambda: _snapshot("4.0.7577.4372"))
    recorder.observe(request(mac="0004F2000009"), "10.0.0.9", "Int")
    recorder.installed(request(mac="0004F200000A", modules=()), "10.0.0.8", "Int", "", CPE_RULE, "CPE", "1.2")
    assert recorder.flush() == 2
    assert _counted() == _grouped() and sum(_counted().values()) == 7


def test_the_migration_counts_the_devices_already_there(database):
    from devupdate import schema
    from devupdate.devices.groups import DeviceGroup

    upsert([row(0, device_id=f"D{n}", locale=("ENU", "DEU")[n % 2]) for n in range(7)])
    database.drop_tables([DeviceGroup])
    with database.atomic():
        schema._device_groups(database.obj)
    assert _counted() == _grouped() == {("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt":"4.0.7577.4366"}'): 4,
                                        ("UCPhone", "Polycom", "CX600", "A", "DEU", '{"CPE.nbt":"4.0.7577.4366"}'): 3}


def test_a_device_another_writer_inserted_meanwhile_is_counted_once(database, monkeypatch):
    """PostgreSQL: a device inserted by another worker after this chunk read its rows (the read did not
    see it) makes the chunk start again, so it moves from its real group instead of being counted twice."""
    from devupdate import db
    from devupdate.devices import inventory

    upsert([row(0, device_id="D1")])
    real, reads = inventory.stored_groups, []
    if db.is_sqlite():  # one writer at a time: the read is inside the writer's lock, nothing comes between
        inside: list[bool] = []

        def recorded(ids):
            inside.append(db.database.in_transaction())
            return real(ids)

        monkeypatch.setattr(inventory, "stored_groups", recorded)
        upsert([row(60, device_id="D1", versions='{"CPE.nbt":"1.2"}')])
        assert inside and all(inside)
        assert _counted() == _grouped() == {("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt":"1.2"}'): 1}
        return

    def not_seen_first(ids):
        reads.append(ids)
        return {} if len(reads) == 1 else real(ids)

    monkeypatch.setattr(inventory, "stored_groups", not_seen_first)
    upsert([row(60, device_id="D1", versions='{"CPE.nbt":"1.2"}')])
    assert len(reads) == 3  # the read that missed it; then, written again, before and after
    assert _counted() == _grouped() == {("UCPhone", "Polycom", "CX600", "A", "ENU", '{"CPE.nbt":"1.2"}'): 1}


def test_fleet_groups_count_afresh_and_judge_again_for_another_snapshot(database):
    """The dashboard's group rows are computed once per snapshot; the counts are read every time."""
    served = _snapshot("4.0.7577.4366")
    upsert([row(0)])
    assert [(r["Status"], n) for r, n in compliance.fleet_groups(served)] == [("Current", 1)]
    upsert([row(0, device_id="X2", mac="")])
    assert [(r["Status"], n) for r, n in compliance.fleet_groups(served)] == [("Current", 2)]
    assert [(r["Status"], n) for r, n in compliance.fleet_groups(_snapshot("4.0.7577.4372"))] == [("Outdated", 2)]
