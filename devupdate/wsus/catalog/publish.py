"""Publishing generated documents into the catalog: the phone images of C10 and their categories.

The features that own the images (rules, imports) call down into this module from inside their own
transactions, so the catalog rows commit or roll back with theirs; the catalog never imports them.

A generated document is stored through the same reader (:func:`.document.parse_update`) and the same
store as an imported one. Its RevisionNumber is 1, raised by one when the generated text changes
(title, files, supersedence); the same text again changes nothing, so a re-import keeps every
RevisionID and ``change_seq``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import cast

from devupdate.content.models import StoredObject
from devupdate.db import write_transaction
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import UpdateDocument, parse_update
from devupdate.wsus.catalog.images import CATEGORIES, PhoneImage, image_document
from devupdate.wsus.catalog.models import CatalogFile, Revision, Supersedence, Update

_CHUNK = 400


def _generated(update_id: str, make: Callable[[int], str], *, only_if_absent: bool = False) -> UpdateDocument | None:
    """The document to store for ``update_id``, or None when the catalog already has its text."""
    current = (Revision.select(Revision.id, Revision.revision_number)
               .where(Revision.update_id == update_id, Revision.is_current).first())
    if current is None:
        return parse_update(make(1), expected=(update_id, 1))
    if only_if_absent:
        return None
    if store.document_text(current.id) == make(current.revision_number):
        return None
    number = current.revision_number + 1
    return parse_update(make(number), expected=(update_id, number))


def _keep_supersedence(images: list[PhoneImage]) -> list[PhoneImage]:
    """Supersedence never shrinks: an image keeps what its stored revision superseded (a version
    cleaned up since is still an earlier version), and each image supersedes all its rule's
    previous image superseded (``images`` come ordered by version within each rule)."""
    stored: dict[str, set[str]] = {}
    for chunk in _chunks(image.update_id for image in images):
        rows = (Supersedence.select(Revision.update_id, Supersedence.update_id).join(Revision)
                .where(Revision.update_id.in_(chunk), Revision.is_current).tuples())
        for update_id, superseded in cast(Iterable[tuple[str, str]], rows):
            stored.setdefault(update_id, set()).add(superseded)
    result: list[PhoneImage] = []
    previous: dict[str, PhoneImage] = {}  # rule Id → its previous image in this list
    for image in images:
        kept = set(stored.get(image.update_id, ()))
        before = previous.get(image.rule_id)
        if before is not None:
            kept |= set(before.superseded)
        image = dataclasses.replace(image, also_superseded=tuple(sorted(kept - set(image.superseded))))
        previous[image.rule_id] = image
        result.append(image)
    return result


def _image_document(image: PhoneImage, revision_number: int) -> str:
    return image_document(image, revision_number)


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def publish_images(images: list[PhoneImage], *, undecline: Iterable[str] = ()) -> dict[str, str]:
    """Publish (or bring up to date) the updates of these image versions and the three categories,
    in the caller's transaction. The files are marked present where their content is stored.
    ``undecline``: UpdateIDs whose rule was (re)created, so earlier declines (a removed rule) and
    deletes no longer hold.

    Returns UpdateID → new | updated | unchanged."""
    outcomes: dict[str, str] = {}
    if not images:
        return outcomes
    ours = {image.update_id for image in images}
    with write_transaction():
        store.lock_sequence()
        pending: list[UpdateDocument] = []
        for category in CATEGORIES:
            doc = _generated(category.update_id, category.document, only_if_absent=category.only_if_absent)
            if doc is not None:
                pending.append(doc)
        for image in _keep_supersedence(images):
            doc = _generated(image.update_id, functools.partial(_image_document, image))
            if doc is None:
                outcomes[image.update_id] = "unchanged"
            else:
                pending.append(doc)
        for doc, outcome in zip(pending, store.store_documents(pending), strict=True):
            if doc.update_id in ours:
                outcomes[doc.update_id] = outcome
        for chunk in _chunks(ours):
            current = Update.select(Update.current_revision).where(Update.update_id.in_(chunk))
            (CatalogFile.update(present=True)
             .where(CatalogFile.revision.in_(current), ~CatalogFile.present,
                    CatalogFile.sha256.in_(StoredObject.select(StoredObject.sha256))).execute())
        set_declined(undecline, False)
        store.undelete(undecline)
    return outcomes


def set_declined(update_ids: Iterable[str], declined: bool) -> int:
    """Decline (or undecline) the updates of these UpdateIDs that are in the catalog, in the caller's
    transaction, stamping the changed ones with one new ``change_seq``. Returns how many changed."""
    changed = 0
    with write_transaction():
        seq: int | None = None
        for chunk in _chunks(update_ids):
            flip = Update.select(Update.update_id).where(Update.update_id.in_(chunk), Update.declined != declined)
            todo = [row.update_id for row in flip]
            if not todo:
                continue
            seq = seq if seq is not None else store.next_seq()
            changed += Update.update(declined=declined, change_seq=seq).where(Update.update_id.in_(todo)).execute()
    return changed


def release_files(update_ids: Iterable[str]) -> int:
    """The content of these updates is about to leave the store (its image versions are cleaned up):
    their files are no longer present, so the catalog stops holding the bytes and /Content stops
    naming them. Returns the number of file rows changed."""
    changed = 0
    with write_transaction():
        for chunk in _chunks(update_ids):
            revisions = Revision.select(Revision.id).where(Revision.update_id.in_(chunk))
            changed += (CatalogFile.update(present=False)
                        .where(CatalogFile.revision.in_(revisions), CatalogFile.present).execute())
    return changed
