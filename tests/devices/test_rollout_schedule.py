"""Staged rollouts on an injected clock (no server, no waiting): the stages start by themselves every
24 hours, a phone still on the old image 48 hours after it downloaded the new one counts as failed, the rollout
completes; and the rule lifecycle ends a rollout (reset, restore, remove) or replaces it (approve).
The phones are the simulator's, their checks go through the real parser, selection and inventory."""

from __future__ import annotations

import time

import pytest
from fleet import CX600, V1, V2, V3, fleet, import_release, phonesim

from devupdate.selection import bucket

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("site")]

DAY = 86400


@pytest.fixture
def rule(install, tmp_path):
    v1 = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", v1.rule_id)
    import_release(install, tmp_path, V2)
    from devupdate import db

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    yield v1.rule_id
    db.database.close()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def day(phones, clock, inventory, *, stuck: set[str], fetches=None) -> int:
    """Every phone checks once at ``clock.now`` from an address of its own, downloads and installs
    what it is offered (``stuck`` ones download it and do not take it); returns how many were offered
    something."""
    from devupdate.devices.request import parse_xml
    from devupdate.devices.snapshot import build_snapshot
    from devupdate.selection import select

    snapshot = build_snapshot()
    offered = 0
    for number, phone in enumerate(phones):
        request = parse_xml(phone.request_xml())
        files = select(snapshot, request)
        address = f"10.0.{number // 250}.{number % 250 + 1}"
        inventory.observe(request, address, "Int")
        if files:
            offered += 1
            entry = snapshot.downloads[next(f for f in files if f.signature_file_name).path.lower()]
            if fetches is not None and entry.rolled_out:
                fetches.observe(entry.rule_id, entry.version, address, "")
            if phone.device_id not in stuck:
                phonesim.install(phone, next(f for f in files if f.signature_file_name))
    assert inventory.flush() == len(phones)
    if fetches is not None:
        fetches.flush()
    return offered


def test_stages_start_by_themselves_and_a_phone_stuck_for_48_hours_fails(rule):
    from devupdate.devices.image_fetches import DownloadRecorder
    from devupdate.devices.inventory import InventoryRecorder
    from devupdate.devices.rollout_watch import evaluate
    from devupdate.rules import lifecycle, rollout
    from devupdate.rules.rollout_plan import Plan

    clock = Clock()
    inventory = InventoryRecorder(clock=clock)
    fetches = DownloadRecorder(clock=clock)
    phones = fleet(100, installed=V1)
    place = {p.device_id: bucket(rule, p.device_id) for p in phones}
    first = sorted(i for i, b in place.items() if b < 2000)
    second = sorted(i for i, b in place.items() if b < 6000)
    stuck = {first[0]}  # checks every day, downloads the image, never takes it: failed 48 h after the download
    lifecycle.approve(rule, "admin", Plan.parse("20%,60%,100%", "24h", "5%", fail_after_checks=10,
                                                fail_after="48h"), now=clock.now)

    assert day(phones, clock, inventory, stuck=stuck, fetches=fetches) == len(first)
    assert evaluate(now=clock.now) == [{"RuleId": rule, "Offered": len(first), "Updated": 0, "Failed": 0,
                                        "FailedBy": {}, "State": "running", "Stage": 1}]
    clock.now += DAY - 1  # not yet
    assert day(phones, clock, inventory, stuck=stuck, fetches=fetches) == 1
    assert evaluate(now=clock.now)[0] == {"RuleId": rule, "Offered": len(first), "Updated": len(first) - 1,
                                          "Failed": 0, "FailedBy": {}, "State": "running", "Stage": 1}
    clock.now += 1  # 24 h after the start: the second stage
    assert evaluate(now=clock.now)[0]["Stage"] == 2
    assert rollout.describe(rollout.of_rule(rule))["Share"] == "60%"
    clock.now += 60
    assert day(phones, clock, inventory, stuck=stuck, fetches=fetches) == len(second) - len(first) + 1
    clock.now += DAY  # 48 h after its offer the stuck phone counts as failed (1 % < 5 %: no halt); stage 3
    assert day(phones, clock, inventory, stuck=stuck, fetches=fetches) == 1
    result = evaluate(now=clock.now)[0]
    assert result == {"RuleId": rule, "Offered": len(second), "Updated": len(second) - 1, "Failed": 1,
                      "FailedBy": {"stuck": 1}, "State": "running", "Stage": 3}
    clock.now += 60
    assert day(phones, clock, inventory, stuck=stuck, fetches=fetches) == 100 - len(second) + 1
    clock.now += DAY  # the last stage has run its day: completed, the selection no longer stages the rule
    assert day(phones, clock, inventory, stuck=stuck, fetches=fetches) == 1
    assert evaluate(now=clock.now)[0] == {"RuleId": rule, "Offered": 100, "Updated": 99, "Failed": 1,
                                          "FailedBy": {"stuck": 1}, "State": "completed", "Stage": 3}
    assert evaluate(now=clock.now + DAY) == []  # nothing left to watch
    from devupdate.devices.snapshot import build_snapshot

    entry = next(e for entries in build_snapshot().rules.values() for e in entries if e.rule_id == rule)
    assert entry.rollout is None and entry.approved.version == V2


