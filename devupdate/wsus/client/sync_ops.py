"""The scan operations of the Client service (spec/wsus.md §3.5–§3.8): SyncUpdates,
StartCategoryScan, RefreshCache, GetExtendedUpdateInfo, GetExtendedUpdateInfo2 and
GetFileLocations, answered exactly in the shapes of the Client WSDL and the captured responses.

Each call reads in one snapshot (:func:`catalogview.snapshot`); the selection itself is the pure
``scan`` core. Writes (derived deployment ids of the page, the computer's last sync) come after
the snapshot. Validation follows §3.5: cookie, ``parameters``, array limits (§7, ``Message`` naming
the parameter), ``SystemSpec`` with a software pass, config stamp, registration.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar, cast
from xml.etree.ElementTree import Element

from devupdate.content import names as content_names
from devupdate.db import database, tuples, write_transaction
from devupdate.wsus.client import auth, catalogview, cookies, markup, scan
from devupdate.wsus.soap.envelope import (
    CONFIG_CHANGED,
    FILE_LOCATION_CHANGED,
    REGISTRATION_REQUIRED,
    El,
    Raw,
    SoapFault,
    array,
    child,
    children,
    el,
    int_run,
    invalid,
    optional,
    parse_bool,
    parse_guid,
    text,
    value_text,
)
from devupdate.wsus.soap.getconfig import MAX_EXTENDED_UPDATES_PER_REQUEST, config_stamp
from devupdate.wsus.soap.registry import Call, operation
from devupdate.wsus.targeting import precedence
from devupdate.wsus.targeting import service as targeting
from devupdate.wsus.targeting.models import DERIVED_ID_BASE, Computer, ComputerGroup, DerivedDeployment
from devupdate.wsus.targeting.models import Deployment as DeploymentRow

log = logging.getLogger("devupdate.wsus.scan")
T = TypeVar("T")

MAX_INT = 2**31 - 1
FRAGMENT_TYPES = ("Core", "Extended", "LocalizedProperties", "Eula", "Published", "VerificationRule",
                  "FileUrl", "FileDecryption")


# --- the cookie --------------------------------------------------------------------------------------

def open_cookie(call: Call) -> cookies.CookieState:
    """The client cookie of the call, checked in the order of §4.3 but for the config stamp (which
    SyncUpdates compares later, after the parameters)."""
    return auth.client_cookie(call)


def renew(state: cookies.CookieState, **changes: object) -> El:
    """``NewCookie``: the same client and expiry, a fresh nonce (§3.5 step 7)."""
    return auth.renewed("NewCookie", state, **changes)


def content_generation(settings: Any) -> int:
    """What GetCookie records in a new cookie and GetFileLocations in its renewed one."""
    return scan.content_generation(settings.effective_wsus_content_base_url)


def _locations_current(state: cookies.CookieState, settings: Any) -> None:
    """``FileLocationChanged`` (§3.8) when the client's file URLs come from another content base URL
    (a cookie that records none is taken as current)."""
    if state.content_generation and state.content_generation != content_generation(settings):
        raise SoapFault(FILE_LOCATION_CHANGED, "cookie")


def _config_current(state: cookies.CookieState) -> None:
    if state.config != cookies.stamp_micros(config_stamp()):
        raise SoapFault(CONFIG_CHANGED, "cookie")


# --- reading parameters ------------------------------------------------------------------------------

def top_array(parent: Element | None, name: str, item: str, *, limit: int) -> list[str]:
    """An array parameter of the operation itself: ``Message`` is its bare name (``revisionIDs``)."""
    return [(e.text or "").strip() for e in _limited(parent, name, item, limit, "")]


def int_array(parent: Element | None, name: str, *, limit: int, where: str,
              runs: Mapping[Element, list[int]] | None = None) -> list[int]:
    """An int array parameter; ``runs``: the envelope's arrays read apart (``Envelope.int_runs``)."""
    message = f"{where}.{name}" if where else name
    run = int_run(runs, parent, name) if runs else None
    if run is not None:
        if len(run) > limit:
            raise invalid(message)
        if run and max(run) > MAX_INT:  # at most ten digits, never negative
            raise invalid(message)
        return run
    raw = array(parent, name, "int", limit=limit, where=where) if where else top_array(parent, name, "int",
                                                                                       limit=limit)
    try:
        values = list(map(int, raw))  # C-level over thousands of ids
    except ValueError:
        raise invalid(message) from None
    if values and not (-MAX_INT - 1 <= min(values) and max(values) <= MAX_INT):
        raise invalid(message)
    return values


