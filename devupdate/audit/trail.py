"""Writing and reading the admin audit trail.

``record`` is called inside the transaction of the change it describes, so an action and its
audit row commit together — a trail that can disagree with the data would be worse than none.

Reading: :class:`Filter` is the one set of filters the CLI, the JSON API and the console take
(action prefix, actor, target, a time range), checked with a reason a person can act on. This module
stays below every feature (they all record); ``readable`` reads the trail with targets by name.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from devupdate.audit.models import AuditEvent
from devupdate.errors import DevupdateError

MAX_FILTER = 200
# Dates of 2000–2099 only, so the pattern itself knows every real calendar day (leap years included):
# the API document publishes it, and exactly what it allows is accepted.
_DAY = (r"20[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        r"|02-(?:0[1-9]|1[0-9]|2[0-8]))|20(?:[02468][048]|[13579][26])-02-29")
_CLOCK = r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?Z?"
_AGO = r"[1-9][0-9]{0,4}[hd]"
#: what a time filter takes (empty: no filter)
TIME_PATTERN = rf"^(?:(?:{_DAY})(?:{_CLOCK})?|{_AGO})?$"
#: a filter's text: no control characters
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
_TIME = re.compile(TIME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")



def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def record(actor: str, action: str, target: str, *, before: Any = None, after: Any = None,
           outcome: str = "ok", detail: Any = None) -> AuditEvent:
    return AuditEvent.create(actor=actor, action=action, target=target, outcome=outcome,
                             before=_dump(before), after=_dump(after), detail=_dump(detail))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)
    return {"Id": event.id, "Time": event.at.isoformat() + "Z", "Actor": event.actor,
            "Action": event.action, "Target": event.target, "TargetName": event.target, "Outcome": event.outcome,
            "Before": load(event.before), "After": load(event.after), "Detail": load(event.detail)}

def parse_time(text: str, what: str, *, end: bool = False, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-12-01`` (with ``end``: the whole day, up to the next midnight), ``2026-12-01T08:30[:00][Z]``
    (UTC), or ``7d`` / ``12h`` ago — as naive UTC, the form the trail stores."""
    value = text.strip()
    if not value or not _TIME.match(value):
        raise DevupdateError(f"{what} {value[:40]!r} is not a date: give YYYY-MM-DD (2000–2099), "
                             "YYYY-MM-DDTHH:MM[:SS]Z (UTC) or an age such as 7d or 12h", code="bad-date")
    if value[-1] in "hd":
        amount = int(value[:-1])
        delta = dt.timedelta(days=amount) if value[-1] == "d" else dt.timedelta(hours=amount)
        current = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return current - min(delta, current - dt.datetime(2000, 1, 1))
    day = dt.datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    if len(value) == 10:
        return day + dt.timedelta(days=1) if end else day
    clock = value[11:].rstrip("Z")
    return day.replace(hour=int(clock[0:2]), minute=int(clock[3:5]), second=int(clock[6:8] or 0))


@dataclass(frozen=True)
class Filter:
    """What to read of the trail; every field optional."""

    action: str | None = None  # prefix: 'rule.' or 'import'
    actor: str | None = None  # exact: 'console:alice', 'token:ci'
    target: str | None = None  # contained in the target, or in the name of a rule it names
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive

    @classmethod
    def parse(cls, *, action: str | None = None, actor: str | None = None, target: str | None = None,
              since: str | None = None, until: str | None = None) -> Filter:
        """From what a person typed: blank means no filter; too long, control characters or a time
        that is not one are refused with the reason (a range that ends before it starts is just empty)."""
        texts: dict[str, str | None] = {}
        for name, value in (("action", action), ("actor", actor), ("target", target), ("since", since),
                            ("until", until)):
            value = (value or "").strip()
            if len(value) > MAX_FILTER:
                raise DevupdateError(f"the {name} filter is longer than {MAX_FILTER} characters",
                                     code="bad-filter")
            if _CONTROL.search(value):
                raise DevupdateError(f"the {name} filter contains a control or unencodable character",
                                     code="bad-filter")
            texts[name] = value or None
        start = parse_time(texts["since"], "since") if texts["since"] else None
        stop = parse_time(texts["until"], "until", end=True) if texts["until"] else None
        return cls(texts["action"], texts["actor"], texts["target"], start, stop)

    def where(self, query, *, also_targets: list[str] | tuple[str, ...] = ()):
        """``query`` narrowed to this filter; ``also_targets`` match the target filter too (the rules
        its text names: ``readable`` looks them up, this module stays below the features)."""
        if self.action:
            query = query.where(AuditEvent.action.startswith(self.action))
        if self.actor:
            query = query.where(AuditEvent.actor == self.actor)
        if self.target:
            matches = AuditEvent.target.contains(self.target)
            query = query.where(matches | AuditEvent.target.in_(list(also_targets)) if also_targets else matches)
        if self.since is not None:
            query = query.where(AuditEvent.at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.at < self.until)
        return query


def list_events(*, limit: int = 50, offset: int = 0, action: str | None = None, actor: str | None = None,
                target: str | None = None, where: Filter | None = None) -> list[dict[str, Any]]:
    """Newest first; filters match an action prefix ('rule.'), an exact actor, a target substring, a
    time range. (``readable.list_events`` also names the targets.)"""
    chosen = where or Filter(action or None, actor or None, target or None)
    query = chosen.where(AuditEvent.select()).order_by(AuditEvent.id.desc())
    return [event_dict(event) for event in query.limit(max(1, min(limit, 1000))).offset(max(0, offset))]
