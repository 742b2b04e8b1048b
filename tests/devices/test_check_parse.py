"""The request parser's fast C-parser path (the safe XML reader's, devupdate/web/safexml.py) gives
exactly what the defusedxml path gives — same request, same error code — and hands everything
that could hide a DTD to defusedxml."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from devupdate.devices import check
from devupdate.devices.request import RequestError, parse_xml
from devupdate.web import safexml

FIELDS = ("<DeviceType>UCPhone</DeviceType><MACAddress>00-04-F2-AA-BB-CC</MACAddress>"
          "<SerialNumber>CX600-0042</SerialNumber><Vendor>Polycom</Vendor><Model>CX600</Model>"
          "<Revision>A</Revision><Locale>ENU</Locale><UserID>{user}</UserID>"
          "<Modules><Module><FileName>CPE.nbt</FileName><Version>4.0.7577.4366</Version>"
          "<TimeStamp>2026-11-21T08:59:58Z</TimeStamp></Module>{more}</Modules>")


def doc(user: str = "alice@contoso.com", more: str = "", root: str = "Request", decl: str | None = "utf-8",
        encoding: str = "utf-8") -> bytes:
    head = "" if decl is None else f'<?xml version="1.0" encoding="{decl}"?>\n'
    return (head + f"<{root}>" + FIELDS.format(user=user, more=more) + f"</{root}>").encode(encoding)


FAST = [
    doc(),
    doc(decl=None),
    b"\xef\xbb\xbf" + doc(),
    doc(decl="UTF8"),
    doc().replace(b'encoding="utf-8"', b"encoding='utf-8'"),
    b'<?xml version="1.0"?>' + doc(decl=None),
    doc(user="J&#246;rg &amp; Co"),
    doc(user="  padded  "),
    doc(more="<Module><FileName>UCD.nbt</FileName><Version>1.2.3.4</Version></Module><Other/>"),
    doc(root="request"),
    doc().replace(b"<Request>", b'<Request xmlns="urn:x">'),
    doc().replace(b"<DeviceType>", b"<devicetype>").replace(b"</DeviceType>", b"</devicetype>"),
    doc(root="Envelope"),
    doc()[:-10],
    doc(user="\u00e9l\u00e8ve"),
    b"<Request></Request>",
    b"<Request><MACAddress>00-04-F2-AA-BB-ZZ</MACAddress></Request>",
    doc().replace(b"ENU", b"XYZ"),
    doc().replace(b"4.0.7577.4366", b"4.0;DROP"),
    b"<a><b></a>",
]

SLOW = [
    doc(user="x<!-- note -->y"),
    doc(user="<![CDATA[a & b]]>"),
    doc(decl="utf-16", encoding="utf-16"),  # with BOM
    doc(decl="utf-16", encoding="utf-16-le"),  # no BOM: NUL bytes
    doc(decl="iso-8859-1", encoding="iso-8859-1", user="J\u00f6rg"),
    doc(decl="cp037"),
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]>' + doc(decl=None, user="&a;"),
    b'<!DOCTYPE r SYSTEM "http://example.com/x.dtd">' + doc(decl=None),
    b"   " + doc(),
    b"not xml",
    b"",
    b"\xff\xfe<\x00!\x00D\x00O\x00C\x00",
]


def outcome(parse, body: bytes):
    try:
        return ("ok", parse(body))
    except RequestError as exc:
        return ("error", exc.code, exc.status)


def defused_only(body: bytes):
    """``parse_xml`` with the C-parser path switched off: the reference result."""
    original = safexml.takes_fast_path
    safexml.takes_fast_path = lambda body: False
    try:
        return outcome(parse_xml, body)
    finally:
        safexml.takes_fast_path = original


@pytest.mark.parametrize("body", FAST + SLOW)
def test_same_result_as_the_defusedxml_path(body):
    assert outcome(parse_xml, body) == defused_only(body)


@pytest.mark.parametrize("body", FAST)
def test_fast_path_taken(body, monkeypatch):
    monkeypatch.setattr(safexml, "_defused_fromstring", lambda *a, **k: pytest.fail("took the defusedxml path"))
    outcome(parse_xml, body)


@pytest.mark.parametrize("body", [b for b in SLOW if b.strip()])
def test_everything_else_goes_through_defusedxml(body, monkeypatch):
    calls = []
    monkeypatch.setattr(safexml, "_defused_fromstring",
                        lambda body, **k: calls.append(body) or ET.fromstring(b"<x/>"))
    outcome(parse_xml, body)
    assert calls == [body]


def test_dtd_and_entities_refused_either_way():
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>'
              b"<Request><DeviceType>&b;</DeviceType></Request>")
    assert outcome(parse_xml, laughs) == ("error", "ForbiddenXml", 400)
    utf16 = '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    assert outcome(parse_xml, utf16.encode("utf-16-le")) == ("error", "ForbiddenXml", 400)


def test_raw_fields_of_a_refused_check_are_reported_as_sent():
    body = doc().replace(b"ENU", b"XYZ")
    assert check.raw_fields_from_xml(body)["locale"] == "XYZ"
    assert check.raw_fields_from_xml(b"not xml") == {}
