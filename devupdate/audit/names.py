"""Targets by name: an audit row names what it changed the way the console shows it — a rule as
"Polycom CX600 ENU", a test device with its MAC or serial, a WSUS update by title and KB, a target
group by its path, a computer by its DNS name — not by a GUID or an internal id.

Names are looked up when the trail is read, one query per kind of target per page (never per row);
a target that is gone keeps the name its own row recorded (``Detail.Name``, or the ``Before`` of a
removal), else its raw target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import peewee

from devupdate.admin.console.auth import AdminUser
from devupdate.admin.tokens import ApiToken
from devupdate.rules.models import Rule, TestDevice
from devupdate.rules.preview import rule_name
from devupdate.wsus.catalog.models import CatalogFile, Update
from devupdate.wsus.downstream.models import SyncRun
from devupdate.wsus.targeting.models import Computer, TargetGroup

Event = dict[str, Any]
# the WSUS actions whose target is an update id
_UPDATE_ACTIONS = ("wsus.decline", "wsus.undecline", "wsus.delete", "wsus.restore", "wsus.product.select",
                   "wsus.product.unselect", "wsus.needed.add", "wsus.needed.remove", "wsus.eula.accept")
_FIXED = {"files.cleanup": "unreferenced image files", "logs.cleanup": "device logs and request audit logs"}


def _dicts(event: Event) -> Iterable[dict[str, Any]]:
    for key in ("Detail", "Before", "After"):
        if isinstance(event.get(key), dict):
            yield event[key]


def _recorded(event: Event, key: str) -> str | None:
    """What the row itself recorded under ``key`` (a removed target's last name)."""
    for part in _dicts(event):
        if isinstance(part.get(key), str) and part[key]:
            return part[key]
    return None


def _scope_name(scope: str) -> str:
    return f"site {scope[5:]}" if scope.startswith("site:") else scope


def _device_name(name: str, scope: str, kind: str, identifier: str) -> str:
    shown = "MAC" if kind == "MACAddress" else "serial" if kind == "SerialNumber" else kind
    return f"test device {name} ({shown} {identifier}), {_scope_name(scope)}"


def _update_name(title: str, kb: str | None) -> str:
    return f"{title} (KB{kb})" if kb else title


def _split_device(target: str) -> tuple[str, str] | None:
    scope, slash, name = target.partition("/")
    return (scope, name) if slash and name else None


def _split_approval(target: str) -> tuple[str, str] | None:
    update_id, at, group = target.partition(" @ ")
    return (update_id, group) if at else None


class _Lookups:
    """The names of one page's targets: each kind asked for once, with every key the page needs."""

    def __init__(self, events: list[Event]):
        self.events = events

    def _keys(self, wanted: Callable[[Event], Any]) -> list[Any]:
        return sorted({key for event in self.events if (key := wanted(event)) is not None})

    def rules(self) -> dict[str, str]:
        ids = self._keys(lambda e: e["Target"] if _rule_target(e) else None)
        return {rule.id: rule_name(rule) for rule in Rule.select().where(Rule.id.in_(ids))} if ids else {}

    def test_devices(self) -> dict[tuple[str, str], str]:
        pairs = self._keys(lambda e: _split_device(e["Target"]) if e["Action"].startswith("test-device.") else None)
        if not pairs:
            return {}
        query = TestDevice.select().where(TestDevice.name.in_(sorted({name for _, name in pairs})))
        wanted = set(pairs)
        return {(d.scope, d.name): _device_name(d.name, d.scope, d.identifier_type, d.identifier)
                for d in query if (d.scope, d.name) in wanted}

    def admins(self) -> dict[str, str]:
        names = self._keys(lambda e: e["Target"][6:] if e["Target"].startswith("admin:")
                           and (e["Action"].startswith("admin.") or e["Action"].startswith("console.")) else None)
        if not names:
            return {}
        return {user.name: f"admin account {user.name} ({user.role})"
                for user in AdminUser.select().where(AdminUser.name.in_(names))}

    def tokens(self) -> dict[str, str]:
        names = self._keys(lambda e: e["Target"] if e["Action"].startswith("token.") else None)
        if not names:
            return {}
        return {token.name: f"token {token.name} ({token.role}{', revoked' if token.revoked_at else ''})"
                for token in ApiToken.select().where(ApiToken.name.in_(names))}

    def updates(self) -> dict[str, str]:
        def update_of(event: Event) -> str | None:
            if event["Action"] in _UPDATE_ACTIONS:
                return event["Target"]
            if event["Action"] in ("wsus.approve", "wsus.unapprove") and (pair := _split_approval(event["Target"])):
                return pair[0]
            return None
        ids = self._keys(update_of)
        if not ids:
            return {}
        query = Update.select(Update.update_id, Update.title, Update.kb_article).where(Update.update_id.in_(ids))
        return {row.update_id: _update_name(row.title, row.kb_article) for row in query if row.title}

    def group_paths(self) -> tuple[dict[str, str], dict[str, str]]:
        """Paths ("All Computers / Lab / Phones") by group id and by name (approvals record the name).
        The groups are a short tree: one query reads it whole, only when the page names a group."""
        if not any(e["Action"].startswith("wsus.group.") or e["Action"] in ("wsus.approve", "wsus.unapprove")
                   for e in self.events):
            return {}, {}
        groups = {g.id: g for g in TargetGroup.select(TargetGroup.id, TargetGroup.name, TargetGroup.parent)}
        by_id: dict[str, str] = {}
        for gid, group in groups.items():
            path, seen, at = [group.name], {gid}, group.parent_id
            while at in groups and at not in seen:
                seen.add(at)
                path.append(groups[at].name)
                at = groups[at].parent_id
            by_id[gid] = " / ".join(reversed(path))
        return by_id, {groups[gid].name.casefold(): path for gid, path in by_id.items()}

    def computers(self) -> dict[int, str]:
        ids = self._keys(lambda e: int(e["Target"]) if e["Action"].startswith("wsus.computer.")
                         and e["Target"].isdigit() and len(e["Target"]) < 12 else None)
        if not ids:
            return {}
        query = Computer.select(Computer.id, Computer.dns_name, Computer.computer_id).where(Computer.id.in_(ids))
        return {row.id: f"computer {row.dns_name or row.computer_id}" for row in query}

    def sync_runs(self) -> dict[int, str]:
        ids = self._keys(lambda e: e["Detail"]["RunId"] if e["Action"] == "wsus.sync" and isinstance(e["Detail"], dict)
                         and isinstance(e["Detail"].get("RunId"), int) else None)
        if not ids:
            return {}
        query = SyncRun.select(SyncRun.id, SyncRun.upstream, SyncRun.mode, SyncRun.trigger).where(SyncRun.id.in_(ids))
        return {run.id: f"sync run {run.id} ({run.mode}, {run.trigger}) from {run.upstream}" for run in query}

    def files(self) -> dict[str, str]:
        sha1s = self._keys(lambda e: e["Target"].lower() if e["Action"] == "wsus.sync.file.retry" else None)
        if not sha1s:
            return {}
        query = CatalogFile.select(CatalogFile.sha1, CatalogFile.file_name).where(CatalogFile.sha1.in_(sha1s))
        return {row.sha1: f"file {row.file_name}" for row in query}


def _rule_target(event: Event) -> bool:
    return event["Action"].startswith("rule.") and event["Outcome"] == "ok"


def _configuration(target: str) -> str:
    scope, _, key = target.partition("/")
    return f"{_scope_name(scope)} configuration" + (f": {key}" if key else "")


def name_targets(events: list[Event]) -> list[Event]:
    """Set ``TargetName`` of each event: a readable name for every kind of target (see the module
    docstring), else the target itself."""
    look = _Lookups(events)
    rules, devices, admins, tokens = look.rules(), look.test_devices(), look.admins(), look.tokens()
    updates, (paths, paths_by_name) = look.updates(), look.group_paths()
    computers, runs, files = look.computers(), look.sync_runs(), look.files()

    def name(event: Event) -> str | None:
        action, target = event["Action"], event["Target"]
        if _rule_target(event):
            return rules.get(target) or _recorded(event, "Name")
        if action.startswith("test-device."):
            pair = _split_device(target)
            if pair is None:
                return None
            if pair in devices:
                return devices[pair]
            for part in _dicts(event):
                if isinstance(part.get("Identifier"), str):
                    return _device_name(pair[1], pair[0], str(part.get("IdentifierType")), part["Identifier"])
            return f"test device {pair[1]}, {_scope_name(pair[0])}"
        if action.startswith("config."):
            return _configuration(target)
        if target.startswith("admin:") and (action.startswith("admin.") or action.startswith("console.")):
            return admins.get(target[6:]) or f"admin account {target[6:]}"
        if action.startswith("token."):
            return tokens.get(target) or f"token {target}"
        if action.startswith("user.") and target.startswith("user:"):
            return f"external user {target[5:]}"
        if action in _UPDATE_ACTIONS:
            return updates.get(target)
        if action in ("wsus.approve", "wsus.unapprove") and (pair := _split_approval(target)):
            update = updates.get(pair[0], pair[0])
            return f"{update} @ {paths_by_name.get(pair[1].casefold(), pair[1])}"
        if action.startswith("wsus.group."):
            if target in paths:
                return f"group {paths[target]}"
            recorded = _recorded(event, "Name")
            return f"group {recorded}" if recorded else None
        if action.startswith("wsus.computer.") and target.isdigit() and len(target) < 12:
            return computers.get(int(target))
        if action == "wsus.sync" and isinstance(event["Detail"], dict):
            run = event["Detail"].get("RunId")
            return runs.get(run) if isinstance(run, int) else None
        if action == "wsus.sync.file.retry":
            return files.get(target.lower())
        if action.startswith("wsus.auto-approval.") and target.startswith("rule:"):
            return f"auto-approval rule {target[5:]}"
        return _FIXED.get(action)

    for event in events:
        detail = event["Detail"] if isinstance(event["Detail"], dict) else {}
        recorded = detail.get("Name") if isinstance(detail.get("Name"), str) else None
        event["TargetName"] = name(event) or recorded or event["Target"]
    return events


def rules_named(text: str, limit: int = 500) -> list[str]:
    """Ids of the rules whose name contains ``text`` (case-insensitive): a target search by name."""
    name = peewee.fn.LOWER(Rule.brand.concat(" ").concat(Rule.model).concat(" ").concat(Rule.locale))
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = Rule.select(Rule.id).where(peewee.NodeList((name, peewee.SQL("LIKE"), pattern,
                                                        peewee.SQL("ESCAPE '\\'")))).limit(limit)
    return [rule.id for rule in query]
