"""Recording ReportEventBatch events (spec/wsus.md §3.9, §7) in the database, below the SOAP layer:
the captured native batches, duplicates, other computers' events, the newest TimeAtTarget, every
event id of the table through the store, and the bounds on strings and arrays."""

from __future__ import annotations

import json

import pytest
from wsus.reportkit import CLIENT, KB, batch, captured, event

from devupdate.wsus.client.reporting import parse_batch
from devupdate.wsus.compliance import store
from devupdate.wsus.compliance.models import COUNTERS, ComplianceState, ComputerStatus, ReportedEvent, counters_of
from devupdate.wsus.soap.envelope import SoapFault, parse_envelope

OTHER = "0daf8592-9e3f-4a8a-9141-d83fafebd09f"
PENDING = "installed-pending-reboot"


def record(body: bytes, client: str = CLIENT) -> store.BatchResult:
    return store.record_batch(client, parse_batch(parse_envelope(body, max_depth=64, max_elements=200_000).operation))


def counted(client: str = CLIENT) -> dict[str, int]:
    """The computer's counters, checked against a recount of its state rows."""
    status = ComputerStatus.get_by_id(client)
    kept = {name: getattr(status, name) for name in COUNTERS}
    recount = dict.fromkeys(COUNTERS, 0)
    for row in ComplianceState.select().where(ComplianceState.client_id == client):
        for name in counters_of(row.state):
            recount[name] += 1
    assert kept == recount
    return kept


def states(client: str = CLIENT) -> dict[str, tuple[str, int, int | None]]:
    return {row.update_id: (row.state, row.event_id, row.win32_hresult)
            for row in ComplianceState.select().where(ComplianceState.client_id == client)}


def test_captured_native_batches(database):
    results = [record(captured(n)) for n in ("000016", "000017", "000018")]
    assert [r.taken for r in results] == [4, 9, 2]
    assert all(r.duplicates == 0 and r.dropped_other_computer == 0 for r in results)
    # 000017: AGENT_STATUS_30 lists six needed updates (KB2267602 among them), then its download fails
    # (161) at the same TimeAtTarget; 000018: the installs of KB2267602 and 0daf8592… fail (182)
    needed = {u: ("needed", 156, None) for u in ("1594b429-a8c5-4b0d-ac86-79b0a826a847",
                                                 "391d3487-e6f5-4bd0-a607-7e29f9fbd88e",
                                                 "74e87997-e3b3-45d2-a527-a8877a5162ec",
                                                 "42e65fc7-a953-4d7f-9277-54e3a265200e",
                                                 "22281ef5-bbea-4576-af48-6aa6bafbb5b3")}
    assert states() == {**needed, OTHER: ("failed", 182, -2145099769), KB: ("failed", 182, -2145099769)}
    assert counted() == {"needed": 5, "installed": 0, "pending_reboot": 0, "failed": 2, "not_applicable": 0}
    status = ComputerStatus.get_by_id(CLIENT)
    assert status.last_scan_error == -2145123272 and status.last_scan_at is not None
    assert (status.events_taken, status.events_duplicate, status.events_dropped) == (15, 0, 0)
    assert ReportedEvent.select().count() == 15
    logged = ReportedEvent.get(ReportedEvent.event_instance_id == "f884a4bb-0aa1-43b7-8985-031de3b8a1b0")
    assert json.loads(logged.replacement_strings)[0] == "0x80246007" and logged.revision_number == 200
    assert "M=A2FEF9B0-7951-4C2C-A42B-9E351DD1C1FE;200" in json.loads(
        ReportedEvent.get(ReportedEvent.event_instance_id == "be732391-b71d-4fd2-90bf-8d780506aba6").misc_data)

    again = record(captured("000018"))
    assert (again.taken, again.duplicates, again.states_changed) == (0, 2, 0)
    assert ReportedEvent.select().count() == 15
    assert ComputerStatus.get_by_id(CLIENT).events_duplicate == 2


def test_captured_download_failure_after_status_at_the_same_time(database):
    record(captured("000017"))
    assert states()[KB] == ("failed", 161, -2147467262)


