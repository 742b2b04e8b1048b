"""Targets by name: a rule's audit rows name it "Polycom CX600 ENU", not by its GUID.

Names are looked up when the trail is read (one query per page); a removed rule keeps the name its
removal recorded (``rule.remove``'s ``Detail.Name``).
"""

from __future__ import annotations

from typing import Any

import peewee

from devupdate.rules.models import Rule
from devupdate.rules.preview import rule_name


def _rule_target(event: dict[str, Any]) -> bool:
    return event["Action"].startswith("rule.") and event["Outcome"] == "ok"


def name_targets(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``TargetName`` of each event: the rule's name for rule actions, else the target itself."""
    ids = {event["Target"] for event in events if _rule_target(event)}
    names = {rule.id: rule_name(rule) for rule in Rule.select().where(Rule.id.in_(sorted(ids)))} if ids else {}
    for event in events:
        detail = event["Detail"] if isinstance(event["Detail"], dict) else {}
        name = names.get(event["Target"]) if _rule_target(event) else None
        event["TargetName"] = name or (detail.get("Name") if isinstance(detail.get("Name"), str) else None) \
            or event["Target"]
    return events


def rules_named(text: str, limit: int = 500) -> list[str]:
    """Ids of the rules whose name contains ``text`` (case-insensitive): a target search by name."""
    name = peewee.fn.LOWER(Rule.brand.concat(" ").concat(Rule.model).concat(" ").concat(Rule.locale))
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = Rule.select(Rule.id).where(peewee.NodeList((name, peewee.SQL("LIKE"), pattern,
                                                        peewee.SQL("ESCAPE '\\'")))).limit(limit)
    return [rule.id for rule in query]

