"""The hourly activity series written by the inventory's batch: hour buckets, checks per rule and
version, version changes, downloads, retention, and the rollout curve read back — on SQLite and
PostgreSQL."""

from __future__ import annotations

from devupdate.devices import activity
from devupdate.devices.activity import ActivityHour
from devupdate.devices.inventory import InventoryRecorder
from devupdate.selection import DeviceRequest, Module, OfferedFile, RuleEntry, Snapshot, VersionEntry, family

H = 493_000  # an hour number: 2026-03-29 16:00 UTC
T = H * 3600.0


def phone(n: int, version: str | None, model: str = "CX600") -> DeviceRequest:
    modules = (Module("CPE.nbt", version),) if version else ()
    return DeviceRequest(device_type="UCPhone", mac=f"0004F2{n:06X}", serial="", vendor="Polycom", model=model,
                         revision="A", locale="ENU", modules=modules)


def snapshot() -> Snapshot:
    version = VersionEntry("2.0", (OfferedFile("CPE.nbt", "CPE.cat", "2.0", "t", "p", 1, "0" * 64),))
    rule = RuleEntry("rule-cx600", "cpe", frozenset({"cpe.nbt"}), version, None)
    return Snapshot(generation=1, rules={family("UCPhone", "Polycom", "CX600", "A", "ENU"): (rule,)})


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def rows(**where) -> set[tuple]:
    query = ActivityHour.select()
    for name, value in where.items():
        query = query.where(getattr(ActivityHour, name) == value)
    return {(r.hour - H, r.kind, r.rule_id, r.version, r.side, r.events, r.bytes) for r in query}


def recorder(clock: Clock, **kwargs) -> InventoryRecorder:
    return InventoryRecorder(clock=clock, snapshot=snapshot, **kwargs)


def test_checks_fall_into_the_hour_of_their_time_per_rule_version_and_side(database):
    clock = Clock(T + 3599.5)  # the last half second of hour H
    rec = recorder(clock)
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.observe(phone(2, "2.0"), "203.0.113.5", "Ext")
    rec.observe(phone(3, None, model="Other"), "10.0.0.3", "Int")  # no rule covers it: totals only
    assert rec.flush() == 3
    clock.now = T + 3600.0  # the first second of hour H+1
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    assert rec.flush() == 1
    assert rows(kind="check") == {
        (0, "check", "", "", "internal", 3, 0), (0, "check", "", "", "external", 1, 0),
        (0, "check", "rule-cx600", "1.0", "internal", 2, 0), (0, "check", "rule-cx600", "2.0", "external", 1, 0),
        (1, "check", "", "", "internal", 1, 0), (1, "check", "rule-cx600", "1.0", "internal", 1, 0)}
    # new devices arrive on what they report; a device that reports the same version again does not
    assert rows(kind="arrive") == {(0, "arrive", "rule-cx600", "1.0", "internal", 1, 0),
                                   (0, "arrive", "rule-cx600", "2.0", "external", 1, 0)}
    assert rows(kind="leave") == set()


def test_a_version_change_leaves_the_old_version_and_arrives_on_the_new(database):
    clock = Clock(T)
    rec = recorder(clock)
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.observe(phone(2, "1.0"), "10.0.0.2", "Int")
    rec.flush()
    clock.now = T + 2 * 3600 + 5
    rec.observe(phone(1, "2.0"), "10.0.0.1", "Int")
    rec.observe(phone(2, None), "10.0.0.2", "Int")  # stopped reporting the module: version ""
    rec.flush()
    assert rows(kind="leave") == {(2, "leave", "rule-cx600", "1.0", "internal", 2, 0)}
    assert rows(kind="arrive", hour=H + 2) == {(2, "arrive", "rule-cx600", "2.0", "internal", 1, 0),
                                               (2, "arrive", "rule-cx600", "", "internal", 1, 0)}
    # a second recorder (another worker) sees the stored versions: no change, no transition
    other = recorder(Clock(T + 3 * 3600))
    other.observe(phone(1, "2.0"), "10.0.0.1", "Int")
    other.flush()
    assert rows(kind="arrive", hour=H + 3) == set() and rows(kind="leave", hour=H + 3) == set()


def test_batches_of_many_devices_count_each_device_once(database):
    clock = Clock(T + 10)
    rec = recorder(clock, batch=100)
    for n in range(250):
        rec.observe(phone(n, "1.0"), "10.0.0.1", "Int")
    rec.download("rule-cx600", "2.0", "Int", 1000, whole=True)
    assert rec.flush() == 250
    assert rows(kind="arrive") == {(0, "arrive", "rule-cx600", "1.0", "internal", 250, 0)}
    assert rows(kind="check", rule_id="") == {(0, "check", "", "", "internal", 250, 0)}
    assert rows(kind="download") == {(0, "download", "", "", "internal", 1, 1000),
                                     (0, "download", "rule-cx600", "2.0", "internal", 1, 1000)}