def test_duplicates_in_one_batch_count_once(database):
    instance = "11111111-2222-4333-8444-555555555555"
    result = record(batch(event(183, update=KB, instance=instance), event(182, update=KB, instance=instance.upper())))
    assert (result.taken, result.duplicates) == (1, 1)
    assert states() == {KB: ("installed", 183, None)}


def test_other_computers_events_are_dropped_and_counted(database):
    intruder = "9a9a9a9a-0000-4000-8000-000000000001"
    result = record(batch(event(183, update=KB, target=intruder), event(182, update=OTHER, hresult=-5)))
    assert (result.taken, result.dropped_other_computer) == (1, 1)
    assert states() == {OTHER: ("failed", 182, -5)}
    assert states(intruder) == {}
    assert ReportedEvent.select().where(ReportedEvent.client_id == intruder).count() == 0
    assert ComputerStatus.get_by_id(CLIENT).events_dropped == 1
    assert ComputerStatus.get_or_none(ComputerStatus.client_id == intruder) is None


def test_other_namespaces_are_dropped(database):
    result = record(batch(event(183, update=KB, namespace=2)))
    assert (result.taken, result.dropped_namespace) == (0, 1) and states() == {}


def test_newest_time_at_target_wins(database):
    record(batch(event(183, update=KB, time="2026-10-04T15:20:48Z")))
    record(batch(event(182, update=KB, time="2026-10-04T15:20:47Z", hresult=-1)))  # older, arrives later
    assert states() == {KB: ("installed", 183, None)}
    record(batch(event(184, update=KB, time="2026-10-04T17:20:48+02:00")))  # the same moment: later report wins
    assert states() == {KB: ("installed-pending-reboot", 184, None)}
    record(batch(event(182, update=KB, time="2026-10-04T15:20:49Z", hresult=-7),
                 event(183, update=KB, time="2026-10-04T15:20:50Z")))
    assert states() == {KB: ("installed", 183, None)}


@pytest.mark.parametrize(("event_id", "expected"), [
    (183, "installed"), (190, "installed"), (197, "installed"), (184, "installed-pending-reboot"),
    (191, "installed-pending-reboot"), (182, "failed"), (195, "failed"), (198, "failed"), (161, "failed"),
    (141, None), (162, None), (167, None), (181, None), (147, None), (148, None)])
def test_every_event_id_through_the_store(database, event_id, expected):
    record(batch(event(156, misc=(f"U={KB}",), time="2026-10-04T15:00:00Z")))
    assert states() == {KB: ("needed", 156, None)}
    record(batch(event(event_id, update=KB, hresult=-3)))
    assert states()[KB][0] == (expected or "needed")
    assert counted() == {"needed": 0 if expected else 1, "installed": int(expected in ("installed", PENDING)),
                         "pending_reboot": int(expected == PENDING), "failed": int(expected == "failed"),
                         "not_applicable": 0}
    assert ReportedEvent.select().count() == 2
    status = ComputerStatus.get_by_id(CLIENT)
    assert (status.last_scan_at is not None) == (event_id == 147)
    assert status.last_scan_error == (-3 if event_id == 148 else None)


def test_agent_status_makes_the_other_known_updates_not_applicable(database):
    third = "3b4c1c5e-0b0c-4f3a-8d27-1e2f7a9b6c01"
    record(batch(event(183, update=OTHER, time="2026-10-04T15:00:00Z"), event(182, update=third,
                                                                               time="2026-10-04T15:00:00Z")))
    record(batch(event(156, misc=(f"V={KB}", "B=3"), time="2026-10-04T16:00:00Z")))
    assert {u: s[0] for u, s in states().items()} == {KB: "installed", OTHER: "not-applicable",
                                                      third: "not-applicable"}
    asked: list[int] = []

    def roots() -> list[str]:
        asked.append(1)
        return ["7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"]

    store.record_batch(CLIENT, parse_batch(parse_envelope(batch(
        event(156, misc=(f"g={OTHER}",), time="2026-10-04T17:00:00Z"),
        event(156, misc=(f"g={OTHER}",), time="2026-10-04T17:00:01Z")), max_depth=64,
        max_elements=200_000).operation), roots=roots)
    assert asked == [1]  # read once per batch
    store.record_batch(CLIENT, parse_batch(parse_envelope(batch(event(183, update=OTHER, time="2026-10-04T16:30:00Z")),
                                                          max_depth=64, max_elements=200_000).operation),
                       roots=roots)
    assert asked == [1]  # and only for a batch with a 156
    assert {u: s[0] for u, s in states().items()} == {KB: "not-applicable", OTHER: "failed",
                                                      third: "not-applicable",
                                                      "7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e": "not-applicable"}
    assert counted() == {"needed": 0, "installed": 0, "pending_reboot": 0, "failed": 1, "not_applicable": 3}


