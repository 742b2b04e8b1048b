"""What changes a running rollout: the admin's resume, advance and abort (one implementation for the
CLI, the JSON API and the console), and the watch's halt, stage advance and counts
(``devices/rollout_watch``). Each locks the rollout row in one transaction with its audit entry, and
bumps the selection generation when what devices are offered changes."""

from __future__ import annotations

import json
import time
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import locked, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.rules import lifecycle
from devupdate.rules.models import Rule, RuleRollout
from devupdate.rules.rollout import ACTIVE, COMPLETED, HALTED, RUNNING, describe, stage_shares, stage_times
from devupdate.rules.rollout_plan import percent

WATCH = "devupdate"  # the actor of what the watch does by itself


def _locked(rule_id: str) -> RuleRollout:
    found = list(locked(RuleRollout.select().where(RuleRollout.rule_id == rule_id)))
    if not found:
        raise NotFound(f"rule {rule_id} has no rollout; start one with 'devupdate rules approve {rule_id[:8]} "
                       "--rollout 5%,25%,100%'", code="no-rollout")
    return found[0]


def _admin(ref: str, actor: str, action: str, change) -> dict[str, Any]:
    try:
        with write_transaction():
            rule = lifecycle.resolve(ref, lock=True)
            rollout = _locked(rule.id)
            before = describe(rollout)
            moved = change(rollout)
            rollout.save()
            if moved:
                lifecycle.bump_generation()
            after = describe(rollout)
            record(actor, f"rule.rollout.{action}", rule.id, before=before, after=after)
    except DevupdateError as refusal:
        lifecycle.record_refusal(actor, f"rule.rollout.{action}", ref, refusal)
        raise
    return after


def show(ref: str) -> dict[str, Any]:
    rule = lifecycle.resolve(ref)
    rollout = RuleRollout.get_or_none(RuleRollout.rule_id == rule.id)
    if rollout is None:
        raise NotFound(f"rule {rule.id} has no rollout; start one with 'devupdate rules approve {rule.id[:8]} "
                       "--rollout 5%,25%,100%'", code="no-rollout")
    return describe(rollout)


def list_rollouts() -> list[dict[str, Any]]:
    return [describe(r) for r in RuleRollout.select().order_by(RuleRollout.started_at)]


def resume(ref: str, actor: str, *, now: float | None = None) -> dict[str, Any]:
    """A halted rollout runs on from its stage; the failures counted so far are accepted (only new
    ones count towards the threshold) and the stage's clock starts again."""
    def change(rollout: RuleRollout) -> bool:
        if rollout.state != HALTED:
            raise Conflict(f"the rollout of rule {rollout.rule_id} is {rollout.state}, not halted: nothing to resume",
                           code="not-halted")
        rollout.state, rollout.acknowledged, rollout.halted_at = RUNNING, rollout.failed, None
        times = stage_times(rollout)
        times[rollout.stage] = time.time() if now is None else now
        rollout.stage_times = json.dumps(times)
        return False
    return _admin(ref, actor, "resume", change)


def advance(ref: str, actor: str, *, now: float | None = None) -> dict[str, Any]:
    """The next stage now, without waiting for ``every`` (a halted rollout stays halted: resume it)."""
    def change(rollout: RuleRollout) -> bool:
        if rollout.state != RUNNING:
            raise Conflict(f"the rollout of rule {rollout.rule_id} is {rollout.state}; only a running rollout "
                           "advances (resume a halted one first)", code="not-running")
        if rollout.stage >= len(stage_shares(rollout)) - 1:
            raise Conflict(f"the rollout of rule {rollout.rule_id} is at its last stage already",
                           code="last-stage")
        _next_stage(rollout, time.time() if now is None else now)
        return True
    return _admin(ref, actor, "advance", change)


def abort(ref: str, actor: str) -> Rule:
    """Abort = restore: the fleet goes back to the previous version, and the rollout ends with it."""
    rule = lifecycle.resolve(ref)
    if RuleRollout.get_or_none(RuleRollout.rule_id == rule.id) is None:
        raise NotFound(f"rule {rule.id} has no rollout to abort", code="no-rollout")
    return lifecycle.restore(ref, actor)  # no earlier version: the rest of the fleet had nothing either


def _next_stage(rollout: RuleRollout, now: float) -> None:
    times = stage_times(rollout)
    rollout.stage += 1
    times[rollout.stage:] = [now]
    rollout.stage_times = json.dumps(times)


# --- the watch -------------------------------------------------------------------------------------

def watch_update(rule_id: str, counts: dict[str, int], *, halt_reason: str | None, advance_to_next: bool,
                 complete: bool, now: float) -> RuleRollout | None:
    """Store what the watch found; halt, advance or complete as it decided (audit entries by
    ``devupdate``). ``None`` when the rollout ended meanwhile."""
    with write_transaction():
        found = list(locked(RuleRollout.select().where(RuleRollout.rule_id == rule_id)))
        if not found or found[0].state not in ACTIVE:
            return None
        rollout = found[0]
        rollout.offered, rollout.updated, rollout.failed = counts["offered"], counts["updated"], counts["failed"]
        rollout.evaluated_at = utcnow()
        if halt_reason and rollout.state == RUNNING:
            before = describe(rollout)
            rollout.state, rollout.halted_at, rollout.reason = HALTED, utcnow(), halt_reason
            rollout.save()
            record(WATCH, "rule.rollout.halt", rule_id, before=before, after=describe(rollout),
                   detail={"reason": halt_reason})
            return rollout
        if rollout.state == RUNNING and (advance_to_next or complete):
            before = describe(rollout)
            if complete:
                rollout.state = COMPLETED
                action = "complete"
            else:
                _next_stage(rollout, now)
                action = "advance"
            rollout.save()
            lifecycle.bump_generation()
            record(WATCH, f"rule.rollout.{action}", rule_id, before=before, after=describe(rollout))
            return rollout
        rollout.save()
        return rollout


def halt_reason(offered: int, failed: int, acknowledged: int, halt_at: int) -> str:
    return (f"{failed - acknowledged} of {offered} devices offered failed "
            f"({(failed - acknowledged) / offered:.1%}; threshold {percent(halt_at)})")
