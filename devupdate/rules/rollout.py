"""A rule's staged rollout as stored: started by ``approve`` with a plan, ended by reset, restore and
remove (and replaced by the next approve), always inside the lifecycle's own transaction, so the rule
and its rollout never disagree. What changes a running rollout (resume, advance, halt) is in
``rollout_actions``; the rules it follows are the pure ``rollout_plan``."""

from __future__ import annotations

import json
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import iso_utc
from devupdate.rules.models import RolloutDevice, RolloutDownload, Rule, RuleRollout
from devupdate.rules.rollout_plan import Plan, percent, spell_duration

RUNNING, HALTED, COMPLETED = "running", "halted", "completed"
ACTIVE = (RUNNING, HALTED)  # what the selection follows


def stage_shares(rollout: RuleRollout) -> tuple[int, ...]:
    return tuple(int(part) for part in rollout.stages.split(","))


def stage_times(rollout: RuleRollout) -> list[float]:
    return [float(t) for t in json.loads(rollout.stage_times or "[]")]


def current_share(rollout: RuleRollout) -> int:
    return stage_shares(rollout)[rollout.stage]


def start(rule: Rule, plan: Plan, actor: str, now: float) -> RuleRollout:
    """A new rollout of the rule's (just) approved version; the rest of the fleet keeps the version
    approved before (the restore version), or nothing when there was none."""
    end(rule.id, actor, "replaced by a new approval", quiet=True)
    rollout = RuleRollout.create(
        rule_id=rule.id, version=rule.approved_version, previous=rule.restore_version,
        stages=",".join(str(s) for s in plan.stages), stage=0, stage_times=json.dumps([now]), every=plan.every,
        halt_at=plan.halt_at, fail_after_checks=plan.fail_after_checks, fail_after=plan.fail_after,
        state=RUNNING, started_by=actor)
    record(actor, "rule.rollout.start", rule.id, before=None, after=describe(rollout))
    return rollout


def end(rule_id: str, actor: str, why: str, *, quiet: bool = False) -> bool:
    """Delete the rule's rollout, if any, and its devices; recorded with its last state."""
    rollout = RuleRollout.get_or_none(RuleRollout.rule_id == rule_id)
    if rollout is None:
        return False
    before = describe(rollout)
    RolloutDevice.delete().where(RolloutDevice.rule_id == rule_id).execute()
    RolloutDownload.delete().where(RolloutDownload.rule_id == rule_id).execute()
    rollout.delete_instance()
    if not quiet or rollout.state != COMPLETED:
        record(actor, "rule.rollout.end", rule_id, before=before, after=None, detail={"reason": why})
    return True


def describe(rollout: RuleRollout) -> dict[str, Any]:
    """The public shape (CLI ``--json``, the API, the console, the audit trail)."""
    shares = stage_shares(rollout)
    times = stage_times(rollout)
    return {
        "RuleId": rollout.rule_id, "Version": rollout.version, "PreviousVersion": rollout.previous,
        "State": rollout.state, "Stage": rollout.stage + 1, "Stages": [percent(s) for s in shares],
        "Share": percent(shares[rollout.stage]), "Every": spell_duration(rollout.every),
        "HaltAt": percent(rollout.halt_at), "FailAfterChecks": rollout.fail_after_checks,
        "FailAfter": spell_duration(rollout.fail_after),
        "StageStartedAt": _iso(times[rollout.stage]) if rollout.stage < len(times) else None,
        "NextStageAt": (_iso(times[rollout.stage] + rollout.every)
                        if rollout.state == RUNNING and rollout.stage < len(shares) - 1 else None),
        "StartedAt": iso_utc(rollout.started_at), "StartedBy": rollout.started_by,
        "HaltedAt": iso_utc(rollout.halted_at), "Reason": rollout.reason or None,
        "Offered": rollout.offered, "Updated": rollout.updated, "Failed": rollout.failed,
        "AcknowledgedFailures": rollout.acknowledged, "EvaluatedAt": iso_utc(rollout.evaluated_at),
    }


def _iso(posix: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(posix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def of_rule(rule_id: str) -> RuleRollout | None:
    return RuleRollout.get_or_none(RuleRollout.rule_id == rule_id)
