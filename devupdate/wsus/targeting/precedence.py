"""The effective deployment of each update for one computer ([wsus] §1d W7, §6.4). Pure: plain
values in, plain values out.

A computer belongs to its assigned groups and all their ancestors. Its *distance* to a group is the
number of steps up the tree from the nearest assigned group (0 for an assigned group itself). For
each UpdateID the deployment of the **nearest** group wins; on a tie (several groups at the same
distance, as client-side targeting gives) ``Block`` > ``Install`` > ``Uninstall`` >
``OptionalInstall``, then the earliest deadline (a deadline beats none), then the lowest deployment
id, so the answer never depends on the order of the input. Revoked (unapproved) deployments never
count. An update with no deployment in any of the groups has no effective deployment
(``PreDeploymentCheck`` on the wire).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: tie order: lower wins
ACTION_RANK = {"Block": 0, "Install": 1, "Uninstall": 2, "OptionalInstall": 3}
#: OptionalInstall is sent as such only to Windows 10 1903 (build 18362) and later (§6.4, note 22)
OPTIONAL_INSTALL_MIN_BUILD = 18362


@dataclass(frozen=True)
class Approval:
    """One explicit deployment, as the scan reads it."""

    id: int
    update_id: str
    group_id: str
    action: str
    deadline: dt.datetime | None = None
    download_priority: int = 2
    changed_at: dt.datetime | None = None
    change_seq: int = 0
    revoked: bool = False


def group_distances(assigned: Iterable[str], parents: Mapping[str, str | None]) -> dict[str, int]:
    """Each group the computer belongs to → its distance (nearest assigned group first). ``parents``:
    group → parent (None for the root). A group reached along several paths keeps its shortest
    distance; a cycle or an unknown group ends the walk instead of looping."""
    distances: dict[str, int] = {}
    for start in assigned:
        group: str | None = start
        steps = 0
        seen: set[str] = set()
        while group is not None and group not in seen:
            seen.add(group)
            if distances.get(group, steps + 1) > steps:
                distances[group] = steps
            group = parents.get(group)
            steps += 1
    return distances


def _key(approval: Approval, distance: int) -> tuple[int, int, int, dt.datetime, int]:
    rank = ACTION_RANK.get(approval.action, len(ACTION_RANK))
    deadline = approval.deadline
    return (distance, rank, 0 if deadline is not None else 1, deadline or dt.datetime.min, approval.id)


def effective(approvals: Iterable[Approval], distances: Mapping[str, int]) -> dict[str, Approval]:
    """UpdateID → the winning deployment among ``approvals`` for a computer in the groups of
    ``distances`` (deployments of other groups are ignored)."""
    best: dict[str, tuple[tuple[int, int, int, dt.datetime, int], Approval]] = {}
    for approval in approvals:
        if approval.revoked or approval.action not in ACTION_RANK:
            continue
        distance = distances.get(approval.group_id)
        if distance is None:
            continue
        key = _key(approval, distance)
        held = best.get(approval.update_id)
        if held is None or key < held[0]:
            best[approval.update_id] = (key, approval)
    return {update_id: approval for update_id, (_, approval) in best.items()}


@dataclass(frozen=True)
class WireAction:
    """What a ``Deployment`` element says for an effective deployment (§6.4)."""

    action: str
    is_assigned: bool


def wire_action(action: str | None, os_build: int | None) -> WireAction:
    """``None`` (no deployment) and ``Block`` → ``PreDeploymentCheck``; ``OptionalInstall`` only to
    builds ≥ 18362, others get ``Install`` not assigned."""
    if action is None or action == "Block":
        return WireAction("PreDeploymentCheck", True)
    if action == "OptionalInstall":
        if os_build is not None and os_build >= OPTIONAL_INSTALL_MIN_BUILD:
            return WireAction("OptionalInstall", False)
        return WireAction("Install", False)
    return WireAction(action, True)