def test_migration_10_fills_the_counters_of_a_version_9_database(database):
    from devupdate import schema

    record(captured("000017"))
    record(captured("000018"))
    expected = counted()
    ComputerStatus.update(**dict.fromkeys(COUNTERS, 0)).execute()
    schema.SchemaVersion.delete().execute()  # as a database stamped before migration 10
    schema.SchemaVersion.create(version=9, name=schema.MIGRATIONS[8].name)
    assert "applied migration 10: WSUS compliance: each computer's counts per report column on its status row" \
        in schema.upgrade()
    assert counted() == expected and expected["needed"] == 5


def test_strings_are_bounded(database):
    record(batch(event(141, app_name="x" * 5000, replacement=("y" * 4097, "ok"), misc=("B=" + "z" * 9000,))))
    row = ReportedEvent.get()
    assert len(row.app_name) == 4096
    assert [len(s) for s in json.loads(row.replacement_strings)] == [4096, 2]
    assert len(json.loads(row.misc_data)[0]) == 4096


@pytest.mark.parametrize(("body", "message"), [
    (batch(*[event(141) for _ in range(1001)]), "eventBatch"),
    (batch(event(141, misc=tuple(f"K{i}=1" for i in range(65)))), "eventBatch.ReportingEvent.ExtendedData.MiscData"),
    (batch(event(141, replacement=tuple("r" for _ in range(65)))),
     "eventBatch.ReportingEvent.ExtendedData.ReplacementStrings"),
    (batch(event(141, instance="not-a-guid")), "eventBatch.ReportingEvent.BasicData.EventInstanceID"),
    (batch(event(141, time="yesterday")), "eventBatch.ReportingEvent.BasicData.TimeAtTarget"),
    (batch(event(141, update="0daf8592")), "eventBatch.ReportingEvent.BasicData.UpdateID.UpdateID"),
    (batch(event(99999)), "eventBatch.ReportingEvent.BasicData.EventID"),
    (batch(event(141, namespace=2**31)), "eventBatch.ReportingEvent.BasicData.NamespaceID"),
], ids=lambda value: value if isinstance(value, str) and not value.startswith("<") else "")
def test_oversized_or_bad_batches_name_the_parameter(database, body, message):
    with pytest.raises(SoapFault) as fault:
        record(body)
    assert (fault.value.error_code, fault.value.message) == ("InvalidParameters", message)
    assert ReportedEvent.select().count() == 0


def test_a_thousand_events_are_accepted(database):
    result = record(batch(*[event(183 if i % 2 else 182, update=KB) for i in range(1000)]))
    assert result.taken == 1000 and ReportedEvent.select().count() == 1000


def test_old_events_are_pruned_and_the_state_stays(database):
    from datetime import timedelta

    from devupdate.db import utcnow

    record(captured("000018"))
    record(batch(event(183, update=OTHER, time="2026-10-04T16:00:00Z")))
    ReportedEvent.update(received_at=utcnow() - timedelta(days=31)).where(ReportedEvent.event_id == 182).execute()
    assert store.prune_events(30) == 2
    assert [row.event_id for row in ReportedEvent.select()] == [183]
    assert states()[KB][0] == "failed" and states()[OTHER][0] == "installed"
    again = record(captured("000018"))  # resent after the prune: taken again, the newer state kept
    assert (again.taken, again.duplicates) == (2, 0)
    assert states()[OTHER][0] == "installed" and states()[KB][0] == "failed"
    assert store.prune_events(30) == 0 and ReportedEvent.select().count() == 3
    counted()


