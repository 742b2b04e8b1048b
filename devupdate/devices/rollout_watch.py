"""The rollout watch: for every running or halted rollout, which devices have been offered the new
version, which run it, which failed — from the inventory (what each device reports at its checks), the
device API's status reports and the image's downloads — then halt at the threshold, or start the next
stage when it is due.

A device "downloaded the new image" when it reported ``downloaded`` (or ``installed``) for the version,
or when a download of the version's image is attributed to it: a GET from the address its last check
came from (and, when the download was authenticated and several devices share the address, by the
same user), after its stage started, with no other device of the rule's family — test devices and
devices not offered included — last seen at that address. Several phones behind one address (NAT, a
proxy not trusted for ``X-Forwarded-For``) make a download nobody's: no "stuck" signal for them rather
than a wrong one.

Runs in one process of the installation (NodeLock ``rollout-watch``) every ``rollout_check_seconds``,
and on demand (``devupdate rules rollout check``); ``now`` is always passed in, so tests move time
without waiting. The rules it applies are the pure ``rules.rollout_plan``; what it changes goes
through ``rules.rollout_actions``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import peewee
from prometheus_client.core import GaugeMetricFamily

from devupdate import db, metrics
from devupdate.devices.inventory import Device
from devupdate.devices.reports import DeviceReport
from devupdate.jobs import NodeLock, PeriodicJob, Retry
from devupdate.packages.description import version_key
from devupdate.rules import rollout_actions
from devupdate.rules.models import RolloutDevice, RolloutDownload, Rule, RuleRollout
from devupdate.rules.rollout import ACTIVE, RUNNING, stage_shares, stage_times
from devupdate.rules.rollout_plan import FAILED, UPDATED, Plan, halts, included_stage, outcome, stage_due
from devupdate.selection import DeviceRequest, Module, RuleEntry, Snapshot, bucket, installed_version, is_test_device

log = logging.getLogger("devupdate.rollout")


def _plan(rollout: RuleRollout) -> Plan:
    return Plan(stage_shares(rollout), rollout.every, rollout.halt_at, rollout.fail_after_checks, rollout.fail_after)


def _request(device: Device) -> DeviceRequest:
    versions: dict[str, str] = json.loads(device.versions or "{}")
    return DeviceRequest(device_type=device.device_type, mac=device.mac, serial=device.serial, vendor=device.brand,
                         model=device.model, revision=device.revision, locale=device.locale,
                         modules=tuple(Module(name, version) for name, version in versions.items()))


def _family_devices(rule: Rule) -> list[Device]:
    query = Device.select().where((peewee.fn.LOWER(Device.brand) == rule.brand.lower())
                                  & (peewee.fn.LOWER(Device.model) == rule.model.lower())
                                  & (peewee.fn.LOWER(Device.device_type) == rule.device_type.lower()))
    locale = rule.locale.lower()
    return [d for d in query if d.revision.lower() == rule.revision.lower()
            and (locale == "*" or d.locale.lower() == locale)]


def _rule_entry(snapshot: Snapshot, rule_id: str) -> RuleEntry | None:
    for entries in snapshot.rules.values():
        for entry in entries:
            if entry.rule_id == rule_id:
                return entry
    return None


def _attributed(rollout: RuleRollout, devices: list[Device], started: float) -> dict[str, list[tuple[float, float]]]:
    """Device id → the (first, last) times of the downloads of the rollout's image attributed to it,
    from the downloads per client (see above)."""
    by_address: dict[str, list[Device]] = {}
    for device in devices:
        if device.address:
            by_address.setdefault(device.address, []).append(device)
    found: dict[str, list[tuple[float, float]]] = {}
    query = RolloutDownload.select().where((RolloutDownload.rule_id == rollout.rule_id)
                                           & (RolloutDownload.version == rollout.version)
                                           & (RolloutDownload.last_at >= started))
    for row in query:
        there = by_address.get(row.address, [])
        if len(there) > 1 and row.user_id:
            there = [d for d in there if d.user_id.lower() == row.user_id.lower()]
        if len(there) != 1:
            continue  # nobody's, or several devices': not attributed
        found.setdefault(there[0].device_id, []).append((row.first_at, row.last_at))
    return found


def _first_after(spans: list[tuple[float, float]], since: float) -> float | None:
    """The earliest download known to have been at or after ``since``."""
    times = [first if first >= since else last for first, last in spans if last >= since]
    return min(times) if times else None


def evaluate_one(rollout: RuleRollout, snapshot: Snapshot, now: float) -> dict[str, Any]:
    """Counts for one rollout, its device rows brought up to date; then halt / advance / complete."""
    rule = Rule.get_or_none(Rule.id == rollout.rule_id)
    entry = _rule_entry(snapshot, rollout.rule_id)
    plan = _plan(rollout)
    shares, times = plan.stages, stage_times(rollout)
    target = version_key(rollout.version)
    tracked = {t.device_id: t for t in RolloutDevice.select().where(RolloutDevice.rule_id == rollout.rule_id)}
    failed_reports: set[str] = set()
    installed_reports: set[str] = set()
    reported: dict[str, float] = {}  # device id -> when it said it had the new image
    for report in DeviceReport.select(DeviceReport.device_id, DeviceReport.state, DeviceReport.first_reported).where(
            (DeviceReport.rule_id == rollout.rule_id) & (DeviceReport.version == rollout.version)
            & DeviceReport.state.in_(("downloaded", "installed", "failed"))):
        if report.state == "failed":
            failed_reports.add(report.device_id)
            continue
        if report.state == "installed":
            installed_reports.add(report.device_id)
        reported[report.device_id] = report.first_reported.replace(tzinfo=dt.UTC).timestamp()
    family = _family_devices(rule) if rule is not None and entry is not None else []
    fetched = _attributed(rollout, family, times[0]) if family else {}
    counts = {"offered": 0, "updated": 0, "failed": 0}
    reasons: dict[str, int] = {}
    new_rows, changed = [], []
    for device in family:
        request = _request(device)
        if is_test_device(snapshot, request):
            continue  # they get every version first, by design: not the fleet's signal
        stage = included_stage(shares[:rollout.stage + 1], bucket(rollout.rule_id, device.device_id))
        seen = device.last_seen.replace(tzinfo=dt.UTC).timestamp() + 0.001  # stored to the microsecond
        if stage is None or stage >= len(times) or seen < times[stage]:
            continue  # not offered yet (its stage has not started, or it has not checked since)
        assert entry is not None
        installed = installed_version(entry, request)
        is_new = installed is not None and version_key(installed) == target
        track = tracked.get(device.device_id)
        if track is None:
            track = RolloutDevice(rule_id=rollout.rule_id, device_id=device.device_id, offered_at=now,
                                  checks_at_offer=device.checks)
            new_rows.append(track)
        before = (track.outcome, track.reason, bool(track.seen_new), track.downloaded_at)
        if track.downloaded_at is None:
            spans = fetched.get(device.device_id, [])
            if device.device_id in reported:
                spans = [*spans, (reported[device.device_id], reported[device.device_id])]
            track.downloaded_at = _first_after(spans, times[stage])
            if track.downloaded_at is not None:  # the checks since: at least the last, when it came later
                track.checks_at_download = device.checks - (1 if seen > track.downloaded_at + 0.002 else 0)
        since_checks = since_seconds = None
        if track.downloaded_at is not None and track.checks_at_download is not None:
            since_checks, since_seconds = device.checks - track.checks_at_download, now - track.downloaded_at
        seen_new = bool(track.seen_new) or is_new or device.device_id in installed_reports
        result, why = outcome(is_new=is_new, seen_new=seen_new, reported_failed=device.device_id in failed_reports,
                              checks_since_download=since_checks, seconds_since_download=since_seconds, plan=plan)
        if track.id is not None and before != (result, why, seen_new, track.downloaded_at):
            changed.append(track)
        track.outcome, track.reason, track.seen_new = result, why, seen_new
        counts["offered"] += 1
        if result == UPDATED:
            counts["updated"] += 1
        elif result == FAILED:
            counts["failed"] += 1
            reasons[why] = reasons.get(why, 0) + 1
    with db.write_transaction():
        for start in range(0, len(new_rows), 500):
            RolloutDevice.insert_many([{"rule_id": t.rule_id, "device_id": t.device_id, "offered_at": t.offered_at,
                                        "checks_at_offer": t.checks_at_offer, "seen_new": t.seen_new,
                                        "outcome": t.outcome, "reason": t.reason, "downloaded_at": t.downloaded_at,
                                        "checks_at_download": t.checks_at_download}
                                       for t in new_rows[start:start + 500]]).on_conflict_ignore().execute()
        for track in changed:
            RolloutDevice.update(outcome=track.outcome, reason=track.reason, seen_new=track.seen_new,
                                 downloaded_at=track.downloaded_at, checks_at_download=track.checks_at_download
                                 ).where(RolloutDevice.id == track.id).execute()
    reason = None
    if rollout.state == RUNNING and halts(counts["offered"], counts["failed"], rollout.acknowledged, rollout.halt_at):
        reason = rollout_actions.halt_reason(counts["offered"], counts["failed"], rollout.acknowledged,
                                             rollout.halt_at)
        reason += " — " + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        log.warning("rollout of rule %s halted: %s", rollout.rule_id, reason)
    started = times[rollout.stage] if rollout.stage < len(times) else now
    last = rollout.stage >= len(shares) - 1
    due = now >= started + rollout.every
    stored = rollout_actions.watch_update(
        rollout.rule_id, counts, halt_reason=reason,
        advance_to_next=stage_due(rollout.stage, len(shares), started, rollout.every, now),
        complete=last and due, now=now)
    return {"RuleId": rollout.rule_id, **{k.title(): v for k, v in counts.items()},
            "FailedBy": reasons, "State": stored.state if stored else "ended",
            "Stage": (stored.stage + 1) if stored else None}


def evaluate(now: float | None = None, snapshot: Snapshot | None = None) -> list[dict[str, Any]]:
    """Every running or halted rollout, once (``now``: POSIX seconds; default the clock)."""
    from devupdate.devices.snapshot import build_snapshot

    now = time.time() if now is None else now
    db.database.connect(reuse_if_open=True)
    snapshot = snapshot or build_snapshot()
    return [evaluate_one(r, snapshot, now) for r in
            RuleRollout.select().where(RuleRollout.state.in_(ACTIVE)).order_by(RuleRollout.started_at)]


class RolloutWatchJob:
    """The watch in one process of the installation at a time."""

    def __init__(self, home: Path, interval: float):
        self.lock = NodeLock("rollout-watch", Path(home) / "rollout-watch.lock")
        self.job = PeriodicJob("rollout-watch", self._tick, interval, first_delay=min(interval, 5.0),
                               retry=Retry("rollout watch", first=1.0, maximum=interval, logger=log),
                               on_stop=self.lock.release)

    def _tick(self) -> None:
        if self.lock.acquire():
            evaluate()

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()


METRICS = ("devupdate_rollout_halted", "devupdate_rollout_share", "devupdate_rollout_devices")


def _metrics() -> list[GaugeMetricFamily]:
    halted = GaugeMetricFamily("devupdate_rollout_halted", "1 while a rule's staged rollout is halted by its "
                               "failure threshold (resume or abort it)", labels=["rule"])
    share = GaugeMetricFamily("devupdate_rollout_share", "Share of the fleet offered a rollout's new version "
                              "(0-1)", labels=["rule"])
    devices = GaugeMetricFamily("devupdate_rollout_devices", "Devices of a rollout by outcome (offered, updated, "
                                "failed), as last evaluated", labels=["rule", "outcome"])
    for rollout in RuleRollout.select().where(RuleRollout.state.in_(ACTIVE)):
        halted.add_metric([rollout.rule_id], 1.0 if rollout.state != RUNNING else 0.0)
        share.add_metric([rollout.rule_id], stage_shares(rollout)[rollout.stage] / 10_000)
        for name in ("offered", "updated", "failed"):
            devices.add_metric([rollout.rule_id, name], getattr(rollout, name))
    return [halted, share, devices]


metrics.register_state("rollouts", _metrics)