def test_the_rule_lifecycle_ends_or_replaces_a_rollout(install, rule, tmp_path):
    from devupdate.audit.models import AuditEvent
    from devupdate.rules import lifecycle, rollout
    from devupdate.rules.models import RolloutDevice, RolloutDownload
    from devupdate.rules.rollout_plan import Plan

    plan = Plan.parse("5%,25%,100%", "24h", "2%")
    lifecycle.approve(rule, "admin", plan)
    assert rollout.of_rule(rule).previous == V1
    RolloutDevice.create(rule_id=rule, device_id="0004F2000001", offered_at=time.time(), checks_at_offer=1)
    RolloutDownload.create(rule_id=rule, version=V2, address="10.0.0.7", first_at=1.0, last_at=1.0)
    # restore (abort) ends it, its devices and its downloads
    lifecycle.restore(rule, "admin")
    assert rollout.of_rule(rule) is None and RolloutDevice.select().count() == RolloutDownload.select().count() == 0
    # reset ends it
    import_release(install, tmp_path, V3)
    lifecycle.approve(rule, "admin", plan)  # V3 in stages, V1 kept by the rest
    assert (rollout.of_rule(rule).version, rollout.of_rule(rule).previous) == (V3, V1)
    import_release(install, tmp_path, "4.0.7577.4388")
    lifecycle.reset(rule, "admin")
    assert rollout.of_rule(rule) is None
    import_release(install, tmp_path, "4.0.7577.4390")
    lifecycle.approve(rule, "admin", plan)
    assert rollout.of_rule(rule).stage_times != "[]"
    # remove ends it
    lifecycle.remove(rule, "admin")
    assert rollout.of_rule(rule) is None
    import json

    ends = [json.loads(e.detail)["reason"] for e in AuditEvent.select().where(AuditEvent.action == "rule.rollout.end")
            .order_by(AuditEvent.id)]
    assert ends == ["rule restore", "rule reset", "rule removed"]
    starts = AuditEvent.select().where(AuditEvent.action == "rule.rollout.start").count()
    assert starts == 3


@pytest.mark.parametrize(("args", "message"), [
    (("5%,25%",), "must end at 100%"),
    (("25%,5%,100%",), "must grow"),
    (("0%,100%",), "from 0.01% to 100%"),
    (("5%,abc,100%",), "from 0.01% to 100%"),
    (("5%,100%", "24"), "a duration such as"),
    (("5%,100%", "24h", "200%"), "--halt-at '200%'"),
])
def test_plans_that_cannot_run_are_refused_with_the_fix(args, message):
    from devupdate.rules.rollout_plan import Plan, PlanError

    with pytest.raises(PlanError, match=message):
        Plan.parse(*args)


def test_approve_refuses_a_bad_plan_and_changes_nothing(install, rule):
    result = install.cli("rules", "approve", rule, "--rollout", "5%,25%", check=False)
    assert (result.returncode, result.stderr) == (
        1, "devupdate: error: rollout stages '5%,25%' must end at 100% (the whole fleet)\n")
    import json

    assert json.loads(install.cli("rules", "show", rule, "--json").stdout)["PendingVersion"] == V2


def test_the_alert_rules_load_and_name_the_metrics_the_server_exports():
    """``promtool`` accepts the rollout alert rules and passes their unit test, and every metric they
    name is one the rollout watch exports (the live scrape is in test_rollout_fleet)."""
    import re
    import subprocess
    from pathlib import Path

    from helpers.tools import require_tool

    from devupdate.devices import rollout_watch

    monitoring = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", "rollout-alerts.yml"], capture_output=True, text=True,
                             cwd=monitoring, timeout=60)
    assert checked.returncode == 0 and "SUCCESS: 2 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "rollout-alerts.test.yml"], capture_output=True, text=True,
                            cwd=monitoring, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    named = set(re.findall(r"devupdate_[a-z_]+", (monitoring / "rollout-alerts.yml").read_text()))
    assert named and named <= set(rollout_watch.METRICS), named - set(rollout_watch.METRICS)
