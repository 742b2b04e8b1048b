"""The event table of spec/wsus.md §3.9, pure: every EventID of the table, the AGENT_STATUS_30 lists,
dropped namespaces, and the newest-TimeAtTarget rule; then that the module imports no web framework,
database or settings."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from devupdate.wsus.compliance import events
from devupdate.wsus.compliance.events import Effect, Event, effect, newer, status_states

T0 = datetime(2026, 10, 4, 15, 20, 47, 397000, tzinfo=UTC)
KB = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"
OTHER = "0daf8592-9e3f-4a8a-9141-d83fafebd09f"
THIRD = "3b4c1c5e-0b0c-4f3a-8d27-1e2f7a9b6c01"


@pytest.mark.parametrize(("event_id", "state"), [
    (183, "installed"), (190, "installed"), (197, "installed"),
    (184, "installed-pending-reboot"), (191, "installed-pending-reboot"),
    (182, "failed"), (195, "failed"), (198, "failed"), (161, "failed"),
])
def test_update_events_set_the_state_of_their_update(event_id, state):
    result = effect(Event(event_id, T0, update_id=KB, win32_hresult=-2145099769))
    assert dict(result.states) == {KB: state}
    assert result.hresult == (-2145099769 if state == "failed" else None)
    assert (result.scan_finished, result.scan_failed) == (False, False)


@pytest.mark.parametrize("event_id", [183, 184, 182, 161])
def test_update_events_without_an_update_change_nothing(event_id):
    assert effect(Event(event_id, T0, update_id=None)) == events.NOTHING
    assert effect(Event(event_id, T0, update_id=events.ZERO_GUID)) == events.NOTHING


def test_detection_finished_and_failed_touch_the_computer_only():
    assert effect(Event(147, T0, update_id=KB)) == Effect(scan_finished=True)
    failed = effect(Event(148, T0, win32_hresult=-2145123272))
    assert failed == Effect(scan_failed=True, scan_error=-2145123272)
    assert not failed.changes_state


@pytest.mark.parametrize("event_id", [141, 162, 167, 181, 185, 0, 32767])
def test_other_events_go_to_the_log_only(event_id):
    assert effect(Event(event_id, T0, update_id=KB, win32_hresult=5), roots=[KB]) == events.NOTHING


@pytest.mark.parametrize("namespace_id", [0, 2, -1])
def test_other_namespaces_are_dropped(namespace_id):
    assert effect(Event(183, T0, update_id=KB, namespace_id=namespace_id)) == events.NOTHING
    assert effect(Event(156, T0, misc_data=(f"U={KB}",), namespace_id=namespace_id), roots=[OTHER]) == events.NOTHING


def test_agent_status_lists_and_other_roots():
    fourth, fifth = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f", "6a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d"
    result = effect(Event(156, T0, misc_data=(
        "B=3", f"U={KB};{{{OTHER.upper()}}}", f"V={THIRD}", f"W={fourth}", f"g={fifth}", "h=", "G=1507.2601.30012.0")),
        roots=[KB, "7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", THIRD])
    assert dict(result.states) == {KB: "needed", OTHER: "needed", THIRD: "installed",
                                   fourth: "installed-pending-reboot", fifth: "failed",
                                   "7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e": "not-applicable"}
    downloaded = effect(Event(156, T0, misc_data=(f"h={KB}",)))
    assert dict(downloaded.states) == {KB: "downloaded"}


def test_agent_status_without_lists_makes_every_root_not_applicable():
    assert dict(effect(Event(156, T0), roots=[KB, OTHER]).states) == {KB: "not-applicable", OTHER: "not-applicable"}
    assert effect(Event(156, T0)) == events.NOTHING


def test_status_lists_skip_junk_and_prefer_the_most_telling_state():
    assert status_states([f"U={KB};not-a-guid;;{events.ZERO_GUID}", f"g={KB}", "u=" + OTHER, "UU=" + OTHER]) == {
        KB: "failed"}
    assert status_states([f"U={KB}", f"V={KB}"]) == {KB: "installed"}
    assert status_states([f"h={KB}", f"U={KB}"]) == {KB: "downloaded"}
    assert status_states([f"W={KB}", f"V={KB}"]) == {KB: "installed-pending-reboot"}


def test_guid_forms():
    assert events.guid("{A2FEF9B0-7951-4C2C-A42B-9E351DD1C1FE}") == KB
    assert events.guid("A2FEF9B079514C2CA42B9E351DD1C1FE") == KB
    assert events.guid("{" + KB) is None and events.guid(KB + ";200") is None and events.guid("") is None


def test_newest_time_at_target_wins():
    assert newer(T0, None)
    assert newer(T0 + timedelta(microseconds=1), T0)
    assert newer(T0, T0)  # one batch, one time: the later report wins
    assert not newer(T0 - timedelta(seconds=1), T0)


def test_states_are_the_seven_of_w9():
    assert events.STATES == ("needed", "downloaded", "installed", "installed-pending-reboot", "failed",
                             "not-applicable", "unknown")


def test_the_table_imports_no_framework_database_or_settings():
    code = ("import sys; import devupdate.wsus.compliance.events; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'peewee') "
            "or m in ('devupdate.settings', 'devupdate.db', 'devupdate.runtime')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
