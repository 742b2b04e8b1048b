"""What a downstream server reads of the catalog ([wsus] §5.1, §5.2): identity lists changed after
an anchor, under the product and classification filter, and revisions with their files — in pages
by primary key inside one read snapshot, so neither the database nor this process ever holds the
whole catalog.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from devupdate.db import database, tuples
from devupdate.wsus.catalog.models import CatalogFile, Revision, Update

PAGE = 2000  # identities per query
CONFIG_TYPES = ("Category", "Detectoid")
UPDATE_TYPES = ("Software", "Driver")
_DECLARATION = re.compile(r"\A\ufeff?\s*<\?xml[^>]*\?>\s*")


@dataclass(frozen=True)
class Filter:
    """A ``ServerSyncFilter``: after ``anchor`` (None: everything), config or updates, the listed
    products and classifications (each id with its ``Delta``)."""

    anchor: int | None
    get_config: bool
    products: Sequence[tuple[str, bool]] = ()
    classifications: Sequence[tuple[str, bool]] = ()

    @property
    def nothing(self) -> bool:
        """Only one of the two lists given: no update has both (as real WSUS, ``exchanges/000007``)."""
        return not self.get_config and bool(self.products) != bool(self.classifications)


def _marks(count: int) -> str:
    return ", ".join([database.param] * count)


def identities(selection: Filter, high: int) -> Iterator[tuple[str, int]]:
    """(UpdateID, current RevisionNumber) of every update the filter selects with ``change_seq`` in
    (anchor, high], plus — whatever its sequence — those under an id sent with ``Delta=false``;
    ordered by UpdateID, read ``PAGE`` at a time (raw SQL: building peewee's query per page and row
    cost more than the database's work)."""
    if selection.nothing:
        return
    types = CONFIG_TYPES if selection.get_config else UPDATE_TYPES
    # the type and the upper bound as expressions (no index for them): each page then walks the primary
    # key from ``after`` instead of collecting every row of the type and sorting it (N pages × N rows)
    where = [f"(u.update_type || '') IN ({_marks(len(types))})", f"u.deleted = {database.param}",
             f"u.change_seq + 0 <= {database.param}"]
    params: list[object] = [*types, False, high]
    # correlated (one primary-key probe per row), so the walk of the primary key stays the plan
    member = ("EXISTS (SELECT 1 FROM wsus_update_category c WHERE c.update_id = u.update_id "
              "AND c.category_id IN ({}))")
    if not selection.get_config and selection.products:
        for listed in (selection.products, selection.classifications):
            where.append(member.format(_marks(len(listed))))
            params.extend(i for i, _ in listed)
    if selection.anchor is not None:
        again = [i for i, delta in (*selection.products, *selection.classifications) if not delta]
        changed = f"u.change_seq > {database.param}"
        where.append(f"({changed} OR {member.format(_marks(len(again)))})" if again else changed)
        params.extend([selection.anchor, *again])
    sql = (f"SELECT u.update_id, r.revision_number FROM wsus_update u JOIN wsus_revision r ON r.id = "
           f"u.current_revision WHERE {' AND '.join(where)} AND u.update_id > {database.param} "
           f"ORDER BY u.update_id LIMIT {PAGE}")
    after = ""
    while True:
        page = database.execute_sql(sql, [*params, after]).fetchall()
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]


_REVISION = ("SELECT r.id, r.document FROM wsus_revision r JOIN wsus_update u ON u.update_id = r.update_id "
             "WHERE r.update_id = {p} AND r.revision_number = {p} AND u.deleted = {p}")
_FILES = "SELECT sha1, mu_url FROM wsus_file WHERE revision_id = {p} ORDER BY id"


@dataclass(frozen=True)
class StoredRevision:
    update_id: str
    revision_number: int
    document: str  # the Update XML as imported, without an XML declaration
    files: tuple[tuple[str, str | None], ...]  # (SHA-1 hex, MUUrl) in document order


def revision(update_id: str, revision_number: int) -> StoredRevision | None:
    """One stored revision of an update that is not deleted, or None (unknown here)."""
    found = database.execute_sql(_REVISION.format(p=database.param), [update_id, revision_number, False]).fetchone()
    if found is None:
        return None
    rid, blob = found
    files = tuple((str(sha1), url) for sha1, url in
                  database.execute_sql(_FILES.format(p=database.param), [rid]).fetchall())
    text = _DECLARATION.sub("", zlib.decompress(bytes(blob)).decode("utf-8"), count=1)
    return StoredRevision(update_id, revision_number, text, files)


def current_identities(update_ids: Sequence[str]) -> list[tuple[str, int]]:
    """The current identity of each known, not deleted UpdateID, in the order asked."""
    found: dict[str, int] = {}
    for start in range(0, len(update_ids), 400):
        chunk = list(update_ids[start:start + 400])
        found.update((str(uid), int(number)) for uid, number in tuples(
            Update.select(Update.update_id, Revision.revision_number)
            .join(Revision, on=(Revision.id == Update.current_revision))
            .where(Update.update_id.in_(chunk) & ~Update.deleted)))
    return [(uid, found[uid]) for uid in dict.fromkeys(update_ids) if uid in found]


def files_known(sha1s: Sequence[str]) -> dict[str, bool]:
    """SHA-1 hex → whether its content is present, for every digest the catalog knows."""
    known: dict[str, bool] = {}
    for start in range(0, len(sha1s), 400):
        for sha1, present in tuples(CatalogFile.select(CatalogFile.sha1, CatalogFile.present)
                                    .where(CatalogFile.sha1.in_(list(sha1s[start:start + 400])))):
            known[str(sha1)] = known.get(str(sha1), False) or bool(present)
    return known
