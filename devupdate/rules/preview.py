"""What a rule action would change, in words — the confirmation text the console, the CLI's dry
runs and the JSON API state before approve / reset / restore ("All Polycom CX600 ENU phones will be
offered CPE 4.0.7577.4366 (downgrade from 4.0.7577.4372)"). Plain functions over a rule, no Flask.
"""

from __future__ import annotations

from typing import Any

from devupdate.packages.description import version_key
from devupdate.rules.models import Rule

ACTIONS = ("approve", "reset", "restore")


def _direction(new: str, old: str | None) -> str:
    if old is None:
        return "nothing approved before"
    new_key, old_key = version_key(new), version_key(old)
    if new_key == old_key:
        return f"same version as {old}"
    if type(new_key) is type(old_key):
        return f"{'upgrade' if new_key > old_key else 'downgrade'} from {old}"  # type: ignore[operator]
    return f"replacing {old}"


def family_label(rule: Rule) -> str:
    """'Polycom CX600 ENU phones', 'Aastra 6725ip phones (every locale)'."""
    noun = "phones" if rule.device_type.lower() == "ucphone" else f"{rule.device_type} devices"
    if rule.locale == "*":
        return f"{rule.brand} {rule.model} {noun} (every locale)"
    return f"{rule.brand} {rule.model} {rule.locale} {noun}"


def state_token(rule: Rule) -> str:
    """The rule's versions as one string: a confirmation carries it so a changed rule is noticed."""
    return "|".join(v or "-" for v in (rule.approved_version, rule.pending_version, rule.restore_version))


def preview(rule: Rule, action: str, *, known_devices: int | None = None) -> dict[str, Any]:
    """What ``action`` would change, in words: ``Summary`` (what the fleet receives afterwards),
    ``Details`` (test devices, the restore version), ``Allowed`` and, when not allowed, ``Reason``
    (the lifecycle's precondition, stated before anyone clicks)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    fleet = family_label(rule)
    what = f"{rule.update_type} "
    approved, pending, restore = rule.approved_version, rule.pending_version, rule.restore_version
    details: list[str] = []
    if known_devices is not None:
        details.append(f"{known_devices} such device{'s' if known_devices != 1 else ''} checked in so far.")
    if action == "approve":
        if pending is None:
            return _refused(rule, action, "there is no pending version to approve; import a package first")
        summary = f"All {fleet} will be offered {what}{pending} ({_direction(pending, approved)})."
        if approved is not None:
            details.append(f"{approved} becomes the restore version: rolling back returns to it.")
        else:
            details.append("There will be no restore version: rolling back would withdraw the update.")
    elif action == "reset":
        if pending is None:
            return _refused(rule, action, "there is no pending version to reject")
        if approved is None:
            summary = (f"Pending {pending} is rejected. Nobody will be offered anything for this rule: "
                       "it has no approved version.")
        else:
            summary = (f"Pending {pending} is rejected. All {fleet} keep being offered {what}{approved}; "
                       f"test devices go back to it.")
    else:
        if approved is None:
            return _refused(rule, action, "there is no approved version to roll back")
        if restore is None:
            summary = (f"Nobody will be offered anything for this rule: {approved} is withdrawn and there "
                       "is no earlier version to return to.")
        else:
            summary = f"All {fleet} will be offered {what}{restore} ({_direction(restore, approved)})."
            details.append("No restore version will remain: rolling back again would withdraw the update.")
        if pending is not None:
            details.append(f"Test devices keep being offered the pending {pending}.")
    return {"Action": action, "Allowed": True, "Summary": summary, "Details": details, "State": state_token(rule)}


def _refused(rule: Rule, action: str, reason: str) -> dict[str, Any]:
    return {"Action": action, "Allowed": False, "Summary": "", "Details": [], "Reason": reason,
            "State": state_token(rule)}


def rule_name(rule: Rule) -> str:
    """How people name a rule: 'Polycom CX600 ENU', 'Aastra 6725ip (every locale)'."""
    if rule.locale == "*":
        return f"{rule.brand} {rule.model} (every locale)"
    return f"{rule.brand} {rule.model} {rule.locale}"
