"""The database side of a scan (spec/wsus.md §3.5–§3.8): one read snapshot per call and indexed
queries whose working set is the client's cache and the closure, never the catalog.

:func:`snapshot` is the call's one transaction (``REPEATABLE READ, READ ONLY`` on PostgreSQL; a
deferred transaction on SQLite, whose first read fixes the WAL snapshot). Inside it :func:`fetch`
reads the current revisions of a set of UpdateIDs (the rows of ``wsus_update`` by primary key, their
prerequisite and bundle rows by RevisionID), :func:`roots` the updates that start the closure, and
the pure core (``scan``) does the rest. Derived deployment ids are allocated after the snapshot, for
the page only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from devupdate.db import database, is_sqlite, tuples
from devupdate.wsus.catalog.models import (
    CatalogFile,
    Category,
    ChangeSequence,
    EulaFragment,
    LocalizedFragment,
    Prerequisite,
    Revision,
    RevisionIdentity,
    SelectedProduct,
    Update,
    UpdateCategory,
)
from devupdate.wsus.client import scan

CHUNK = 400  # ids per IN (...) list
#: update types that are never roots: they ride along through prerequisites (categories, detectoids)
#: or belong to the driver pass (none in v1)
NOT_ROOTS = ("Category", "Detectoid", "Driver")
SCOPES = ("all", "approved")


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """One consistent read of the catalog and the deployments for the whole call."""
    if is_sqlite():
        with database.atomic("DEFERRED"):
            yield
    else:
        with database.atomic():
            database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield


def high_water() -> int:
    """The highest change sequence visible in this snapshot (the new cookie's mark)."""
    row = database.execute_sql(f"SELECT value FROM {ChangeSequence._meta.table_name} WHERE id = 1").fetchone()
    return int(row[0] or 0) if row else 0


def raw_rows(sql: str, values: Sequence[object]) -> list[tuple]:
    """Rows of a raw query whose ``{marks}`` is an IN list of ``values`` (chunked): the per-page reads
    of SyncUpdates, where building a peewee query cost more than running it."""
    found: list[tuple] = []
    for chunk in _big_chunks(values):
        found += _rows(sql, chunk)
    return found


def _chunks(values: Iterable[object]) -> Iterator[list]:
    items = sorted(set(values))  # type: ignore[type-var]
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _rows(sql: str, values: Sequence[object]) -> list[tuple]:
    """Rows of a raw query whose ``{in}`` is an IN list of ``values``, bound as they are (peewee
    renders every value of a list as a node of its own and every row as an object: most of a large
    closure's time went to that)."""
    marks = ", ".join([database.param] * len(values))
    return list(database.execute_sql(sql.format(marks=marks), list(values)).fetchall())


_NODES = ("SELECT u.update_id, u.current_revision, u.is_leaf, u.change_seq, u.update_type, r.imported_at "
          "FROM wsus_update u JOIN wsus_revision r ON r.id = u.current_revision "
          "WHERE u.update_id IN ({marks}) AND NOT u.deleted")
_CLAUSES = "SELECT revision_id, clause, update_id FROM wsus_prerequisite WHERE revision_id IN ({marks})"
_BUNDLED = "SELECT revision_id, update_id FROM wsus_bundled WHERE revision_id IN ({marks}) ORDER BY id"
BIG_CHUNK = 2000  # ids per raw IN list (SQLite allows 32,766 parameters)


def _big_chunks(values: Iterable[object]) -> Iterator[list]:
    items = sorted(set(values))  # type: ignore[type-var]
    for start in range(0, len(items), BIG_CHUNK):
        yield items[start:start + BIG_CHUNK]


@dataclass
class Fetcher:
    """``scan.Fetch`` over the catalog; remembers each node's import date (LastChangeTime of the
    derived deployments) and counts what it read."""

    imported: dict[str, date] = field(default_factory=dict)
    rows_read: int = 0

    def __call__(self, update_ids: Collection[str]) -> Mapping[str, scan.Node]:
        found: dict[str, tuple[int, bool, int, str]] = {}
        for chunk in _big_chunks(update_ids):
            for uid, rid, is_leaf, seq, kind, imported in _rows(_NODES, chunk):
                found[uid] = (int(rid), bool(is_leaf), int(seq), kind)
                self.imported[uid] = _day(imported)
        by_rid = {rid: uid for uid, (rid, *_rest) in found.items()}
        clauses: dict[int, dict[int, set[str]]] = {}
        bundled: dict[int, list[str]] = {}
        for chunk in _big_chunks(by_rid):
            for rid, clause, uid in _rows(_CLAUSES, chunk):
                clauses.setdefault(rid, {}).setdefault(clause, set()).add(uid)
            for rid, uid in _rows(_BUNDLED, chunk):
                bundled.setdefault(rid, []).append(uid)
        self.rows_read += len(found) + sum(len(c) for c in clauses.values()) + sum(len(b) for b in bundled.values())
        return {uid: scan.Node(revision_id=rid, update_id=uid,
                               prerequisites=tuple(frozenset(c) for _, c in sorted(clauses.get(rid, {}).items())),
                               bundled=tuple(bundled.get(rid, ())), is_leaf=is_leaf, change_seq=seq,
                               update_type=kind)
                for uid, (rid, is_leaf, seq, kind) in found.items()}


def _day(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    return date(2000, 1, 1)


def descendants(category_ids: Iterable[str]) -> set[str]:
    """The categories and every category below them (Company → ProductFamily → Product chain through
    the categories' own prerequisites); reads only category rows."""
    found = {c for c in category_ids}
    frontier = set(found)
    while frontier:
        below: set[str] = set()
        for chunk in _chunks(frontier):
            query = (Prerequisite.select(Revision.update_id)
                     .join(Revision, on=(Revision.id == Prerequisite.revision))
                     .where(Prerequisite.update_id.in_(chunk), Revision.is_current,
                            Revision.update_type == "Category"))
            below |= {row[0] for row in tuples(query)}
        frontier = below - found
        found |= frontier
    return found


def known_categories(category_ids: Iterable[str]) -> dict[str, str]:
    """CategoryType of those of ``category_ids`` that are categories of the catalog."""
    kinds: dict[str, str] = {}
    for chunk in _chunks(category_ids):
        kinds.update(tuples(Category.select(Category.update_id, Category.category_type)
                            .where(Category.update_id.in_(chunk))))
    return kinds


@dataclass(frozen=True)
class Target:
    """What the roots of a computer depend on: its explicit effective deployments (UpdateID →
    ``scan.Deployment``) and the change sequence of deployments revoked for its groups (UpdateID →
    seq). Both follow from its groups alone, so computers of the same groups share them."""

    deployments: Mapping[str, scan.Deployment]
    revoked: Mapping[str, int] = field(default_factory=dict)


def _in_categories(update_ids: Iterable[str], categories: set[str]) -> set[str]:
    inside: set[str] = set()
    for chunk in _chunks(update_ids):
        inside |= {row[0] for row in tuples(UpdateCategory.select(UpdateCategory.update_id).where(
            UpdateCategory.update_id.in_(chunk), UpdateCategory.category_id.in_(sorted(categories))))}
    return inside


def roots(target: Target, *, scope: str = "all", filter_categories: Sequence[str] = (),
          today: date | None = None) -> dict[str, scan.Deployment]:
    """Roots R (§3.5 step 1): current revisions of non-declined, non-deleted updates with an effective
    deployment for the computer (expired ones only with Uninstall); with ``scope='all'`` also every
    other update of the selected products, as an implicit PreDeploymentCheck. Never categories,
    detectoids or drivers. With ``filter_categories`` only those in one of them (or below)."""
    found: dict[str, scan.Deployment] = {}
    explicit = dict(target.deployments)
    for chunk in _chunks(explicit):
        query = (Update.select(Update.update_id, Update.publication_state)
                 .where(Update.update_id.in_(chunk), ~Update.declined, ~Update.deleted,
                        Update.update_type.not_in(NOT_ROOTS)))
        for uid, state in tuples(query):
            deployment = explicit[uid]
            if state == "Expired" and deployment.action != scan.UNINSTALL:
                continue
            found[uid] = deployment
    if scope == "all":
        selected = [row[0] for row in tuples(SelectedProduct.select(SelectedProduct.category_id))]
        if selected:
            categories = descendants(selected)
            query = (Update.select(Update.update_id, Update.change_seq)
                     .join(UpdateCategory, on=(UpdateCategory.update_id == Update.update_id))
                     .where(UpdateCategory.category_id.in_(sorted(categories)), ~UpdateCategory.via_bundle,
                            ~Update.declined, ~Update.deleted,
                            Update.publication_state != "Expired", Update.update_type.not_in(NOT_ROOTS))
                     .distinct())
            day = today or date.today()
            for uid, _seq in tuples(query):
                if uid not in found:
                    found[uid] = scan.Deployment(action=scan.PRE_DEPLOYMENT_CHECK, last_change=day,
                                                 change_seq=target.revoked.get(uid, 0))
    if filter_categories:
        inside = _in_categories(found, descendants(filter_categories))
        found = {uid: dep for uid, dep in found.items() if uid in inside}
    return found


def revision_ids(identities: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """RevisionIDs of (UpdateID, RevisionNumber) identities this server knows."""
    wanted = set(identities)
    found: dict[tuple[str, int], int] = {}
    for chunk in _chunks(uid for uid, _ in wanted):
        for uid, number, rid in tuples(RevisionIdentity.select(RevisionIdentity.update_id,
                                                               RevisionIdentity.revision_number, RevisionIdentity.id)
                                       .where(RevisionIdentity.update_id.in_(chunk))):
            if (uid, number) in wanted:
                found[(uid, number)] = rid
    return found


def current_update_ids(rids: Iterable[int]) -> dict[int, str]:
    """RevisionID → UpdateID for those of ``rids`` that are current revisions."""
    found: dict[int, str] = {}
    for chunk in _chunks(rids):
        found.update(tuples(Update.select(Update.current_revision, Update.update_id)
                            .where(Update.current_revision.in_(chunk), ~Update.deleted)))
    return found


@dataclass(frozen=True)
class FileRow:
    revision_id: int
    sha1: str
    file_name: str


def fragments(rids: Sequence[int], info_types: Sequence[str], languages: Sequence[str]
              ) -> list[tuple[int, str]]:
    """(RevisionID, fragment) for each asked info type in the order asked, revisions in the order
    asked; ``LocalizedProperties`` and ``Eula`` for each of ``languages`` that exists."""
    out: list[tuple[int, str]] = []
    if not rids:
        return out
    for info in dict.fromkeys(info_types):
        if info in ("Core", "Extended"):
            column = "core" if info == "Core" else "extended"
            texts: dict[int, str] = dict(raw_rows(f"SELECT id, {column} FROM {Revision._meta.table_name} "
                                              "WHERE id IN ({marks})", rids))
            out += [(rid, texts[rid]) for rid in rids if texts.get(rid)]
        elif info in ("LocalizedProperties", "Eula"):
            model = LocalizedFragment if info == "LocalizedProperties" else EulaFragment
            rows: dict[int, list[tuple[str, str]]] = {}
            for chunk in _chunks(rids):
                query = (model.select(model.revision, model.language, model.fragment)
                         .where(model.revision.in_(chunk), model.language.in_(list(languages))))
                for rid, language, text in tuples(query):
                    rows.setdefault(rid, []).append((language, text))
            rank = {language: index for index, language in enumerate(languages)}
            for rid in rids:
                for _language, text in sorted(rows.get(rid, ()), key=lambda row: rank.get(row[0], 99)):
                    out.append((rid, text))
    return out


def files(rids: Iterable[int]) -> list[FileRow]:
    rows: list[FileRow] = []
    for chunk in _chunks(rids):
        rows += [FileRow(rid, sha1, name) for rid, sha1, name in tuples(
            CatalogFile.select(CatalogFile.revision, CatalogFile.sha1, CatalogFile.file_name)
            .where(CatalogFile.revision.in_(chunk)).order_by(CatalogFile.revision, CatalogFile.id))]
    return rows


def files_by_sha1(digests: Iterable[str]) -> list[FileRow]:
    rows: dict[str, FileRow] = {}
    for chunk in _chunks(digests):
        for rid, sha1, name in tuples(CatalogFile.select(CatalogFile.revision, CatalogFile.sha1,
                                                         CatalogFile.file_name)
                                      .where(CatalogFile.sha1.in_(chunk)).order_by(CatalogFile.id)):
            rows.setdefault(sha1, FileRow(rid, sha1, name))
    return list(rows.values())
