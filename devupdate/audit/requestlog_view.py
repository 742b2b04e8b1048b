"""Reading the request audit log files a page at a time (the console's viewer): rows from a byte
offset, optionally only those containing a search text, line by line — a large file is never read
into memory, and one request scans at most ``SCAN_BUDGET`` bytes (the page then says where to go on).
File names are taken only as the writer makes them (``parse_file_name``) and opened through the
filestore, which keeps them inside the area.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, BinaryIO

from devupdate.audit.requestlog import AREA, COLUMNS, DIRECTORY, list_files, parse_file_name
from devupdate.errors import DevupdateError, NotFound

SCAN_BUDGET = 8 << 20
MAX_LINE = 64 << 10  # a longer "row" is not one the writer made: shown cut
MAX_SEARCH = 200


@dataclass
class Page:
    rows: list[dict[str, str]]
    start: int
    next_start: int | None  # None: the end of the file
    scanned: int


def files(store) -> list[dict[str, Any]]:
    """The audit log files, newest day first."""
    out = []
    for entry in reversed(list_files(store)):
        name = entry.relpath.rsplit("/", 1)[-1]
        server, day, n = parse_file_name(name) or ("", "", 0)
        out.append({"Name": name, "Server": server, "Day": f"{day[:4]}-{day[4:6]}-{day[6:]}", "Part": n,
                    "Size": entry.size})
    return out


def open_file(store, name: str) -> BinaryIO:
    """A log file by its bare name; anything else (paths, other files) is not found."""
    if len(name) > 300 or "/" in name or "\\" in name or parse_file_name(name) is None:
        raise NotFound(f"{name[:80]!r} is not a request audit log file name", code="no-such-log")
    try:
        return store.open_named(AREA, f"{DIRECTORY}/{name}")
    except Exception:
        raise NotFound(f"there is no request audit log {name!r}", code="no-such-log") from None


def _row(line: bytes) -> dict[str, str]:
    text = line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r\n")
    cells = next(csv.reader([text]), [])
    return {column: cells[i] if i < len(cells) else "" for i, column in enumerate(COLUMNS)}


def read_page(handle: BinaryIO, *, start: int = 0, search: str = "", limit: int = 50,
              budget: int = SCAN_BUDGET) -> Page:
    """Up to ``limit`` rows from byte ``start`` (the header skipped), those containing ``search``
    (case-insensitive) when given."""
    if len(search) > MAX_SEARCH:
        raise DevupdateError(f"the search text is longer than {MAX_SEARCH} characters", code="bad-search")
    if start < 0:
        raise DevupdateError("the start offset must be 0 or more", code="bad-parameter")
    needle = search.lower().encode("utf-8", "replace")
    if start >= handle.seek(0, 2):  # at or past the end (a hand-made offset): an empty last page
        return Page([], start, None, 0)
    handle.seek(start)
    if start > 0:  # not at a row boundary? skip to the next one (an offset from a link always is one)
        handle.seek(start - 1)
        if handle.read(1) != b"\n":
            handle.readline(MAX_LINE)
    position, scanned = handle.tell(), 0
    rows: list[dict[str, str]] = []
    while len(rows) < limit and scanned < budget:
        line = handle.readline(MAX_LINE)
        if not line:
            return Page(rows, start, None, scanned)
        if len(line) == MAX_LINE and not line.endswith(b"\n"):  # over-long: skip the rest of it
            while more := handle.readline(MAX_LINE):
                scanned += len(more)
                if more.endswith(b"\n"):
                    break
        scanned += len(line)
        position = handle.tell()
        if line.startswith(b"Logging DateTime,"):
            continue
        if needle and needle not in line.lower():
            continue
        rows.append(_row(line))
    return Page(rows, start, position, scanned)
