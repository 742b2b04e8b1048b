"""Stored objects by SHA-1 and file name: what ``/Content/<XX>/<SHA1>.<ext>`` may serve.

The object table knows bytes (SHA-256, SHA-1, size), not names; the extension in a content URL
comes from the file name an owner gives the object (a phone image's ``.nbt`` and ``.cat``, a WSUS
file's ``FileName``). So every owner registers, next to its tables, a query of the
``(sha256, file name)`` pairs it has for a SHA-1 (lower-case hex); an object is served under an
extension only if some owner names it so. Like the reference registry, the owners' models are
imported by the schema module, so every serving process has every resolver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from devupdate.content.models import StoredObject

#: owner → names(sha1) → (sha256, file name) pairs
_resolvers: dict[str, Callable[[str], Iterable[tuple[str, str]]]] = {}


def register_names(owner: str, names: Callable[[str], Iterable[tuple[str, str]]]) -> None:
    """``names(sha1)`` yields ``(sha256, file name)`` for each object of ``owner`` with that SHA-1
    (lower-case hex); a peewee ``.tuples()`` query is the usual form."""
    _resolvers[owner] = names


def owners() -> list[str]:
    return sorted(_resolvers)


def extension(file_name: str) -> str:
    """What follows the last dot of the name (``""`` without one): the ``<ext>`` of a content URL."""
    stem, dot, ext = file_name.rpartition("/")[2].rpartition(".")
    return ext if dot and stem else ""


def content_path(sha1: str, file_name: str) -> str:
    """``Content/<XX>/<SHA1>.<ext>`` (no ``.<ext>`` for a name without one): the one URL path of a
    stored file, as /Content resolves it (:func:`find` with :func:`extension`)."""
    upper = sha1.upper()
    ext = extension(file_name).lower()
    return f"Content/{upper[-2:]}/{upper}" + (f".{ext}" if ext else "")


@dataclass(frozen=True)
class NamedObject:
    sha256: str
    sha1: str
    size: int
    stored_at: dt.datetime  # naive UTC, when the object was first stored (its import)
    file_name: str


def find(sha1: str, ext: str) -> NamedObject | None:
    """The stored object with this SHA-1 that an owner names with extension ``ext`` (both any case)."""
    sha1, ext = sha1.lower(), ext.lower()
    objects = {o.sha256: o for o in StoredObject.select().where(StoredObject.sha1 == sha1)}
    if not objects:
        return None
    for owner in sorted(_resolvers):
        for sha256, file_name in _resolvers[owner](sha1):
            stored = objects.get(sha256)
            if stored is not None and extension(file_name).lower() == ext:
                return NamedObject(stored.sha256, stored.sha1, stored.size, stored.created_at, file_name)
    return None
