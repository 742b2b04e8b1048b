"""Reading update documents from disk: ``.xml`` (UTF-8 or UTF-16) and ``.cab`` (the
``XmlUpdateBlobCompressed`` form: one LZX folder whose member ``blob`` is the document in UTF-16LE).

LZX is decoded by the package reader, which hands LZX folders to libmspack's ``cabextract`` (the
``cabarchive`` library reads only stored and MSZIP folders). A file is refused on its own, with one
line naming it and the reason; the others are still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devupdate.packages.cab import Cabinet
from devupdate.packages.errors import PackageError
from devupdate.wsus.catalog.document import MAX_BYTES, DocumentError, UpdateDocument, parse_update

SUFFIXES = (".xml", ".cab")


@dataclass(frozen=True)
class Refusal:
    path: Path
    code: str
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"file": str(self.path), "code": self.code, "message": self.message}


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; directories walked in name order for ``*.xml`` and ``*.cab``."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        else:
            yield path


def read_bytes(path: Path) -> bytes:
    """The document bytes of ``path`` (a cab's ``blob`` member), size-checked before reading."""
    if path.suffix.lower() == ".cab":
        with Cabinet(path) as cab:
            members = [m for m in cab.members if m.name.lower() == "blob"] or cab.members[:1]
            if not members:
                raise DocumentError("bad-cab", "cabinet has no member (expected one named 'blob')")
            if members[0].size > MAX_BYTES:
                raise DocumentError("too-large", f"document is {members[0].size} bytes, above the "
                                    f"{MAX_BYTES >> 20} MiB limit")
            return members[0].read_bytes()
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise DocumentError("too-large", f"document is {size} bytes, above the {MAX_BYTES >> 20} MiB limit")
    return path.read_bytes()


def load(path: Path) -> UpdateDocument | Refusal:
    try:
        return parse_update(read_bytes(path))
    except DocumentError as exc:
        return Refusal(path, exc.code, exc.message)
    except PackageError as exc:
        return Refusal(path, exc.code, exc.message)
    except OSError as exc:
        return Refusal(path, "unreadable", exc.strerror or str(exc))
