"""A vendor package opened for import: every check done before the importer stores anything."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from devupdate.packages.cab import Cabinet, CabMember, Limits, MemberStream
from devupdate.packages.description import FileRef, UpdateDescription, parse_descriptions
from devupdate.packages.errors import PackageError

DESCRIPTION_MAX = 8 * 1024**2  # an .xml member bigger than this is refused rather than parsed
CHUNK = 1 << 20
T = TypeVar("T")


class Package:
    """A checked cab: ``updates`` it describes and ``members`` (lower-cased name → CabMember) to stage.

    ``open_package`` has decoded every member once into a private temporary directory, so
    damage was found before anything is staged; ``member.open()`` reads that copy (any order,
    any number of times). Close it (or use ``with``) to remove the temporary directory.
    """

    def __init__(self, cabinet: Cabinet, updates: list[UpdateDescription]) -> None:
        self.cabinet = cabinet
        self.path = cabinet.path
        self.cab_size = cabinet.file_size
        self.updates = updates
        self.members: dict[str, CabMember] = {m.name.lower(): m for m in cabinet.members}

    @functools.cached_property
    def cab_sha256(self) -> str:
        """SHA-256 (hex) of the cab file as given, computed on first use."""
        return _hash_file(self.path)

    def member(self, name: str) -> CabMember:
        """The member called ``name``, ignoring case (KeyError if absent)."""
        return self.members[name.lower()]

    def close(self) -> None:
        self.cabinet.close()

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_package(path: Path | str, limits: Limits = Limits(), *, workdir: Path | str | None = None) -> Package:
    """Open, fully decode and check a vendor cab; PackageError (with its code) on any refusal.

    Order: header checks (no decompression) → one decoding pass writing every member to a
    private temporary directory under ``workdir`` (default: the system's; put it on the
    filestore's disk for big cabs) → descriptions parsed → cross-checks (missing-file,
    missing-catalog). Disk use: the uncompressed content, until the Package is closed.
    """
    cabinet = Cabinet(path, limits, workdir=workdir)
    try:
        cabinet.materialize()
        documents: dict[str, bytes] = {}
        for member in cabinet.members:
            if member.name.lower().endswith(".xml"):
                if member.size > DESCRIPTION_MAX:
                    raise PackageError("bad-description", f"{member.name} is {member.size} bytes; a description "
                                       f"may be at most {DESCRIPTION_MAX} bytes")
                documents[member.name] = member.read_bytes()
        updates = validate_package({m.name: m.size for m in cabinet.members}, parse_descriptions(documents))
        return Package(cabinet, updates)
    except BaseException:
        cabinet.close()
        raise


def scan_package(path: Path | str, limits: Limits = Limits(), *,
                 stage: Callable[[CabMember, MemberStream], T] | None = None,
                 ) -> tuple[list[UpdateDescription], dict[str, T]]:
    """Decode the cab once, in cab order, handing every non-description member to ``stage``.

    The importer's fast path: each member streams straight into the filestore (hashed as it is
    written) instead of through a temporary copy, so a 100 MB cab costs one decode and one write.
    Descriptions (.xml) are read into memory and checked after the pass, like ``open_package``.
    Returns (updates, lower-cased member name → what ``stage`` returned). With ``stage`` None the
    members are decoded (so damage is still found) and dropped: a cheap description-only pass.
    If anything is refused the caller discards what it staged.
    """
    documents: dict[str, bytes] = {}
    staged: dict[str, T] = {}
    with Cabinet(path, limits) as cabinet:
        buffer = memoryview(bytearray(CHUNK))
        for member in cabinet.members:
            with member.open() as stream:
                if member.name.lower().endswith(".xml"):
                    if member.size > DESCRIPTION_MAX:
                        raise PackageError("bad-description", f"{member.name} is {member.size} bytes; a description "
                                           f"may be at most {DESCRIPTION_MAX} bytes")
                    documents[member.name] = stream.read()
                elif stage is not None:
                    staged[member.name.lower()] = stage(member, stream)
                else:
                    while stream.readinto(buffer):
                        pass
        updates = validate_package({m.name: m.size for m in cabinet.members}, parse_descriptions(documents))
    return updates, staged


def validate_package(members: Mapping[str, int] | Iterable[str],
                     updates: Sequence[UpdateDescription]) -> list[UpdateDescription]:
    """Cross-check descriptions against the member names; returns the updates with catalogs resolved.

    Every file an update names must be in the cab (missing-file). Every image (.nbt) — named by
    an update or merely present — needs its catalog: the one its File entry names, else the
    .cat of the same stem, which is then filled in (missing-catalog). Names match ignoring case.
    """
    names = {name.lower(): name for name in members}
    catalog_of: dict[str, str] = {}
    resolved = []
    for update in updates:
        files = []
        for ref in update.files:
            if ref.name.lower() not in names:
                raise PackageError("missing-file", f"{update.source or 'the description'} names {ref.name} "
                                   f"(update {update.id}), which the cab does not contain")
            catalog = ref.catalog
            if catalog is None and ref.name.lower().endswith(".nbt"):
                catalog = names.get(_stem_catalog(ref.name).lower())
                if catalog is None:
                    raise PackageError("missing-catalog", f"image {ref.name} (update {update.id}) has no "
                                       f"catalog: the cab has no {_stem_catalog(ref.name)}")
            if catalog is not None:
                if catalog.lower() not in names:
                    raise PackageError("missing-catalog", f"{update.source or 'the description'} names catalog "
                                       f"{catalog} for {ref.name}, which the cab does not contain")
                catalog_of[ref.name.lower()] = catalog
            files.append(FileRef(ref.name, catalog))
        resolved.append(replace(update, files=tuple(files)))
    for lower, name in names.items():
        if lower.endswith(".nbt") and lower not in catalog_of and _stem_catalog(lower) not in names:
            raise PackageError("missing-catalog", f"image {name} has no catalog: the cab has no {_stem_catalog(name)}")
    return resolved


def _stem_catalog(name: str) -> str:
    """'CPE.nbt' → 'CPE.cat': the catalog an image has when its File entry names none."""
    return name.rsplit(".", 1)[0] + ".cat"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
