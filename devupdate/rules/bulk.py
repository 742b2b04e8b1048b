"""Bulk actions: approve or reset every pending rule a filter picks (brand / model / locale, ``*`` and
``?`` patterns) or a list of rules chosen by hand — one implementation for ``devupdate rules approve
--brand Polycom --model 'CX*' [--dry-run]``, ``POST /api/v1/bulk/rules/approve`` and the console's rule
selection.

:func:`plan` is the dry run: the rules and, per rule, the sentence the single-rule confirmation states
(``preview``); :func:`confirmation` turns it into the text all three show before anything changes.
:func:`apply` acts rule by rule through the lifecycle (each its own transaction and audit entry, so
one refusal does not undo the others). A plan carries ``Expect``, a digest of the chosen rules and
their versions: applying with it refuses (409) when the selection changed since the text was read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from devupdate.errors import Conflict, DevupdateError
from devupdate.rules import lifecycle
from devupdate.rules.models import Rule
from devupdate.rules.preview import preview, rule_name, state_token

ACTIONS = {"approve": ("Approve", "approved"), "reset": ("Reset (reject)", "reset")}
MAX_RULES = 1000


@dataclass(frozen=True)
class Selection:
    """Which rules: the filters, or the rules chosen by id (both given: the chosen ones the filters match)."""

    brand: str | None = None
    model: str | None = None
    locale: str | None = None
    rules: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in (("brand", self.brand), ("model", self.model),
                                                        ("locale", self.locale)) if value]
        if self.rules:
            parts.append(f"{len(self.rules)} chosen rule{'s' if len(self.rules) != 1 else ''}")
        return " ".join(parts)


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise DevupdateError(f"{action[:40]!r} is not a bulk action: use approve or reset", code="bad-action")


def select(selection: Selection) -> list[Rule]:
    """The rules a selection picks, in family order: with filters only those with a pending version
    (what approve and reset act on); chosen ones as they are (the plan says which cannot be)."""
    if not (selection.brand or selection.model or selection.locale or selection.rules):
        raise DevupdateError("choose the rules: give a brand, model or locale pattern ('*' matches every one) "
                             "or the rules themselves", code="no-selection")
    if len(selection.rules) > MAX_RULES:
        raise DevupdateError(f"at most {MAX_RULES} rules at once", code="too-many-rules")
    state = None if selection.rules else "pending"
    found = lifecycle.list_rules(brand=selection.brand, model=selection.model, locale=selection.locale, state=state)
    if not selection.rules:
        return found
    chosen = {lifecycle.resolve(ref).id for ref in selection.rules}
    return [rule for rule in found if rule.id in chosen]


def _entry(rule: Rule, action: str) -> dict[str, Any]:
    said = preview(rule, action)
    return {"Id": rule.id, "Name": rule_name(rule), "UpdateType": rule.update_type, "Allowed": said["Allowed"],
            "Summary": said["Summary"], "Details": said["Details"], "Reason": said.get("Reason"),
            "Outcome": f"would-{action}" if said["Allowed"] else "skipped", "Error": None,
            "ApprovedVersion": rule.approved_version, "PendingVersion": rule.pending_version,
            "RestoreVersion": rule.restore_version}


def _digest(rules: list[Rule]) -> str:
    text = "\n".join(f"{rule.id}={state_token(rule)}" for rule in rules)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def plan(action: str, selection: Selection) -> dict[str, Any]:
    """The dry run: what ``action`` would do to each selected rule; nothing changes."""
    _check_action(action)
    rules = select(selection)
    entries = [_entry(rule, action) for rule in rules]
    return {"Action": action, "DryRun": True, "Selection": selection.describe(), "Expect": _digest(rules),
            "Count": sum(entry["Allowed"] for entry in entries), "Rules": entries,
            "Confirmation": confirmation(action, selection.describe(), entries)}


def confirmation(action: str, described: str, entries: list[dict[str, Any]]) -> list[str]:
    """The text stated before a bulk action, line by line (the CLI prints it, the console shows it)."""
    verb = ACTIONS[action][0]
    allowed = [entry for entry in entries if entry["Allowed"]]
    if not allowed:
        return [f"No pending rule matches {described}: nothing to {action}."]
    noun = "rule" if len(allowed) == 1 else "rules"
    lines = [f"{verb} {len(allowed)} pending {noun} matching {described}:"]
    for entry in entries:
        if entry["Allowed"]:
            lines.append(f"  {entry['Name']} · {entry['UpdateType']}: {entry['Summary']}")
            lines.extend(f"    {detail}" for detail in entry["Details"])
        else:
            lines.append(f"  {entry['Name']} · {entry['UpdateType']}: skipped, {entry['Reason']}")
    return lines


def apply(action: str, selection: Selection, actor: str, *, expect: str | None = None) -> dict[str, Any]:
    """Act on every rule of the plan that allows it; one lifecycle call (transaction, audit entry)
    per rule. With ``expect`` (a plan's ``Expect``) refused as a whole if the selection changed."""
    done = plan(action, selection)
    if expect is not None and expect != done["Expect"]:
        raise Conflict("the chosen rules changed since the confirmation was shown (another admin acted, or a "
                       "package was imported); nothing was done: look at the new confirmation and act again",
                       code="selection-changed")
    for entry in done["Rules"]:
        if not entry["Allowed"]:
            continue
        try:
            changed = getattr(lifecycle, action)(entry["Id"], actor)
        except DevupdateError as refusal:
            entry.update(Outcome="refused", Error=refusal.as_dict())
        else:
            entry.update(Outcome=ACTIONS[action][1], ApprovedVersion=changed.approved_version,
                         PendingVersion=changed.pending_version, RestoreVersion=changed.restore_version)
    done["DryRun"] = False
    done["Count"] = sum(entry["Outcome"] == ACTIONS[action][1] for entry in done["Rules"])
    return done
