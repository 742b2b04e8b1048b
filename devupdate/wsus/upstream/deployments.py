"""GetDeployments ([wsus] §1b U5, §5.1): what a replica downstream server mirrors.

Every answer carries the whole target-group tree, the declined updates (``HiddenUpdates``) and the
accepted EULAs; the deployments are those changed after ``deploymentAnchor`` and not after
``syncAnchor`` (so they never name a revision the DSS has not fetched), live ones in ``Deployments``,
unapproved ones in ``DeadDeployments``. A deployment's change is the later of its own and its
update's, so one left out while its update was deleted here comes with the restore (which moves the
update's sequence, and GetRevisionIdList lists it again). Each names the revision of its update the
DSS got up to ``syncAnchor``. The new anchor is ``syncAnchor``'s sequence. ``DeploymentGuid`` is
stable per approval (this server's id, the row and when it was approved), so a withdrawn one is named
by the GUID the DSS was given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import peewee

from devupdate.db import tuples
from devupdate.wsus.catalog.models import Revision, Update
from devupdate.wsus.client import keys
from devupdate.wsus.client.catalogview import snapshot
from devupdate.wsus.soap.envelope import El, el, invalid, text
from devupdate.wsus.soap.registry import Call, operation
from devupdate.wsus.targeting.models import Deployment, EulaAcceptance, TargetGroup
from devupdate.wsus.upstream.anchors import format_anchor
from devupdate.wsus.upstream.auth_ops import dss_cookie
from devupdate.wsus.upstream.sync_ops import anchor_of

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
NO_DEADLINE = "9999-12-31T23:59:59.9999999"
#: Action codes of this interface (§5.1); OptionalInstall is Install with IsAssigned=false
ACTION_CODES = {"Install": 0, "Uninstall": 1, "OptionalInstall": 0, "Block": 3}


def deployment_guid(server_id: str, row: Deployment) -> str:
    return str(uuid.uuid5(uuid.UUID(server_id), f"deployment/{row.id}/{row.created_at.isoformat()}"))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _revisions_up_to(update_ids: Sequence[str], seq: int) -> dict[str, int]:
    """UpdateID → the highest RevisionNumber stored at ``seq`` or before (not deleted)."""
    found: dict[str, int] = {}
    for start in range(0, len(update_ids), 400):
        chunk = list(update_ids[start:start + 400])
        found.update((str(uid), int(number)) for uid, number in tuples(
            Revision.select(Revision.update_id, peewee.fn.MAX(Revision.revision_number))
            .join(Update, on=(Update.update_id == Revision.update_id))
            .where(Revision.update_id.in_(chunk) & (Revision.change_seq <= seq) & ~Update.deleted)
            .group_by(Revision.update_id)))
    return found


def _groups() -> Iterable[El]:
    for group in TargetGroup.select().order_by(TargetGroup.created_at, TargetGroup.id):
        yield el("ServerSyncTargetGroup", el("TargetGroupID", group.id),
                 el("ParentGroupId", group.parent_id or ZERO_GUID), el("Name", group.name),
                 el("IsBuiltin", bool(group.builtin)))


@operation("GetDeployments", "serversync")
def get_deployments(call: Call) -> El:
    dss_cookie(call)
    since = anchor_of(text(call.body, "deploymentAnchor"), "deploymentAnchor")
    upto = anchor_of(text(call.body, "syncAnchor"), "syncAnchor")
    if upto is None:
        raise invalid("syncAnchor")
    server = keys.server_id()
    with snapshot():
        groups = list(_groups())
        # the later of the deployment's and its update's change: a restored update brings its deployments
        changed = peewee.Case(None, [(Update.change_seq > Deployment.change_seq, Update.change_seq)],
                              Deployment.change_seq)
        condition = changed <= upto
        if since is not None:
            condition &= changed > since
        rows = list(Deployment.select(Deployment).join(
            Update, peewee.JOIN.LEFT_OUTER, on=(Update.update_id == Deployment.update_id)).where(condition)
            .order_by(Deployment.id))
        revisions = _revisions_up_to(sorted({row.update_id for row in rows}), upto)
        hidden = [row[0] for row in tuples(Update.select(Update.update_id).where(Update.declined & ~Update.deleted)
                                           .order_by(Update.update_id))]
        eulas = [row[0] for row in tuples(EulaAcceptance.select(EulaAcceptance.eula_id)
                                          .order_by(EulaAcceptance.eula_id))]
    live, dead = [], []
    for row in rows:
        if row.revoked:
            dead.append(el("guid", deployment_guid(server, row)))
            continue
        number = revisions.get(row.update_id)
        if number is None:  # deleted here: sent again when the update is restored
            continue
        live.append(el(
            "ServerSyncDeployment", el("UpdateId", row.update_id), el("RevisionNumber", number),
            el("Action", ACTION_CODES.get(row.action, 0)), el("AdminName", row.actor[:256]),
            el("Deadline", _aware(row.deadline) if row.deadline else NO_DEADLINE),
            el("IsAssigned", bool(row.is_assigned) and row.action != "OptionalInstall"),
            el("GoLiveTime", _aware(row.created_at)), el("DeploymentGuid", deployment_guid(server, row)),
            el("TargetGroupId", row.group_id), el("DownloadPriority", row.download_priority)))
    return el("GetDeploymentsResponse", el(
        "GetDeploymentsResult", el("Anchor", format_anchor(upto)), el("Groups", groups), el("Deployments", live),
        el("DeadDeployments", dead), el("HiddenUpdates", [el("guid", uid) for uid in hidden]),
        el("AcceptedEulas", [el("guid", eula) for eula in eulas])))
