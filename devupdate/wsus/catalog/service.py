"""The catalog's actions, one implementation for the CLI, the JSON API and the console: import,
list and show updates, decline, delete and restore, categories, the selected products.

States (C8, C9), in this order of precedence: ``deleted`` (admin flag: hidden from the catalog, listed
only when asked for), ``declined`` (admin flag), ``expired`` (``PublicationState``), ``superseded`` (a
current, published, non-declined, non-deleted update names it in its ``SupersededUpdates``), else
``published``. A deleted update keeps its revisions: restoring it, or importing it again, gives back
the same RevisionIDs (and no other revision ever gets them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import peewee

from devupdate.audit import trail
from devupdate.db import tuples, write_transaction
from devupdate.errors import DevupdateError, NotFound
from devupdate.wsus.catalog import STATES, store
from devupdate.wsus.catalog.document import UpdateDocument
from devupdate.wsus.catalog.loader import Refusal, expand, load
from devupdate.wsus.catalog.models import (
    BundledUpdate,
    CatalogFile,
    Category,
    Prerequisite,
    Revision,
    SelectedProduct,
    Supersedence,
    Update,
    UpdateCategory,
)

PRODUCT_TYPES = ("Company", "ProductFamily", "Product")
CLASSIFICATION = "UpdateClassification"
_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?\Z")


def import_paths(paths: Iterable[Path], *, actor: str, on_refusal: Callable[[Refusal], None] | None = None,
                 on_document: Callable[[UpdateDocument, str], None] | None = None) -> store.ImportCounts:
    """Import every document under ``paths``; a refused file is reported and skipped, nothing of it
    written. Each batch of documents is one transaction, a deleted update imported again restored
    in it."""
    refusals: list[Refusal] = []

    def documents() -> Iterable[UpdateDocument]:
        for path in expand(paths):
            loaded = load(path)
            if isinstance(loaded, Refusal):
                refusals.append(loaded)
                if on_refusal is not None:
                    on_refusal(loaded)
            else:
                yield loaded

    counts = store.import_documents(documents(), on_document=on_document)
    counts.refused = len(refusals)
    counts.refusals = [refusal.as_dict() for refusal in refusals]
    restored = counts.restored
    if counts.new or counts.updated or restored:
        with write_transaction():
            trail.record(actor, "wsus.import", "catalog",
                         detail={**{k: v for k, v in counts.as_dict().items() if k != "refusals"},
                                 "restored": restored[:100]})
    return counts


# -- reading ---------------------------------------------------------------------------------------------

def _guid(value: str, what: str) -> str:
    match = _GUID.match(value.strip())
    if not match:
        raise DevupdateError(f"{what} {value[:60]!r} is not a GUID (e.g. 56309036-4c77-4dd9-951a-99ee9c246a94)",
                             code="bad-id")
    return match.group(1).lower()


def _category(value: str, kinds: tuple[str, ...], what: str) -> str:
    """A category named by GUID or by its title (case-insensitive)."""
    match = _GUID.match(value.strip())
    query = Category.select().where(Category.category_type.in_(kinds))
    if match:
        found = query.where(Category.update_id == match.group(1).lower()).first()
    else:
        found = query.where(peewee.fn.LOWER(Category.title) == value.strip().lower()).first()
    if found is None:
        raise NotFound(f"no {what} {value[:80]!r} in the catalog (see 'devupdate wsus categories list')")
    return str(found.update_id)


def _superseding() -> peewee.SelectQuery:
    """UpdateIDs named by a current, published, non-declined update's SupersededUpdates."""
    superseder = Update.alias()
    return (Supersedence.select(Supersedence.update_id).join(Revision)
            .join(superseder, on=(superseder.update_id == Revision.update_id))
            .where(Revision.is_current, superseder.publication_state == "Published", ~superseder.declined,
                   ~superseder.deleted))


def _state(row: Update, superseded: set[str]) -> str:
    if row.deleted:
        return "deleted"
    if row.declined:
        return "declined"
    if row.publication_state == "Expired":
        return "expired"
    if row.update_id in superseded:
        return "superseded"
    return "published"


