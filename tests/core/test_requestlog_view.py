"""The request-log viewer's reader: pages from a byte offset, search, over-long and broken lines, a
scan budget per request, and file names taken only as the writer makes them."""

from __future__ import annotations

import io

import pytest

from devupdate.audit import requestlog_view as view
from devupdate.audit.requestlog import HEADER, AuditRow, format_row
from devupdate.errors import DevupdateError


def _log(count: int) -> bytes:
    rows = [format_row(AuditRow(address=f"10.0.0.{i % 250}", mac=f"0004F2{i:06X}", model="CX600",
                                result="Success"), 1_790_000_000 + i) for i in range(count)]
    return HEADER + b"".join(rows)


def test_pages_follow_each_other_to_the_end():
    handle = io.BytesIO(_log(120))
    seen, start = [], 0
    while start is not None:
        found = view.read_page(handle, start=start, limit=50)
        seen += [row["Mac Address"] for row in found.rows]
        start = found.next_start
    assert seen == [f"0004F2{i:06X}" for i in range(120)]
    first = view.read_page(handle, limit=2).rows[0]
    assert (first["User Host Address"], first["Model"], first["Result"]) == ("10.0.0.0", "CX600", "Success")


def test_search_and_scan_budget():
    handle = io.BytesIO(_log(2000))
    found = view.read_page(handle, search="0004f20007cf")  # case-insensitive; row 1999
    assert [row["Mac Address"] for row in found.rows] == ["0004F20007CF"] and found.next_start is None
    partial = view.read_page(handle, search="nowhere", budget=10_000)
    assert partial.rows == [] and partial.next_start is not None and 10_000 <= partial.scanned < 10_400
    resumed = view.read_page(handle, start=partial.next_start, search="0004F20007CF")
    assert len(resumed.rows) == 1


def test_odd_offsets_long_lines_and_broken_bytes():
    data = _log(3)
    tail = b"x" * (view.MAX_LINE * 3) + b"\r\n" + b"\xff\xfe,\"unclosed\r\n" + _log(1)[len(HEADER):]
    handle = io.BytesIO(data + tail)
    middle = view.read_page(handle, start=len(HEADER) + 5)  # inside row 0: starts at row 1
    assert [row["Mac Address"] for row in middle.rows[:2]] == ["0004F2000001", "0004F2000002"]
    assert len(middle.rows) == 5 and middle.rows[2]["Logging DateTime"] == "x" * view.MAX_LINE  # cut, skipped past
    assert middle.rows[4]["Mac Address"] == "0004F2000000"
    assert middle.rows[3]["Logging DateTime"].startswith("\ufffd")
    assert view.read_page(handle, start=len(handle.getvalue()) + 10).rows == []
    with pytest.raises(DevupdateError, match="longer than 200"):
        view.read_page(handle, search="x" * 201)


@pytest.mark.parametrize("name", ["../x.log", "imageUpdates/RequestHandlerAuditLog_a_20261201.log", "a\\b",
                                  "RequestHandlerAuditLog_a_2026120.log", "x" * 301, ""])
def test_only_writer_names_are_opened(name):
    with pytest.raises(DevupdateError) as refused:
        view.open_file(object(), name)
    assert refused.value.status == 404
