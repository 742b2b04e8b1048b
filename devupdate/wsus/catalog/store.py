"""Writing the catalog: importing parsed documents, deleting updates, the change sequence.

Each batch of documents is one transaction with one ``change_seq`` (§5.2): every row it changes
carries that value, so an anchor never falls inside a batch. Re-importing a stored revision with the
same text changes nothing (``unchanged``). Current revision (C2), products/classifications (C5) and
IsLeaf (§6.3) are maintained incrementally for the UpdateIDs a batch touches, never recomputed for
the whole catalog.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import peewee

from devupdate.db import database, is_sqlite, locked, tuples, utcnow, write_transaction
from devupdate.errors import DevupdateError, NotFound
from devupdate.wsus.catalog.document import MAX_REVISION, UpdateDocument
from devupdate.wsus.catalog.models import (
    BundledUpdate,
    CatalogFile,
    Category,
    ChangeSequence,
    EulaFragment,
    LocalizedFragment,
    Prerequisite,
    Revision,
    RevisionIdentity,
    Supersedence,
    Update,
    UpdateCategory,
)

BATCH = 1000  # documents per transaction
_CHUNK = 400  # ids per IN (...) list, below SQLite's variable limit
_ROWS = 200  # rows per multi-row INSERT (a revision row has 18 columns: 3,600 parameters)


def next_seq() -> int:
    """The next global ``change_seq``; call inside the writing transaction (the row lock orders
    writers, so sequence values commit in order on PostgreSQL too)."""
    bump = ChangeSequence.update(value=ChangeSequence.value + 1).where(ChangeSequence.id == 1)
    if not bump.execute():  # the first write ever: two first writers both end up incrementing the one row
        ChangeSequence.insert(id=1, value=0).on_conflict_ignore().execute()
        bump.execute()
    value: int = locked(ChangeSequence.select(ChangeSequence.value).where(ChangeSequence.id == 1)).scalar()
    return value


def lock_sequence() -> None:
    """Order this transaction's catalog writes after every other writer's without taking a value:
    a writer that first reads what is stored, then decides what to write (generated documents),
    reads only committed state (the row lock on PostgreSQL; SQLite's write lock already does)."""
    if not locked(ChangeSequence.select().where(ChangeSequence.id == 1)).exists():
        ChangeSequence.insert(id=1, value=0).on_conflict_ignore().execute()
        locked(ChangeSequence.select().where(ChangeSequence.id == 1)).exists()


def current_seq() -> int:
    return ChangeSequence.select(ChangeSequence.value).where(ChangeSequence.id == 1).scalar() or 0


def revision_id(update_id: str, revision_number: int) -> int:
    """The RevisionID of (UpdateID, RevisionNumber): allocated on first sight, then forever the same."""
    found = RevisionIdentity.get_or_none(update_id=update_id, revision_number=revision_number)
    if found is not None:
        return int(found.id)
    allocated = int(RevisionIdentity.insert(update_id=update_id, revision_number=revision_number).execute())
    if allocated > MAX_REVISION:
        raise DevupdateError("the catalog has used every 32-bit RevisionID", code="revision-ids-exhausted")
    return allocated


@dataclass
class ImportCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    refusals: list[dict[str, str]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # deleted updates the import showed again

    def as_dict(self) -> dict[str, Any]:
        return {"new": self.new, "updated": self.updated, "unchanged": self.unchanged, "refused": self.refused,
                "refusals": self.refusals}


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _insert_rows(model: type[peewee.Model], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, values as the driver takes them) in their order.

    One prepared statement run for every row (SQLite ``executemany``; PostgreSQL multi-row
    ``VALUES`` pages): building peewee's expression tree for a multi-row INSERT cost more than the
    database's own work."""
    if rows:
        keys = list(rows[0])
        _insert_tuples(model, keys, [tuple(row[key] for key in keys) for row in rows])


def _insert_tuples(model: type[peewee.Model], keys: list[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    fields = model._meta.fields
    defaults = [field for field in model._meta.sorted_fields if field.name not in keys and field.default is not None]
    if defaults:  # as peewee's insert fills them in (no column has a default in the database)
        keys = [*keys, *(field.name for field in defaults)]
        rows = [(*row, *(field.default() if callable(field.default) else field.default for field in defaults))
                for row in rows]
    columns = ", ".join(_quote(fields[key].column_name) for key in keys)
    insert = f"INSERT INTO {_quote(model._meta.table_name)} ({columns}) VALUES "
    _run_many(insert + "(" + ", ".join([database.param] * len(keys)) + ")", insert + "%s", rows)


def _update_tuples(model: type[peewee.Model], keys: list[str], where: str, rows: list[tuple[Any, ...]]) -> None:
    """``UPDATE model SET keys… WHERE where = …`` for every row (its last value is the key's)."""
    if not rows:
        return
    fields = model._meta.fields
    assignments = ", ".join(f"{_quote(fields[key].column_name)} = {database.param}" for key in keys)
    sql = (f"UPDATE {_quote(model._meta.table_name)} SET {assignments} "
           f"WHERE {_quote(fields[where].column_name)} = {database.param}")
    _run_many(sql, None, rows)


def _quote(name: str) -> str:
    return name.join(database.quote)


def _in(field: peewee.Field, values: list[Any]) -> peewee.Expression:
    """``field IN (…)``, its values bound as they are (peewee renders every value of a list as a node
    of its own: most of a batch's time went to that)."""
    if not values:
        return field.in_(values)
    return field.in_(peewee.SQL("(" + ", ".join([database.param] * len(values)) + ")", list(values)))


def _table(model: type[peewee.Model]) -> str:
    return _quote(model._meta.table_name)


def _run_many(sql: str, values_sql: str | None, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    cursor = database.cursor()
    if is_sqlite():
        cursor.executemany(sql, rows)
        return
    from psycopg2.extras import execute_batch, execute_values

    if values_sql is not None:
        execute_values(cursor, values_sql, rows, page_size=_ROWS)
    else:
        execute_batch(cursor, sql, rows, page_size=_ROWS)


def _insert_children(docs: list[tuple[int, UpdateDocument]]) -> None:
    """Every child row of a batch's new and changed revisions, one INSERT per table and chunk."""
    localized: list[dict[str, Any]] = []
    eulas: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    prerequisites: list[dict[str, Any]] = []
    bundled: list[dict[str, Any]] = []
    superseded: list[dict[str, Any]] = []
    for rid, doc in docs:
        localized += [{"revision": rid, "language": item.language, "title": item.title, "fragment": item.fragment}
                      for item in doc.localized]
        eulas += [{"revision": rid, "language": item.language, "fragment": item.fragment} for item in doc.eulas]
        files += [{"revision": rid, "sha1": item.sha1, "sha256": item.sha256, "size": item.size,
                   "file_name": item.file_name, "patching_type": item.patching_type, "modified": item.modified,
                   "present": False} for item in doc.files]
        literals = {(index, update_id): clause.is_category for index, clause in enumerate(doc.prerequisites)
                    for update_id in clause.update_ids}
        prerequisites += [{"revision": rid, "clause": index, "update_id": update_id, "is_category": flag}
                          for (index, update_id), flag in literals.items()]
        members = {(index, update_id): number for index, clause in enumerate(doc.bundled)
                   for update_id, number in clause}
        bundled += [{"revision": rid, "clause": index, "update_id": update_id, "revision_number": n}
                    for (index, update_id), n in members.items()]
        superseded += [{"revision": rid, "update_id": update_id} for update_id in dict.fromkeys(doc.superseded)]
    for model, rows in ((LocalizedFragment, localized), (EulaFragment, eulas), (CatalogFile, files),
                        (Prerequisite, prerequisites), (BundledUpdate, bundled), (Supersedence, superseded)):
        _insert_rows(model, rows)


def _delete_children(rids: list[int]) -> None:
    for model in (LocalizedFragment, EulaFragment, CatalogFile, Prerequisite, BundledUpdate, Supersedence):
        for start in range(0, len(rids), _CHUNK):
            model.delete().where(_in(model.revision, rids[start:start + _CHUNK])).execute()


def _named(rids: Iterable[int | None]) -> set[str]:
    """UpdateIDs the prerequisites of these revisions name (their IsLeaf may change)."""
    found: set[str] = set()
    for chunk in _id_chunks(rids):
        found |= {row[0] for row in tuples(Prerequisite.select(Prerequisite.update_id)
                                           .where(_in(Prerequisite.revision, chunk)))}
    return found


def _members(rids: Iterable[int | None]) -> set[str]:
    """UpdateIDs these revisions bundle (their categories may change)."""
    found: set[str] = set()
    for chunk in _id_chunks(rids):
        found |= {row[0] for row in tuples(BundledUpdate.select(BundledUpdate.update_id)
                                           .where(_in(BundledUpdate.revision, chunk)))}
    return found


def _id_chunks(rids: Iterable[int | None]) -> Iterator[list[int]]:
    items = sorted({rid for rid in rids if rid is not None})
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


class _Batch:
    """What one transaction touched, settled once at its end."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.leaf: set[str] = set()  # UpdateIDs whose IsLeaf may have changed
        self.categories: set[str] = set()  # UpdateIDs whose categories may have changed
        self.current: set[str] = set()  # UpdateIDs whose current revision must be settled

    def settle(self) -> None:
        for chunk in _chunks(self.current):
            _settle_current(chunk, self)
        _refresh_leaf(self.leaf, self.seq)
        _refresh_categories(self.categories)


_UPDATE_FIELDS = ("current_revision", "update_type", "title", "kb_article", "publication_state", "category_type")


def _settle_current(update_ids: list[str], batch: _Batch) -> None:
    """Make the highest RevisionNumber of each UpdateID current (C2) and its Update row follow it."""
    rows = list(Revision.select(Revision.id, Revision.update_id, Revision.revision_number, Revision.is_current,
                                Revision.update_type, Revision.title, Revision.kb_article,
                                Revision.publication_state, Revision.category_type)
                .where(_in(Revision.update_id, update_ids)).order_by(Revision.update_id, Revision.revision_number)
                .namedtuples())
    top: dict[str, Any] = {}
    previous: dict[str, int] = {}
    for row in rows:
        top[row.update_id] = row  # ordered by RevisionNumber: the last one wins
        if row.is_current:
            previous[row.update_id] = row.id
    demote = [rid for uid, rid in previous.items() if top[uid].id != rid]
    promote = [row.id for uid, row in top.items() if previous.get(uid) != row.id]
    for chunk in _id_chunks(demote):
        Revision.update(is_current=False).where(_in(Revision.id, chunk)).execute()
    for chunk in _id_chunks(promote):
        Revision.update(is_current=True, change_seq=batch.seq).where(_in(Revision.id, chunk)).execute()
    touched = [*previous.values(), *(row.id for row in top.values())]
    batch.leaf |= _named(touched) | set(update_ids)
    batch.categories |= _members(touched) | set(update_ids)
    gone = [uid for uid in update_ids if uid not in top]
    if gone:
        Update.delete().where(_in(Update.update_id, gone)).execute()
        UpdateCategory.delete().where(_in(UpdateCategory.update_id, gone)).execute()
    existing = {row[0] for row in tuples(Update.select(Update.update_id).where(_in(Update.update_id, update_ids)))}
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    for uid, revision in top.items():
        fields = (revision.id, revision.update_type, revision.title, revision.kb_article, revision.publication_state,
                  revision.category_type, batch.seq)
        if uid not in existing:
            inserts.append((uid, False, True, *fields))
        else:
            updates.append((*fields, uid))
    _insert_tuples(Update, ["update_id", "declined", "is_leaf", *_UPDATE_FIELDS, "change_seq"], inserts)
    _update_tuples(Update, [*_UPDATE_FIELDS, "change_seq"], "update_id", updates)
    categories = [row for row in top.values() if row.update_type == "Category"]
    for row in categories:
        Category.insert(update_id=row.update_id, category_type=row.category_type or "", title=row.title,
                        change_seq=batch.seq).on_conflict(
            conflict_target=[Category.update_id],
            update={Category.category_type: row.category_type or "", Category.title: row.title,
                    Category.change_seq: batch.seq}).execute()
    others = [uid for uid in update_ids if uid not in {row.update_id for row in categories}]
    if others:
        Category.delete().where(_in(Category.update_id, others)).execute()


def _refresh_leaf(update_ids: set[str], seq: int) -> None:
    """IsLeaf = no current revision's prerequisites name the UpdateID (§6.3); flips bump change_seq.

    One ``EXISTS`` per UpdateID, which stops at the first current revision naming it: a product or
    classification is named by most of the catalog, and reading every naming row made each batch
    slower the larger the catalog grew."""
    for chunk in _chunks(update_ids):
        rows = database.execute_sql(
            f"SELECT u.{_quote('update_id')}, u.{_quote('is_leaf')}, EXISTS (SELECT 1 FROM {_table(Prerequisite)} p "
            f"JOIN {_table(Revision)} r ON r.{_quote('id')} = p.{_quote('revision_id')} "
            f"WHERE p.{_quote('update_id')} = u.{_quote('update_id')} AND r.{_quote('is_current')}) "
            f"FROM {_table(Update)} u WHERE u.{_quote('update_id')} IN ({', '.join([database.param] * len(chunk))})",
            chunk).fetchall()
        to_branch = sorted(uid for uid, leaf, named in rows if named and leaf)
        to_leaf = sorted(uid for uid, leaf, named in rows if not named and not leaf)
        if to_branch:
            Update.update(is_leaf=False, change_seq=seq).where(_in(Update.update_id, to_branch)).execute()
        if to_leaf:
            Update.update(is_leaf=True, change_seq=seq).where(_in(Update.update_id, to_leaf)).execute()


def _refresh_categories(update_ids: set[str]) -> None:
    """An update's categories: its own ``IsCategory`` clauses, else those of the bundles holding it."""
    for chunk in _chunks(update_ids):
        own = tuples(Prerequisite.select(Revision.update_id, Prerequisite.update_id).join(Revision)
                     .where(Revision.is_current, Prerequisite.is_category, _in(Revision.update_id, chunk)))
        bundling = Revision.alias()
        via = tuples(BundledUpdate.select(BundledUpdate.update_id, Prerequisite.update_id)
                     .join(bundling, on=(BundledUpdate.revision == bundling.id))
                     .join(Prerequisite, on=(Prerequisite.revision == bundling.id))
                     .where(bundling.is_current, Prerequisite.is_category, _in(BundledUpdate.update_id, chunk)))
        rows: dict[tuple[str, str], bool] = {}
        for update_id, category_id in via:
            rows[(update_id, category_id)] = True
        for update_id, category_id in own:
            rows[(update_id, category_id)] = False
        stored = {(u, c): bool(b) for u, c, b in tuples(UpdateCategory.select(
            UpdateCategory.update_id, UpdateCategory.category_id, UpdateCategory.via_bundle)
            .where(_in(UpdateCategory.update_id, chunk)))}
        # only the differences are written: most of a batch's updates keep their categories
        key = f"WHERE {_quote('update_id')} = {database.param} AND {_quote('category_id')} = {database.param}"
        _run_many(f"DELETE FROM {_table(UpdateCategory)} {key}", None, sorted(set(stored) - set(rows)))
        _run_many(f"UPDATE {_table(UpdateCategory)} SET {_quote('via_bundle')} = {database.param} {key}", None,
                  [(b, u, c) for (u, c), b in sorted(rows.items()) if (u, c) in stored and stored[(u, c)] != b])
        _insert_tuples(UpdateCategory, ["update_id", "category_id", "via_bundle"],
                       [(u, c, b) for (u, c), b in rows.items() if (u, c) not in stored])


def _allocate(identities: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """RevisionIDs of a batch's identities, allocating the new ones in document order."""
    known: dict[tuple[str, int], int] = {}

    def read() -> None:
        for chunk in _chunks({uid for uid, _ in identities}):
            query = (RevisionIdentity.select(RevisionIdentity.update_id, RevisionIdentity.revision_number,
                                             RevisionIdentity.id).where(_in(RevisionIdentity.update_id, chunk)))
            for uid, number, rid in tuples(query):
                known[(uid, number)] = rid

    read()
    missing = [identity for identity in dict.fromkeys(identities) if identity not in known]
    if missing:  # one multi-row INSERT per chunk: ids follow the document order
        _insert_rows(RevisionIdentity, [{"update_id": uid, "revision_number": n} for uid, n in missing])
        read()
        if max(known.values()) > MAX_REVISION:
            raise DevupdateError("the catalog has used every 32-bit RevisionID", code="revision-ids-exhausted")
    return known


def _store_batch(docs: list[UpdateDocument], batch: _Batch, counts: ImportCounts) -> list[str]:
    latest: dict[tuple[str, int], UpdateDocument] = {}
    for doc in docs:
        latest[doc.identity] = doc  # the same revision twice in a batch: the later text wins
    rids = _allocate(list(latest))
    stored: dict[int, str] = {}
    for chunk in _id_chunks(rids.values()):
        stored.update(tuples(Revision.select(Revision.id, Revision.document_sha256).where(_in(Revision.id, chunk))))
    outcomes: dict[tuple[str, int], str] = {}
    inserts: list[dict[str, Any]] = []
    changed: list[tuple[int, UpdateDocument]] = []
    for identity, doc in latest.items():
        rid = rids[identity]
        if stored.get(rid) == doc.sha256:
            outcomes[identity] = "unchanged"
            continue
        fields = {"update_id": doc.update_id, "revision_number": doc.revision_number, "update_type": doc.update_type,
                  "publication_state": doc.publication_state, "creation_date": doc.creation_date,
                  "default_language": doc.default_language, "title": doc.title, "kb_article": doc.kb_article,
                  "category_type": doc.category_type,
                  "document": zlib.compress(doc.text.encode("utf-8"), 6), "document_sha256": doc.sha256,
                  "core": doc.core, "extended": doc.extended, "imported_at": utcnow(), "change_seq": batch.seq}
        if rid in stored:
            _delete_children([rid])
            Revision.update(**fields).where(Revision.id == rid).execute()
            outcomes[identity] = "updated"
        else:
            inserts.append({"id": rid, "is_current": False, **fields})
            outcomes[identity] = "new"
        changed.append((rid, doc))
        batch.current.add(doc.update_id)
    _insert_rows(Revision, inserts)
    _insert_children(changed)
    result = []
    seen: set[tuple[str, int]] = set()
    for doc in docs:
        outcome = outcomes[doc.identity] if doc.identity not in seen else "unchanged"
        seen.add(doc.identity)
        result.append(outcome)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    return result


def import_documents(documents: Iterable[UpdateDocument], *, batch_size: int = BATCH,
                     on_document: Callable[[UpdateDocument, str], None] | None = None) -> ImportCounts:
    """Store parsed documents, ``batch_size`` per transaction; returns new/updated/unchanged."""
    with bulk_settings():
        return _import_documents(documents, batch_size, on_document)


#: SQLite page cache of the importing connection (KiB; the default is 2 MiB): the pages of the
#: random-GUID indexes a batch touches are found in memory instead of being read again
IMPORT_CACHE_KIB = 256 * 1024
#: WAL pages after which a commit checkpoints (SQLite's default is 1,000): fewer, larger checkpoints
IMPORT_CHECKPOINT_PAGES = 1000


@contextlib.contextmanager
def bulk_settings(cache_kib: int = IMPORT_CACHE_KIB) -> Iterator[None]:
    """SQLite: a large page cache for this connection while it imports (or a sync applies), restored
    after. With the default 2 MiB, the random-GUID index pages a batch touches are read again for
    every batch once the catalog outgrows it, so each batch got slower the larger the catalog."""
    if not is_sqlite() or database.in_transaction():
        yield
        return
    cache = database.execute_sql("PRAGMA cache_size").fetchone()[0]
    checkpoint = database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0]
    database.execute_sql(f"PRAGMA cache_size = {-cache_kib}")
    database.execute_sql(f"PRAGMA wal_autocheckpoint = {IMPORT_CHECKPOINT_PAGES}")
    try:
        yield
    finally:
        database.execute_sql(f"PRAGMA cache_size = {int(cache)}")
        database.execute_sql(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")


def _import_documents(documents: Iterable[UpdateDocument], batch_size: int,
                      on_document: Callable[[UpdateDocument, str], None] | None) -> ImportCounts:
    counts = ImportCounts()
    pending: list[UpdateDocument] = []

    def flush() -> None:
        if not pending:
            return
        with write_transaction():  # a document's rows, and its update shown again, commit together
            batch = _Batch(next_seq())
            outcomes = list(zip(pending, _store_batch(pending, batch, counts), strict=True))
            batch.settle()
            restored = _restore({doc.update_id for doc in pending}, batch.seq)
        counts.restored += restored
        for doc, outcome in outcomes:
            if on_document is not None:
                on_document(doc, outcome)
        pending.clear()

    for doc in documents:
        pending.append(doc)
        if len(pending) >= batch_size:
            flush()
    flush()
    counts.restored.sort()
    return counts


def _restore(update_ids: Iterable[str], seq: int) -> list[str]:
    """Show again those of ``update_ids`` that were deleted (importing an update brings it back)."""
    restored: list[str] = []
    for chunk in _chunks(update_ids):
        found = [row[0] for row in tuples(Update.select(Update.update_id)
                                          .where(_in(Update.update_id, chunk), Update.deleted))]
        if found:
            Update.update(deleted=False, change_seq=seq).where(_in(Update.update_id, found)).execute()
        restored += found
    return restored


def delete_update(update_id: str) -> int:
    """Remove every revision of an UpdateID (their RevisionIDs stay allocated: a later import of the
    same revision gets the same RevisionID back). Returns the number of revisions removed."""
    update_id = update_id.lower()
    with write_transaction():
        rids = [row[0] for row in tuples(Revision.select(Revision.id).where(Revision.update_id == update_id))]
        if not rids:
            raise NotFound(f"no update {update_id} in the catalog (see 'devupdate wsus updates list')")
        batch = _Batch(next_seq())
        current = Revision.select(Revision.id).where(Revision.update_id == update_id, Revision.is_current).scalar()
        batch.leaf |= _named([current])
        batch.categories |= _members([current])
        _delete_children(rids)
        Revision.delete().where(_in(Revision.id, rids)).execute()
        _settle_current([update_id], batch)
        _refresh_leaf(batch.leaf, batch.seq)
        _refresh_categories(batch.categories)
    return len(rids)


def document_text(rid: int) -> str:
    """The stored document of a revision, character for character as imported."""
    blob = Revision.select(Revision.document).where(Revision.id == rid).scalar()
    if blob is None:
        raise NotFound(f"no revision {rid} in the catalog")
    return zlib.decompress(bytes(blob)).decode("utf-8")


def set_declined(update_id: str, declined: bool) -> bool:
    """Returns whether the flag changed (a change is stamped with a new change_seq)."""
    update_id = update_id.lower()
    with write_transaction():
        row = locked(Update.select().where(Update.update_id == update_id)).first()
        if row is None:
            raise NotFound(f"no update {update_id} in the catalog (see 'devupdate wsus updates list')")
        if row.declined == declined:
            return False
        Update.update(declined=declined, change_seq=next_seq()).where(Update.update_id == update_id).execute()
    return True



def set_deleted(update_id: str, deleted: bool) -> bool:
    """Hide an update from the catalog (or show it again); its revisions and RevisionIDs stay.
    Returns whether the flag changed (a change is stamped with a new change_seq)."""
    update_id = update_id.lower()
    with write_transaction():
        row = locked(Update.select().where(Update.update_id == update_id)).first()
        if row is None:
            raise NotFound(f"no update {update_id} in the catalog (see 'devupdate wsus updates list --state deleted')")
        if row.deleted == deleted:
            return False
        Update.update(deleted=deleted, change_seq=next_seq()).where(Update.update_id == update_id).execute()
    return True


def undelete(update_ids: Iterable[str]) -> list[str]:
    """Show again those of ``update_ids`` that were deleted (an import of them restores them)."""
    restored: list[str] = []
    for chunk in _chunks(update_ids):
        with write_transaction():
            found = [row[0] for row in tuples(locked(Update.select(Update.update_id)
                                                     .where(_in(Update.update_id, chunk), Update.deleted)))]
            if found:
                Update.update(deleted=False, change_seq=next_seq()).where(_in(Update.update_id, found)).execute()
        restored += found
    return sorted(restored)


def store_documents(documents: list[UpdateDocument]) -> list[str]:
    """Store parsed documents as one batch inside the caller's transaction (one ``change_seq``),
    for writers whose own rows must commit or roll back with the catalog's. Returns each
    document's outcome (new, updated, unchanged)."""
    if not documents:
        return []
    with write_transaction():  # a savepoint inside the caller's transaction
        batch = _Batch(next_seq())
        outcomes = _store_batch(documents, batch, ImportCounts())
        batch.settle()
    return outcomes
