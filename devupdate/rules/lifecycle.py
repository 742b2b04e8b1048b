"""The rule lifecycle (management.md §1): approve, reset, restore, remove — one implementation
for the CLI, the JSON API and the console.

Each action locks the rule, checks its precondition, changes it, records before/after in the
audit trail and bumps the selection generation, all in one transaction: two admins acting on
one rule at once serialize, and the second sees the first's result.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import peewee

from devupdate.audit.trail import record
from devupdate.db import iso_utc, locked, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.rules import rollout
from devupdate.rules.catalog import decline_rule, sync_deployments
from devupdate.rules.models import Generation, Rule, RuleVersion
from devupdate.rules.preview import rule_name
from devupdate.rules.rollout_plan import Plan
from devupdate.wsus.mode import refuse_if_replica

_GUID_CHARS = re.compile(r"^[0-9a-f-]+$")
MIN_PREFIX = 4  # a shorter prefix picks a rule by luck, not by intent


def rule_key(device_type: str, brand: str, model: str, revision: str, locale: str, update_type: str) -> str:
    """Rules are keyed case-insensitively by their family (device-protocol.md §4)."""
    return "|".join(part.lower() for part in (device_type, brand, model, revision, locale, update_type))


def identity(rule: Rule, service_name: str) -> str:
    return f"service:WebServer:{service_name}/{rule.id}"




def rule_dict(rule: Rule, service_name: str) -> dict[str, Any]:
    """The public shape of a rule: field names as in the original management shell."""
    return {
        "Id": rule.id, "Identity": identity(rule, service_name), "DeviceType": rule.device_type,
        "Brand": rule.brand, "Model": rule.model, "Revision": rule.revision, "Locale": rule.locale,
        "UpdateType": rule.update_type, "ApprovedVersion": rule.approved_version,
        "PendingVersion": rule.pending_version, "RestoreVersion": rule.restore_version,
        "ApprovedTime": iso_utc(rule.approved_at), "ApprovedBy": rule.approved_by,
        "PendingTime": iso_utc(rule.pending_at), "PendingBy": rule.pending_by,
        "RestoreTime": iso_utc(rule.restore_at), "RestoreBy": rule.restore_by,
    }


def state(rule: Rule) -> dict[str, str | None]:
    """The part of a rule the audit trail compares before and after."""
    return {"ApprovedVersion": rule.approved_version, "PendingVersion": rule.pending_version,
            "RestoreVersion": rule.restore_version}


RULE_STATES = ("pending", "approved", "none")


MAX_PATTERN = 100
MAX_WILDCARDS = 8  # LIKE with many '%' backtracks; nobody needs more to pick a family
#: what a brand / model / locale pattern may be (the API document publishes it)
PATTERN_SCHEMA = {"type": "string", "maxLength": MAX_PATTERN,
                  "pattern": r"^[^\x00-\x1f\x7f*?]*(?:[*?][^\x00-\x1f\x7f*?]*){0," + str(MAX_WILDCARDS) + "}$",
                  "description": "case-insensitive; '*' matches any run of characters, '?' one "
                                 f"(at most {MAX_WILDCARDS} wildcards)", "examples": ["CX*"]}


def glob_pattern(value: str, what: str) -> str:
    """A shell-style pattern (``*`` any run, ``?`` one character, case-insensitive) as a LIKE pattern
    with ``\\`` as its escape: ``%`` and ``_`` typed by a person match only themselves."""
    if len(value) > MAX_PATTERN:
        raise DevupdateError(f"the {what} pattern is longer than {MAX_PATTERN} characters", code="bad-filter")
    if any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise DevupdateError(f"the {what} pattern contains a control or unencodable character", code="bad-filter")
    if value.count("*") + value.count("?") > MAX_WILDCARDS:
        raise DevupdateError(f"the {what} pattern has more than {MAX_WILDCARDS} wildcards ('*', '?')",
                             code="bad-filter")
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _like(column, pattern: str, what: str):
    """Case-insensitive glob match (``'CX*'``); without wildcards, equality."""
    if "*" not in pattern and "?" not in pattern:
        glob_pattern(pattern, what)  # the same length and character checks
        return peewee.fn.LOWER(column) == pattern.lower()
    return peewee.NodeList((peewee.fn.LOWER(column), peewee.SQL("LIKE"), glob_pattern(pattern, what),
                            peewee.SQL("ESCAPE '\\'")))


def list_rules(*, brand: str | None = None, model: str | None = None, locale: str | None = None,
               state: str | None = None) -> list[Rule]:
    """Rules in family order; ``brand``/``model``/``locale`` match case-insensitively with ``*`` / ``?`` wildcards,
    ``state`` keeps rules with a pending version, an approved one, or neither — the one selection of
    ``rules list`` and the bulk actions."""
    return list(rule_query(brand=brand, model=model, locale=locale, state=state))


def rule_query(*, brand: str | None = None, model: str | None = None, locale: str | None = None,
               state: str | None = None, pending_first: bool = False) -> Any:
    """:func:`list_rules` as a query, for a page of it (the console shows 50 rules at a time);
    ``pending_first`` puts the rules awaiting approval ahead, each part in family order."""
    order: list[Any] = [Rule.device_type, Rule.brand, Rule.model, Rule.revision, Rule.locale, Rule.update_type]
    if pending_first:
        order.insert(0, Rule.pending_version.is_null())
    query = Rule.select().order_by(*order)
    for column, value, what in ((Rule.brand, brand, "brand"), (Rule.model, model, "model"),
                                (Rule.locale, locale, "locale")):
        if value:
            query = query.where(_like(column, value, what))
    if state == "pending":
        query = query.where(Rule.pending_version.is_null(False))
    elif state == "approved":
        query = query.where(Rule.approved_version.is_null(False))
    elif state == "none":
        query = query.where(Rule.pending_version.is_null() & Rule.approved_version.is_null())
    elif state:
        raise DevupdateError(f"{state[:40]!r} is not a rule state: use pending, approved or none", code="bad-state")
    return query


def resolve(ref: str, *, lock: bool = False) -> Rule:
    """A rule by GUID, unique GUID prefix, or Identity (``service:WebServer:<name>/<GUID>``)."""
    text = ref.strip()
    if text.lower().startswith("service:"):
        text = text.rsplit("/", 1)[-1]
    text = text.strip("{}").lower()
    if not text or not _GUID_CHARS.match(text):
        raise DevupdateError(f"{ref!r} is not a rule GUID, GUID prefix or Identity", code="bad-rule-ref")
    if len(text) < MIN_PREFIX:
        raise DevupdateError(f"{ref!r} is too short a GUID prefix: give at least {MIN_PREFIX} characters",
                             code="bad-rule-ref")
    query = Rule.select().where(Rule.id.startswith(text)).limit(6)
    matches = list(locked(query) if lock else query)
    exact = [rule for rule in matches if rule.id == text]
    if exact:
        return exact[0]
    if not matches:
        raise NotFound(f"no rule matches {ref!r}; list them with 'devupdate rules list'", code="no-such-rule")
    if len(matches) > 1:
        shown = ", ".join(rule.id for rule in matches[:5])
        raise Conflict(f"{ref!r} matches several rules ({shown}); give more of the GUID", code="ambiguous-rule")
    return matches[0]


def bump_generation() -> None:
    """Tell serving processes that what devices are offered has changed."""
    updated = Generation.update(value=Generation.value + 1).where(Generation.id == 1).execute()
    if not updated:
        Generation.insert(id=1, value=1).on_conflict_ignore().execute()


def current_generation() -> int:
    return Generation.select(Generation.value).where(Generation.id == 1).scalar() or 0


def sync_version_refs(rule_id: str, referenced: set[str | None]) -> None:
    """Start the cleanup grace clock for versions no state of the rule names any more."""
    now = utcnow()
    versions = RuleVersion.select().where(RuleVersion.rule_id == rule_id)
    for version in versions:
        is_referenced = version.version in referenced
        if is_referenced and version.unreferenced_since is not None:
            RuleVersion.update(unreferenced_since=None).where(RuleVersion.id == version.id).execute()
        elif not is_referenced and version.unreferenced_since is None:
            RuleVersion.update(unreferenced_since=now).where(RuleVersion.id == version.id).execute()


def _act(ref: str, actor: str, action: str, change: Callable[[Rule], None],
         then: Callable[[Rule], None] | None = None) -> Rule:
    """``change`` the locked rule; ``then`` runs in the same transaction after it was saved (its
    rollout starts or ends there: reset, restore and remove end one, approve replaces it)."""
    try:
        refuse_if_replica("rule states")
        with write_transaction():
            rule = resolve(ref, lock=True)
            before = state(rule)
            change(rule)
            rule.updated_at = utcnow()
            rule.save()
            after = state(rule)
            sync_version_refs(rule.id, set(after.values()))
            bump_generation()
            record(actor, f"rule.{action}", rule.id, before=before, after=after)
            (then or (lambda r: rollout.end(r.id, actor, f"rule {action}")))(rule)
            sync_deployments(rule, rule.id, actor)  # its WSUS deployments (C10)
    except DevupdateError as refusal:
        record_refusal(actor, f"rule.{action}", ref, refusal)
        raise
    return rule


def record_refusal(actor: str, action: str, target: str, refusal: DevupdateError) -> None:
    """Refusals are part of the trail too; written after the failed transaction rolled back."""
    with write_transaction():
        record(actor, action, target, outcome="refused", detail=refusal.as_dict())


def approve(ref: str, actor: str, plan: Plan | None = None, *, now: float | None = None) -> Rule:
    """Pending becomes approved; the previous approved version is kept as the restore version. With
    a ``plan`` the fleet gets it in stages (``rollout_plan``); test devices get it at once either way."""
    def then(rule: Rule) -> None:
        if plan is None:
            rollout.end(rule.id, actor, "approved without a rollout")
        else:
            rollout.start(rule, plan, actor, time.time() if now is None else now)

    def change(rule: Rule) -> None:
        if rule.pending_version is None:
            raise Conflict(f"rule {rule.id} has no pending version to approve; import a package first",
                           code="no-pending-version")
        if rule.approved_version is not None:
            rule.restore_version, rule.restore_at, rule.restore_by = rule.approved_version, utcnow(), actor
        rule.approved_version, rule.approved_at, rule.approved_by = rule.pending_version, utcnow(), actor
        rule.pending_version, rule.pending_at, rule.pending_by = None, utcnow(), actor
    return _act(ref, actor, "approve", change, then)


def reset(ref: str, actor: str) -> Rule:
    """Reject the pending version; test devices go back to the approved one."""
    def change(rule: Rule) -> None:
        if rule.pending_version is None:
            raise Conflict(f"rule {rule.id} has no pending version to reset", code="no-pending-version")
        rule.pending_version, rule.pending_at, rule.pending_by = None, utcnow(), actor
    return _act(ref, actor, "reset", change)


class WouldWithdraw(Conflict):
    """A rollback with no restore version would leave the fleet nothing; asked for explicitly only."""

    code = "would-withdraw"


def restore(ref: str, actor: str, *, withdraw: bool = True) -> Rule:
    """Roll back: the restore version becomes approved (none → the fleet is offered nothing; with
    ``withdraw=False`` that case is refused instead, decided on the locked rule)."""
    def change(rule: Rule) -> None:
        if rule.approved_version is None:
            raise Conflict(f"rule {rule.id} has no approved version to roll back", code="no-approved-version")
        if rule.restore_version is None and not withdraw:
            raise WouldWithdraw(f"rule {rule.id}: restoring would withdraw {rule.approved_version} and nobody "
                                "would be offered anything for this rule (there is no earlier version to "
                                "return to)")
        rule.approved_version, rule.approved_at, rule.approved_by = rule.restore_version, utcnow(), actor
        rule.restore_version, rule.restore_at, rule.restore_by = None, utcnow(), actor
    return _act(ref, actor, "restore", change)


def adopt(ref: str, actor: str, *, approved: str | None, pending: str | None, restore: str | None) -> Rule:
    """Take over a rule's three versions from another server (``devupdate migrate lync``): each one
    given must have been imported for this rule. Audited as ``rule.adopt`` with before and after."""
    def change(rule: Rule) -> None:
        imported = {version.version for version in
                    RuleVersion.select(RuleVersion.version).where(RuleVersion.rule_id == rule.id)}
        for column, version in (("ApprovedVersion", approved), ("PendingVersion", pending),
                                ("RestoreVersion", restore)):
            if version is not None and version not in imported:
                raise Conflict(f"rule {rule.id}: {column} {version} was never imported; import the cab that has it",
                               code="version-not-imported")
        now = utcnow()
        if rule.approved_version != approved:
            rule.approved_version, rule.approved_at, rule.approved_by = approved, now, actor
        if rule.pending_version != pending:
            rule.pending_version, rule.pending_at, rule.pending_by = pending, now, actor
        if rule.restore_version != restore:
            rule.restore_version, rule.restore_at, rule.restore_by = restore, now, actor
    return _act(ref, actor, "adopt", change)


def remove(ref: str, actor: str) -> dict[str, Any]:
    """Delete the rule; its images become unreferenced and leave after the cleanup grace period, and
    the catalog updates of its versions are declined."""
    try:
        refuse_if_replica("rule states")
        with write_transaction():
            rule = resolve(ref, lock=True)
            before = {"Id": rule.id, "Key": rule.key, **state(rule)}
            sync_version_refs(rule.id, set())
            decline_rule(rule.id)  # its catalog updates (C10)
            sync_deployments(None, rule.id, actor)
            rollout.end(rule.id, actor, "rule removed")
            rule.delete_instance()
            bump_generation()
            record(actor, "rule.remove", rule.id, before=before, after=None, detail={"Name": rule_name(rule)})
    except DevupdateError as refusal:
        record_refusal(actor, "rule.remove", ref, refusal)
        raise
    return before


def rule_versions(rule_id: str) -> list[dict[str, Any]]:
    """Imported versions of a rule with their files (what ``rules show`` lists)."""
    from devupdate.content.models import StoredObject
    from devupdate.rules.models import VersionFile

    rows = []
    for version in RuleVersion.select().where(RuleVersion.rule_id == rule_id).order_by(RuleVersion.imported_at):
        files = [{"FileName": f.file_name, "Role": f.role, "SHA256": f.blob_id, "Size": f.blob.size}
                 for f in VersionFile.select(VersionFile, StoredObject).join(StoredObject)
                 .where(VersionFile.rule_version == version).order_by(VersionFile.id)]
        rows.append({"Version": version.version, "ImportedTime": iso_utc(version.imported_at),
                     "UnreferencedSince": iso_utc(version.unreferenced_since), "Files": files})
    return rows
