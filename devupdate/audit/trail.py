"""Writing and reading the admin audit trail.

``record`` is called inside the transaction of the change it describes, so an action and its
audit row commit together — a trail that can disagree with the data would be worse than none.
"""

from __future__ import annotations

import json
from typing import Any

from devupdate.audit.models import AuditEvent


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def record(actor: str, action: str, target: str, *, before: Any = None, after: Any = None,
           outcome: str = "ok", detail: Any = None) -> AuditEvent:
    return AuditEvent.create(actor=actor, action=action, target=target, outcome=outcome,
                             before=_dump(before), after=_dump(after), detail=_dump(detail))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)
    return {"Id": event.id, "Time": event.at.isoformat() + "Z", "Actor": event.actor, "Action": event.action,
            "Target": event.target, "Outcome": event.outcome, "Before": load(event.before),
            "After": load(event.after), "Detail": load(event.detail)}


def list_events(*, limit: int = 50, offset: int = 0, action: str | None = None, actor: str | None = None,
                target: str | None = None) -> list[dict[str, Any]]:
    """Newest first; filters match an action prefix ('rule.'), an exact actor, a target substring."""
    query = AuditEvent.select().order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if target:
        query = query.where(AuditEvent.target.contains(target))
    return [event_dict(event) for event in query.limit(max(1, min(limit, 1000))).offset(max(0, offset))]
