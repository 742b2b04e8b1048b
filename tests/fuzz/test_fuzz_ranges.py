"""Properties of the download request headers (devupdate/web/byteranges.py): Range, If-Range and the
conditional headers a phone (or anything) may send with a download."""

from __future__ import annotations

from fuzzkit import FUZZ, dates, etags, range_header
from hypothesis import given
from hypothesis import strategies as st

from devupdate.web.byteranges import MAX_RANGES, parse_ranges, precondition, range_applies


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
