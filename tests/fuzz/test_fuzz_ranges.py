"""Properties of the download request headers (devupdate/web/byteranges.py): Range, If-Range and the
conditional headers a phone (or anything) may send with a download."""

from __future__ import annotations

import string

from fuzzkit import FUZZ, mixed_text
from hypothesis import given
from hypothesis import strategies as st

from devupdate.web.byteranges import MAX_RANGES, parse_ranges, precondition, range_applies

number = st.one_of(st.integers(0, 5000).map(str), st.sampled_from(["", " ", "-1", "1e3", "0x10", "٣", "9" * 25]))
range_item = st.one_of(st.builds(lambda a, b: f"{a}-{b}", number, number), st.builds(lambda b: f"-{b}", number),
                       mixed_text, st.text(string.digits + "-, ", max_size=12))
range_header = st.one_of(
    st.lists(range_item, max_size=40).map(lambda items: "bytes=" + ",".join(items)),
    st.builds(lambda unit, rest: f"{unit}={rest}", st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
              st.text(string.digits + "-, =", max_size=30)),
    mixed_text)
dates = st.one_of(st.sampled_from(["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                   "Sun Nov  6 08:49:37 1994", "Mon, 01 Jan 0001 00:00:00 GMT",
                                   "Fri, 31 Dec 9999 23:59:59 GMT", "Tue, 31 Feb 2026 25:61:61 GMT"]), mixed_text)
etags = st.one_of(st.sampled_from(['"abc"', 'W/"abc"', "*", '"abc", "def"', 'W/', '"', '""']), mixed_text)


@FUZZ
@given(range_header, st.integers(0, 6000))
def test_a_range_header_is_ignored_refused_or_satisfiable(header, size):
    ranges = parse_ranges(header, size)
    if ranges is None:
        return
    assert len(ranges) <= MAX_RANGES
    for first, last in ranges:
        assert 0 <= first <= last < size
    if len(ranges) > 1:
        assert sum(last - first + 1 for first, last in ranges) <= size


@FUZZ
@given(st.dictionaries(st.sampled_from(["If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
                                        "If-Range"]), st.one_of(dates, etags)), st.integers(-2**40, 2**40))
def test_conditional_headers_answer_or_go_on(headers, modified):
    assert precondition(headers, "abc", modified) in (None, 304, 412)
    assert range_applies(headers, "abc", modified) in (True, False)
