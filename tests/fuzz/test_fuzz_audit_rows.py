"""Properties of the request audit row (devupdate/audit/requestlog.py): whatever a device sends,
its row is one CSV record of 13 cells that a spreadsheet shows as text."""

from __future__ import annotations

import csv
import io
import re

from fuzzkit import FUZZ, mixed_text
from hypothesis import given
from hypothesis import strategies as st

from devupdate.audit.requestlog import COLUMNS, AuditRow, format_row

cells = st.one_of(mixed_text, st.sampled_from(["=HYPERLINK(\"x\")", "=cmd|' /C calc'!A0", " +1", "-2", "@SUM(A1)",
                                               'a,"b"', "x\r\ny", "\t=1"]))


@FUZZ
@given(st.lists(cells, min_size=12, max_size=12), st.floats(0, 4e9))
def test_a_row_is_one_record_of_inert_cells(values, now):
    line = format_row(AuditRow(*values), now)
    assert line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]
    [record] = list(csv.reader(io.StringIO(line.decode("utf-8"), newline="")))
    assert len(record) == len(COLUMNS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record[0])
    for sent, shown in zip(values, record[1:], strict=True):
        cleaned = re.sub(r"[\x00-\x1f\x7f]", " ", sent)
        assert shown == ("'" + cleaned if cleaned.lstrip(" ")[:1] in ("=", "+", "-", "@") else cleaned)