def _count(parent: Element | None, name: str, item: str, *, limit: int, where: str) -> int:
    count = 0
    for _ in children(child(parent, name), item):
        count += 1
        if count > limit:
            raise invalid(f"{where}.{name}")
    return count


def _bool(parent: Element | None, name: str, where: str, default: bool = False) -> bool:
    value = text(parent, name)
    if value is None:
        return default
    try:
        return parse_bool(value)
    except ValueError:
        raise invalid(f"{where}.{name}") from None


def _guids(values: Iterable[str], name: str) -> list[str]:
    try:
        return list(dict.fromkeys(parse_guid(v) for v in values))
    except ValueError:
        raise invalid(name) from None


def _identities(parent: Element | None, name: str, *, limit: int) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for item in children(child(parent, name), "UpdateIdentity"):
        if len(found) == limit:
            raise invalid(name)
        try:
            uid = parse_guid(text(item, "UpdateID") or "")
            number = int(text(item, "RevisionNumber") or "")
        except ValueError:
            raise invalid(name) from None
        found.append((uid, number))
    return found


# --- the computer and its deployments -----------------------------------------------------------------

@dataclass(frozen=True)
class ScannedComputer:
    """What a scan needs of the computer's row and its group rows (one indexed read per call)."""

    id: int
    registered: bool
    os_build: int | None
    membership_seq: int
    last_sync_at: datetime | None
    memberships: tuple[tuple[str, str], ...] = ()  # (group, source), every targeting mode's


def _computer_query() -> str:
    """Built at the first call: the placeholder is the database's (``?`` or ``%s``), known once it is open."""
    return (f"SELECT c.id, c.registered, c.os_build, c.membership_seq, c.last_sync_at, g.group_id, g.source "
            f"FROM {Computer._meta.table_name} c LEFT JOIN {ComputerGroup._meta.table_name} g "
            f"ON g.computer_id = c.id WHERE c.computer_id = {database.param}")


def scanned_computer(computer_id: str) -> ScannedComputer | None:
    rows = database.execute_sql(_computer_query(), (computer_id,)).fetchall()
    if not rows:
        return None
    pk, registered, os_build, seq, last_sync = rows[0][:5]
    memberships = tuple((str(group), str(source)) for *_row, group, source in rows if group is not None)
    return ScannedComputer(int(pk), bool(registered), None if os_build is None else int(os_build), int(seq or 0),
                           Computer.last_sync_at.python_value(last_sync), memberships)


@dataclass(frozen=True)
class Client:
    computer: ScannedComputer
    target: catalogview.Target
    groups: tuple[tuple[str, int], ...]  # (group, distance): what the target follows from


