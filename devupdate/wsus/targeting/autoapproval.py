"""The auto-approval rules ([wsus] §1d W8, the Test / All Computers model).

Default rules (seeded with the built-in groups):

1. ``Test``: every new update of the synced products/classifications → Install for ``Test``.
2. ``All Computers``: the updates ``Test`` got → Install for ``All Computers`` once ``defer_days``
   (``DeferQualityDays``, 0–30, default 7) have passed since the ``Test`` approval, unless the rule
   is paused; while paused nothing is added, after resuming the ones that are due are.
3. ``Definition Updates``: updates of that classification → Install for ``All Computers`` at once.

Only updates of the selected products count (nothing selected: nothing is synced, nothing is
approved). A rule skips updates that are declined, expired, superseded by an update already approved, of
product "UC devices" (phone images follow their rules, C10), or that need an EULA not yet accepted
(kept as ``eula-needed`` and shown to the admin; retried once it is accepted; ``accept_eulas`` on
the rule accepts it). "New" means stamped after the rule was created (``since_seq``), so adding the
rules to a running catalog does not approve what was there. What a rule did with an update is kept
(``AutoApprovalDecision``), so it acts once per update: an approval an admin removes is not put back.
Rules run after each import or sync and hourly (one process of the installation runs the hourly job);
every approval is audited with actor ``rule:<name>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import iso_utc, locked, tuples, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.images import PRODUCT_ID as PHONE_PRODUCT_ID
from devupdate.wsus.catalog.models import Prerequisite, Revision, SelectedProduct, Supersedence, Update, UpdateCategory
from devupdate.wsus.targeting import service
from devupdate.wsus.targeting.models import (
    TEST_ID,
    AutoApprovalDecision,
    AutoApprovalRule,
    Deployment,
    EulaAcceptance,
)

MAX_PER_RUN = 5000  # updates one rule approves in one run; the rest the next run
_CHUNK = 400
EULA_NEEDED = "eula-needed"


def rule_dict(rule: AutoApprovalRule) -> dict[str, Any]:
    pending = AutoApprovalDecision.select().where(AutoApprovalDecision.rule == rule.name,
                                                  AutoApprovalDecision.outcome == EULA_NEEDED).count()
    approved = AutoApprovalDecision.select().where(AutoApprovalDecision.rule == rule.name,
                                                   AutoApprovalDecision.outcome == "approved").count()
    names = {gid: name for gid, name in tuples(service.TargetGroup.select(service.TargetGroup.id,
                                                                            service.TargetGroup.name))}
    return {"Name": rule.name, "Group": names.get(rule.group_id, rule.group_id), "GroupId": rule.group_id,
            "Action": rule.action, "DeferDays": rule.defer_days, "Classification": rule.classification_id,
            "Enabled": rule.enabled, "Paused": rule.paused, "AcceptEulas": rule.accept_eulas,
            "Approved": approved, "AwaitingEula": pending, "ChangedTime": iso_utc(rule.changed_at),
            "ChangedBy": rule.changed_by}


def _rule(name: str, *, lock: bool = False) -> AutoApprovalRule:
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise DevupdateError("give an auto-approval rule by name (see 'devupdate wsus auto-approval list')",
                             code="bad-rule")
    query = AutoApprovalRule.select().where(AutoApprovalRule.name == name.strip())
    found = (locked(query) if lock else query).first()
    if found is None:
        for rule in AutoApprovalRule.select():
            if rule.name.casefold() == name.strip().casefold():
                return _rule(rule.name, lock=lock)
        names = ", ".join(repr(r.name) for r in AutoApprovalRule.select().order_by(AutoApprovalRule.name))
        raise NotFound(f"no auto-approval rule {name.strip()[:64]!r}; the rules are {names}", code="no-such-rule")
    return found


def list_rules() -> list[dict[str, Any]]:
    return [rule_dict(r) for r in AutoApprovalRule.select().order_by(AutoApprovalRule.name)]


def awaiting_eula() -> list[dict[str, Any]]:
    """Updates the rules skipped for an EULA not yet accepted (what the admin is shown)."""
    rows = (AutoApprovalDecision.select().where(AutoApprovalDecision.outcome == EULA_NEEDED)
            .order_by(AutoApprovalDecision.at).limit(1000))
    return [{"Rule": r.rule, "UpdateID": r.update_id, "EulaID": r.detail, "Time": iso_utc(r.at)} for r in rows]


def set_rule(name: str, *, actor: str, defer_days: int | None = None, accept_eulas: bool | None = None,
             enabled: bool | None = None, paused: bool | None = None) -> dict[str, Any]:
    action = "wsus.auto-approval." + ("pause" if paused else "resume" if paused is False else "set")
    try:
        if defer_days is not None and (isinstance(defer_days, bool) or not isinstance(defer_days, int)
                                       or not 0 <= defer_days <= service.MAX_DEFER_DAYS):
            raise DevupdateError(f"the deferral is 0 to {service.MAX_DEFER_DAYS} days", code="bad-defer-days")
        with write_transaction():
            rule = _rule(name, lock=True)
            if defer_days is not None and rule.defer_days is None:
                raise Conflict(f"rule {rule.name!r} approves on arrival and has no deferral; only the "
                               "'All Computers' rule waits after the Test approval", code="no-deferral")
            before = rule_dict(rule)
            changes: dict[str, Any] = {}
            for key, value in (("defer_days", defer_days), ("accept_eulas", accept_eulas), ("enabled", enabled),
                               ("paused", paused)):
                if value is not None and getattr(rule, key) != value:
                    changes[key] = value
            if changes:
                AutoApprovalRule.update(changed_at=utcnow(), changed_by=actor, **changes).where(
                    AutoApprovalRule.name == rule.name).execute()
            after = rule_dict(AutoApprovalRule.get_by_id(rule.name))
            if changes:
                record(actor, action, f"rule:{rule.name}", before=before, after=after)
    except DevupdateError as refusal:
        service._refused(actor, action, f"rule:{str(name)[:64]}", refusal)
        raise
    return {**after, "Changed": bool(changes)}


# -- evaluation ----------------------------------------------------------------------------------------

def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _synced_categories() -> set[str]:
    """The selected products with every category below them (nothing selected: nothing is synced or
    offered, as the scan has it)."""
    selected = {row[0] for row in tuples(SelectedProduct.select(SelectedProduct.category_id))}
    if not selected:
        return set()
    found, frontier = set(selected), set(selected)
    for _ in range(8):  # Company → ProductFamily → Product …: a few levels
        children = {row[0] for row in tuples(
            Revision.select(Revision.update_id).join(Prerequisite)
            .where(Revision.is_current, Revision.update_type == "Category",
                   Prerequisite.update_id.in_(sorted(frontier)), Prerequisite.is_category))}
        frontier = children - found
        if not frontier:
            break
        found |= frontier
    return found


def _in_categories(update_ids: list[str], categories: set[str]) -> set[str]:
    if not categories:
        return set()
    found: set[str] = set()
    for chunk in _chunks(update_ids):
        found |= {row[0] for row in tuples(UpdateCategory.select(UpdateCategory.update_id).where(
            UpdateCategory.update_id.in_(chunk), UpdateCategory.category_id.in_(sorted(categories))))}
    return found


def _phone_images(update_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(update_ids):
        found |= {row[0] for row in tuples(UpdateCategory.select(UpdateCategory.update_id).where(
            UpdateCategory.update_id.in_(chunk), UpdateCategory.category_id == PHONE_PRODUCT_ID))}
    return found


def _superseded_by_approved(update_ids: list[str]) -> set[str]:
    """Those of ``update_ids`` that a current revision of an update with a live Install deployment
    supersedes."""
    approved = Deployment.select(Deployment.update_id).where(~Deployment.revoked, Deployment.action == "Install")
    found: set[str] = set()
    for chunk in _chunks(update_ids):
        found |= {row[0] for row in tuples(
            Supersedence.select(Supersedence.update_id).join(Revision)
            .where(Supersedence.update_id.in_(chunk), Revision.is_current, Revision.update_id.in_(approved)))}
    return found


def _candidates(rule: AutoApprovalRule, now: dt.datetime) -> list[str]:
    decided = AutoApprovalDecision.select(AutoApprovalDecision.update_id).where(
        AutoApprovalDecision.rule == rule.name, AutoApprovalDecision.outcome != EULA_NEEDED)
    if rule.defer_days is not None:
        # the updates the Test group got, approved there long enough ago
        due = now - dt.timedelta(days=rule.defer_days)
        query = (Deployment.select(Deployment.update_id)
                 .where(Deployment.group == TEST_ID, ~Deployment.revoked, Deployment.action == "Install",
                        Deployment.source != "image", Deployment.created_at <= due,
                        Deployment.update_id.not_in(decided))
                 .order_by(Deployment.created_at, Deployment.update_id))
        return [row[0] for row in tuples(query.limit(MAX_PER_RUN))]
    updates = (Update.select(Update.update_id)
             .where(Update.change_seq > rule.since_seq, ~Update.deleted,
                    Update.update_type.in_(["Software", "Driver"]), Update.update_id.not_in(decided))
             .order_by(Update.change_seq, Update.update_id))
    if rule.classification_id is not None:
        updates = updates.where(Update.update_id.in_(UpdateCategory.select(UpdateCategory.update_id).where(
            UpdateCategory.category_id == rule.classification_id)))
    return [row[0] for row in tuples(updates.limit(MAX_PER_RUN))]


def _decide(rule: str, update_id: str, outcome: str, detail: str = "") -> None:
    row = {"rule": rule, "update_id": update_id, "outcome": outcome, "detail": detail, "at": utcnow()}
    AutoApprovalDecision.insert(**row).on_conflict(
        conflict_target=[AutoApprovalDecision.rule, AutoApprovalDecision.update_id],
        update={AutoApprovalDecision.outcome: outcome, AutoApprovalDecision.detail: detail,
                AutoApprovalDecision.at: utcnow()}).execute()


def run_rule(rule: AutoApprovalRule, now: dt.datetime | None = None) -> dict[str, Any]:
    """One rule over its candidates, in one transaction."""
    now = now or utcnow()
    actor = f"rule:{rule.name}"
    summary: dict[str, Any] = {"Rule": rule.name, "Approved": [], "AwaitingEula": [], "Skipped": 0}
    if not rule.enabled or rule.paused:
        summary["Paused" if rule.paused else "Disabled"] = True
        return summary
    with write_transaction():
        store.lock_sequence()
        candidates = _candidates(rule, now)
        if not candidates:
            return summary
        rows = {u.update_id: u for chunk in _chunks(candidates)
                for u in Update.select().where(Update.update_id.in_(chunk))}
        synced = _in_categories(candidates, _synced_categories())
        phones = _phone_images(candidates)
        superseded = _superseded_by_approved(candidates)
        live = {row[0] for chunk in _chunks(candidates) for row in tuples(Deployment.select(Deployment.update_id).where(
            Deployment.update_id.in_(chunk), Deployment.group == rule.group_id, ~Deployment.revoked))}
        group = service.TargetGroup.get_by_id(rule.group_id)
        for update_id in candidates:
            update = rows.get(update_id)
            if update is None or update.deleted:
                continue
            if update_id in phones:
                _decide(rule.name, update_id, "skipped", "phone image (UC devices)")
                summary["Skipped"] += 1
                continue
            if update_id not in synced or update.declined:
                summary["Skipped"] += 1  # not decided: selected again or undeclined later, it is still new
                continue
            if update.publication_state == "Expired" or update_id in superseded:
                _decide(rule.name, update_id, "skipped", "expired" if update.publication_state == "Expired"
                        else "superseded by an approved update")
                summary["Skipped"] += 1
                continue
            if update_id in live:
                _decide(rule.name, update_id, "approved", "approved already")
                continue
            eula_id = service.update_eula(update_id)
            if eula_id is not None and not service.eula_accepted(eula_id):
                if rule.accept_eulas:
                    EulaAcceptance.insert(eula_id=eula_id, accepted_by=actor).on_conflict_ignore().execute()
                    record(actor, "wsus.eula.accept", eula_id, after={"EulaID": eula_id}, detail={"Update": update_id})
                else:
                    _decide(rule.name, update_id, EULA_NEEDED, eula_id)
                    summary["AwaitingEula"].append({"UpdateID": update_id, "EulaID": eula_id})
                    continue
            service.check_approvable(update, group, rule.action)
            before, after = service.write_deployment(update_id, rule.group_id, rule.action, actor=actor, source="rule")
            record(actor, "wsus.approve", f"{update_id} @ {group.name}", before=before, after=after)
            _decide(rule.name, update_id, "approved")
            summary["Approved"].append(update_id)
    return summary


def run_rules(now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every rule in order: Test first, so the deferral of All Computers starts from it."""
    order = {"Test": 0, "Definition Updates": 1, "All Computers": 2}
    rules = sorted(AutoApprovalRule.select(), key=lambda r: (order.get(r.name, 3), r.name))
    return [run_rule(rule, now) for rule in rules]


#: the rules run hourly, in one process of the installation at a time (every worker starts the job; the
#: one holding the installation's lock runs it, :class:`devupdate.jobs.InstallationJob`). Imports and
#: ``auto-approval run`` call :func:`run_rules` directly; every rule's run is one transaction taken on
#: the change sequence, so runs from several processes still apply one after the other and each update
#: is decided once.
HOURLY = 3600.0
JOB_NAME = "wsus-auto-approval"


def summary_counts(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per rule: how many updates one run approved and left awaiting an EULA (what the job records)."""
    return {item["Rule"]: {"Approved": len(item["Approved"]), "AwaitingEula": len(item["AwaitingEula"])}
            for item in results}


def start_job(home: Any, interval: float = HOURLY) -> Any:
    """The hourly run as a started :class:`devupdate.jobs.InstallationJob` (``stop()`` at shutdown);
    ``<home>/wsus-auto-approval.lock`` records its last run."""
    import logging

    from devupdate.jobs import InstallationJob

    return InstallationJob(JOB_NAME, lambda: summary_counts(run_rules()), interval, home,
                           logger=logging.getLogger("devupdate.wsus.autoapproval")).start()