def test_downloads_count_whole_sends_and_add_up_bytes(database):
    clock = Clock(T + 60)
    rec = recorder(clock)
    rec.download("rule-cx600", "2.0", "Ext", 5000, whole=True)
    rec.download("rule-cx600", "2.0", "Ext", 3000, whole=False)  # a later range: bytes only
    rec.download("", "", "Int", 10, whole=True)  # a file of no rule (a removed version): totals only
    assert rec.flush() == 0  # no device written, the downloads are
    rec.download("rule-cx600", "2.0", "Ext", 5000, whole=True)
    rec.flush()
    assert rows() == {(0, "download", "", "", "external", 2, 13000), (0, "download", "", "", "internal", 1, 10),
                      (0, "download", "rule-cx600", "2.0", "external", 2, 13000)}


def test_a_failed_write_keeps_every_count_for_the_next(database, monkeypatch):
    clock = Clock(T)
    rec = recorder(clock)
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.download("rule-cx600", "2.0", "Int", 100, whole=True)
    monkeypatch.setattr(activity, "write", lambda tally: (_ for _ in ()).throw(RuntimeError("down")))
    assert rec.flush() == 0 and rec.failures == 1
    monkeypatch.undo()
    assert ActivityHour.select().count() == 0
    assert rec.flush() == 1
    assert rows(kind="download", rule_id="") == {(0, "download", "", "", "internal", 1, 100)}
    assert rows(kind="check", rule_id="") == {(0, "check", "", "", "internal", 1, 0)}


def test_retention_prunes_hours_older_than_the_setting_once_an_hour(database):
    days = 3
    old = [(H - days * 24 - 1, "check", "", "", "internal", 7, 0), (H - days * 24, "check", "", "", "internal", 8, 0)]
    ActivityHour.insert_many(old, fields=[ActivityHour.hour, ActivityHour.kind, ActivityHour.rule_id,
                                          ActivityHour.version, ActivityHour.side, ActivityHour.events,
                                          ActivityHour.bytes]).execute()
    clock = Clock(T + 1)
    rec = recorder(clock, retention_days=days)
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.flush()
    assert {r.hour - H for r in ActivityHour.select().where(ActivityHour.rule_id == "")} == {-days * 24, 0}
    # the next hour's row ages out only at the next prune, an hour later
    clock.now = T + 1800
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.flush()
    assert ActivityHour.select().where(ActivityHour.hour == H - days * 24).exists()
    clock.now = T + 3601
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.flush()
    assert not ActivityHour.select().where(ActivityHour.hour < H + 1 - days * 24).exists()


def test_daily_totals_have_every_day_oldest_first(database):
    clock = Clock(T)
    rec = recorder(clock)
    rec.observe(phone(1, "1.0"), "10.0.0.1", "Int")
    rec.download("rule-cx600", "2.0", "Ext", 42, whole=True)
    rec.flush()
    clock.now = T - 2 * 86400
    rec.observe(phone(2, "1.0"), "203.0.113.5", "Ext")
    rec.flush()
    days = activity.daily(4, now=T)
    assert [d["Date"] for d in days] == ["2026-03-26", "2026-03-27", "2026-03-28", "2026-03-29"]
    assert [(d["Checks"], d["ChecksInternal"], d["ChecksExternal"]) for d in days] == [(0, 0, 0), (1, 0, 1),
                                                                                       (0, 0, 0), (1, 1, 0)]
    assert [(d["Downloads"], d["DownloadsExternal"], d["DownloadBytes"]) for d in days][-1] == (1, 1, 42)


def test_the_curve_walks_back_from_the_current_counts():
    transitions = [(10, "arrive", "2.0", 3), (10, "leave", "1.0", 3), (12, "arrive", "2.0", 2),
                   (12, "leave", "1.0", 1), (12, "arrive", "", 1), (12, "leave", "", 0), (5, "arrive", "2.0", 99)]
    points = activity.curve({"2.0": 5, "1.0": 4, "": 1}, transitions, 8, 13)
    assert [(hour, counts.get("2.0", 0), counts.get("1.0", 0), counts.get("", 0)) for hour, counts in points] == [
        (8, 0, 8, 0), (9, 0, 8, 0), (10, 3, 5, 0), (11, 3, 5, 0), (12, 5, 4, 1), (13, 5, 4, 1)]
