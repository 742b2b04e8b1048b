"""Applying synced revisions to the catalog (D4): each batch in one transaction, each revision whole or
not at all, and a revision that names what is not present kept out of sight until it is.

A revision names the UpdateIDs of its prerequisites (any revision of each) and the exact bundle
members. One whose names are all in the catalog, or in the same batch, is stored with the catalog's
own store (the same reader, fragments and ``change_seq`` as an import). Any other is kept in
``HeldRevision`` — stored, so it is not fetched again, but not in the catalog, so no client and no
downstream sees it — and released by :func:`release_held` in the transaction in which the last
revision it names arrives.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from devupdate.db import tuples, write_transaction
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import DocumentError, UpdateDocument, parse_update
from devupdate.wsus.catalog.models import CatalogFile, Revision
from devupdate.wsus.downstream.messages import SyncedUpdate, document_bytes
from devupdate.wsus.downstream.models import HeldRevision

log = logging.getLogger("devupdate.wsus.downstream")
_CHUNK = 400
#: held rows examined per transaction by release_held
RELEASE_PAGE = 500
#: names kept in a held row's ``missing`` (a longer list is cut: the row is then parsed to be sure)
MAX_MISSING = 200


@dataclass
class Applied:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    held: int = 0
    released: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    compressed: int = 0
    applied_ids: list[tuple[str, int]] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


def names(doc: UpdateDocument) -> tuple[set[str], set[tuple[str, int]]]:
    """The UpdateIDs its prerequisites name, and its exact bundle members."""
    prerequisites = {uid for clause in doc.prerequisites for uid in clause.update_ids}
    members = {member for clause in doc.bundled for member in clause}
    return prerequisites, members


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _present(update_ids: set[str]) -> tuple[set[str], set[tuple[str, int]]]:
    """Which of these UpdateIDs the catalog has, and which of their revisions."""
    ids: set[str] = set()
    identities: set[tuple[str, int]] = set()
    for chunk in _chunks(update_ids):
        for uid, number in tuples(Revision.select(Revision.update_id, Revision.revision_number)
                                  .where(Revision.update_id.in_(chunk))):
            ids.add(uid)
            identities.add((uid, number))
    return ids, identities


def _missing(doc: UpdateDocument, ids: set[str], identities: set[tuple[str, int]]) -> list[str]:
    prerequisites, members = names(doc)
    return sorted([uid for uid in prerequisites if uid not in ids and uid != doc.update_id]
                  + [f"{uid}/{n}" for uid, n in members if (uid, n) not in identities])


def _ready(docs: list[UpdateDocument]) -> tuple[list[UpdateDocument], dict[tuple[str, int], list[str]]]:
    """Split ``docs`` into those whose names are present (in the catalog or among the ready ones) and
    the others with what each misses."""
    wanted: set[str] = set()
    for doc in docs:
        prerequisites, members = names(doc)
        wanted |= prerequisites | {uid for uid, _n in members}
    ids, identities = _present(wanted)
    ready: list[UpdateDocument] = []
    pending = list(docs)
    while True:  # a revision may name another of the same batch: until nothing more becomes ready
        progress = False
        rest: list[UpdateDocument] = []
        for doc in pending:
            if _missing(doc, ids, identities):
                rest.append(doc)
            else:
                ready.append(doc)
                ids.add(doc.update_id)
                identities.add(doc.identity)
                progress = True
        pending = rest
        if not progress or not pending:
            break
    return ready, {doc.identity: _missing(doc, ids, identities) for doc in pending}


def decode(update: SyncedUpdate, applied: Applied) -> UpdateDocument | None:
    """The parsed document of a synced update, or None (counted as failed, with the reason)."""
    try:
        doc = parse_update(document_bytes(update), expected=update.identity)
    except DocumentError as exc:
        applied.failed.append({"UpdateID": update.identity[0], "RevisionNumber": str(update.identity[1]),
                               "Reason": exc.message})
        return None
    except Exception as exc:  # noqa: BLE001 - a cabinet that does not decode is that revision's failure
        applied.failed.append({"UpdateID": update.identity[0], "RevisionNumber": str(update.identity[1]),
                               "Reason": f"blob does not decode: {exc}"})
        return None
    if update.compressed:
        applied.compressed += 1
    return doc


def apply_batch(updates: list[SyncedUpdate], urls: dict[str, str], applied: Applied) -> None:
    """Store one GetUpdateData answer: the ready revisions into the catalog, the others held."""
    docs = [doc for update in updates if (doc := decode(update, applied)) is not None]
    if not docs:
        return
    with write_transaction():
        ready, held = _ready(docs)
        for doc, outcome in zip(ready, store.store_documents(ready), strict=True):
            applied.count(outcome)
            applied.applied_ids.append(doc.identity)
        by_identity = {doc.identity: doc for doc in docs}
        for identity, missing in held.items():
            _hold(by_identity[identity], missing)
            applied.held += 1
        for doc in ready:
            HeldRevision.delete().where(HeldRevision.update_id == doc.update_id,
                                        HeldRevision.revision_number == doc.revision_number).execute()
        _origins(urls)


def _hold(doc: UpdateDocument, missing: list[str]) -> None:
    HeldRevision.insert(update_id=doc.update_id, revision_number=doc.revision_number,
                        document=zlib.compress(doc.text.encode("utf-8"), 6), missing=json.dumps(missing[:MAX_MISSING])
                        ).on_conflict(conflict_target=[HeldRevision.update_id, HeldRevision.revision_number],
                                      update={HeldRevision.document: zlib.compress(doc.text.encode("utf-8"), 6),
                                              HeldRevision.missing: json.dumps(missing[:MAX_MISSING])}).execute()


def _origins(urls: dict[str, str]) -> None:
    """The origin URL (``MUUrl``) of the files the answer named."""
    for sha1, url in sorted(urls.items()):
        CatalogFile.update(mu_url=url).where(CatalogFile.sha1 == sha1, CatalogFile.mu_url.is_null()).execute()


def release_held(applied: Applied) -> None:
    """Move into the catalog every held revision whose names are now all present.

    A page of held rows at a time, each in its own transaction, so memory does not follow the
    number held (a first sync holds most of the catalog on the way: the list comes in UpdateID
    order, prerequisites in any). A row's ``missing`` is what it lacked when held; only rows whose
    missing names are all present now (or among the page's rows) are read and parsed. A revision
    released late in a pass may free an earlier row: passes repeat until one releases nothing."""
    while True:
        released, after = 0, 0
        while True:
            page = list(tuples(HeldRevision.select(HeldRevision.id, HeldRevision.update_id,
                                                   HeldRevision.revision_number, HeldRevision.missing)
                               .where(HeldRevision.id > after).order_by(HeldRevision.id).limit(RELEASE_PAGE)))
            if not page:
                break
            after = page[-1][0]
            released += _release_page(page, applied)
        if not released:
            return


def _release_page(page: list[tuple[int, str, int, str]], applied: Applied) -> int:
    lacking: dict[int, set[str]] = {}
    for row_id, _uid, _number, missing in page:
        try:
            lacking[row_id] = set(json.loads(missing or "[]"))
        except ValueError:
            lacking[row_id] = set()
    named = {name.partition("/")[0] for names_ in lacking.values() for name in names_}
    in_page_ids = {uid for _id, uid, _n, _m in page}
    in_page = {(uid, number) for _id, uid, number, _m in page}
    with write_transaction():
        ids, identities = _present(named)
        ids |= in_page_ids
        identities |= in_page
        candidates: list[int] = []
        for row_id, _uid, _number, _missing in page:
            left = {name for name in lacking[row_id] if not _satisfied(name, ids, identities)}
            if not left:
                candidates.append(row_id)
            elif left != lacking[row_id] and len(lacking[row_id]) < MAX_MISSING:
                HeldRevision.update(missing=json.dumps(sorted(left))).where(HeldRevision.id == row_id).execute()
        docs = []
        for row in HeldRevision.select().where(HeldRevision.id.in_(candidates)).order_by(HeldRevision.id):
            try:
                docs.append(parse_update(zlib.decompress(bytes(row.document)),
                                         expected=(row.update_id, row.revision_number)))
            except DocumentError as exc:  # cannot happen for what was parsed before; never keep it forever
                log.warning("held revision %s/%s dropped: %s", row.update_id, row.revision_number, exc.message)
                HeldRevision.delete().where(HeldRevision.id == row.id).execute()
        ready, still = _ready(docs)
        for doc, outcome in zip(ready, store.store_documents(ready), strict=True):
            applied.count(outcome)
            applied.released += 1
            applied.applied_ids.append(doc.identity)
            HeldRevision.delete().where(HeldRevision.update_id == doc.update_id,
                                        HeldRevision.revision_number == doc.revision_number).execute()
        for (uid, number), missing_now in still.items():
            HeldRevision.update(missing=json.dumps(missing_now[:MAX_MISSING])).where(
                HeldRevision.update_id == uid, HeldRevision.revision_number == number).execute()
    return len(ready)


def _satisfied(name: str, ids: set[str], identities: set[tuple[str, int]]) -> bool:
    """A ``missing`` entry: an UpdateID (a prerequisite) or ``UpdateID/RevisionNumber`` (a bundle member)."""
    uid, slash, number = name.partition("/")
    if not slash:
        return uid in ids
    try:
        return (uid, int(number)) in identities
    except ValueError:
        return False


def stored_identities(identities: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of these revisions are stored already (in the catalog or held): not fetched again."""
    found: set[tuple[str, int]] = set()
    for chunk in _chunks(uid for uid, _n in identities):
        found |= {(u, n) for u, n in tuples(Revision.select(Revision.update_id, Revision.revision_number)
                                            .where(Revision.update_id.in_(chunk)))}
        found |= {(u, n) for u, n in tuples(HeldRevision.select(HeldRevision.update_id, HeldRevision.revision_number)
                                            .where(HeldRevision.update_id.in_(chunk)))}
    return found
