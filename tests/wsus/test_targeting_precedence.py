"""Nearest-group precedence and the tie rules ([wsus] §1d W7), and the wire action of §6.4: the
pure function the scan uses, with the tree shapes that occur."""

from __future__ import annotations

import datetime as dt

import pytest

from devupdate.wsus.targeting.precedence import Approval, effective, group_distances, wire_action

ROOT, UNASSIGNED, TEST, SITE, FLOOR, ROOM, OTHER = "all", "unassigned", "test", "site", "floor", "room", "other"
#: All Computers ─┬ Unassigned
#:                ├ Test
#:                ├ Site ─ Floor ─ Room
#:                └ Other
PARENTS: dict[str, str | None] = {ROOT: None, UNASSIGNED: ROOT, TEST: ROOT, SITE: ROOT, FLOOR: SITE, ROOM: FLOOR,
                                  OTHER: ROOT}
U1, U2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
T1 = dt.datetime(2026, 12, 1, 8, 0)
T2 = dt.datetime(2026, 12, 2, 8, 0)


def dep(id_: int, group: str, action: str, deadline: dt.datetime | None = None, update: str = U1,
        revoked: bool = False) -> Approval:
    return Approval(id=id_, update_id=update, group_id=group, action=action, deadline=deadline, revoked=revoked)


def test_distances_follow_the_tree_to_the_root():
    assert group_distances([ROOM], PARENTS) == {ROOM: 0, FLOOR: 1, SITE: 2, ROOT: 3}
    assert group_distances([UNASSIGNED], PARENTS) == {UNASSIGNED: 0, ROOT: 1}


def test_distances_of_several_groups_keep_the_shortest_path():
    # Room (depth 3) and Site (depth 1): Site is assigned directly, so its distance is 0, not 2
    assert group_distances([ROOM, SITE], PARENTS) == {ROOM: 0, FLOOR: 1, SITE: 0, ROOT: 1}
    assert group_distances([SITE, ROOM], PARENTS) == {ROOM: 0, FLOOR: 1, SITE: 0, ROOT: 1}
    assert group_distances([TEST, OTHER], PARENTS) == {TEST: 0, OTHER: 0, ROOT: 1}


def test_distances_survive_a_cycle_and_unknown_groups():
    assert group_distances(["a"], {"a": "b", "b": "a"}) == {"a": 0, "b": 1}
    assert group_distances(["ghost"], PARENTS) == {"ghost": 0}


def test_the_nearest_group_wins_whatever_the_action():
    distances = group_distances([ROOM], PARENTS)
    # All Computers says Install, Site says Block, Floor says Uninstall: Floor is nearest
    rows = [dep(1, ROOT, "Install"), dep(2, SITE, "Block"), dep(3, FLOOR, "Uninstall")]
    assert effective(rows, distances)[U1].id == 3
    # the room's own OptionalInstall beats the floor's Uninstall although it ranks last in a tie
    assert effective([*rows, dep(4, ROOM, "OptionalInstall")], distances)[U1].id == 4


def test_all_computers_applies_when_nothing_nearer_says_anything():
    assert effective([dep(1, ROOT, "Install")], group_distances([ROOM], PARENTS))[U1].id == 1
    assert effective([dep(1, ROOT, "Install")], group_distances([UNASSIGNED], PARENTS))[U1].id == 1


def test_deployments_of_groups_the_computer_is_not_in_do_not_count():
    distances = group_distances([TEST], PARENTS)
    assert effective([dep(1, OTHER, "Install"), dep(2, ROOM, "Block")], distances) == {}
    assert effective([dep(1, OTHER, "Install"), dep(2, ROOT, "Uninstall")], distances)[U1].id == 2


@pytest.mark.parametrize("winner,loser", [
    ("Block", "Install"), ("Block", "Uninstall"), ("Block", "OptionalInstall"),
    ("Install", "Uninstall"), ("Install", "OptionalInstall"), ("Uninstall", "OptionalInstall")])
def test_a_tie_between_groups_at_the_same_distance_goes_by_action(winner, loser):
    distances = group_distances([TEST, OTHER], PARENTS)
    for first, second in ((TEST, OTHER), (OTHER, TEST)):
        rows = [dep(1, first, loser), dep(2, second, winner)]
        assert effective(rows, distances)[U1].action == winner
        assert effective(list(reversed(rows)), distances)[U1].action == winner


def test_a_tie_in_action_goes_to_the_earliest_deadline_and_a_deadline_beats_none():
    distances = group_distances([TEST, OTHER], PARENTS)
    rows = [dep(1, TEST, "Install", T2), dep(2, OTHER, "Install", T1)]
    assert effective(rows, distances)[U1].id == 2
    assert effective(list(reversed(rows)), distances)[U1].id == 2
    assert effective([dep(1, TEST, "Install"), dep(2, OTHER, "Install", T2)], distances)[U1].id == 2
    # the same everything: the lowest id, whatever the order
    same = [dep(7, TEST, "Install", T1), dep(5, OTHER, "Install", T1)]
    assert effective(same, distances)[U1].id == 5 and effective(same[::-1], distances)[U1].id == 5


def test_the_tie_rules_apply_only_at_the_nearest_distance():
    # Test (0) says OptionalInstall; All Computers (1) says Block-like Install: distance first
    distances = group_distances([TEST, ROOM], PARENTS)
    rows = [dep(1, TEST, "OptionalInstall"), dep(2, SITE, "Block"), dep(3, ROOT, "Install", T1)]
    assert effective(rows, distances)[U1].id == 1


def test_revoked_deployments_and_unknown_actions_never_count():
    distances = group_distances([ROOM], PARENTS)
    rows = [dep(1, ROOM, "Block", revoked=True), dep(2, FLOOR, "Evaluate"), dep(3, ROOT, "Install")]
    assert effective(rows, distances)[U1].id == 3
    assert effective([dep(1, ROOM, "Install", revoked=True)], distances) == {}


def test_each_update_is_decided_on_its_own():
    distances = group_distances([ROOM], PARENTS)
    rows = [dep(1, ROOT, "Install", update=U1), dep(2, ROOM, "Uninstall", update=U2),
            dep(3, ROOT, "Install", update=U2)]
    result = effective(rows, distances)
    assert {u: a.id for u, a in result.items()} == {U1: 1, U2: 2}


@pytest.mark.parametrize("action,build,wire,assigned", [
    (None, 19045, "PreDeploymentCheck", True), ("Block", 19045, "PreDeploymentCheck", True),
    ("Install", None, "Install", True), ("Uninstall", 10240, "Uninstall", True),
    ("OptionalInstall", 18362, "OptionalInstall", False), ("OptionalInstall", 26100, "OptionalInstall", False),
    ("OptionalInstall", 18361, "Install", False), ("OptionalInstall", None, "Install", False)])
def test_wire_action(action, build, wire, assigned):
    result = wire_action(action, build)
    assert (result.action, result.is_assigned) == (wire, assigned)
