"""Replica mode (D2, §5.3 step 5): the upstream's target groups, deployments, declined updates and
accepted EULAs, applied in the caller's transaction.

Groups are replaced by the upstream's tree (the full tree comes every time): a local group the
upstream does not have is removed with its deployments. A deployment is keyed here by (UpdateID,
group) as everywhere in targeting; the upstream's ``DeploymentGuid`` is kept so a later
``DeadDeployments`` entry finds it. Deployments naming an update this server does not have are
skipped (the upstream never sends one past the sync anchor, §5.1); those whose update is held (its
prerequisites not here yet) or failed this run are counted ``waiting``, and the caller keeps its
anchor so they come again. ``Action`` 2 (Scan) has no deployment of its own here and is skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Set
from typing import NamedTuple

from devupdate.audit.trail import record
from devupdate.db import utcnow
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.models import Update
from devupdate.wsus.downstream.messages import Deployments, SyncDeployment
from devupdate.wsus.downstream.models import HeldRevision, SyncedDeployment
from devupdate.wsus.soap.envelope import parse_datetime
from devupdate.wsus.targeting.models import Deployment, EulaAcceptance, TargetGroup

ACTIONS = {0: "Install", 1: "Uninstall", 3: "Block"}


def _action(row: SyncDeployment) -> str | None:
    action = ACTIONS.get(row.action)
    if action == "Install" and not row.is_assigned:
        return "OptionalInstall"
    return action


def _deadline(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return parse_datetime(value).replace(tzinfo=None)
    except ValueError:
        return None


def _groups(result: Deployments, seq: int, actor: str) -> None:
    wanted = {group.group_id: group for group in result.groups}
    if not wanted:
        return
    ordered: list[str] = []

    def visit(gid: str, seen: frozenset[str] = frozenset()) -> None:  # parents before children
        if gid in ordered or gid in seen or gid not in wanted:
            return
        parent = wanted[gid].parent_id
        if parent:
            visit(parent, seen | {gid})
        ordered.append(gid)

    for gid in sorted(wanted):
        visit(gid)
    for gid in ordered:
        group = wanted[gid]
        key = group.name.casefold()
        clash = TargetGroup.select().where(TargetGroup.name_key == key, TargetGroup.id != gid).first()
        if clash is not None and not clash.builtin:
            Deployment.delete().where(Deployment.group == clash.id).execute()
            TargetGroup.delete().where(TargetGroup.id == clash.id).execute()
        elif clash is not None:
            key = f"{key}\x00{gid}"
        parent = group.parent_id if group.parent_id in wanted or TargetGroup.get_or_none(
            TargetGroup.id == group.parent_id) else None
        existing = TargetGroup.get_or_none(TargetGroup.id == gid)
        if existing is None:
            TargetGroup.create(id=gid, name=group.name, name_key=key, parent=parent, builtin=group.builtin,
                               created_by=actor, change_seq=seq)
        elif (existing.name, existing.parent_id) != (group.name, parent):
            TargetGroup.update(name=group.name, name_key=key, parent=parent, change_seq=seq).where(
                TargetGroup.id == gid).execute()
    for stale in TargetGroup.select().where(TargetGroup.id.not_in(list(wanted)), ~TargetGroup.builtin).order_by(
            TargetGroup.created_at.desc()):
        TargetGroup.update(parent=None).where(TargetGroup.parent == stale.id).execute()
        Deployment.delete().where(Deployment.group == stale.id).execute()
        TargetGroup.delete().where(TargetGroup.id == stale.id).execute()


class Outcome(NamedTuple):
    changed: int  # deployments written or revoked
    waiting: int  # skipped for an update held or failed: to be applied by a later answer


def apply_deployments(result: Deployments, *, actor: str, failed: Set[str] = frozenset()) -> Outcome:
    """Apply one ``GetDeployments`` answer; ``failed``: the UpdateIDs whose revision failed this run."""
    seq = store.next_seq()
    _groups(result, seq, actor)
    named = sorted({d.update_id for d in result.deployments}) or [""]
    known = {row.update_id for row in Update.select(Update.update_id).where(Update.update_id.in_(named))}
    waiting_for = set(failed) | {row.update_id for row in HeldRevision.select(HeldRevision.update_id).where(
        HeldRevision.update_id.in_(named))}
    groups = {row.id for row in TargetGroup.select(TargetGroup.id)}
    changed = waiting = 0
    for row in result.deployments:
        action = _action(row)
        if action is not None and row.update_id not in known and row.update_id in waiting_for:
            waiting += 1
            continue
        if action is None or row.update_id not in known or row.group_id not in groups:
            continue
        fields = {"action": action, "deadline": _deadline(row.deadline), "download_priority":
                  row.download_priority if row.download_priority in (1, 2, 3) else 2,
                  "is_assigned": action != "OptionalInstall", "revoked": False, "source": "sync", "actor": actor,
                  "changed_at": utcnow(), "change_seq": seq}
        held = Deployment.get_or_none(Deployment.update_id == row.update_id, Deployment.group == row.group_id)
        if held is None:
            Deployment.create(update_id=row.update_id, group=row.group_id, **fields)
        elif any(getattr(held, k) != fields[k] for k in ("action", "deadline", "download_priority", "revoked")):
            Deployment.update(**fields).where(Deployment.id == held.id).execute()
        else:
            continue
        SyncedDeployment.insert(guid=row.deployment_guid or f"{row.update_id}/{row.group_id}",
                                update_id=row.update_id, group_id=row.group_id).on_conflict(
            conflict_target=[SyncedDeployment.guid],
            update={SyncedDeployment.update_id: row.update_id, SyncedDeployment.group_id: row.group_id}).execute()
        record(actor, "wsus.approve", f"{row.update_id} @ {row.group_id}", after={"Action": action, "Source": "sync"})
        changed += 1
    for guid in result.dead:
        link = SyncedDeployment.get_or_none(SyncedDeployment.guid == guid)
        if link is None:
            continue
        revoked = Deployment.update(revoked=True, changed_at=utcnow(), change_seq=seq).where(
            Deployment.update_id == link.update_id, Deployment.group == link.group_id, ~Deployment.revoked).execute()
        if revoked:
            record(actor, "wsus.unapprove", f"{link.update_id} @ {link.group_id}", before={"Source": "sync"})
            changed += revoked
    if result.hidden:
        Update.update(declined=True, change_seq=seq).where(Update.update_id.in_(result.hidden),
                                                           ~Update.declined).execute()
    for eula in result.accepted_eulas:
        EulaAcceptance.insert(eula_id=eula, accepted_by=actor).on_conflict_ignore().execute()
    return Outcome(changed, waiting)