def _day(value: object, fallback: date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return fallback


def client_of(state: cookies.CookieState, today: date, mark: int) -> Client | None:
    """The registered computer of a cookie and what it is deployed (read inside the snapshot whose
    change sequence is ``mark``). The computer's row and group rows are read on every call; the
    group tree and its deployments follow from ``mark`` (every group, membership, targeting-mode and
    deployment write takes a new change sequence), so computers of the same groups share them."""
    computer = scanned_computer(state.subject[:256])
    if computer is None:
        return None
    mode, parents = _shared(("tree", mark), lambda: (targeting.targeting_mode(), targeting.group_parents()))
    distances = precedence.group_distances(targeting.groups_under(computer.memberships, mode), parents)
    groups = tuple(sorted(distances.items()))
    target = _shared(("target", mark, groups, today), lambda: _target(distances, today))
    return Client(computer, target, groups)


def _target(distances: dict[str, int], today: date) -> catalogview.Target:
    explicit = targeting.effective_for_groups(distances)
    deployments = {uid: scan.Deployment(action=a.action, id=a.id, last_change=_day(a.changed_at, today),
                                        deadline=a.deadline, download_priority=a.download_priority,
                                        change_seq=a.change_seq)
                   for uid, a in explicit.items()}
    revoked: dict[str, int] = {}
    query = (DeploymentRow.select(DeploymentRow.update_id, DeploymentRow.change_seq)
             .where(DeploymentRow.group.in_(sorted(distances)), DeploymentRow.revoked))
    for uid, seq in tuples(query):
        revoked[uid] = max(revoked.get(uid, 0), seq)
    return catalogview.Target(deployments=deployments, revoked=revoked)


#: what many computers' calls read alike, by the change sequence it was read at (the group tree, the
#: deployments of one set of groups); a few entries per worker, the newest kept
SHARED_ENTRIES = 64
_shared_values: OrderedDict[tuple[object, ...], Any] = OrderedDict()
_shared_lock = threading.Lock()


def _shared(key: tuple[object, ...], read: Callable[[], T]) -> T:
    with _shared_lock:
        if key in _shared_values:
            _shared_values.move_to_end(key)
            return cast(T, _shared_values[key])
    value = read()
    with _shared_lock:
        _shared_values[key] = value
        while len(_shared_values) > SHARED_ENTRIES:
            _shared_values.popitem(last=False)
    return value


def _scope(settings: Any) -> str:
    scope = str(settings.wsus_client_scope)
    return scope if scope in catalogview.SCOPES else "all"


#: closures kept per worker: the computers of the same groups share one while nothing changes (the key
#: holds the snapshot's change sequence, which every catalog, deployment and group write advances)
CLOSURE_CACHE_ENTRIES = 4
CLOSURE_CACHE_MAX_NODES = 50_000
_closures: OrderedDict[tuple[object, ...], scan.Closure] = OrderedDict()
_closures_lock = threading.Lock()


def _closure(client: Client, settings: Any, today: date, mark: int, *, filter_categories: Sequence[str] = ()
             ) -> scan.Closure:
    """D for this computer in this snapshot (``mark``: its change sequence)."""
    scope = _scope(settings)
    key = (mark, scope, client.groups, tuple(filter_categories), today)
    with _closures_lock:
        cached = _closures.get(key)
        if cached is not None:
            _closures.move_to_end(key)
            return cached
    roots = catalogview.roots(client.target, scope=scope, filter_categories=filter_categories, today=today)
    fetcher = catalogview.Fetcher()
    d = scan.closure(roots, fetcher, seeds=filter_categories, derived_date=today)
    log.debug("closure of %d revisions (%d rows read)", len(d.nodes), fetcher.rows_read)
    if len(d.nodes) <= CLOSURE_CACHE_MAX_NODES:
        with _closures_lock:
            _closures[key] = d
            while len(_closures) > CLOSURE_CACHE_ENTRIES:
                _closures.popitem(last=False)
    return d


def derived_ids(pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Stable ids of derived deployments (§6.4), allocated once per (RevisionID, action); one read,
    and one write only for pairs never seen."""
    wanted = set(pairs)
    found: dict[tuple[int, str], int] = {}

    sql = f"SELECT revision_id, action, id FROM {DerivedDeployment._meta.table_name} WHERE revision_id IN ({{marks}})"

    def read() -> None:
        for rid, action, row_id in catalogview.raw_rows(sql, sorted({rid for rid, _ in wanted})):
            if (rid, action) in wanted:
                found[(rid, action)] = DERIVED_ID_BASE + int(row_id)

    read()
    missing = sorted(wanted - found.keys())
    if missing:
        with write_transaction():
            for rid, action in missing:
                DerivedDeployment.insert(revision_id=rid, action=action).on_conflict_ignore().execute()
        read()
    return found


# --- writing ------------------------------------------------------------------------------------------

def deployment_element(item: scan.Offer, ids: dict[tuple[int, str], int], *, os_build: int | None,
                       protocol: str) -> Raw:
    """The ``Deployment`` element (§6.4) as markup: a page writes thirty of them, and building an
    element object per field cost more than the rest of the page's writing."""
    wire = scan.wire(item.deployment, os_build=os_build)
    deployment_id = wire.id if wire.id is not None else ids[(item.revision_id, item.deployment.action)]
    parts = ["<Deployment><ID>", value_text(deployment_id), "</ID><Action>", value_text(wire.action), "</Action>"]
    if wire.deadline is not None:
        parts += ("<Deadline>", value_text(_utc(wire.deadline)), "</Deadline>")
    parts += ("<IsAssigned>", value_text(wire.is_assigned), "</IsAssigned><LastChangeTime>",
              value_text(wire.last_change), "</LastChangeTime>")
    if wire.download_priority is not None:
        parts += ("<DownloadPriority>", value_text(wire.download_priority), "</DownloadPriority>")
    if scan.at_least(protocol, (1, 8)):
        parts.append(_EXTRAS)
    parts.append("</Deployment>")
    return Raw("".join(parts))


_EXTRAS = "<AutoSelect>0</AutoSelect><AutoDownload>0</AutoDownload><SupersedenceBehavior>0</SupersedenceBehavior>"


def update_info(item: scan.Offer, deployment: str, xml: str | None) -> Raw:
    """One ``UpdateInfo`` (ID, Deployment, IsLeaf and, in NewUpdates, the Core fragment) as markup."""
    info = f"<UpdateInfo><ID>{value_text(item.revision_id)}</ID>{deployment}<IsLeaf>{value_text(item.is_leaf)}</IsLeaf>"
    if xml is None:
        return Raw(info + "</UpdateInfo>")
    return Raw(f"{info}<Xml>{value_text(xml)}</Xml></UpdateInfo>")


def id_list(rids: Sequence[int]) -> list[Raw]:
    """An ``ArrayOfInt``'s items as markup (out-of-scope lists run to thousands of ids)."""
    return [Raw("".join(f"<int>{value_text(rid)}</int>" for rid in rids))] if rids else []


def _utc(moment: datetime) -> datetime:
    """Deadlines are stored naive UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _derived_pairs(items: Iterable[scan.Offer]) -> list[tuple[int, str]]:
    return [(i.revision_id, i.deployment.action) for i in items if i.deployment.id is None]


def _cores(rids: Sequence[int]) -> dict[int, str]:
    return dict(catalogview.fragments(rids, ["Core"], []))


#: written UpdateInfo entries per worker (see :mod:`markup`): a few thousand of a wave's revisions
INFO_CACHE_BYTES = 8 << 20
_written = markup.MarkupCache(INFO_CACHE_BYTES)


class _Writer:
    """Writes a call's UpdateInfo entries, or finds them written: ``mark`` is the call's snapshot,
    the build and protocol what the client changes in a Deployment element."""

    def __init__(self, mark: int, os_build: int | None, protocol: str):
        self.os_build, self.protocol = os_build, protocol
        self._client = (mark, scan.knows_optional_install(os_build), scan.at_least(protocol, (1, 8)))

    def key(self, item: scan.Offer, xml: bool) -> tuple[object, ...]:
        return (self._client, item.revision_id, item.deployment, item.is_leaf, xml)

    def found(self, items: Iterable[scan.Offer], xml: bool) -> dict[int, str]:
        """The entries of ``items`` already written, by RevisionID."""
        hits: dict[int, str] = {}
        for item in items:
            entry = _written.get(self.key(item, xml))
            if entry is not None:
                hits[item.revision_id] = entry
        return hits

    def write(self, items: Iterable[scan.Offer], xml: bool, written: dict[int, str], cores: dict[int, str],
              ids: dict[tuple[int, str], int]) -> list[Raw]:
        """Every entry of ``items``: the ones in ``written`` as they are, the others written now (and kept)."""
        out: list[Raw] = []
        for item in items:
            entry = written.get(item.revision_id)
            if entry is None:
                deployment = deployment_element(item, ids, os_build=self.os_build, protocol=self.protocol)
                entry = update_info(item, deployment, cores.get(item.revision_id, "") if xml else None)
                _written.put(self.key(item, xml), entry)
            out.append(Raw(entry))
        return out


# --- SyncUpdates (§3.5) -------------------------------------------------------------------------------

@operation("SyncUpdates", "client")
def sync_updates(call: Call) -> El:
    settings = call.settings
    state = open_cookie(call)
    params = child(call.body, "parameters")
    if params is None:
        raise invalid("parameters")
    where = "parameters"
    runs = call.envelope.int_runs
    installed = int_array(params, "InstalledNonLeafUpdateIDs", limit=settings.wsus_max_installed_non_leaf_update_ids,
                          where=where, runs=runs)
    other = int_array(params, "OtherCachedUpdateIDs", limit=settings.wsus_max_other_cached_update_ids, where=where,
                      runs=runs)
    drivers = int_array(params, "CachedDriverIDs", limit=settings.wsus_max_cached_driver_ids, where=where, runs=runs)
    devices = _count(params, "SystemSpec", "Device", limit=settings.wsus_max_system_spec_devices, where=where)
    # ≥ 200 filter ids are refused ([MS-WUSP] note 52)
    filter_ids = [text(item, "Id") or "" for item in _limited(params, "FilterCategoryIds", "CategoryIdentifier",
                                                              settings.wsus_max_filter_category_ids - 1, where)]
    filters = _guids(filter_ids, f"{where}.FilterCategoryIds")
    skip_software = _bool(params, "SkipSoftwareSync", where)
    two_group = _bool(params, "NeedTwoGroupOutOfScopeUpdates", where)
    if (devices or child(params, "SystemSpec") is not None) and not skip_software:
        raise invalid(f"{where}.SystemSpec")
    _config_current(state)
    today = datetime.now(UTC).date()
    with catalogview.snapshot():
        mark = catalogview.high_water()
        client = client_of(state, today, mark)
        if client is None or not client.computer.registered:
            raise SoapFault(REGISTRATION_REQUIRED, "cookie")
        if skip_software:  # the driver pass: v1 has no drivers, every cached driver id is out of scope
            result = scan.ScanResult(new_updates=(), truncated=False, out_of_scope=tuple(sorted(set(drivers))),
                                     changed_updates=())
        else:
            d = _closure(client, settings, today, mark, filter_categories=filters)
            request = scan.ScanRequest(installed=frozenset(installed), other_cached=frozenset(other),
                                       page_size=max(10, min(200, int(settings.wsus_page_size))),
                                       high_water=state.high_water, split_deployed=two_group and bool(filters),
                                       regrouped_seq=client.computer.membership_seq or 0)

            def still_deployed(rids: Iterable[int]) -> set[int]:
                current = catalogview.current_update_ids(rids)
                everywhere = catalogview.roots(client.target, scope=_scope(settings), today=today)
                return {rid for rid, uid in current.items() if uid in everywhere}

            result = scan.sync(request, d, still_deployed=still_deployed)
            log.debug("SyncUpdates for %s: closure %d, needed %d", state.subject, len(d.nodes), result.needed)
        writer = _Writer(mark, client.computer.os_build, state.protocol)
        new_written = writer.found(result.new_updates, True)
        changed_written = writer.found(result.changed_updates, False)
        cores = _cores([i.revision_id for i in result.new_updates if i.revision_id not in new_written])
    ids = derived_ids(_derived_pairs([i for i in result.new_updates if i.revision_id not in new_written]
                                     + [i for i in result.changed_updates if i.revision_id not in changed_written]))
    protocol = state.protocol
    if _sync_stale(client.computer.last_sync_at):
        targeting.touch_sync(client.computer.id)
    not_needed = scan.driver_sync_not_needed(protocol)
    return el("SyncUpdatesResponse", el(
        "SyncUpdatesResult",
        optional("NewUpdates", writer.write(result.new_updates, True, new_written, cores, ids)),
        optional("OutOfScopeRevisionIDs", id_list(result.out_of_scope)),
        optional("ChangedUpdates", writer.write(result.changed_updates, False, changed_written, {}, ids)),
        el("Truncated", result.truncated),
        renew(state, high_water=max(mark, state.high_water)),
        optional("DeployedOutOfScopeRevisionIds", id_list(result.deployed_out_of_scope)),
        el("DriverSyncNotNeeded", not_needed) if not_needed is not None else None))


#: LastSyncTime is written at most this often per computer: a first scan is dozens of pages within
#: seconds, and a write per page would serialize every scanning thread on the database's write lock
SYNC_TOUCH_SECONDS = 60


def _sync_stale(last: object) -> bool:
    if not isinstance(last, datetime):
        return True
    now = datetime.now(UTC) if last.tzinfo else datetime.now(UTC).replace(tzinfo=None)
    return not 0 <= (now - last).total_seconds() < SYNC_TOUCH_SECONDS


def _limited(parent: Element | None, name: str, item: str, limit: int, where: str) -> list[Element]:
    found: list[Element] = []
    for element in children(child(parent, name), item):
        if len(found) == limit:
            raise invalid(f"{where}.{name}" if where else name)
        found.append(element)
    return found


# --- StartCategoryScan (§3.6) -------------------------------------------------------------------------

@operation("StartCategoryScan", "client")
def start_category_scan(call: Call) -> El:
    relationships = child(call.body, "requestedCategories")
    if relationships is None:
        raise invalid("requestedCategories")
    entries = _limited(call.body, "requestedCategories", "CategoryRelationship",
                       call.settings.wsus_max_filter_category_ids - 1, "")
    requested: list[tuple[int, str]] = []
    for entry in entries:
        try:
            requested.append((int(text(entry, "IndexOfAndGroup") or ""), parse_guid(text(entry, "CategoryId") or "")))
        except ValueError:
            raise invalid("requestedCategories") from None
    if not requested:
        raise invalid("requestedCategories")
    with catalogview.snapshot():
        kinds = catalogview.known_categories({uid for _, uid in requested})
    answer = scan.category_scan(requested, kinds)
    return el("StartCategoryScanResponse",
              optional("preferredCategoryIds", [el("guid", uid) for uid in answer.preferred]),
              optional("requestedCategoryIdsInError", [el("guid", uid) for uid in answer.in_error]))


# --- RefreshCache (§3.7) ------------------------------------------------------------------------------

@operation("RefreshCache", "client")
def refresh_cache(call: Call) -> El:
    state = open_cookie(call)
    identities = _identities(call.body, "globalIDs", limit=call.settings.wsus_max_refresh_cache_ids)
    today = datetime.now(UTC).date()
    with catalogview.snapshot():
        mark = catalogview.high_water()
        client = client_of(state, today, mark)
        if client is None or not client.computer.registered:
            raise SoapFault(REGISTRATION_REQUIRED, "cookie")
        rids = catalogview.revision_ids(identities)
        d = _closure(client, call.settings, today, mark)
        offers = [item for item in scan.refresh(d, [rids[i] for i in identities if i in rids])
                  if item.deployment.action != scan.BUNDLE]  # as real WSUS: the client re-fetches those
    identity = {rid: key for key, rid in rids.items()}
    ids = derived_ids(_derived_pairs(offers))
    return el("RefreshCacheResponse", optional("RefreshCacheResult", [
        el("RefreshCacheResult", el("RevisionID", item.revision_id),
           el("GlobalID", el("UpdateID", identity[item.revision_id][0]),
              el("RevisionNumber", identity[item.revision_id][1])),
           el("IsLeaf", item.is_leaf),
           deployment_element(item, ids, os_build=client.computer.os_build, protocol=state.protocol))
        for item in offers]))


# --- GetExtendedUpdateInfo / 2 (§3.8) -----------------------------------------------------------------

def _info_types(call: Call) -> list[str]:
    values = top_array(call.body, "infoTypes", "XmlUpdateFragmentType", limit=len(FRAGMENT_TYPES) * 4)
    if not values:
        raise invalid("infoTypes")
    if any(v not in FRAGMENT_TYPES for v in values):
        raise invalid("infoTypes")
    return list(dict.fromkeys(values))


def languages(locales: Iterable[str]) -> list[str]:
    """Exact locales first, then their language prefixes (``en-US`` → ``en``), then ``en`` and the
    language-neutral ``all`` (§3.8)."""
    found: list[str] = []
    asked = [loc.strip() for loc in locales if loc.strip()]
    for loc in asked:
        found.append(loc)
    for loc in asked:
        found.append(loc.split("-", 1)[0])
    found += ["en", "all"]
    return list(dict.fromkeys(v[:16] for v in found))


def _locales(call: Call, info_types: Sequence[str]) -> list[str]:
    values = top_array(call.body, "locales", "string", limit=64)
    if not values and any(t in ("LocalizedProperties", "Eula") for t in info_types):
        raise invalid("locales")
    return languages(values)


def content_url(settings: Any, sha1: str, file_name: str) -> str:
    return f"{settings.effective_wsus_content_base_url}/{content_names.content_path(sha1, file_name)}"


def _file_location(settings: Any, row: catalogview.FileRow, *, algorithm: bool) -> El:
    return el("FileLocation", el("FileDigest", base64.b64encode(bytes.fromhex(row.sha1)).decode()),
              el("Url", content_url(settings, row.sha1, row.file_name)),
              el("FileDigestAlgorithm", "SHA1") if algorithm else None)


def _extended(call: Call, state: cookies.CookieState, asked: Sequence[int], info_types: Sequence[str],
              locales: Sequence[str], *, algorithm: bool) -> tuple[list[El], list[El], list[int]]:
    today = datetime.now(UTC).date()
    with catalogview.snapshot():
        mark = catalogview.high_water()
        client = client_of(state, today, mark)
        if client is None:
            raise SoapFault(REGISTRATION_REQUIRED, "cookie")
        d = _closure(client, call.settings, today, mark)
        inside, outside = scan.in_scope(d, asked)
        if outside:  # categories are public metadata: their current revisions are always in scope
            categories = {rid for rid, uid in catalogview.current_update_ids(outside).items()
                          if catalogview.known_categories([uid])}
            inside = [rid for rid in asked if rid in set(inside) | categories]
            outside = [rid for rid in outside if rid not in categories]
        wanted = [t for t in info_types if t in ("Core", "Extended", "LocalizedProperties", "Eula")]
        updates = [el("Update", el("ID", rid), el("Xml", fragment))
                   for rid, fragment in catalogview.fragments(inside, wanted, locales)]
        rows = catalogview.files(inside) if "Extended" in info_types else []
    locations = [_file_location(call.settings, row, algorithm=algorithm) for row in rows]
    return updates, locations, outside


@operation("GetExtendedUpdateInfo", "client")
def get_extended_update_info(call: Call) -> El:
    state = open_cookie(call)
    _locations_current(state, call.settings)
    asked = int_array(call.body, "revisionIDs", limit=MAX_EXTENDED_UPDATES_PER_REQUEST, where="",
                      runs=call.envelope.int_runs)
    info_types = _info_types(call)
    locales = _locales(call, info_types)
    updates, locations, outside = _extended(call, state, list(dict.fromkeys(asked)), info_types, locales,
                                            algorithm=False)
    return el("GetExtendedUpdateInfoResponse", el(
        "GetExtendedUpdateInfoResult", optional("Updates", updates), optional("FileLocations", locations),
        optional("OutOfScopeRevisionIDs", [el("int", rid) for rid in outside])))


@operation("GetExtendedUpdateInfo2", "client")
def get_extended_update_info2(call: Call) -> El:
    state = open_cookie(call)
    _locations_current(state, call.settings)
    identities = _identities(call.body, "updateIDs", limit=MAX_EXTENDED_UPDATES_PER_REQUEST)
    info_types = _info_types(call)
    locales = _locales(call, info_types)
    with catalogview.snapshot():
        rids = catalogview.revision_ids(identities)
    asked = list(dict.fromkeys(rids[i] for i in identities if i in rids))
    updates, locations, _outside = _extended(call, state, asked, info_types, locales, algorithm=True)
    return el("GetExtendedUpdateInfo2Response", el(
        "GetExtendedUpdateInfo2Result", optional("Updates", updates), optional("FileLocations", locations)))


# --- GetFileLocations (§3.8) --------------------------------------------------------------------------

@operation("GetFileLocations", "client")
def get_file_locations(call: Call) -> El:
    state = open_cookie(call)
    values = top_array(call.body, "fileDigests", "base64Binary", limit=call.settings.wsus_max_file_location_digests)
    digests: list[str] = []
    for value in values:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("fileDigests") from None
        if len(raw) != 20:
            raise invalid("fileDigests")
        digests.append(raw.hex())
    with catalogview.snapshot():
        rows = catalogview.files_by_sha1(digests)
    by_sha1 = {row.sha1: row for row in rows}
    locations = [_file_location(call.settings, by_sha1[sha1], algorithm=False)
                 for sha1 in dict.fromkeys(digests) if sha1 in by_sha1]
    return el("GetFileLocationsResponse", el("GetFileLocationsResult", optional("FileLocations", locations),
                                             renew(state, content_generation=content_generation(call.settings))))
