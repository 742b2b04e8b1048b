"""Target groups, computers, deployments and EULA acceptance ([wsus] §1d W6, W7): one implementation
for the CLI, the JSON API, the console and the SOAP operations.

Every write that changes what a client is offered takes the catalog's next ``change_seq``
(:func:`devupdate.wsus.catalog.store.next_seq`) in its transaction and stamps the rows it changed, so
a scan's high-water mark covers deployments and memberships as it covers revisions. Every approval
and unapproval goes to the admin audit trail in the same transaction (refusals after it, as the rule
lifecycle does).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import iso_utc, locked, tuples, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.images import PRODUCT_ID as PHONE_PRODUCT_ID
from devupdate.wsus.catalog.models import Revision, Update, UpdateCategory
from devupdate.wsus.mode import refuse_if_replica
from devupdate.wsus.targeting import precedence
from devupdate.wsus.targeting.models import (
    ACTIONS,
    ALL_COMPUTERS_ID,
    BUILTIN_GROUPS,
    CLIENT,
    DERIVED_ID_BASE,
    MODES,
    SERVER,
    TEST_ID,
    UNASSIGNED_ID,
    AutoApprovalRule,
    Computer,
    ComputerGroup,
    Deployment,
    DerivedDeployment,
    EulaAcceptance,
    TargetGroup,
    TargetingConfig,
)

MAX_NAME = 256
MAX_GROUPS = 1000  # groups in the tree (a bound for the tree walk, the API and the console)
MAX_DEPTH = 16
_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?\Z")
_EULA = re.compile(r'\bEulaID="\{?([0-9a-fA-F-]{36})\}?"')
#: what the CLI and the API accept for --action, and the stored action
ACTION_NAMES = {"install": "Install", "uninstall": "Uninstall", "optional": "OptionalInstall",
                "optionalinstall": "OptionalInstall", "block": "Block"}
#: download priority by name (the CLI's --priority, the console's select) → the stored DownloadPriority
PRIORITY_NAMES = {"low": 1, "normal": 2, "high": 3}
DEFINITION_UPDATES = "e0789628-ce08-4437-be74-2495b842f43b"  # Microsoft's "Definition Updates"
#: the default auto-approval rules (W8): name, group, deferral days, classification
DEFAULT_RULES = (("Test", TEST_ID, None, None), ("All Computers", ALL_COMPUTERS_ID, 7, None),
                 ("Definition Updates", ALL_COMPUTERS_ID, None, DEFINITION_UPDATES))
MAX_DEFER_DAYS = 30


def guid(value: str, what: str) -> str:
    match = _GUID.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise DevupdateError(f"{what} {str(value)[:80]!r} is not a GUID (like {ALL_COMPUTERS_ID})", code="bad-guid")
    return match.group(1).lower()


# -- built-in rows -------------------------------------------------------------------------------------

def seed() -> None:
    """The built-in groups, the targeting mode and the default auto-approval rules (idempotent; run at
    schema creation and by the migration that adds the tables)."""
    with write_transaction():
        seq = store.next_seq()
        for group_id, name, parent in BUILTIN_GROUPS:
            TargetGroup.insert(id=group_id, name=name, name_key=name.casefold(), parent=parent, builtin=True,
                               created_by="devupdate", change_seq=seq).on_conflict_ignore().execute()
        TargetingConfig.insert(id=1, mode=SERVER, changed_by="devupdate").on_conflict_ignore().execute()
        for name, group_id, defer, classification in DEFAULT_RULES:
            AutoApprovalRule.insert(name=name, group=group_id, defer_days=defer, classification_id=classification,
                                    since_seq=seq, changed_by="devupdate").on_conflict_ignore().execute()


# -- targeting mode ------------------------------------------------------------------------------------

def targeting_mode() -> str:
    mode = TargetingConfig.select(TargetingConfig.mode).where(TargetingConfig.id == 1).scalar()
    return str(mode or SERVER)


def set_targeting_mode(mode: str, *, actor: str) -> dict[str, Any]:
    mode = (mode or "").strip().lower()
    if mode not in MODES:
        raise DevupdateError(f"targeting mode {mode[:40]!r} is not one of {', '.join(MODES)}", code="bad-mode")
    with write_transaction():
        before = targeting_mode()
        TargetingConfig.insert(id=1, mode=mode, changed_by=actor).on_conflict(
            conflict_target=[TargetingConfig.id],
            update={TargetingConfig.mode: mode, TargetingConfig.changed_by: actor,
                    TargetingConfig.changed_at: utcnow()}).execute()
        if before != mode:
            # every computer's effective groups may have changed
            Computer.update(membership_seq=store.next_seq()).execute()
            record(actor, "wsus.targeting-mode", "targeting", before={"Mode": before}, after={"Mode": mode})
    return {"Mode": mode, "Changed": before != mode}


# -- groups --------------------------------------------------------------------------------------------

def _clean_name(name: str) -> str:
    if not isinstance(name, str):
        raise DevupdateError("a group name is text", code="bad-group-name")
    text = name.strip()
    if not text:
        raise DevupdateError("a group name cannot be empty", code="bad-group-name")
    if len(text) > MAX_NAME:
        raise DevupdateError(f"a group name has at most {MAX_NAME} characters (this one has {len(text)})",
                             code="bad-group-name")
    if ";" in text or any(unicodedata.category(ch) == "Cc" for ch in text):
        raise DevupdateError("a group name cannot contain ';' (it separates client-side targeting names) "
                             "or control characters", code="bad-group-name")
    return text


def resolve_group(ref: str, *, lock: bool = False) -> TargetGroup:
    """A group by its GUID or its name (case-insensitive)."""
    if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_NAME + 2:
        raise DevupdateError("give a group by name or GUID (see 'devupdate wsus groups list')", code="bad-group")
    text = ref.strip()
    match = _GUID.match(text)
    query = TargetGroup.select()
    query = query.where((TargetGroup.id == match.group(1).lower()) | (TargetGroup.name_key == text.casefold())) \
        if match else query.where(TargetGroup.name_key == text.casefold())
    found = (locked(query) if lock else query).first()
    if found is None:
        raise NotFound(f"no target group {text[:80]!r}; list them with 'devupdate wsus groups list'",
                       code="no-such-group")
    return found


def _parents() -> dict[str, str | None]:
    return {gid: parent for gid, parent in tuples(TargetGroup.select(TargetGroup.id, TargetGroup.parent))}


def group_parents() -> dict[str, str | None]:
    """Group → parent (None for the root): the tree that :func:`precedence.group_distances` walks."""
    return _parents()


def group_dict(group: TargetGroup, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    return {"Id": group.id, "Name": group.name, "ParentId": group.parent_id, "BuiltIn": group.builtin,
            "CreatedTime": iso_utc(group.created_at), "CreatedBy": group.created_by,
            **({"Computers": counts.get(group.id, 0)} if counts is not None else {})}


def _member_counts() -> dict[str, int]:
    """Computers directly in each group under the current targeting mode (Unassigned: those with none)."""
    source = targeting_mode()
    counts: dict[str, int] = {}
    from peewee import fn
    for gid, count in tuples(ComputerGroup.select(ComputerGroup.group, fn.COUNT(ComputerGroup.computer))
                             .where(ComputerGroup.source == source).group_by(ComputerGroup.group)):
        counts[gid] = count
    assigned = ComputerGroup.select(ComputerGroup.computer).where(ComputerGroup.source == source)
    counts[UNASSIGNED_ID] = counts.get(UNASSIGNED_ID, 0) + Computer.select().where(Computer.id.not_in(assigned)).count()
    return counts


def list_groups() -> list[dict[str, Any]]:
    """Every group, depth-first from ``All Computers`` (children by name), with ``Depth``, ``Path`` and
    the computers directly in it."""
    groups = list(TargetGroup.select())
    counts = _member_counts()
    children: dict[str | None, list[TargetGroup]] = {}
    for group in groups:
        children.setdefault(group.parent_id, []).append(group)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int, path: list[str]) -> None:
        for group in sorted(children.get(parent, []), key=lambda g: g.name_key):
            here = [*path, group.name]
            out.append({**group_dict(group, counts), "Depth": depth, "Path": " / ".join(here)})
            if depth < MAX_DEPTH:
                walk(group.id, depth + 1, here)
    walk(None, 0, [])
    return out


def add_group(name: str, *, parent: str | None = None, actor: str) -> dict[str, Any]:
    try:
        text = _clean_name(name)
        with write_transaction():
            store.lock_sequence()  # concurrent adds of one name: the second sees the first's row
            under = resolve_group(parent or ALL_COMPUTERS_ID, lock=True)
            if under.id == UNASSIGNED_ID:
                raise Conflict("'Unassigned Computers' holds the computers of no group and has no subgroups; "
                               "add the group under 'All Computers' or another group", code="bad-parent")
            depth, up = 1, under.parent_id
            parents = _parents()
            while up is not None:
                depth, up = depth + 1, parents.get(up)
            if depth >= MAX_DEPTH:
                raise Conflict(f"groups nest at most {MAX_DEPTH} deep", code="too-deep")
            if TargetGroup.select().count() >= MAX_GROUPS:
                raise Conflict(f"there are already {MAX_GROUPS} target groups; remove unused ones first",
                               code="too-many-groups")
            if TargetGroup.select().where(TargetGroup.name_key == text.casefold()).exists():
                raise Conflict(f"a target group named {text!r} exists already (names are unique, any case)",
                               code="group-exists")
            group = TargetGroup.create(id=str(uuid.uuid4()), name=text, name_key=text.casefold(), parent=under.id,
                                       created_by=actor, change_seq=store.next_seq())
            result = group_dict(group)
            record(actor, "wsus.group.add", group.id, after=result)
    except DevupdateError as refusal:
        _refused(actor, "wsus.group.add", str(name)[:MAX_NAME], refusal)
        raise
    return result


def rename_group(ref: str, new_name: str, *, actor: str) -> dict[str, Any]:
    try:
        text = _clean_name(new_name)
        with write_transaction():
            store.lock_sequence()
            group = resolve_group(ref, lock=True)
            if group.builtin:
                raise Conflict(f"{group.name!r} is built in and keeps its name", code="builtin-group")
            other = TargetGroup.select().where(TargetGroup.name_key == text.casefold(), TargetGroup.id != group.id)
            if other.exists():
                raise Conflict(f"a target group named {text!r} exists already (names are unique, any case)",
                               code="group-exists")
            before = group_dict(group)
            TargetGroup.update(name=text, name_key=text.casefold(), change_seq=store.next_seq()).where(
                TargetGroup.id == group.id).execute()
            after = group_dict(TargetGroup.get_by_id(group.id))
            record(actor, "wsus.group.rename", group.id, before=before, after=after)
    except DevupdateError as refusal:
        _refused(actor, "wsus.group.rename", str(ref)[:MAX_NAME], refusal)
        raise
    return after


def remove_group(ref: str, *, actor: str) -> dict[str, Any]:
    """Remove an empty group: no subgroups; its deployments are revoked and its computers' assignments
    to it dropped (they fall back to their other groups or 'Unassigned Computers')."""
    try:
        with write_transaction():
            group = resolve_group(ref, lock=True)
            if group.builtin:
                raise Conflict(f"{group.name!r} is built in and cannot be removed", code="builtin-group")
            if TargetGroup.select().where(TargetGroup.parent == group.id).exists():
                raise Conflict(f"{group.name!r} has subgroups; remove or move them first", code="group-has-children")
            if AutoApprovalRule.select().where(AutoApprovalRule.group == group.id).exists():
                raise Conflict(f"an auto-approval rule targets {group.name!r}", code="group-in-use")
            before = group_dict(group)
            seq = store.next_seq()
            members = [row[0] for row in tuples(ComputerGroup.select(ComputerGroup.computer)
                                                .where(ComputerGroup.group == group.id))]
            if members:
                Computer.update(membership_seq=seq).where(Computer.id.in_(members)).execute()
            live = Deployment.select().where(Deployment.group == group.id, ~Deployment.revoked).count()
            ComputerGroup.delete().where(ComputerGroup.group == group.id).execute()
            Deployment.delete().where(Deployment.group == group.id).execute()
            group.delete_instance()
            record(actor, "wsus.group.remove", group.id, before=before,
                   detail={"Computers": len(members), "Deployments": live})
    except DevupdateError as refusal:
        _refused(actor, "wsus.group.remove", str(ref)[:MAX_NAME], refusal)
        raise
    return before


def _refused(actor: str, action: str, target: str, refusal: DevupdateError) -> None:
    with write_transaction():
        record(actor, action, target, outcome="refused", detail=refusal.as_dict())


# -- computers -----------------------------------------------------------------------------------------

#: computerInfo element → column (§3.4); strings are cut to 256 characters
_INFO_TEXT = {"DnsName": "dns_name", "OSLocale": "os_locale", "OSDescription": "os_description",
              "ComputerManufacturer": "manufacturer", "ComputerModel": "model", "BiosName": "bios_name",
              "BiosVersion": "bios_version", "BiosReleaseDate": "bios_release_date",
              "ProcessorArchitecture": "processor_architecture", "ClientVersion": "client_version",
              "OEM": "oem", "DeviceType": "device_type", "FirmwareVersion": "firmware_version",
              "MobileOperator": "mobile_operator"}
_INFO_INT = {"OSMajorVersion": "os_major", "OSMinorVersion": "os_minor", "OSBuildNumber": "os_build",
             "OSRevisionNumber": "os_revision", "OSServicePackMajorNumber": "os_sp_major",
             "OSServicePackMinorNumber": "os_sp_minor", "SuiteMask": "suite_mask",
             "OldProductType": "old_product_type", "NewProductType": "new_product_type",
             "SystemMetrics": "system_metrics"}


def _cut(value: object) -> str:
    return str(value)[:256]


def _int(value: object) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None


def get_or_create_computer(computer_id: str, *, protocol_version: str | None = None) -> Computer:
    """The computer with this ComputerID, created (unassigned, not registered) on first sight."""
    key = _cut(computer_id)
    found = Computer.select().where(Computer.computer_id == key).first()
    if found is not None:
        return found
    with write_transaction():
        Computer.insert(computer_id=key, protocol_version=protocol_version and _cut(protocol_version)[:32],
                        membership_seq=store.next_seq()).on_conflict_ignore().execute()
    return Computer.get(Computer.computer_id == key)


def register_computer(computer_id: str, info: Mapping[str, object], *,
                      protocol_version: str | None = None) -> Computer:
    """RegisterComputer (§3.4): store ``computerInfo`` (names as in the WSDL; strings cut to 256, numbers
    out of range dropped) and mark the computer registered."""
    computer = get_or_create_computer(computer_id, protocol_version=protocol_version)
    fields: dict[str, Any] = {"registered": True, "registered_at": utcnow()}
    for name, column in _INFO_TEXT.items():
        if info.get(name) is not None:
            fields[column] = _cut(info[name])
    for name, column in _INFO_INT.items():
        if info.get(name) is not None:
            fields[column] = _int(info[name])
    if protocol_version is not None:
        fields["protocol_version"] = _cut(protocol_version)[:32]
    with write_transaction():
        Computer.update(**fields).where(Computer.id == computer.id).execute()
    return Computer.get_by_id(computer.id)


def touch_sync(computer_pk: int, *, status: bool = False) -> None:
    """A SyncUpdates (or, ``status``, a report) was answered for this computer."""
    with write_transaction():
        Computer.update(**({"last_status_at": utcnow()} if status else {"last_sync_at": utcnow()})).where(
            Computer.id == computer_pk).execute()


def set_client_groups(computer_pk: int, target_group_name: str | None) -> list[str]:
    """Client-side targeting (W6), at each cookie issue: ``targetGroupName`` (names separated by ';',
    matched case-insensitively, unknown ones ignored) becomes the computer's client-side groups.
    Returns the matched group ids (empty: ``Unassigned Computers``)."""
    text = (target_group_name or "")[:1024]
    keys = {part.strip().casefold() for part in text.split(";")[:64]} - {""}
    with write_transaction():
        matched = sorted(row[0] for row in tuples(TargetGroup.select(TargetGroup.id).where(
            TargetGroup.name_key.in_(sorted(keys)), TargetGroup.id != UNASSIGNED_ID))) if keys else []
        held = sorted(row[0] for row in tuples(ComputerGroup.select(ComputerGroup.group).where(
            ComputerGroup.computer == computer_pk, ComputerGroup.source == CLIENT)))
        changes: dict[str, Any] = {"client_group_names": text}
        if held != matched:
            ComputerGroup.delete().where(ComputerGroup.computer == computer_pk,
                                         ComputerGroup.source == CLIENT).execute()
            for gid in matched:  # two cookie issues at once for one computer: the same rows, no conflict
                ComputerGroup.insert(computer=computer_pk, group=gid, source=CLIENT).on_conflict_ignore().execute()
            if targeting_mode() == CLIENT:
                changes["membership_seq"] = store.next_seq()
        Computer.update(**changes).where(Computer.id == computer_pk).execute()
    return matched


def assigned_groups(computer_pk: int, *, mode: str | None = None) -> list[str]:
    """The groups the computer is assigned to under the targeting mode (``Unassigned Computers`` when
    none), ancestors not included."""
    source = mode or targeting_mode()
    rows = tuples(ComputerGroup.select(ComputerGroup.group, ComputerGroup.source).where(
        ComputerGroup.computer == computer_pk, ComputerGroup.source == source))
    return groups_under(rows, source)


def groups_under(memberships: Iterable[tuple[str, str]], mode: str) -> list[str]:
    """Of (group, source) membership rows, the groups of the targeting ``mode`` as
    :func:`assigned_groups` gives them (for a caller that read the rows with the computer's own)."""
    return sorted({group for group, source in memberships if source == mode}) or [UNASSIGNED_ID]


def computer_distances(computer_pk: int) -> dict[str, int]:
    """Each group the computer belongs to (its groups and all their ancestors) → distance."""
    return precedence.group_distances(assigned_groups(computer_pk), _parents())


def resolve_computer(ref: str) -> Computer:
    """A computer by TargetID, ComputerID or DNS name (case-insensitive, unique)."""
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 256:
        raise DevupdateError("give a computer by TargetID, ComputerID or DNS name "
                             "(see 'devupdate wsus computers list')", code="bad-computer")
    text = ref.strip()
    if text.isascii() and text.isdigit() and len(text) < 10:
        found = Computer.select().where(Computer.id == int(text)).first()
        if found is not None:
            return found
    found = Computer.select().where(Computer.computer_id == text).first()
    if found is not None:
        return found
    from peewee import fn
    by_name = list(Computer.select().where(fn.LOWER(Computer.dns_name) == text.lower()).limit(3))
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise Conflict(f"several computers are named {text!r}; give the TargetID", code="ambiguous-computer")
    raise NotFound(f"no computer {text[:80]!r}; list them with 'devupdate wsus computers list'",
                   code="no-such-computer")


def _group_names() -> dict[str, str]:
    return {gid: name for gid, name in tuples(TargetGroup.select(TargetGroup.id, TargetGroup.name))}


def computer_dict(computer: Computer, names: Mapping[str, str] | None = None, *,
                  detail: bool = False) -> dict[str, Any]:
    names = names if names is not None else _group_names()
    mode = targeting_mode()

    def named(ids: Iterable[str]) -> list[dict[str, str]]:
        return sorted(({"Id": g, "Name": names.get(g, g)} for g in ids), key=lambda item: item["Name"].casefold())

    groups = assigned_groups(computer.id, mode=mode)
    out: dict[str, Any] = {
        "TargetId": computer.id, "ComputerId": computer.computer_id, "DnsName": computer.dns_name,
        "OSVersion": ".".join(str(p) for p in (computer.os_major, computer.os_minor, computer.os_build,
                                                   computer.os_revision) if p is not None) or None,
        "OSDescription": computer.os_description, "Registered": computer.registered,
        "LastSyncTime": iso_utc(computer.last_sync_at), "CreatedTime": iso_utc(computer.created_at),
        "Groups": named(groups),
        "ClientGroupNames": computer.client_group_names,
    }
    if detail:
        server = assigned_groups(computer.id, mode=SERVER)
        out.update({
            "TargetingMode": mode,
            "ServerGroups": named(server),
            "ClientGroups": named(assigned_groups(computer.id, mode=CLIENT)),
            "MemberOf": sorted(({"Id": g, "Name": names.get(g, g), "Distance": d}
                                for g, d in computer_distances(computer.id).items()),
                               key=lambda item: (item["Distance"], item["Name"])),
            "OS": {"Major": computer.os_major, "Minor": computer.os_minor, "Build": computer.os_build,
                   "Revision": computer.os_revision, "ServicePackMajor": computer.os_sp_major,
                   "ServicePackMinor": computer.os_sp_minor, "Locale": computer.os_locale},
            "Manufacturer": computer.manufacturer, "Model": computer.model, "BiosName": computer.bios_name,
            "BiosVersion": computer.bios_version, "BiosReleaseDate": computer.bios_release_date,
            "ProcessorArchitecture": computer.processor_architecture, "ClientVersion": computer.client_version,
            "ProtocolVersion": computer.protocol_version, "OEM": computer.oem, "DeviceType": computer.device_type,
            "FirmwareVersion": computer.firmware_version, "MobileOperator": computer.mobile_operator,
            "RegisteredTime": iso_utc(computer.registered_at), "LastStatusTime": iso_utc(computer.last_status_at),
        })
    return out


def list_computers(*, group: str | None = None, limit: int = 500, offset: int = 0,
                   after: int | None = None) -> list[dict[str, Any]]:
    """Computers by TargetID; ``group``: only those that belong to it (directly or below it);
    ``after``: only TargetIDs above it (the API's keyset)."""
    query = Computer.select().order_by(Computer.id)
    if after is not None:
        query = query.where(Computer.id > after)
    if group is not None:
        target = resolve_group(group)
        if target.id != ALL_COMPUTERS_ID:
            below = _below(target.id)
            assigned = ComputerGroup.select(ComputerGroup.computer).where(
                ComputerGroup.source == targeting_mode(), ComputerGroup.group.in_(sorted(below)))
            if UNASSIGNED_ID in below:
                anywhere = ComputerGroup.select(ComputerGroup.computer).where(ComputerGroup.source == targeting_mode())
                query = query.where(Computer.id.in_(assigned) | Computer.id.not_in(anywhere))
            else:
                query = query.where(Computer.id.in_(assigned))
    names = _group_names()
    return [computer_dict(c, names) for c in query.limit(max(1, min(limit, 5000))).offset(max(0, offset))]


def _below(group_id: str) -> set[str]:
    children: dict[str | None, list[str]] = {}
    for gid, parent in _parents().items():
        children.setdefault(parent, []).append(gid)
    found, todo = {group_id}, [group_id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def assign_computer(ref: str, groups: Iterable[str], *, actor: str) -> dict[str, Any]:
    """Server-side targeting: the computer's assigned groups become ``groups`` (none: Unassigned)."""
    refs = list(groups)
    try:
        if len(refs) > 64:
            raise DevupdateError("a computer is assigned to at most 64 groups", code="too-many-groups")
        with write_transaction():
            store.lock_sequence()  # admins assigning one computer at once serialize (the change sequence first)
            computer = resolve_computer(ref)
            wanted: list[str] = []
            for item in refs:
                group = resolve_group(item)
                if group.id == ALL_COMPUTERS_ID:
                    raise Conflict("every computer is in 'All Computers'; assign it to a group below it",
                                   code="bad-group")
                if group.id != UNASSIGNED_ID and group.id not in wanted:
                    wanted.append(group.id)
            before = assigned_groups(computer.id, mode=SERVER)
            ComputerGroup.delete().where(ComputerGroup.computer == computer.id,
                                         ComputerGroup.source == SERVER).execute()
            for gid in wanted:
                ComputerGroup.insert(computer=computer.id, group=gid, source=SERVER).execute()
            after = assigned_groups(computer.id, mode=SERVER)
            if before != after:
                Computer.update(membership_seq=store.next_seq()).where(Computer.id == computer.id).execute()
            names = _group_names()
            record(actor, "wsus.computer.assign", str(computer.id),
                   before={"Groups": [names.get(g, g) for g in before]},
                   after={"Groups": [names.get(g, g) for g in after]})
            result = computer_dict(Computer.get_by_id(computer.id), names, detail=True)
    except DevupdateError as refusal:
        _refused(actor, "wsus.computer.assign", str(ref)[:256], refusal)
        raise
    return result


# -- EULAs ---------------------------------------------------------------------------------------------

def update_eula(update_id: str) -> str | None:
    """The EulaID of the update's current revision (its Core fragment's ``EulaID``), or None."""
    core = (Revision.select(Revision.core).join(Update, on=(Update.current_revision == Revision.id))
            .where(Update.update_id == update_id).scalar())
    match = _EULA.search(core or "")
    return match.group(1).lower() if match else None


def eula_accepted(eula_id: str) -> bool:
    return EulaAcceptance.select().where(EulaAcceptance.eula_id == eula_id.lower()).exists()


def eula_state(update_ref: str) -> dict[str, Any] | None:
    """The EULA an update names and whether it is accepted (None: it names none), for the pages that
    offer to accept it before approving."""
    eula_id = update_eula(guid(update_ref, "update"))
    if eula_id is None:
        return None
    held = EulaAcceptance.select().where(EulaAcceptance.eula_id == eula_id).first()
    return {"EulaID": eula_id, "Accepted": held is not None, "AcceptedBy": held.accepted_by if held else None,
            "AcceptedTime": iso_utc(held.accepted_at) if held else None}


def accept_eula(ref: str, *, actor: str) -> dict[str, Any]:
    """Accept an EULA, given by its EulaID or by an UpdateID whose current revision names one."""
    try:
        value = guid(ref, "EULA or update")
        eula_id = update_eula(value) if Update.select().where(Update.update_id == value).exists() else value
        if eula_id is None:
            raise Conflict(f"update {value} needs no EULA", code="no-eula")
        with write_transaction():
            store.lock_sequence()  # two admins accepting at once: the second sees the first's row
            held = EulaAcceptance.select().where(EulaAcceptance.eula_id == eula_id).first()
            changed = held is None
            if held is None:
                held = EulaAcceptance.create(eula_id=eula_id, accepted_by=actor)
                record(actor, "wsus.eula.accept", eula_id, after={"EulaID": eula_id})
    except DevupdateError as refusal:
        _refused(actor, "wsus.eula.accept", str(ref)[:80], refusal)
        raise
    return {"EulaID": eula_id, "AcceptedBy": held.accepted_by, "AcceptedTime": iso_utc(held.accepted_at),
            "Changed": changed}


def list_eulas() -> list[dict[str, Any]]:
    return [{"EulaID": e.eula_id, "AcceptedBy": e.accepted_by, "AcceptedTime": iso_utc(e.accepted_at)}
            for e in EulaAcceptance.select().order_by(EulaAcceptance.accepted_at)]


# -- deployments ---------------------------------------------------------------------------------------

def parse_action(value: str) -> str:
    action = ACTION_NAMES.get(str(value).strip().lower()) if isinstance(value, str) else None
    if action is None:
        raise DevupdateError(f"action {str(value)[:40]!r} is not one of install, uninstall, optional, block",
                             code="bad-action")
    return action


def parse_deadline(value: str | None) -> dt.datetime | None:
    """ISO 8601 date or date-time; with an offset it is converted to UTC, without one it is UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise DevupdateError("a deadline is an ISO 8601 time like 2026-12-24T18:00:00Z", code="bad-deadline")
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise DevupdateError(f"deadline {value!r} is not an ISO 8601 time like 2026-12-24T18:00:00Z",
                             code="bad-deadline") from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    if not 2000 <= when.year <= 9998:
        raise DevupdateError(f"deadline {value!r} is out of range (years 2000–9998)", code="bad-deadline")
    return when.replace(microsecond=0)


def deployment_dict(row: Deployment, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    names = names if names is not None else _group_names()
    return {"Id": row.id, "UpdateID": row.update_id, "GroupId": row.group_id,
            "Group": names.get(row.group_id, row.group_id), "Action": row.action,
            "Deadline": iso_utc(row.deadline), "DownloadPriority": row.download_priority,
            "IsAssigned": row.is_assigned, "Source": row.source, "Actor": row.actor,
            "CreatedTime": iso_utc(row.created_at), "ChangedTime": iso_utc(row.changed_at),
            "ChangeSeq": row.change_seq}


def _is_phone_image(update_id: str) -> bool:
    return UpdateCategory.select().where(UpdateCategory.update_id == update_id,
                                         UpdateCategory.category_id == PHONE_PRODUCT_ID).exists()


def _update_row(update_id: str) -> Update:
    row = Update.select().where(Update.update_id == update_id).first()
    if row is None or row.deleted:
        raise NotFound(f"no update {update_id} in the catalog (see 'devupdate wsus updates list')",
                       code="no-such-update")
    return row


def write_deployment(update_id: str, group_id: str, action: str, *, actor: str, source: str,
                     deadline: dt.datetime | None = None,
                     priority: int = 2) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Create or change the deployment of (update, group) inside the caller's transaction, stamped
    with a new ``change_seq``; returns (before, after). Checks nothing: callers check first."""
    names = _group_names()
    held = locked(Deployment.select().where(Deployment.update_id == update_id, Deployment.group == group_id)).first()
    before = None if held is None or held.revoked else deployment_dict(held, names)
    fields = {"action": action, "deadline": deadline, "download_priority": priority,
              "is_assigned": action != "OptionalInstall", "revoked": False, "source": source, "actor": actor,
              "changed_at": utcnow()}
    if before is not None and all(getattr(held, k) == v for k, v in fields.items()
                                  if k not in ("changed_at", "actor", "source")):
        return before, before
    fields["change_seq"] = store.next_seq()
    if held is None:
        held = Deployment.create(update_id=update_id, group=group_id, **fields)
    else:
        if held.revoked:
            fields["created_at"] = utcnow()
        Deployment.update(**fields).where(Deployment.id == held.id).execute()
        held = Deployment.get_by_id(held.id)
    return before, deployment_dict(held, names)


def revoke_deployment(update_id: str, group_id: str) -> dict[str, Any] | None:
    """Unapprove inside the caller's transaction; returns what was revoked (None: nothing was live)."""
    held = locked(Deployment.select().where(Deployment.update_id == update_id, Deployment.group == group_id,
                                            ~Deployment.revoked)).first()
    if held is None:
        return None
    before = deployment_dict(held)
    Deployment.update(revoked=True, changed_at=utcnow(), change_seq=store.next_seq()).where(
        Deployment.id == held.id).execute()
    return before


def check_approvable(update: Update, group: TargetGroup, action: str) -> None:
    """The refusals of W7 that hold for every approver: declined, deleted, categories, Block on All
    Computers, an EULA not yet accepted."""
    if update.declined:
        raise Conflict(f"update {update.update_id} is declined; undecline it first "
                       f"('devupdate wsus updates undecline {update.update_id}')", code="update-declined")
    if update.update_type in ("Category", "Detectoid"):
        raise Conflict(f"{update.update_id} is a {update.update_type.lower()}, which is never approved: "
                       "approve the updates that need it", code="not-deployable")
    if action == "Block" and group.id == ALL_COMPUTERS_ID:
        raise Conflict("Block is not allowed on 'All Computers'; block the update for a group below it, "
                       "or decline it", code="block-all-computers")
    eula_id = update_eula(update.update_id)
    if eula_id is not None and not eula_accepted(eula_id):
        raise Conflict(f"update {update.update_id} needs EULA {eula_id} accepted before it can be approved: "
                       f"'devupdate wsus eula accept {update.update_id}'", code="eula-not-accepted")


def approve(update_ref: str, group_ref: str, action: str, *, actor: str, deadline: str | None = None,
            priority: int = 2, source: str = "admin") -> dict[str, Any]:
    """Approve an update for a group (W7), or change its approval there; audited as ``wsus.approve``."""
    target = f"{str(update_ref)[:40]} @ {str(group_ref)[:MAX_NAME]}"
    try:
        update_id = guid(update_ref, "update")
        act = parse_action(action)
        when = parse_deadline(deadline)
        if not isinstance(priority, int) or isinstance(priority, bool) or priority not in (1, 2, 3):
            raise DevupdateError("download priority is 1 (low), 2 (normal) or 3 (high)", code="bad-priority")
        with write_transaction():
            store.lock_sequence()
            update = _update_row(update_id)
            group = resolve_group(group_ref)
            target = f"{update_id} @ {group.name}"
            if source == "admin":
                refuse_if_replica("approvals")
            if source == "admin" and _is_phone_image(update_id):
                raise Conflict(f"{update_id} is a phone image (product 'UC devices'): its deployments follow "
                               "its rule; use 'devupdate rules approve|reset|restore'", code="phone-image-update")
            check_approvable(update, group, act)
            before, after = write_deployment(update_id, group.id, act, actor=actor, source=source,
                                             deadline=when, priority=priority)
            if before != after:
                record(actor, "wsus.approve", target, before=before, after=after)
    except DevupdateError as refusal:
        _refused(actor, "wsus.approve", target, refusal)
        raise
    return {**after, "Changed": before != after}


def unapprove(update_ref: str, group_ref: str, *, actor: str) -> dict[str, Any]:
    target = f"{str(update_ref)[:40]} @ {str(group_ref)[:MAX_NAME]}"
    try:
        update_id = guid(update_ref, "update")
        with write_transaction():
            store.lock_sequence()
            group = resolve_group(group_ref)
            target = f"{update_id} @ {group.name}"
            refuse_if_replica("approvals")
            if _is_phone_image(update_id):
                raise Conflict(f"{update_id} is a phone image (product 'UC devices'): its deployments follow "
                               "its rule; use 'devupdate rules reset|restore|remove'", code="phone-image-update")
            before = revoke_deployment(update_id, group.id)
            if before is None:
                raise NotFound(f"update {update_id} is not approved for {group.name!r} "
                               f"(see 'devupdate wsus approvals {update_id}')", code="not-approved")
            record(actor, "wsus.unapprove", target, before=before, after=None)
    except DevupdateError as refusal:
        _refused(actor, "wsus.unapprove", target, refusal)
        raise
    return {**before, "Revoked": True}


def list_deployments(update_ref: str | None = None, *, group: str | None = None, include_revoked: bool = False,
                     limit: int = 1000, offset: int = 0,
                     after: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    """Deployments by UpdateID, then Id; ``after``: only those past this (UpdateID, Id) (the API's keyset)."""
    query = Deployment.select().order_by(Deployment.update_id, Deployment.id)
    if after is not None:
        query = query.where((Deployment.update_id > after[0])
                            | ((Deployment.update_id == after[0]) & (Deployment.id > after[1])))
    if update_ref is not None:
        query = query.where(Deployment.update_id == guid(update_ref, "update"))
    if group is not None:
        query = query.where(Deployment.group == resolve_group(group).id)
    if not include_revoked:
        query = query.where(~Deployment.revoked)
    names = _group_names()
    return [deployment_dict(row, names) for row in query.limit(max(1, min(limit, 10000))).offset(max(0, offset))]


def approvals(rows: Iterable[Deployment]) -> list[precedence.Approval]:
    return [precedence.Approval(id=r.id, update_id=r.update_id, group_id=r.group_id, action=r.action,
                                deadline=r.deadline, download_priority=r.download_priority, changed_at=r.changed_at,
                                change_seq=r.change_seq, revoked=r.revoked) for r in rows]


def effective_deployments(computer_pk: int, update_ids: Iterable[str] | None = None) -> dict[str, precedence.Approval]:
    """UpdateID → the computer's effective deployment (W7), over ``update_ids`` (None: every update)."""
    return effective_for_groups(computer_distances(computer_pk), update_ids)


def effective_for_groups(distances: Mapping[str, int], update_ids: Iterable[str] | None = None
                         ) -> dict[str, precedence.Approval]:
    """UpdateID → the effective deployment for a computer whose groups are ``distances`` (group →
    distance, :func:`computer_distances`): every computer of the same groups has the same."""
    query = Deployment.select().where(Deployment.group.in_(sorted(distances)), ~Deployment.revoked)
    if update_ids is None:
        return precedence.effective(approvals(query), distances)
    found: dict[str, precedence.Approval] = {}
    ids = sorted(set(update_ids))
    for start in range(0, len(ids), 400):
        chunk = query.where(Deployment.update_id.in_(ids[start:start + 400]))
        found.update(precedence.effective(approvals(chunk), distances))
    return found


def derived_deployment_id(revision_id: int, action: str) -> int:
    """The stable Deployment ID of a derived action (Evaluate, Bundle, PreDeploymentCheck) of one
    revision (§6.4), allocated on first use."""
    row = DerivedDeployment.select(DerivedDeployment.id).where(
        DerivedDeployment.revision_id == revision_id, DerivedDeployment.action == action).scalar()
    if row is None:
        with write_transaction():
            DerivedDeployment.insert(revision_id=revision_id, action=action).on_conflict_ignore().execute()
        row = DerivedDeployment.select(DerivedDeployment.id).where(
            DerivedDeployment.revision_id == revision_id, DerivedDeployment.action == action).scalar()
    return DERIVED_ID_BASE + int(row)


__all__ = ["ACTIONS", "seed", "approve", "unapprove", "effective_deployments", "derived_deployment_id"]


# -- phone images (C10): deployments follow the rule state, never the auto-approval rules ---------------

IMAGE_GROUPS = {"Test": TEST_ID, "All Computers": ALL_COMPUTERS_ID}


def sync_image_deployments(update_ids: Iterable[str], wanted: Iterable[tuple[str, str, str]], *, actor: str,
                           rule_id: str) -> dict[str, list[dict[str, Any]]]:
    """Bring the deployments of a rule's image updates (``update_ids``: every version of it) to what its
    state asks for (``wanted``: (group name, UpdateID, action)), inside the caller's transaction. Each
    change is stamped with a new ``change_seq`` and audited as ``wsus.approve`` / ``wsus.unapprove`` by
    the person who changed the rule. Updates not in the catalog are left alone."""
    ids = sorted(set(update_ids))
    want = {(IMAGE_GROUPS[group], update_id, action) for group, update_id, action in wanted}
    added: list[dict[str, Any]] = []
    revoked: list[dict[str, Any]] = []
    with write_transaction():
        names = _group_names()
        live: set[tuple[str, str, str]] = set()
        for start in range(0, len(ids), 400):
            chunk = ids[start:start + 400]
            for row in Deployment.select().where(Deployment.update_id.in_(chunk), ~Deployment.revoked):
                live.add((row.group_id, row.update_id, row.action))
        for group_id, update_id, _action in sorted(live - want):
            before = revoke_deployment(update_id, group_id)
            if before is not None:
                revoked.append(before)
                record(actor, "wsus.unapprove", f"{update_id} @ {names.get(group_id, group_id)}", before=before,
                       detail={"Rule": rule_id})
        present = {row[0] for row in tuples(Update.select(Update.update_id).where(
            Update.update_id.in_(sorted({u for _, u, _ in want}))))} if want else set()
        for group_id, update_id, action in sorted(want - live):
            if update_id not in present:
                continue
            before, after = write_deployment(update_id, group_id, action, actor=actor, source="image")
            added.append(after)
            record(actor, "wsus.approve", f"{update_id} @ {names.get(group_id, group_id)}", before=before,
                   after=after, detail={"Rule": rule_id})
    return {"Added": added, "Revoked": revoked}