def _categories_of(update_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {u: [] for u in update_ids}
    for start in range(0, len(update_ids), 400):
        chunk = update_ids[start:start + 400]
        rows = tuples(UpdateCategory.select(UpdateCategory.update_id, Category.update_id, Category.title,
                                            Category.category_type)
                      .join(Category, on=(Category.update_id == UpdateCategory.category_id))
                      .where(UpdateCategory.update_id.in_(chunk)).order_by(Category.title))
        for update_id, category_id, title, kind in rows:
            found[update_id].append({"UpdateID": category_id, "Title": title, "Type": kind})
    return found


def _split(categories: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    products = [{"UpdateID": c["UpdateID"], "Title": c["Title"]} for c in categories if c["Type"] in PRODUCT_TYPES]
    classes = [{"UpdateID": c["UpdateID"], "Title": c["Title"]} for c in categories if c["Type"] == CLASSIFICATION]
    return products, classes


def search_condition(text: str) -> peewee.Expression:
    """Updates whose title or KB article contains ``text`` (case-insensitively), or whose UpdateID
    starts with it — the search of the CLI, the API and the console."""
    text = text.strip().strip("{}")
    condition = Update.title.contains(text) | Update.kb_article.contains(text.upper().removeprefix("KB"))
    if re.fullmatch(r"[0-9A-Fa-f-]+", text):
        condition = condition | Update.update_id.startswith(text.lower())
    return condition


def list_updates(*, product: str | None = None, classification: str | None = None, state: str | None = None,
                 search: str | None = None, limit: int | None = None, offset: int = 0,
                 before: int | None = None) -> list[dict[str, Any]]:
    """Software and driver updates (current revisions), newest RevisionID first; without ``state``
    every one but the deleted. ``limit``/``offset``: one page; ``before``: only RevisionIDs below it
    (the keyset the API pages by: the index on the current revision reads just the page)."""
    if state is not None and state not in STATES:
        raise DevupdateError(f"state {state[:40]!r} is not one of {', '.join(STATES)}", code="bad-state")
    query = (Update.select(Update, Revision.revision_number)
             .join(Revision, on=(Revision.id == Update.current_revision), attr="revision")
             .where(Update.update_type.in_(("Software", "Driver"))))
    if product:
        pid = _category(product, PRODUCT_TYPES, "product")
        query = query.where(Update.update_id.in_(
            UpdateCategory.select(UpdateCategory.update_id).where(UpdateCategory.category_id == pid)))
    if classification:
        cid = _category(classification, (CLASSIFICATION,), "classification")
        query = query.where(Update.update_id.in_(
            UpdateCategory.select(UpdateCategory.update_id).where(UpdateCategory.category_id == cid)))
    if search and search.strip():
        query = query.where(search_condition(search))
    superseded = Update.update_id.in_(_superseding())
    query = query.where(Update.deleted if state == "deleted" else ~Update.deleted)
    if state == "declined":
        query = query.where(Update.declined)
    elif state == "expired":
        query = query.where(~Update.declined, Update.publication_state == "Expired")
    elif state == "superseded":
        query = query.where(~Update.declined, Update.publication_state != "Expired", superseded)
    elif state == "published":
        query = query.where(~Update.declined, Update.publication_state != "Expired", ~superseded)
    if before is not None:
        query = query.where(Update.current_revision < before)
    query = query.order_by(Update.current_revision.desc())
    if limit is not None or offset:
        query = query.limit(limit if limit is not None else -1).offset(offset)
    rows = list(query)
    ids = [row.update_id for row in rows]
    names = {row[0] for row in _superseding().where(Supersedence.update_id.in_(ids)).tuples()} if ids else set()
    categories = _categories_of(ids)
    result = []
    for row in rows:
        products, classes = _split(categories[row.update_id])
        result.append({"UpdateID": row.update_id, "RevisionID": row.current_revision,
                       "RevisionNumber": row.revision.revision_number, "Type": row.update_type, "Title": row.title,
                       "KB": row.kb_article, "State": _state(row, names), "IsLeaf": row.is_leaf,
                       "Products": products, "Classifications": classes})
    return result


def show_update(value: str) -> dict[str, Any]:
    update_id = _guid(value, "UpdateID")
    row = Update.get_or_none(update_id=update_id)
    if row is None:
        raise NotFound(f"no update {update_id} in the catalog (see 'devupdate wsus updates list')")
    superseded = {r[0] for r in _superseding().where(Supersedence.update_id == update_id).tuples()}
    products, classes = _split(_categories_of([update_id])[update_id])
    revisions = [{"RevisionID": r.id, "RevisionNumber": r.revision_number, "Current": r.is_current,
                  "PublicationState": r.publication_state, "CreationDate": r.creation_date}
                 for r in Revision.select().where(Revision.update_id == update_id)
                 .order_by(Revision.revision_number.desc())]
    rid = row.current_revision
    files = [{"FileName": f.file_name, "SHA1": f.sha1, "SHA256": f.sha256, "Size": f.size,
              "PatchingType": f.patching_type, "MUUrl": f.mu_url, "Present": f.present}
             for f in CatalogFile.select().where(CatalogFile.revision == rid).order_by(CatalogFile.id)]
    clauses: dict[int, dict[str, Any]] = {}
    for p in Prerequisite.select().where(Prerequisite.revision == rid).order_by(Prerequisite.clause, Prerequisite.id):
        clauses.setdefault(p.clause, {"IsCategory": p.is_category, "AnyOf": []})["AnyOf"].append(p.update_id)
    bundled = [{"UpdateID": b.update_id, "RevisionNumber": b.revision_number}
               for b in BundledUpdate.select().where(BundledUpdate.revision == rid).order_by(BundledUpdate.id)]
    supersedes = [s.update_id for s in Supersedence.select().where(Supersedence.revision == rid)
                  .order_by(Supersedence.id)]
    superseded_by = sorted(r[0] for r in tuples(Revision.select(Revision.update_id).join(
        Supersedence, on=(Supersedence.revision == Revision.id))
        .where(Revision.is_current, Supersedence.update_id == update_id)))
    bundled_in = sorted(r[0] for r in tuples(Revision.select(Revision.update_id).join(
        BundledUpdate, on=(BundledUpdate.revision == Revision.id))
        .where(Revision.is_current, BundledUpdate.update_id == update_id)))
    return {"UpdateID": update_id, "Title": row.title, "Type": row.update_type, "KB": row.kb_article,
            "State": _state(row, superseded), "Declined": row.declined, "Deleted": row.deleted,
            "PublicationState": row.publication_state,
            "IsLeaf": row.is_leaf, "CategoryType": row.category_type, "RevisionID": rid,
            "Products": products, "Classifications": classes, "Revisions": revisions, "Files": files,
            "Prerequisites": [clauses[k] for k in sorted(clauses)], "BundledUpdates": bundled,
            "BundledIn": bundled_in, "Supersedes": supersedes, "SupersededBy": superseded_by,
            "ChangeSeq": row.change_seq}


def list_categories() -> list[dict[str, Any]]:
    selected = {r[0] for r in tuples(SelectedProduct.select(SelectedProduct.category_id))}
    parents: dict[str, list[str]] = {}
    rows = tuples(Prerequisite.select(Revision.update_id, Prerequisite.update_id).join(Revision)
                  .where(Revision.is_current, Revision.update_type == "Category").order_by(Prerequisite.id))
    for child, parent in rows:
        parents.setdefault(child, []).append(parent)
    order = {"Company": 0, "ProductFamily": 1, "Product": 2, CLASSIFICATION: 3}
    deleted = Update.select(Update.update_id).where(Update.deleted)
    result: list[dict[str, Any]] = [
        {"UpdateID": c.update_id, "Type": c.category_type, "Title": c.title,
         "Parents": parents.get(c.update_id, []), "Selected": c.update_id in selected}
        for c in Category.select().where(Category.update_id.not_in(deleted))]
    result.sort(key=lambda c: (order.get(c["Type"], 9), c["Title"].lower(), c["UpdateID"]))
    return result


# -- changing --------------------------------------------------------------------------------------------

def decline(value: str, *, actor: str, declined: bool = True) -> dict[str, Any]:
    update_id = _guid(value, "UpdateID")
    changed = store.set_declined(update_id, declined)
    if changed:
        with write_transaction():
            trail.record(actor, "wsus.decline" if declined else "wsus.undecline", update_id,
                         before={"Declined": not declined}, after={"Declined": declined})
    return {"UpdateID": update_id, "Declined": declined, "Changed": changed}


def revision_ids(update_id: str) -> list[int]:
    """The RevisionIDs of an update's stored revisions, highest RevisionNumber first."""
    return [r[0] for r in tuples(Revision.select(Revision.id).where(Revision.update_id == update_id)
                                 .order_by(Revision.revision_number.desc()))]


def delete(value: str, *, actor: str, deleted: bool = True) -> dict[str, Any]:
    """Hide an update from the catalog (``deleted=False``: restore it). Its revisions stay stored, so
    a restore or a new import of it gives back the same RevisionIDs."""
    update_id = _guid(value, "UpdateID")
    changed = store.set_deleted(update_id, deleted)
    rids = revision_ids(update_id)
    if changed:
        with write_transaction():
            trail.record(actor, "wsus.delete" if deleted else "wsus.restore", update_id,
                         before={"Deleted": not deleted}, after={"Deleted": deleted}, detail={"RevisionIDs": rids})
    return {"UpdateID": update_id, "Deleted": deleted, "Changed": changed, "RevisionIDs": rids}


def select_product(value: str, *, actor: str, selected: bool = True) -> dict[str, Any]:
    update_id = _guid(value, "product UpdateID")
    with write_transaction():
        category = Category.get_or_none(update_id=update_id)
        if category is None:
            raise NotFound(f"no category {update_id} in the catalog (see 'devupdate wsus categories list')")
        if category.category_type not in PRODUCT_TYPES:
            raise DevupdateError(f"{update_id} ({category.title}) is a {category.category_type}, not a product: "
                                 f"select one of type {', '.join(PRODUCT_TYPES)}", code="not-a-product", status=409)
        present = SelectedProduct.select().where(SelectedProduct.category_id == update_id).exists()
        changed = present != selected
        if changed:
            if selected:
                SelectedProduct.create(category_id=update_id, change_seq=store.next_seq())
            else:
                SelectedProduct.delete().where(SelectedProduct.category_id == update_id).execute()
                store.next_seq()
            trail.record(actor, "wsus.product.select" if selected else "wsus.product.unselect", update_id,
                         before={"Selected": present}, after={"Selected": selected})
    return {"UpdateID": update_id, "Title": category.title, "Selected": selected, "Changed": changed}


def selected_products() -> list[str]:
    return [r[0] for r in tuples(SelectedProduct.select(SelectedProduct.category_id)
                                 .order_by(SelectedProduct.category_id))]