def test_a_status_re_asserting_not_applicable_writes_no_row_and_still_wins(database):
    """Every status (156) covers every update with a state: one that does not list an update already
    not applicable leaves its row alone, and the row counts as new as that status — an older install
    event arriving later does not override it, a newer one does."""
    import datetime as dt

    from devupdate import schema

    def status(at: str, *misc: str) -> None:
        store.record_batch(CLIENT, parse_batch(parse_envelope(batch(event(156, misc=misc, time=at)), max_depth=64,
                                                              max_elements=200_000).operation),
                           roots=lambda: [OTHER])

    status("2026-10-04T15:00:00Z", f"U={KB}")
    row = ComplianceState.get(ComplianceState.update_id == OTHER)
    assert (row.state, row.time_at_target) == ("not-applicable", dt.datetime(2026, 10, 4, 15, 0))
    status("2026-10-04T17:00:00Z", f"U={KB}")
    again = ComplianceState.get(ComplianceState.update_id == OTHER)
    assert (again.time_at_target, again.changed_at) == (row.time_at_target, row.changed_at)  # not rewritten
    assert ComputerStatus.get_by_id(CLIENT).agent_status_at == dt.datetime(2026, 10, 4, 17, 0)
    assert ComplianceState.get(ComplianceState.update_id == KB).time_at_target == dt.datetime(2026, 10, 4, 17, 0)
    record(batch(event(183, update=OTHER, time="2026-10-04T16:00:00Z")))  # older than the newest status
    assert states()[OTHER][0] == "not-applicable"
    status("2026-10-04T16:30:00Z", f"V={OTHER}")  # an older status arriving late changes nothing either
    assert states()[OTHER][0] == "not-applicable" and states()[KB][0] == "needed"
    record(batch(event(183, update=OTHER, time="2026-10-04T17:00:01Z")))
    assert states()[OTHER][:2] == ("installed", 183)
    assert counted() == {"needed": 1, "installed": 1, "pending_reboot": 0, "failed": 0, "not_applicable": 0}
    # migration 16 on a database from before it: the column is added, the states untouched
    from playhouse.migrate import SchemaMigrator, migrate

    migrate(SchemaMigrator.from_database(database.obj).drop_column(ComputerStatus._meta.table_name,
                                                                   "agent_status_at"))
    schema.SchemaVersion.delete().execute()
    schema.SchemaVersion.create(version=15, name=schema.MIGRATIONS[14].name)
    assert schema.upgrade()[0] == ("applied migration 16: WSUS compliance: the time of each computer's newest "
                                   "status report (AGENT_STATUS_30)")  # and the later ones
    assert ComputerStatus.get_by_id(CLIENT).agent_status_at is None and states()[OTHER][0] == "installed"


def test_a_rolled_up_state_older_than_the_held_one_is_not_taken(database):
    from datetime import datetime

    new, old = datetime(2026, 12, 2), datetime(2026, 12, 1)
    assert store.record_rollup("pc-r", [(KB, "installed", new)], reported_by="b", full=True) == 1
    assert store.record_rollup("pc-r", [(KB, "failed", old)], reported_by="b", full=True) == 0  # late, older
    assert states("pc-r")[KB][0] == "installed" and counted("pc-r")["installed"] == 1
    assert store.record_rollup("pc-r", [(KB, "failed", new)], reported_by="b", full=True) == 1  # the same moment
    assert states("pc-r")[KB][0] == "failed"


def test_a_rollup_never_overwrites_a_computer_reporting_here_itself(database):
    from datetime import datetime

    record(batch(event(183, update=KB, time="2026-10-04T15:20:48Z")))
    assert store.record_rollup(CLIENT, [(KB, "failed", datetime(2027, 1, 1)), (OTHER, "needed", datetime(2027, 1, 1))],
                               reported_by="b (x)", full=True) == 0
    assert states() == {KB: ("installed", 183, None)}
    assert ComputerStatus.get_by_id(CLIENT).reported_by == ""
