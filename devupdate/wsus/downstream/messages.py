"""The messages devupdate sends as a downstream server ([MS-WSUSSS] §3.2.4, spec/wsus.md §5.1, §5.3) and
what it reads from the answers, as plain values.

Pure: no database, settings or web framework. Requests are written with the SOAP envelope writer the
upstream role answers with (:mod:`devupdate.wsus.soap.envelope`), so both sides speak one dialect;
answers are read with the safe XML reader (no DTD, no entities, bounded depth and element count),
leniently, by local name (§2.3). A SOAP fault becomes :class:`UpstreamFault` with its ``ErrorCode``.

``XmlUpdateBlobCompressed`` is a cabinet with one LZX folder whose member ``blob`` is the document in
UTF-16LE; it is decoded by the package reader (which hands LZX to ``cabextract``) in a private
temporary directory.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from devupdate.web import safexml
from devupdate.wsus.catalog.loader import read_bytes
from devupdate.wsus.soap.envelope import (
    El,
    child,
    children,
    el,
    format_datetime,
    local,
    parse_datetime,
    render_response,
    text,
)
from devupdate.wsus.soap.services import BY_KEY, DSS_AUTH_NS, SD

PROTOCOL_VERSION = "1.20"
SERVER_SYNC = BY_KEY["serversync"]
DSS_AUTH = BY_KEY["dssauth"]
REPORTING = BY_KEY["reporting"]
#: [MS-WSUSSS] §3.2.4.5: rollup calls carry this fixed cookie
DUMMY_EXPIRATION = "9999-12-31T23:59:59.9999999"
#: an answer of GetUpdateData may be large (§7: the DSS accepts ≤ 64 MiB); lists of identities too
MAX_ANSWER_BYTES = 64 << 20
#: a GetRevisionIdList answer is read as it streams, never held: ~127 bytes an identity, so this is
#: about 2 million identities (real WSUS: 3.1 MB for 24,509)
MAX_LIST_BYTES = 256 << 20
MAX_DEPTH = 64
MAX_ELEMENTS = 20_000_000


class UpstreamFault(Exception):
    """A SOAP fault from the upstream: ``error_code`` of §4.2 (empty when the fault had none)."""

    def __init__(self, operation: str, error_code: str, message: str = ""):
        super().__init__(f"{operation}: {error_code or 'fault without ErrorCode'}"
                         + (f" ({message})" if message else ""))
        self.operation, self.error_code, self.message = operation, error_code, message


class BadAnswer(Exception):
    """An answer that is not the SOAP response of the operation asked (or not XML at all)."""


@dataclass(frozen=True)
class Cookie:
    expiration: str
    encrypted_data: str  # base64, opaque

    def element(self, name: str = "cookie") -> El:
        return el(name, el("Expiration", self.expiration), el("EncryptedData", self.encrypted_data))


DUMMY_COOKIE = Cookie(DUMMY_EXPIRATION, "")


@dataclass(frozen=True)
class ConfigData:
    catalog_only: bool
    lazy_sync: bool
    hosts_psf: bool
    max_updates_per_request: int
    new_anchor: str | None
    protocol_version: str
    languages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"CatalogOnlySync": self.catalog_only, "LazySync": self.lazy_sync,
                "ServerHostsPsfFiles": self.hosts_psf, "MaxNumberOfUpdatesPerRequest": self.max_updates_per_request,
                "ProtocolVersion": self.protocol_version, "Languages": self.languages}


class RevisionList:
    """A ``GetRevisionIdList`` answer: its anchor and identities. The identities of a streamed answer
    are spooled to an anonymous temporary file as they are parsed, so a list of any length costs
    the same memory (and the upstream's connection is released as fast as it is read). Filled
    first (:meth:`add`), then read (:attr:`identities`, :meth:`batches`) as often as needed."""

    def __init__(self, anchor: str | None, identities: Iterable[tuple[str, int]] = ()) -> None:
        self.anchor = anchor
        self.count = 0
        self._spool: IO[str] = tempfile.TemporaryFile("w+", encoding="ascii", newline="\n")  # noqa: SIM115
        for identity in identities:
            self.add(identity)

    def add(self, identity: tuple[str, int]) -> None:
        self._spool.write(f"{identity[0]} {identity[1]}\n")
        self.count += 1

    @property
    def identities(self) -> Iterator[tuple[str, int]]:
        """The identities in the upstream's order (read again from the spool on each use)."""
        self._spool.flush()
        self._spool.seek(0)
        for line in self._spool:
            uid, _, number = line.partition(" ")
            yield uid, int(number)

    def batches(self, size: int) -> Iterator[list[tuple[str, int]]]:
        batch: list[tuple[str, int]] = []
        for identity in self.identities:
            batch.append(identity)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self._spool.close()


@dataclass(frozen=True)
class SyncedUpdate:
    identity: tuple[str, int]
    document: bytes  # the XML as received: UTF-8 (XmlUpdateBlob) or UTF-16LE (from the cabinet)
    compressed: bool
    digests: list[str]  # SHA-1, lower-case hex


@dataclass(frozen=True)
class UpdateData:
    updates: list[SyncedUpdate]
    urls: dict[str, str]  # SHA-1 hex → MUUrl


@dataclass(frozen=True)
class SyncGroup:
    group_id: str
    parent_id: str | None
    name: str
    builtin: bool


@dataclass(frozen=True)
class SyncDeployment:
    update_id: str
    revision_number: int
    action: int  # 0 Install, 1 Uninstall, 2 Scan, 3 Block
    deadline: str | None
    is_assigned: bool
    deployment_guid: str
    group_id: str
    download_priority: int


@dataclass(frozen=True)
class Deployments:
    anchor: str | None
    groups: list[SyncGroup]
    deployments: list[SyncDeployment]
    dead: list[str]
    hidden: list[str]
    accepted_eulas: list[str]


ZERO_GUID = "00000000-0000-0000-0000-000000000000"
NO_DEADLINE = "9999-12-31T23:59:59.9999999"


# -- writing requests ------------------------------------------------------------------------------------

def request(operation: El, namespace: str = SD) -> bytes:
    """A SOAP 1.1 request envelope, as Windows' DSS sends it (the operation's namespace as default
    ``xmlns``)."""
    return render_response("1.1", operation, namespace)


def get_auth_config() -> bytes:
    return request(el("GetAuthConfig"))


def get_authorization_cookie(account_name: str, account_guid: str) -> bytes:
    return request(el("GetAuthorizationCookie", el("accountName", account_name), el("accountGuid", account_guid)),
                   DSS_AUTH_NS)


def get_cookie(auth_cookie: tuple[str, str], old_cookie: Cookie | None) -> bytes:
    plug_in, data = auth_cookie
    return request(el("GetCookie",
                      el("authCookies", el("AuthorizationCookie", el("PlugInId", plug_in), el("CookieData", data))),
                      old_cookie.element("oldCookie") if old_cookie is not None else None,
                      el("protocolVersion", PROTOCOL_VERSION)))


def get_config_data(cookie: Cookie, config_anchor: str | None) -> bytes:
    return request(el("GetConfigData", cookie.element(), el("configAnchor", config_anchor) if config_anchor else None))


def _id_and_delta(name: str, ids: list[tuple[str, bool]]) -> El | None:
    if not ids:
        return None
    return el(name, [el("IdAndDelta", el("Id", uid), el("Delta", delta)) for uid, delta in ids])


def get_revision_id_list(cookie: Cookie, *, anchor: str | None, get_config: bool,
                         categories: Sequence[tuple[str, bool]] = (),
                         classifications: Sequence[tuple[str, bool]] = ()) -> bytes:
    return request(el("GetRevisionIdList", cookie.element(),
                      el("filter", el("Anchor", anchor) if anchor else None, el("GetConfig", get_config),
                         _id_and_delta("Categories", list(categories)),
                         _id_and_delta("Classifications", list(classifications)))))


def _identity(update_id: str, number: int) -> El:
    return el("UpdateIdentity", el("UpdateID", update_id), el("RevisionNumber", number))


def get_update_data(cookie: Cookie, identities: list[tuple[str, int]]) -> bytes:
    return request(el("GetUpdateData", cookie.element(), el("updateIds", [_identity(u, n) for u, n in identities])))


def get_deployments(cookie: Cookie, deployment_anchor: str | None, sync_anchor: str | None) -> bytes:
    return request(el("GetDeployments", cookie.element(),
                      el("deploymentAnchor", deployment_anchor) if deployment_anchor else None,
                      el("syncAnchor", sync_anchor) if sync_anchor else None))


def download_files(cookie: Cookie, sha1s: list[str]) -> bytes:
    return request(el("DownloadFiles", cookie.element(), el("fileDigestList", [
        el("base64Binary", base64.b64encode(bytes.fromhex(sha1)).decode("ascii")) for sha1 in sha1s])))


def get_rollup_configuration() -> bytes:
    return request(el("GetRollupConfiguration", DUMMY_COOKIE.element()))


# -- rollups ([MS-WSUSSS] §3.2.4.5; the order of elements and attributes is the WSDL's) -----------------

#: DownstreamServerRollupServerSummary's counts, in the WSDL's order (all required)
SERVER_SUMMARY = ("UpdateCount", "DeclinedUpdateCount", "ApprovedUpdateCount", "NotApprovedUpdateCount",
                  "UpdatesWithStaleUpdateApprovalsCount", "ExpiredUpdateCount",
                  "CriticalOrSecurityUpdatesNotApprovedForInstallCount",
                  "WsusInfrastructureUpdatesNotApprovedForInstallCount", "UpdatesWithClientErrorsCount",
                  "UpdatesWithServerErrorsCount", "UpdatesNeedingFilesCount", "UpdatesNeededByComputersCount",
                  "UpdatesUpToDateCount", "CustomComputerTargetGroupCount", "ComputerTargetCount",
                  "ComputerTargetsNeedingUpdatesCount", "ComputerTargetsWithUpdateErrorsCount",
                  "ComputersUpToDateCount")
#: what a DSS sends for a time it does not know (§3.2.4.5: "use 1753-01-01 00:00:00")
NO_TIME = datetime(1753, 1, 1)


@dataclass(frozen=True)
class RollupConfig:
    detailed: bool
    server_id: str | None
    servers_batch: int
    computers_batch: int
    out_of_sync_batch: int
    status_batch: int
    reset_guid: str | None = None  # another one than before: the upstream dropped what it was sent


@dataclass(frozen=True)
class RolledServer:
    """A server as ``RollupDownstreamServers`` describes it: this one (parent the zero GUID) or one below."""

    server_id: str
    full_domain_name: str
    last_sync_time: datetime | None
    parent_server_id: str
    version: str
    is_replica: bool
    last_rollup_time: datetime | None
    summary: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RolledComputer:
    """A computer as ``RollupComputers`` describes it."""

    computer_id: str
    parent_server_id: str
    last_sync_time: datetime | None
    last_status_time: datetime | None
    full_domain_name: str = ""
    ip_address: str = ""
    os_description: str = ""
    os: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # major, minor, build, SP major, SP minor


@dataclass(frozen=True)
class ComputerStatus:
    """One ``ComputerStatusRollupInfo``: the computer's whole status (``IsFullRollup``)."""

    computer_id: str
    rollup_number: int
    last_detection: datetime | None
    states: list[tuple[str, int, datetime]]  # (UpdateID, SummarizationState 0..6, LastChangeTime)
    instance_id: str


def _when(moment: datetime | None) -> datetime:
    return moment if moment is not None else NO_TIME


def rollup_downstream_servers(client_time: datetime, servers: Sequence[RolledServer]) -> bytes:
    def info(server: RolledServer) -> El:
        summary = el("ServerSummary", [el(name, int(server.summary.get(name, 0))) for name in SERVER_SUMMARY])
        return el("DownstreamServerRollupInfo", el("ServerId", server.server_id),
                  el("FullDomainName", server.full_domain_name), el("LastSyncTime", _when(server.last_sync_time)),
                  el("ParentServerId", server.parent_server_id), el("Version", server.version),
                  el("IsReplica", server.is_replica), el("LastRollupTime", _when(server.last_rollup_time)), summary)

    return request(el("RollupDownstreamServers", DUMMY_COOKIE.element(), el("clientTime", client_time),
                      el("downstreamServers", [info(server) for server in servers])))


def _stamp(moment: datetime | None) -> str:
    return format_datetime(_when(moment))


def rollup_computers(client_time: datetime, computers: Sequence[RolledComputer]) -> bytes:
    def info(computer: RolledComputer) -> El:
        major, minor, build, sp_major, sp_minor = computer.os
        details = El("Details", (), (
            ("IPAddress", computer.ip_address), ("FullDomainName", computer.full_domain_name),
            ("OSMajorVersion", str(major)), ("OSMinorVersion", str(minor)), ("OSBuildNumber", str(build)),
            ("OSServicePackMajorNumber", str(sp_major)), ("OSServicePackMinorNumber", str(sp_minor)),
            ("OSDescription", computer.os_description), ("BiosReleaseDate", _stamp(None)), ("SuiteMask", "0"),
            ("OldProductType", "0"), ("NewProductType", "0"), ("SystemMetrics", "0")))
        return El("ComputerRollupInfo", (details,), (
            ("ComputerId", computer.computer_id), ("LastSyncTime", _stamp(computer.last_sync_time)),
            ("LastSyncResult", "0"), ("LastReportedRebootTime", _stamp(None)),
            ("LastReportedStatusTime", _stamp(computer.last_status_time)), ("LastInventoryTime", _stamp(None)),
            ("ParentServerId", computer.parent_server_id)))

    return request(el("RollupComputers", DUMMY_COOKIE.element(), el("clientTime", client_time),
                      el("computers", [info(computer) for computer in computers])))


def get_out_of_sync_computers(parent_server_id: str, numbers: Sequence[tuple[str, int]]) -> bytes:
    return request(el("GetOutOfSyncComputers", DUMMY_COOKIE.element(), el("parentServerId", parent_server_id),
                      el("lastRollupNumbers", [el("ComputerLastRollupNumber", el("ComputerId", computer),
                                                  el("RollupNumber", number)) for computer, number in numbers])))


def rollup_computer_status(client_time: datetime, parent_server_id: str,
                           computers: Sequence[ComputerStatus]) -> bytes:
    def info(status: ComputerStatus) -> El:
        return el("ComputerStatusRollupInfo", el("InstanceId", status.instance_id),
                  el("ComputerId", status.computer_id),
                  el("EffectiveLastDetectionTime", _when(status.last_detection)),
                  el("RollupNumber", status.rollup_number), el("IsFullRollup", True),
                  el("UpdateStatus", [el("ComputerStatusRollupUpdateStatus", el("UpdateId", update_id),
                                         el("SummarizationState", state), el("LastChangeTime", when))
                                      for update_id, state, when in status.states]))

    return request(el("RollupComputerStatus", DUMMY_COOKIE.element(), el("clientTime", client_time),
                      el("parentServerId", parent_server_id), el("computers", [info(c) for c in computers])))


# -- reading answers -------------------------------------------------------------------------------------

def result(body: bytes, operation: str) -> ET.Element:
    """The ``<operation>Result`` element of an answer (an empty one when the answer has none), or
    :class:`UpstreamFault` / :class:`BadAnswer`."""
    if len(body) > MAX_ANSWER_BYTES:
        raise BadAnswer(f"{operation}: answer of {len(body)} bytes, above {MAX_ANSWER_BYTES >> 20} MiB")
    try:
        root = safexml.parse(body, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS)
    except safexml.XmlRefused as exc:
        raise BadAnswer(f"{operation}: answer is not SOAP ({exc.message})") from None
    soap_body = next((c for c in root if local(c.tag) == "Body"), None)
    first = next(iter(soap_body), None) if soap_body is not None else None
    if first is None:
        raise BadAnswer(f"{operation}: answer has no SOAP body")
    if local(first.tag) == "Fault":
        raise fault(first, operation)
    if local(first.tag) != f"{operation}Response":
        raise BadAnswer(f"{operation}: answer is {local(first.tag)!r}, not {operation}Response")
    found = child(first, f"{operation}Result")
    return found if found is not None else ET.Element(f"{operation}Result")


def fault(element: ET.Element, operation: str) -> UpstreamFault:
    """The fault's ``ErrorCode`` and ``Message`` (SOAP 1.1 ``detail`` or 1.2 ``Detail``)."""
    detail = child(element, "detail")
    if detail is None:
        detail = child(element, "Detail")
    return UpstreamFault(operation, text(detail, "ErrorCode") or "", text(detail, "Message") or "")


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def auth_service_url(found: ET.Element) -> str:
    """The ``ServiceUrl`` of the ``DssTargeting`` plug-in (relative to the upstream, as WSUS sends it)."""
    for info in children(child(found, "AuthInfo"), "AuthPlugInInfo"):
        if (text(info, "PlugInID") or "") == "DssTargeting":
            return text(info, "ServiceUrl") or DSS_AUTH.paths[0].lstrip("/")
    return DSS_AUTH.paths[0].lstrip("/")


def authorization_cookie(found: ET.Element) -> tuple[str, str]:
    return text(found, "PlugInId") or "DssTargeting", text(found, "CookieData") or ""


def cookie(found: ET.Element) -> Cookie:
    expiration, data = text(found, "Expiration"), text(found, "EncryptedData")
    if not expiration or data is None:
        raise BadAnswer("GetCookie: the cookie has no Expiration or EncryptedData")
    return Cookie(expiration, data)


def config_data(found: ET.Element) -> ConfigData:
    languages = [text(item, "ShortLanguage") or "" for item in children(child(found, "LanguageUpdateList"),
                                                                       "ServerSyncLanguageData")
                 if _bool(text(item, "Enabled"))]
    per_request = _int(text(found, "MaxNumberOfUpdatesPerRequest"), 100)
    return ConfigData(catalog_only=_bool(text(found, "CatalogOnlySync")),
                      lazy_sync=_bool(text(found, "LazySync"), True),
                      hosts_psf=_bool(text(found, "ServerHostsPsfFiles")),
                      max_updates_per_request=max(1, min(100, per_request)),
                      new_anchor=text(found, "NewConfigAnchor"), protocol_version=text(found, "ProtocolVersion") or "",
                      languages=languages)


def _identity_of(element: ET.Element) -> tuple[str, int] | None:
    uid, number = text(element, "UpdateID"), text(element, "RevisionNumber")
    if not uid or number is None:
        return None
    try:
        return uid.lower(), int(number)
    except ValueError:
        return None


def revision_list(found: ET.Element) -> RevisionList:
    identities = [identity for item in children(child(found, "NewRevisions"), "UpdateIdentity")
                  if (identity := _identity_of(item)) is not None]
    return RevisionList(text(found, "Anchor"), identities)


def read_revision_list(read: Callable[[int], bytes], max_bytes: int = MAX_LIST_BYTES) -> RevisionList:
    """A ``GetRevisionIdList`` answer read as it streams (``read`` pulls its next block): each
    ``UpdateIdentity`` is spooled and dropped from the tree as soon as it ends, so memory does not
    follow the list. A fault raises :class:`UpstreamFault`; anything else than the answer,
    :class:`BadAnswer` (a body above ``max_bytes`` included)."""
    operation = "GetRevisionIdList"
    listed = RevisionList(None)
    stack: list[ET.Element] = []
    seen_response = False
    try:
        for event, element in safexml.iterparse(read, max_bytes=max_bytes, max_depth=MAX_DEPTH,
                                                max_elements=MAX_ELEMENTS):
            name = local(element.tag)
            if event == "start":
                if len(stack) == 2 and not seen_response and local(stack[1].tag) == "Body":  # its first child
                    if name not in ("Fault", f"{operation}Response"):
                        raise BadAnswer(f"{operation}: answer is {name!r}, not {operation}Response")
                    seen_response = True
                stack.append(element)
                continue
            stack.pop()
            if name == "UpdateIdentity" and len(stack) >= 1 and local(stack[-1].tag) == "NewRevisions":
                identity = _identity_of(element)
                if identity is not None:
                    listed.add(identity)
                stack[-1].remove(element)
            elif name == "Anchor" and stack and local(stack[-1].tag) == f"{operation}Result":
                listed.anchor = element.text
            elif name == "Fault" and len(stack) == 2:
                raise fault(element, operation)
    except safexml.XmlRefused as exc:
        listed.close()
        raise BadAnswer(f"{operation}: answer is not SOAP ({exc.message})") from None
    except BaseException:
        listed.close()
        raise
    if not seen_response:
        listed.close()
        raise BadAnswer(f"{operation}: answer has no SOAP body")
    return listed


def sha1_hex(value: str) -> str | None:
    """A base64 SHA-1 as lower-case hex (None when it is not 20 bytes)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 20 else None


def update_data(found: ET.Element) -> UpdateData:
    updates: list[SyncedUpdate] = []
    for item in children(child(found, "updates"), "ServerSyncUpdateData"):
        id_element = child(item, "Id")
        identity = _identity_of(id_element) if id_element is not None else None
        if identity is None:
            continue
        digests = [sha1 for d in children(child(item, "FileDigestList"), "base64Binary")
                   if (sha1 := sha1_hex((d.text or "").strip()))]
        plain, packed = text(item, "XmlUpdateBlob"), text(item, "XmlUpdateBlobCompressed")
        if plain is not None:
            updates.append(SyncedUpdate(identity, plain.encode("utf-8"), False, digests))
        elif packed is not None:
            try:
                updates.append(SyncedUpdate(identity, base64.b64decode(packed, validate=False), True, digests))
            except (binascii.Error, ValueError):
                continue
    urls: dict[str, str] = {}
    for item in children(child(found, "fileUrls"), "ServerSyncUrlData"):
        sha1 = sha1_hex(text(item, "FileDigest") or "")
        url = text(item, "MUUrl")
        if sha1 and url:
            urls[sha1] = url
    return UpdateData(updates, urls)


def _guid(value: str | None) -> str | None:
    return value.strip("{}").lower() if value else None


def deployments(found: ET.Element) -> Deployments:
    groups = []
    for item in children(child(found, "Groups"), "ServerSyncTargetGroup"):
        gid, parent = _guid(text(item, "TargetGroupID")), _guid(text(item, "ParentGroupId"))
        if gid:
            groups.append(SyncGroup(gid, None if parent in (None, ZERO_GUID) else parent, text(item, "Name") or "",
                                    _bool(text(item, "IsBuiltin"))))
    rows = []
    for item in children(child(found, "Deployments"), "ServerSyncDeployment"):
        uid, gid = _guid(text(item, "UpdateId")), _guid(text(item, "TargetGroupId"))
        if not uid or not gid:
            continue
        deadline = text(item, "Deadline")
        rows.append(SyncDeployment(uid, _int(text(item, "RevisionNumber"), 0), _int(text(item, "Action"), 0),
                                   None if not deadline or deadline.startswith("9999") else deadline,
                                   _bool(text(item, "IsAssigned"), True), _guid(text(item, "DeploymentGuid")) or "",
                                   gid, _int(text(item, "DownloadPriority"), 2)))

    def guids(name: str) -> list[str]:
        return [g for item in children(child(found, name), "guid") if (g := _guid((item.text or "").strip()))]

    return Deployments(text(found, "Anchor"), groups, rows, guids("DeadDeployments"), guids("HiddenUpdates"),
                       guids("AcceptedEulas"))


def parse_expiration(value: str) -> datetime:
    """A cookie's ``Expiration`` (UTC, up to 7 fraction digits)."""
    return parse_datetime(value)


def rollup_server_id(found: ET.Element) -> str | None:
    return _guid(text(found, "ServerId"))


def rollup_config(found: ET.Element) -> RollupConfig:
    """``GetRollupConfiguration``'s answer; batch sizes bounded to [1, §7's sizes]."""
    def size(name: str, default: int) -> int:
        return max(1, min(default, _int(text(found, name), default)))

    return RollupConfig(detailed=_bool(text(found, "DoDetailedRollup"), True), server_id=rollup_server_id(found),
                        servers_batch=size("RollupDownstreamServersMaxBatchSize", 5000),
                        computers_batch=size("RollupComputersMaxBatchSize", 1500),
                        out_of_sync_batch=size("GetOutOfSyncComputersMaxBatchSize", 20000),
                        status_batch=size("RollupComputerStatusMaxBatchSize", 500),
                        reset_guid=_guid(text(found, "RollupResetGuid")))


def changed_computers(found: ET.Element) -> dict[str, str]:
    """``RollupComputers``' answer: computer id (lower case) → ``NewParent`` or ``Deleted``."""
    # attribute-only elements: ``children`` would take them for empty ones
    return {(item.get("ComputerId") or "").strip().lower(): item.get("Change") or ""
            for item in found if local(item.tag) == "ChangedComputer" and (item.get("ComputerId") or "").strip()}


def out_of_sync(found: ET.Element) -> list[str]:
    return [(item.text or "").strip().lower() for item in children(found, "string") if (item.text or "").strip()]


def accepted(found: ET.Element) -> bool:
    """``RollupComputerStatusResult``: ``false`` when the upstream is busy (§3.2.4.5)."""
    return _bool(found.text, True)


# -- update documents --------------------------------------------------------------------------------------

def document_bytes(update: SyncedUpdate) -> bytes:
    """The document of an update: the plain blob as is, the compressed one from its cabinet's ``blob``
    member (LZX, decoded by ``cabextract``)."""
    if not update.compressed:
        return update.document
    with tempfile.TemporaryDirectory(prefix="devupdate-blob-") as work:
        path = Path(work) / "blob.cab"
        with open(path, "wb") as handle:
            handle.write(update.document)
            handle.flush()
            os.fsync(handle.fileno())
        return read_bytes(path)
