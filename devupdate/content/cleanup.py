"""Deleting stored objects that nothing references any more, and orphans a crash left behind."""

from __future__ import annotations

from devupdate.content import registry
from devupdate.content.areas import IMAGES
from devupdate.content.models import StoredObject
from devupdate.db import tuples
from filestore import FileStore


def release_unreferenced() -> list[StoredObject]:
    """Delete the rows of objects no owner references (inside the caller's write transaction) and
    return them; their files go with :func:`delete_files` once that transaction has committed."""
    query = StoredObject.select()
    for referenced in registry.reference_queries():
        query = query.where(StoredObject.sha256.not_in(referenced))
    unused = list(query)
    if unused:
        StoredObject.delete().where(StoredObject.sha256.in_([o.sha256 for o in unused])).execute()
    return unused


def delete_files(store: FileStore, objects: list[StoredObject]) -> None:
    """After commit: a rollback must never leave rows pointing at deleted files."""
    for stored in objects:
        store.delete(IMAGES, stored.sha256)


def remove_orphans(store: FileStore) -> int:
    """Objects that no row names and no owner has in flight (e.g. left by a crash mid-import)."""
    # Order matters: an owner journals, then renames, then commits its rows. Listing first and reading
    # the in-flight checks and rows afterwards means every listed object is either in flight or known.
    listed = list(store.objects(IMAGES))
    if registry.busy_owners():
        return 0
    known = {sha for (sha,) in tuples(StoredObject.select(StoredObject.sha256))}
    return sum(1 for sha256 in listed if sha256 not in known and store.delete(IMAGES, sha256))
