"""The downstream reads ``GetRevisionIdList`` as it streams and releases held revisions a page at a time,
so its memory does not follow the catalog: a list of 200,000 identities is read with a flat peak;
the streamed reading gives exactly what the whole-body reading gives, block size whatever; hostile
or broken answers are refused with a reason; held revisions chained across pages are all
released."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from catalogkit import category, docs_dir, software
from fakeupstream import FakeUpstream, exchange

from devupdate.wsus.catalog.models import Revision
from devupdate.wsus.downstream import apply, messages, run, service
from devupdate.wsus.downstream.messages import BadAnswer, UpstreamFault
from devupdate.wsus.downstream.models import HeldRevision

ENVELOPE = (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b'<soap:Body><GetRevisionIdListResponse xmlns="http://www.microsoft.com/SoftwareDistribution">'
            b'<GetRevisionIdListResult><Anchor>%s</Anchor><NewRevisions>')
TAIL = b"</NewRevisions></GetRevisionIdListResult></GetRevisionIdListResponse></soap:Body></soap:Envelope>"
ANCHOR = b"9438,2026-10-04 16:33:26.670"


def _uid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def _answer(n: int) -> Iterator[bytes]:
    yield ENVELOPE % ANCHOR
    for i in range(n):
        yield (f"<UpdateIdentity><UpdateID>{_uid(i)}</UpdateID><RevisionNumber>{100 + i % 3}</RevisionNumber>"
               "</UpdateIdentity>").encode()
    yield TAIL


class Reader:
    """``read(size)`` over generated parts, as a response body is read."""

    def __init__(self, parts: Iterator[bytes], cap: int | None = None):
        self.parts, self.buffer, self.cap = parts, b"", cap

    def read(self, size: int) -> bytes:
        size = min(size, self.cap or size)
        while len(self.buffer) < size:
            part = next(self.parts, None)
            if part is None:
                break
            self.buffer += part
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out


def test_a_long_list_is_read_with_flat_memory():
    tracemalloc.start()
    try:
        listed = messages.read_revision_list(Reader(_answer(200_000)).read)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert listed.anchor == ANCHOR.decode() and listed.count == 200_000
    assert peak < 2 << 20, peak  # the 26 MB answer (and its 800,000 elements) never held
    identities = list(listed.identities)
    assert identities[0] == (_uid(0), 100) and identities[-1] == (_uid(199_999), 100 + 199_999 % 3)
    assert [len(b) for b in listed.batches(75_000)] == [75_000, 75_000, 50_000]
    assert list(listed.identities) == identities  # read again from the spool
    listed.close()


@pytest.mark.parametrize("block", [1, 7, 4096])
def test_streamed_reading_equals_the_whole_body_reading(block):
    body = exchange(6)["body"]  # the 30 captured categories of a real WSUS, r1 and r100 of one among them
    whole = messages.revision_list(messages.result(body, "GetRevisionIdList"))
    streamed = messages.read_revision_list(Reader(iter([body]), cap=block).read)
    assert list(streamed.identities) == list(whole.identities) and streamed.anchor == whole.anchor
    assert streamed.count == 30


def test_a_fault_in_a_streamed_answer_is_raised_with_its_code():
    body = exchange(18)["body"]  # InvalidParameters, Message=filter
    with pytest.raises(UpstreamFault) as raised:
        messages.read_revision_list(Reader(iter([body])).read)
    assert raised.value.error_code == "InvalidParameters" and raised.value.message == "filter"


@pytest.mark.parametrize(("body", "reason"), [
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "DTDs and entity declarations"),
    (ENVELOPE % ANCHOR + b"<UpdateIdentity><UpdateID>", "not well-formed XML"),
    (b"HTTP/1.1 200 OK but not XML", "not well-formed XML"),
    (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetCookieResponse/></s:Body>'
     b"</s:Envelope>", "answer is 'GetCookieResponse', not GetRevisionIdListResponse"),
    (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/></s:Envelope>',
     "answer has no SOAP body"),
    (b"<a>" * 100 + b"</a>" * 100, "nested deeper than 64 elements"),
])
def test_hostile_or_broken_answers_are_refused(body, reason):
    with pytest.raises(BadAnswer) as refused:
        messages.read_revision_list(Reader(iter([body])).read)
    assert reason in str(refused.value)


def test_an_answer_above_the_cap_is_refused_before_it_is_read_whole():
    reader = Reader(_answer(1_000_000))  # ~130 MB if it were read whole
    with pytest.raises(BadAnswer) as refused:
        messages.read_revision_list(reader.read, max_bytes=1 << 20)
    assert "longer than 1048576 bytes" in str(refused.value)
    assert next(reader.parts, None) is not None  # stopped at the cap: the rest never read


PRODUCT = "11111111-2222-4333-8444-555555555555"
CLASSIFICATION = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"


def test_held_revisions_chained_across_pages_are_all_released(rt, monkeypatch):
    """Each update names the next one (by UpdateID) as its prerequisite; the list comes in UpdateID
    order two at a time, so ten are held; released two per page, the last first, pass after pass."""
    docs_dir()
    chain = [_uid(0xa0 + i) for i in range(12)]
    documents = {(PRODUCT, 1): category(PRODUCT, "A product", "Product", revision=1),
                 (CLASSIFICATION, 1): category(CLASSIFICATION, "Updates", "UpdateClassification", revision=1)}
    for i, uid in enumerate(chain):
        documents[(uid, 1)] = software(uid, 1, title=f"link {i}", categories=(PRODUCT, CLASSIFICATION),
                                       prerequisites=(chain[i + 1],) if i + 1 < len(chain) else ())
    monkeypatch.setattr(run, "LIST_SLICE", 2)
    monkeypatch.setattr(apply, "RELEASE_PAGE", 2)
    pages: list[int] = []
    original = apply._release_page
    monkeypatch.setattr(apply, "_release_page", lambda page, applied: pages.append(len(page)) or original(page,
                                                                                                          applied))
    fake = FakeUpstream(categories=[(PRODUCT, 1), (CLASSIFICATION, 1)], updates=[(u, 1) for u in chain],
                        documents=documents).start()
    try:
        done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    finally:
        fake.stop()
    assert done["HeldRevisions"] == 10 and done["ReleasedRevisions"] == 10 and done["FailedRevisions"] == 0
    assert done["NewRevisions"] == 14
    assert HeldRevision.select().count() == 0
    assert {r.update_id for r in Revision.select()} == {PRODUCT, CLASSIFICATION, *chain}
    assert pages == [2] * (5 + 4 + 3 + 2 + 1)  # five passes, each releasing the last pair of what is left


def test_categories_held_behind_their_parent_are_released_before_the_updates_come(rt, monkeypatch):
    """A product listed before its family is held in the categories phase; it is released at the end
    of that phase, so an update naming it is stored as it comes, not held behind it (on a large first
    sync most of the catalog was held, and released pass after pass at the end)."""
    docs_dir()
    family, update = _uid(0xf0), _uid(0x10)
    documents = {(PRODUCT, 1): category(PRODUCT, "A product", "Product", parent=family, revision=1),
                 (family, 1): category(family, "A family", "ProductFamily", revision=1),
                 (CLASSIFICATION, 1): category(CLASSIFICATION, "Updates", "UpdateClassification", revision=1),
                 (update, 1): software(update, 1, title="names the product", categories=(PRODUCT, CLASSIFICATION))}
    monkeypatch.setattr(run, "LIST_SLICE", 1)  # one revision per GetUpdateData: the family comes after
    fake = FakeUpstream(categories=[(PRODUCT, 1), (family, 1), (CLASSIFICATION, 1)], updates=[(update, 1)],
                        documents=documents).start()
    try:
        done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    finally:
        fake.stop()
    assert (done["HeldRevisions"], done["ReleasedRevisions"], done["FailedRevisions"]) == (1, 1, 0)
    assert done["NewRevisions"] == 4 and HeldRevision.select().count() == 0
    assert {r.update_id for r in Revision.select()} == {PRODUCT, family, CLASSIFICATION, update}
