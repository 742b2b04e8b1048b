"""Writing cabs (`devupdate pack`, test fixtures) with cabarchive's MSZIP writer.

cabarchive builds the whole cab in memory (one folder, every member and its compressed blocks),
which is fine for packing a few images; ``write_cab`` refuses what it cannot write correctly
(more than 65535 blocks in its single folder) and writes atomically: temp file, fsync, rename.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cabarchive import CabArchive, CabFile

from devupdate.packages.cab import BLOCK_MAX, unsafe_name_reason
from devupdate.packages.description import UpdateDescription, describe_updates
from devupdate.packages.errors import PackageError
from devupdate.packages.package import validate_package

MAX_WRITE = 0xFFFF * BLOCK_MAX  # one CFFOLDER counts at most 65535 data blocks
DESCRIPTION_NAME = "UCUpdates.xml"


def write_cab(out_path: Path | str, members: Mapping[str, Path | bytes], compress: bool = True, *,
              mtime: datetime.datetime | None = None) -> int:
    """Write ``members`` (cab name → file or bytes) as one MSZIP (or stored) cab; returns its size.

    Names use '/' (stored as '\\'); unsafe or case-insensitively duplicate names are refused, so
    ``pack`` never writes a cab ``open_package`` would reject for its names. Member times are
    ``mtime``, else the file's modification time, else now.
    """
    archive = CabArchive()
    seen: dict[str, str] = {}
    total = 0
    for name, source in members.items():
        problem = unsafe_name_reason(name)
        if problem:
            raise PackageError("unsafe-name", f"member name {name!r} {problem}")
        if name.lower() in seen:
            raise PackageError("duplicate-name", f"members {seen[name.lower()]!r} and {name!r} differ only in case")
        seen[name.lower()] = name
        if isinstance(source, bytes | bytearray | memoryview):
            data, when = bytes(source), mtime or datetime.datetime.now()
        else:
            data = Path(source).read_bytes()
            when = mtime or datetime.datetime.fromtimestamp(Path(source).stat().st_mtime)
        total += len(data)
        if total > MAX_WRITE:
            raise PackageError("too-large", f"the members add up to more than {MAX_WRITE} bytes, the most one "
                               "cabinet folder can hold")
        archive[name] = CabFile(data, mtime=when)
    blob = archive.save(compress=compress)
    _write_atomically(Path(out_path), blob)
    return len(blob)


def build_package(out_path: Path | str, updates: Sequence[UpdateDescription], images: Mapping[str, Path | bytes],
                  catalogs: Mapping[str, Path | bytes] | None = None, *, description_name: str = DESCRIPTION_NAME,
                  compress: bool = True, mtime: datetime.datetime | None = None) -> list[UpdateDescription]:
    """Write a vendor-style cab: the images, their catalogs and a description of ``updates``.

    Catalogs are required, never invented: an image (.nbt) without its .cat is refused
    (missing-catalog), as are files the updates name but nobody supplied (missing-file).
    Returns the updates as written (catalogs resolved by the same rule the importer applies).
    """
    members: dict[str, Path | bytes] = {**images, **(catalogs or {})}
    resolved = validate_package(list(members), updates)
    if description_name.lower() in {name.lower() for name in members}:
        raise PackageError("duplicate-name", f"a member is already called {description_name}")
    members[description_name] = describe_updates(resolved)
    write_cab(out_path, members, compress, mtime=mtime)
    return resolved


def _write_atomically(path: Path, data: bytes) -> None:
    """temp → fsync → rename, so a crash never leaves half a cab under the final name."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as handle:  # normal permissions (mkstemp would make it 0600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
