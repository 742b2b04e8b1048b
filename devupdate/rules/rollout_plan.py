"""Staged rollouts, the pure part: reading a plan (``--rollout 5%,25%,100% --every 24h --halt-at 2%``),
when a stage is due, how one device's rollout went, and when the failures halt it. Plain values in and
out — no database, no clock (``now`` is always passed in), so every rule here is tested without time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devupdate.errors import DevupdateError
from devupdate.selection import BUCKETS  # shares are in basis points (0.01 %)

_PERCENT = re.compile(r"^\s*([0-9]{1,3}(?:\.[0-9]{1,2})?)\s*%?\s*$")
_DURATION = re.compile(r"^\s*([0-9]{1,6})\s*([smhd])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

UPDATED, FAILED, WAITING = "updated", "failed", "waiting"
#: why a device counts as failed
REPORTED, FALLBACK, STUCK = "reported", "fallback", "stuck"


class PlanError(DevupdateError):
    """A plan that cannot be run; the message names the fix."""

    status = 400
    code = "bad-rollout-plan"


def share(text: str, what: str = "share") -> int:
    """``'2%'``, ``'2'`` or ``'0.5%'`` → basis points (1 … 10,000)."""
    found = _PERCENT.match(text)
    value = round(float(found.group(1)) * 100) if found else -1
    if not 1 <= value <= BUCKETS:
        raise PlanError(f"{what} {text!r}: give a percentage from 0.01% to 100%, e.g. 5%")
    return value


def stages(text: str) -> tuple[int, ...]:
    """``'5%,25%,100%'`` → (500, 2500, 10000): growing, ending at 100 %."""
    values = tuple(share(part, "rollout stage") for part in text.split(",") if part.strip())
    if not values:
        raise PlanError("--rollout needs stages, e.g. 5%,25%,100%")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise PlanError(f"rollout stages {text!r} must grow, e.g. 5%,25%,100%")
    if values[-1] != BUCKETS:
        raise PlanError(f"rollout stages {text!r} must end at 100% (the whole fleet)")
    if len(values) > 20:
        raise PlanError("at most 20 rollout stages")
    return values


def duration(text: str, what: str = "--every") -> int:
    """``'24h'``, ``'90m'``, ``'2d'``, ``'30s'`` → seconds (at least 1 s, at most 365 days)."""
    found = _DURATION.match(text)
    seconds = int(found.group(1)) * _UNITS[found.group(2).lower()] if found else 0
    if not 1 <= seconds <= 365 * 86400:
        raise PlanError(f"{what} {text!r}: give a duration such as 30m, 24h or 2d (at most 365d)")
    return seconds


def percent(value: int) -> str:
    """Basis points as the plan spells them: 500 → '5%', 50 → '0.5%'."""
    return f"{value / 100:g}%"


def spell_duration(seconds: int) -> str:
    """As people write them: 30m, 24h, 48h, 7d."""
    if seconds % 3600 == 0 and seconds <= 96 * 3600:
        return f"{seconds // 3600}h"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Plan:
    """What ``rules approve --rollout`` asks for."""

    stages: tuple[int, ...]
    every: int  # seconds between stages
    halt_at: int  # basis points of the devices offered
    fail_after_checks: int = 3  # checks still on the old version after being offered
    fail_after: int = 48 * 3600  # seconds still on the old version after being offered

    @classmethod
    def parse(cls, rollout: str, every: str = "24h", halt_at: str = "2%", fail_after_checks: int = 3,
              fail_after: str = "48h") -> Plan:
        if not 1 <= fail_after_checks <= 1000:
            raise PlanError("--fail-after-checks: give 1 to 1000 checks")
        return cls(stages(rollout), duration(every), share(halt_at, "--halt-at"), fail_after_checks,
                   duration(fail_after, "--fail-after"))

    @classmethod
    def from_shares(cls, shares: list[str], every: str = "24h", halt_at: str = "2%", fail_after_checks: int = 3,
                    fail_after: str = "48h") -> Plan:
        """The API's form: any shares, sorted, with 100 % added when missing (so every list the API's
        document allows is a plan that runs)."""
        values = sorted({share(text, "rollout stage") for text in shares})
        if not values or values[-1] != BUCKETS:
            values.append(BUCKETS)
        return cls.parse(",".join(percent(v) for v in values), every, halt_at, fail_after_checks, fail_after)

    def as_dict(self) -> dict[str, object]:
        return {"Stages": [percent(s) for s in self.stages], "Every": spell_duration(self.every),
                "HaltAt": percent(self.halt_at), "FailAfterChecks": self.fail_after_checks,
                "FailAfter": spell_duration(self.fail_after)}


def included_stage(stage_shares: tuple[int, ...], bucket: int) -> int | None:
    """The first stage whose share takes in a device of ``bucket``."""
    for index, value in enumerate(stage_shares):
        if bucket < value:
            return index
    return None


def stage_due(stage: int, stage_count: int, stage_started: float, every: int, now: float) -> bool:
    """The next stage starts ``every`` seconds after this one did (the last one has no next)."""
    return stage < stage_count - 1 and now >= stage_started + every


def outcome(*, is_new: bool, seen_new: bool, reported_failed: bool, checks_since_download: int | None,
            seconds_since_download: float | None, plan: Plan) -> tuple[str, str]:
    """(updated | failed | waiting, why) for one device offered the new version.

    Failure signals: an explicit ``failed`` status report; the new version seen (or reported
    installed) and then an older one (fallback); the new image downloaded, and still the old version
    ``fail_after_checks`` checks or ``fail_after`` seconds later (``None``: not known to have downloaded
    it, so it is waiting, whatever the time)."""
    if reported_failed:
        return FAILED, REPORTED
    if is_new:
        return UPDATED, ""
    if seen_new:
        return FAILED, FALLBACK
    if checks_since_download is not None and seconds_since_download is not None and (
            checks_since_download >= plan.fail_after_checks or seconds_since_download >= plan.fail_after):
        return FAILED, STUCK
    return WAITING, ""


def halts(offered: int, failed: int, acknowledged: int, halt_at: int) -> bool:
    """The failed share of the devices offered reached the threshold (failures acknowledged by a
    resume no longer count)."""
    counted = failed - acknowledged
    return offered > 0 and counted > 0 and counted * BUCKETS >= halt_at * offered
