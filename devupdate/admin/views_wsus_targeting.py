"""``/wsus/groups``, ``/wsus/computers``, ``/wsus/updates/{update}/approvals``, ``/wsus/eulas``,
``/wsus/auto-approval``, ``/wsus/targeting``: target groups, computers, approvals, EULA acceptance
and the auto-approval rules ([wsus] §1d W6–W8). The same service functions as ``devupdate wsus``."""

from __future__ import annotations

from typing import Any

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import (
    JSON_CHANGE,
    READ,
    Param,
    body_text,
    json_body,
    json_response,
    only_keys,
    principal,
    query_bool,
    query_text,
    route,
)
from devupdate.admin.schemas import UPDATE_ID, WSUS_COMPUTER, WSUS_GROUP, WSUS_RULE
from devupdate.errors import DevupdateError
from devupdate.wsus.targeting import autoapproval
from devupdate.wsus.targeting import service as targeting

GROUP = Param("group", WSUS_GROUP, "Target group: GUID or name", "path", True)
GROUP_FILTER = Param("group", WSUS_GROUP, "Only those of this target group (GUID or name)")
COMPUTER = Param("computer", WSUS_COMPUTER, "Computer: TargetID, ComputerID or DNS name", "path", True)
UPDATE = Param("update", UPDATE_ID, "UpdateID of the update", "path", True)
RULE = Param("rule", WSUS_RULE, "Auto-approval rule name", "path", True)
EULA = Param("eula", UPDATE_ID, "EulaID, or the UpdateID of an update that names one", "path", True)
ALL = Param("all", {"type": "boolean"}, "Withdrawn approvals too")
NOT_FOUND = {404: "Error"}
REFUSED = {404: "Error", 409: "Error"}
_PRIORITY_KEY = "DownloadPriority"


def _whole(body: dict[str, Any], key: str, default: int | None, message: str, code: str) -> int | None:
    """A whole number (JSON ``2.0`` is one too, as the schema has it)."""
    value = body.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise DevupdateError(message, code=code)
    return value


def _bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise DevupdateError(f"{key} must be true or false", code="bad-body")
    return value


# -- groups --------------------------------------------------------------------------------------------

@route("GET", "/wsus/groups", role="operator", summary="Target groups, the tree depth-first from All Computers",
       responses={200: "WsusGroupList", **READ})
def list_wsus_groups() -> Response:
    return json_response(targeting.list_groups())


@route("POST", "/wsus/groups", role="admin", summary="Add a target group (under All Computers unless Parent)",
       body="WsusGroupNew", responses={201: "WsusGroup", **JSON_CHANGE, **REFUSED})
def add_wsus_group() -> Response:
    body = json_body()
    only_keys(body, "Name", "Parent")
    name = body_text(body, "Name", required=True, max_length=256)
    return json_response(targeting.add_group(name, parent=body_text(body, "Parent", max_length=258),
                                             actor=principal().actor), 201)


@route("POST", "/wsus/groups/{group}/rename", role="admin", summary="Rename a target group", params=(GROUP,),
       body="WsusGroupRename", responses={200: "WsusGroup", **JSON_CHANGE, **REFUSED})
def rename_wsus_group(group: str) -> Response:
    body = json_body()
    only_keys(body, "Name")
    return json_response(targeting.rename_group(group, body_text(body, "Name", required=True, max_length=256),
                                                actor=principal().actor))


@route("DELETE", "/wsus/groups/{group}", role="admin",
       summary="Remove a target group without subgroups (its approvals are withdrawn)", params=(GROUP,),
       responses={200: "WsusGroup", **JSON_CHANGE, **REFUSED})
def remove_wsus_group(group: str) -> Response:
    return json_response(targeting.remove_group(group, actor=principal().actor))


# -- computers -----------------------------------------------------------------------------------------

@route("GET", "/wsus/computers", role="operator", summary="Computers by TargetID",
       params=(GROUP_FILTER, *paging.PARAMS), responses={200: "WsusComputerPage", **READ, **NOT_FOUND})
def list_wsus_computers() -> Response:
    page = paging.page_request("wsus-computers", (paging.INT,))
    rows = targeting.list_computers(group=query_text("group", 258), limit=page.limit + 1,
                                    after=page.after[0] if page.after else None)
    return paging.respond(page, rows, lambda row: (row["TargetId"],))


@route("GET", "/wsus/computers/{computer}", role="operator",
       summary="One computer: its fields, groups and every group it belongs to", params=(COMPUTER,),
       responses={200: "WsusComputerDetail", **READ, **REFUSED})
def show_wsus_computer(computer: str) -> Response:
    return json_response(targeting.computer_dict(targeting.resolve_computer(computer), detail=True))


@route("PUT", "/wsus/computers/{computer}/groups", role="admin",
       summary="Assign a computer to target groups (server-side targeting; none: Unassigned Computers)",
       params=(COMPUTER,), body="WsusComputerGroups", responses={200: "WsusComputerDetail", **JSON_CHANGE, **REFUSED})
def assign_wsus_computer(computer: str) -> Response:
    body = json_body()
    only_keys(body, "Groups")
    groups = body.get("Groups")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise DevupdateError("Groups must be a list of group names or GUIDs", code="bad-body")
    return json_response(targeting.assign_computer(computer, groups, actor=principal().actor))


# -- approvals -----------------------------------------------------------------------------------------

@route("GET", "/wsus/approvals", role="operator", summary="Approvals (deployments) of every update",
       params=(GROUP_FILTER, ALL, *paging.PARAMS), responses={200: "WsusDeploymentPage", **READ, **NOT_FOUND})
