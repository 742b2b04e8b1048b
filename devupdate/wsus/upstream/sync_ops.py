"""The metadata operations of ServerSyncWebService ([wsus] §5.1, §5.2, §7): GetConfigData,
GetRevisionIdList, GetUpdateData, GetUpdateDecryptionData, GetRelatedRevisionsForUpdates and
DownloadFiles.

Everything that can fault (the cookie, the anchor, the filter, the array limits) is checked before
the answer starts. ``GetRevisionIdList`` and ``GetUpdateData`` are then *streamed*: their lists are
read in pages inside one read snapshot while the envelope is written, so a worker's memory does not
grow with the catalog (a 250,000-identity list is never held whole). An unknown identity in
``GetUpdateData`` is skipped and logged (real WSUS faults the whole call, ``exchanges/000017``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator

from flask import current_app

from devupdate.wsus.catalog import store
from devupdate.wsus.client.catalogview import high_water, snapshot
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap.envelope import El, Lazy, Raw, SoapFault, child, children, el, invalid, parse_bool, text
from devupdate.wsus.soap.registry import LIGHT, Call, operation
from devupdate.wsus.upstream import catalogread, origin
from devupdate.wsus.upstream.anchors import format_anchor, parse_anchor
from devupdate.wsus.upstream.auth_ops import PROTOCOL_VERSION, dss_cookie
from devupdate.wsus.upstream.catalogread import Filter
from devupdate.wsus.upstream.languages import LANGUAGES

log = logging.getLogger("devupdate.wsus.upstream")

MAX_FILTER_IDS = 1000  # Categories / Classifications of one filter
MAX_RELATED_IDS = 1000  # GetRelatedRevisionsForUpdates
MAX_DECRYPTION_IDS = 100


def anchor_of(value: str | None, parameter: str) -> int | None:
    try:
        return parse_anchor(value, highest=store.current_seq())
    except ValueError:
        raise invalid(parameter) from None


# --- GetConfigData ------------------------------------------------------------------------------------

@operation("GetConfigData", "serversync", weight=LIGHT)
def get_config_data(call: Call) -> El:
    dss_cookie(call)
    since = anchor_of(text(call.body, "configAnchor"), "configAnchor")
    limit = call.settings.wsus_max_updates_per_request
    # the language table never changes: a DSS that has an anchor has it already (exchanges/000004)
    languages = [] if since is not None else [
        el("ServerSyncLanguageData", el("LanguageID", number), el("ShortLanguage", short), el("LongLanguage", name),
           el("Enabled", True)) for number, short, name in LANGUAGES]
    return el("GetConfigDataResponse", el(
        "GetConfigDataResult",
        el("CatalogOnlySync", False), el("LazySync", True), el("ServerHostsPsfFiles", False),
        el("MaxNumberOfComputerIdsInRequest", 0), el("MaxNumberOfDriverSetsPerRequest", 0),
        el("MaxNumberOfPnpHardwareIdsInRequest", 0), el("MaxNumberOfUpdatesPerRequest", limit),
        el("NewConfigAnchor", format_anchor(store.current_seq())), el("ProtocolVersion", PROTOCOL_VERSION),
        el("LanguageUpdateList", languages),
        el("MaxUpdatesPerRequestInGetUpdateDecryptionData", MAX_DECRYPTION_IDS)))


# --- GetRevisionIdList --------------------------------------------------------------------------------

def _id_list(parent, name: str) -> list[tuple[str, bool]]:
    values: list[tuple[str, bool]] = []
    for item in children(child(parent, name), "IdAndDelta"):
        if len(values) == MAX_FILTER_IDS:
            raise invalid(f"filter.{name}")
        try:
            delta_text = text(item, "Delta")
            values.append((soap.parse_guid(text(item, "Id") or ""), parse_bool(delta_text) if delta_text else True))
        except ValueError:
            raise invalid(f"filter.{name}") from None
    return values


def parse_filter(call: Call) -> Filter:
    element = child(call.body, "filter")
    if element is None:
        raise invalid("filter")
    try:
        get_config = parse_bool(text(element, "GetConfig") or "false")
    except ValueError:
        raise invalid("filter.GetConfig") from None
    anchor = anchor_of(text(element, "Anchor"), "filter")  # as real WSUS names it (exchanges/000018)
    return Filter(anchor, get_config, _id_list(element, "Categories"), _id_list(element, "Classifications"))


def _identity(update_id: str, revision_number: int) -> El:
    return el("UpdateIdentity", el("UpdateID", update_id), el("RevisionNumber", revision_number))


@operation("GetRevisionIdList", "serversync")
def get_revision_id_list(call: Call) -> El:
    dss_cookie(call)
    selection = parse_filter(call)

    def result() -> Iterator[El]:
        with snapshot():
            high = high_water()
            yield el("Anchor", format_anchor(high))
            # GUIDs and numbers from the catalog: written as they are, one string per identity
            yield el("NewRevisions", Lazy(Raw(f"<UpdateIdentity><UpdateID>{uid}</UpdateID><RevisionNumber>{number}"
                                              "</RevisionNumber></UpdateIdentity>")
                                          for uid, number in catalogread.identities(selection, high)))

    return el("GetRevisionIdListResponse", el("GetRevisionIdListResult", Lazy(result())))


# --- GetUpdateData / GetUpdateDecryptionData ----------------------------------------------------------

def identity_list(call: Call, name: str, limit: int) -> list[tuple[str, int]]:
    """``<name><UpdateIdentity>…`` as (UpdateID, RevisionNumber): 1..``limit`` of them, each valid."""
    found: list[tuple[str, int]] = []
    for item in children(child(call.body, name), "UpdateIdentity"):
        if len(found) == limit:
            raise invalid(name)
        try:
            number = int(text(item, "RevisionNumber") or "", 10)
            if not 0 <= number <= 2**31 - 1:
                raise ValueError(number)
            found.append((soap.parse_guid(text(item, "UpdateID") or ""), number))
        except ValueError:
            raise invalid(name) from None
    if not found:
        raise invalid(name)
    return found


def _digest(sha1: str) -> str:
    return base64.b64encode(bytes.fromhex(sha1)).decode("ascii")


@operation("GetUpdateData", "serversync")
def get_update_data(call: Call) -> El:
    state = dss_cookie(call)
    wanted = list(dict.fromkeys(identity_list(call, "updateIds", call.settings.wsus_max_updates_per_request)))
    urls: dict[str, str] = {}

    def updates() -> Iterator[El]:
        for update_id, number in wanted:
            stored = catalogread.revision(update_id, number)
            if stored is None:
                log.info("GetUpdateData from %s: %s r%s is not in the catalog; left out", state.subject,
                         update_id, number)
                continue
            for sha1, url in stored.files:
                if url:
                    urls.setdefault(sha1, url)
            yield el("ServerSyncUpdateData", _identity_named("Id", update_id, number),
                     el("XmlUpdateBlob", stored.document),
                     soap.optional("FileDigestList", (el("base64Binary", _digest(sha1)) for sha1, _ in stored.files)))

    def result() -> Iterator[El]:
        with snapshot():
            yield el("updates", _flat(updates()))
            yield el("fileUrls", _flat(el("ServerSyncUrlData", el("FileDigest", _digest(sha1)), el("MUUrl", url),
                                         el("UssUrl")) for sha1, url in urls.items()))

    return el("GetUpdateDataResponse", el("GetUpdateDataResult", Lazy(result())))


def _flat(items: Iterator[El]) -> Lazy:
    return Lazy(items, flat=True)


def _identity_named(name: str, update_id: str, revision_number: int) -> El:
    return el(name, el("UpdateID", update_id), el("RevisionNumber", revision_number))


@operation("GetUpdateDecryptionData", "serversync", weight=LIGHT)
def get_update_decryption_data(call: Call) -> El:
    """Always empty: nothing in devupdate's catalog is encrypted."""
    dss_cookie(call)
    identity_list(call, "updateIds", MAX_DECRYPTION_IDS)
    return el("GetUpdateDecryptionDataResponse", el("GetUpdateDecryptionDataResult"))


