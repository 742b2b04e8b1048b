"""The pure parts under the upstream role: streamed envelopes are written while their lists are
read (never whole in memory) and equal the envelope written at once; anchors in Windows' format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devupdate.wsus.soap.envelope import Lazy, Raw, el, render_response, render_stream
from devupdate.wsus.upstream.anchors import format_anchor, parse_anchor


def _identity(n: int):
    return el("UpdateIdentity", el("UpdateID", f"00000000-0000-4000-8000-{n:012d}"), el("RevisionNumber", n))


def test_a_streamed_answer_pulls_its_list_as_it_is_written():
    pulled = []

    def items():
        for n in range(100_000):
            pulled.append(n)
            yield _identity(n)

    answer = el("GetRevisionIdListResponse", el("GetRevisionIdListResult", el("Anchor", "1,2026-12-03 10:00:00.000"),
                                                el("NewRevisions", Lazy(items(), flat=True))))
    chunks = render_stream("1.1", answer, "http://www.microsoft.com/SoftwareDistribution", chunk=64 * 1024)
    first, second = next(chunks), next(chunks)
    assert first.startswith(b"<s:Envelope") and len(second) >= 64 * 1024
    assert 100 < len(pulled) < 2_000  # one chunk's worth, not the list
    rest = b"".join(chunks)
    assert len(pulled) == 100_000 and rest.endswith(b"</s:Body></s:Envelope>")


def test_streamed_equals_written_at_once():
    namespace = "http://www.microsoft.com/SoftwareDistribution"
    whole = el("R", el("Result", el("Anchor", "5,2026-12-03 10:00:00.000"),
                       el("NewRevisions", [_identity(n) for n in range(50)]), el("Flag", True)))

    def lazy():
        yield el("Anchor", "5,2026-12-03 10:00:00.000")
        yield el("NewRevisions", Lazy(Raw(f"<UpdateIdentity><UpdateID>00000000-0000-4000-8000-{n:012d}</UpdateID>"
                                          f"<RevisionNumber>{n}</RevisionNumber></UpdateIdentity>") for n in range(50)))
        yield el("Flag", True)

    streamed = b"".join(render_stream("1.2", el("R", el("Result", Lazy(lazy()))), namespace, chunk=100))
    assert streamed == render_response("1.2", whole, namespace)


def test_anchors_in_windows_format():
    moment = datetime(2026, 10, 4, 16, 33, 26, 670_123, tzinfo=UTC)
    assert format_anchor(9438, moment) == "9438,2026-10-04 16:33:26.670"
    assert parse_anchor("9438,2026-10-04 16:33:26.670", highest=9438) == 9438
    assert parse_anchor("12,2026-10-04 16:09:27", highest=20) == 12  # no fraction
    assert parse_anchor(None, highest=5) is None and parse_anchor("  ", highest=5) is None
    for bad in ("garbage", "9438", "9438,2026-02-30 00:00:00.000", "-1,2026-10-04 16:33:26.670",
                "1,2026-10-04T16:33:26.670", "21,2026-10-04 16:33:26.670"):
        with pytest.raises(ValueError):
            parse_anchor(bad, highest=20)