def list_wsus_approvals() -> Response:
    page = paging.page_request("wsus-approvals", (paging.TEXT, paging.INT))
    after = (str(page.after[0]), int(page.after[1])) if page.after else None
    rows = targeting.list_deployments(group=query_text("group", 258), include_revoked=query_bool("all"),
                                      limit=page.limit + 1, after=after)
    return paging.respond(page, rows, lambda row: (row["UpdateID"], row["Id"]))


@route("GET", "/wsus/updates/{update}/approvals", role="operator", summary="The approvals of one update",
       params=(UPDATE, ALL), responses={200: "WsusDeploymentList", **READ})
def list_wsus_update_approvals(update: str) -> Response:
    return json_response(targeting.list_deployments(update, include_revoked=query_bool("all")))


@route("PUT", "/wsus/updates/{update}/approvals/{group}", role="admin",
       summary="Approve an update for a group (needs its EULA accepted; no Block on All Computers)",
       params=(UPDATE, GROUP), body="WsusApprovalNew", responses={200: "WsusApproval", **JSON_CHANGE, **REFUSED})
def approve_wsus_update(update: str, group: str) -> Response:
    body = json_body()
    only_keys(body, "Action", "Deadline", _PRIORITY_KEY)
    priority = _whole(body, _PRIORITY_KEY, 2, "DownloadPriority is 1 (low), 2 (normal) or 3 (high)", "bad-priority")
    deadline = body.get("Deadline")
    if deadline is not None and not isinstance(deadline, str):
        raise DevupdateError("Deadline must be an ISO 8601 time or null", code="bad-deadline")
    return json_response(targeting.approve(update, group, body_text(body, "Action", required=True, max_length=20),
                                           deadline=deadline, priority=priority or 2, actor=principal().actor))


@route("DELETE", "/wsus/updates/{update}/approvals/{group}", role="admin",
       summary="Withdraw the approval of an update for a group", params=(UPDATE, GROUP),
       responses={200: "WsusUnapproval", **JSON_CHANGE, **REFUSED})
def unapprove_wsus_update(update: str, group: str) -> Response:
    return json_response(targeting.unapprove(update, group, actor=principal().actor))


# -- EULAs ---------------------------------------------------------------------------------------------

@route("GET", "/wsus/eulas", role="operator",
       summary="Accepted EULAs, and updates auto-approval skipped for an EULA not yet accepted",
       responses={200: "WsusEulas", **READ})
def list_wsus_eulas() -> Response:
    return json_response({"Accepted": targeting.list_eulas(), "AwaitingAcceptance": autoapproval.awaiting_eula()})


@route("POST", "/wsus/eulas/{eula}/accept", role="admin", summary="Accept an EULA (by EulaID or by UpdateID)",
       params=(EULA,), responses={200: "WsusEula", **JSON_CHANGE, **REFUSED})
def accept_wsus_eula(eula: str) -> Response:
    return json_response(targeting.accept_eula(eula, actor=principal().actor))


# -- auto-approval -------------------------------------------------------------------------------------

@route("GET", "/wsus/auto-approval", role="operator", summary="The auto-approval rules",
       responses={200: "WsusAutoApprovalList", **READ})
def list_wsus_auto_approval() -> Response:
    return json_response(autoapproval.list_rules())


@route("PUT", "/wsus/auto-approval/{rule}", role="admin",
       summary="Change an auto-approval rule: DeferDays (0–30), AcceptEulas, Enabled, Paused", params=(RULE,),
       body="WsusAutoApprovalSettings", responses={200: "WsusAutoApprovalChange", **JSON_CHANGE, **REFUSED})
def set_wsus_auto_approval(rule: str) -> Response:
    body = json_body()
    only_keys(body, "DeferDays", "AcceptEulas", "Enabled", "Paused")
    defer = _whole(body, "DeferDays", None, "DeferDays is a whole number of days, 0 to 30", "bad-defer-days")
    return json_response(autoapproval.set_rule(rule, actor=principal().actor, defer_days=defer,
                                               accept_eulas=_bool(body, "AcceptEulas"),
                                               enabled=_bool(body, "Enabled"), paused=_bool(body, "Paused")))


@route("POST", "/wsus/auto-approval/{rule}/pause", role="admin", summary="Pause an auto-approval rule",
       params=(RULE,), responses={200: "WsusAutoApprovalChange", **JSON_CHANGE, **NOT_FOUND})
def pause_wsus_auto_approval(rule: str) -> Response:
    return json_response(autoapproval.set_rule(rule, actor=principal().actor, paused=True))


@route("POST", "/wsus/auto-approval/{rule}/resume", role="admin",
       summary="Resume a paused auto-approval rule (what came due is approved at its next run)", params=(RULE,),
       responses={200: "WsusAutoApprovalChange", **JSON_CHANGE, **NOT_FOUND})
def resume_wsus_auto_approval(rule: str) -> Response:
    return json_response(autoapproval.set_rule(rule, actor=principal().actor, paused=False))


# -- targeting mode ------------------------------------------------------------------------------------

@route("GET", "/wsus/targeting", role="operator", summary="The targeting mode: server (default) or client",
       responses={200: "WsusTargeting", **READ})
def show_wsus_targeting() -> Response:
    return json_response({"Mode": targeting.targeting_mode()})


@route("PUT", "/wsus/targeting", role="admin", summary="Set the targeting mode", body="WsusTargetingMode",
       responses={200: "WsusTargetingChange", **JSON_CHANGE})
def set_wsus_targeting() -> Response:
    body = json_body()
    only_keys(body, "Mode")
    return json_response(targeting.set_targeting_mode(body_text(body, "Mode", required=True, max_length=10) or "",
                                                      actor=principal().actor))