# --- GetRelatedRevisionsForUpdates -------------------------------------------------------------------

@operation("GetRelatedRevisionsForUpdates", "serversync")
def get_related_revisions(call: Call) -> El:
    dss_cookie(call)
    values = soap.array(call.body, "updateIDs", "guid", limit=MAX_RELATED_IDS)
    try:
        ids = [soap.parse_guid(value) for value in values]
    except ValueError:
        raise invalid("parameters.updateIDs") from None
    with snapshot():
        found = catalogread.current_identities(ids)
    return el("GetRelatedRevisionsForUpdatesResponse",
              el("GetRelatedRevisionsForUpdatesResult", [_identity(uid, number) for uid, number in found]))


# --- DownloadFiles -----------------------------------------------------------------------------------

@operation("DownloadFiles", "serversync")
def download_files(call: Call) -> El:
    """Known digests: a file not yet present is fetched from its origin (``MUUrl``) in the
    background (``origin.py``). Digests unknown to the catalog: ``FileDigestsMissing`` naming them
    (``|``-separated base64)."""
    state = dss_cookie(call)
    limit = call.settings.wsus_max_download_files_digests
    values = soap.array(call.body, "fileDigestList", "base64Binary", limit=limit)
    if not values:
        raise invalid("parameters.fileDigestList")
    sha1s: list[str] = []
    for value in values:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("parameters.fileDigestList") from None
        if len(raw) != 20:
            raise invalid("parameters.fileDigestList")
        sha1s.append(raw.hex())
    known = catalogread.files_known(sha1s)
    missing = [sha1 for sha1 in dict.fromkeys(sha1s) if sha1 not in known]
    if missing:
        raise SoapFault(soap.FILE_DIGESTS_MISSING, "|".join(_digest(sha1) for sha1 in missing))
    absent = [sha1 for sha1, present in known.items() if not present]
    if absent:
        wanted = origin.fetchable(absent)
        queued = origin.fetcher_for(current_app.extensions["devupdate"].store).ask(wanted) if wanted else 0
        log.info("DownloadFiles from %s: %d file(s) not present, %d with an origin URL, %d queued", state.subject,
                 len(absent), len(wanted), queued)
    return el("DownloadFilesResponse")
