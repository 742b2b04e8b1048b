"""The safe XML reader (devupdate/web/safexml.py) on its own: hostile documents refused with the
right reason on both paths (one call, and streamed under limits), the limits exact, UTF-16 and
declared encodings, and nothing but ``XmlRefused`` ever raised."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devupdate.web import safexml
from devupdate.web.safexml import DEPTH, DTD, ELEMENTS, ENCODING, MALFORMED, REASONS, XmlRefused, parse

MARK = "zq-marker"  # in every hostile body: a refusal's message must never echo the body
DOC = f'<r a="1"><v>J\u00f6rg &amp; {MARK}</v><w/></r>'

LAUGHS = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + f"]><r>&i;{MARK}</r>").encode()
EXTERNAL = f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;{MARK}</r>'.encode()
PARAMETER = f'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><r>{MARK}</r>'.encode()
DOCTYPE_ONLY = f"<!DOCTYPE r><r>{MARK}</r>".encode()
HOSTILE_DTDS = [LAUGHS, EXTERNAL, PARAMETER, DOCTYPE_ONLY]

# both ways of calling: one call (no limits) and streamed under limits
MODES = [{}, {"max_depth": 64, "max_elements": 10_000}]


def plain(element: ET.Element) -> tuple:
    return (element.tag, sorted(element.attrib.items()), element.text, element.tail,
            [plain(child) for child in element])


def refusal(body: bytes, **limits: int) -> XmlRefused:
    with pytest.raises(XmlRefused) as caught:
        parse(body, **limits)
    error = caught.value
    assert error.reason in REASONS
    assert error.message and "\n" not in error.message and MARK not in error.message
    assert str(error) == error.message
    return error


def utf16(text: str, encoding: str) -> bytes:
    """``text`` in UTF-16 ``encoding`` with its byte order mark."""
    return ("\ufeff" + text).encode(encoding)


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("body", HOSTILE_DTDS, ids=["billion laughs", "external entity", "parameter entity",
                                                    "doctype only"])
def test_dtds_and_entities_refused(body, limits):
    assert not safexml.takes_fast_path(body)
    error = refusal(body, **limits)
    assert (error.reason, error.message) == (DTD, "DTDs and entity declarations are not accepted")


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_dtds_refused_in_utf16_too(encoding, limits):
    for body in HOSTILE_DTDS:
        text = body.decode().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>')
        assert refusal(utf16(text, encoding), **limits).reason == DTD


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("inner", ["", "<!-- c -->"], ids=["fast", "guarded"])
def test_an_entity_without_a_dtd_is_malformed_not_expanded(inner, limits):
    """(The parsers' own text names the entity: the message must not, it would echo the body.)"""
    error = refusal(f"<r>{inner}&{MARK};</r>".encode(), **limits)
    assert (error.reason, error.message) == (MALFORMED, f"not well-formed XML (undefined entity: line 1, column "
                                                        f"{3 + len(inner)})")


def nested(depth: int, inner: str = "") -> bytes:
    return ("<x>" * depth + inner + "</x>" * depth).encode()


# the same document on the fast path and, with a comment inside, on the defusedxml path
@pytest.mark.parametrize("inner", ["", "<!-- c -->"], ids=["fast", "guarded"])
def test_depth_limit_is_exact_at_1000(inner):
    body = nested(1000, inner)
    assert safexml.takes_fast_path(body) == (inner == "")
    root = parse(body, max_depth=1000)
    depth = 1
    while len(root):
        root, depth = root[0], depth + 1
    assert depth == 1000
    error = refusal(body, max_depth=999)
    assert (error.reason, error.message) == (DEPTH, "nested deeper than 999 elements")
    assert len(list(parse(body).iter())) == 1000  # no limit asked: none applied


@pytest.mark.parametrize("inner", ["", "<!-- c -->"], ids=["fast", "guarded"])
def test_element_limit_is_exact_at_100000(inner):
    body = ("<r>" + inner + "<x/>" * 99_999 + "</r>").encode()
    assert len(list(parse(body, max_elements=100_000).iter())) == 100_000
    error = refusal(body, max_elements=99_999)
    assert (error.reason, error.message) == (ELEMENTS, "more than 99999 elements")


def test_one_call_under_limits_gives_the_streamed_answer():
    """A fast-path body with no more ``<`` than the element cap is parsed in one call and measured
    after: the same tree, and the same refusal, as the streamed check that a lower cap forces."""
    bodies = [DOC.encode(), nested(40), nested(65), b"<r>" + b"<i>1</i>" * 300 + b"</r>",
              b"<r><a><b/></a><c>" + nested(70) + b"</c></r>", b"<r><a></r>", nested(80)[:-5]]
    for body in bodies:
        tags = body.count(b"<")
        one_call = streamed = None
        try:
            one_call = plain(parse(body, max_depth=64, max_elements=tags))
        except XmlRefused as exc:
            one_call = (exc.reason, exc.message)
        elements = tags // 2 + 1  # below the count of "<": the streamed path, still above the elements
        try:
            streamed = plain(parse(body, max_depth=64, max_elements=elements))
        except XmlRefused as exc:
            streamed = (exc.reason, exc.message)
        assert one_call == streamed, body[:80]


@pytest.mark.parametrize("inner", ["", "<!-- c -->"], ids=["fast", "guarded"])
def test_limits_stop_the_stream_at_the_first_element_too_many(inner):
    """Over the limit in the first 64 KiB, broken after it: the limit is reported, so the rest was
    never parsed (nor the whole tree built)."""
    body = ("<r>" + inner + "<x/>" * 1000).encode() + b" " * 70_000 + b"</broken>"
    assert refusal(body).reason == MALFORMED
    assert refusal(body, max_elements=500).reason == ELEMENTS
    deep = nested(100, inner)[:300 + len(inner)] + b" " * 70_000 + b"</broken>"
    assert refusal(deep, max_depth=50).reason == DEPTH


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("body, message", [
    (b"<r><a></r>", "not well-formed XML (mismatched tag: line 1, column 8)"),
    (b"<r>x</r><r/>", "not well-formed XML (junk after document element: line 1, column 8)"),
    (b"not xml", "not well-formed XML (syntax error: line 1, column 0)"),
    (b"", "not well-formed XML (no element found: line 1, column 0)"),
    (b"   ", "not well-formed XML (no element found: line 1, column 3)"),
    (b"<r a='1' a='2'/>", "not well-formed XML (duplicate attribute: line 1, column 9)"),
    (b"<r>\xff</r>", "not well-formed XML (not well-formed (invalid token): line 1, column 3)"),
    (b'  <?xml version="1.0"?><r/>', "not well-formed XML (XML or text declaration not at start of entity: "
                                     "line 1, column 2)"),
])
def test_malformed(body, message, limits):
    error = refusal(body, **limits)
    assert (error.reason, error.message) == (MALFORMED, message)


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("prefix", ["", '<?xml version="1.0" encoding="utf-8"?>', "<!-- c -->"],
                         ids=["fast", "declared", "guarded"])
def test_every_truncation_is_malformed(prefix, limits):
    body = (prefix + DOC).encode()
    assert plain(parse(body, **limits)) == plain(ET.fromstring(DOC.encode()))
    for cut in range(len(body)):
        assert refusal(body[:cut], **limits).reason == MALFORMED, cut


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("declaration", ["", '<?xml version="1.0" encoding="utf-16"?>',
                                         '<?xml version="1.0" encoding="UTF-16"?>\r\n', '<?xml version="1.0"?>'])
def test_utf16_with_bom_reads_as_the_same_tree(encoding, declaration, limits):
    body = utf16(declaration + DOC, encoding)
    assert not safexml.takes_fast_path(body)
    assert plain(parse(body, **limits)) == plain(ET.fromstring(DOC.encode()))


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_with_a_bom_contradicting_the_declaration_is_an_encoding_refusal(encoding, limits):
    error = refusal(utf16('<?xml version="1.0" encoding="utf-8"?>' + DOC, encoding), **limits)
    assert (error.reason, error.message) == (ENCODING, "character encoding unknown or contradicting the byte "
                                                       "order mark")


@pytest.mark.parametrize("limits", MODES)
def test_utf8_with_bom_and_a_broken_utf16_body(limits):
    assert plain(parse(b"\xef\xbb\xbf" + DOC.encode(), **limits)) == plain(ET.fromstring(DOC.encode()))
    # a lone surrogate: expat refuses the character
    assert refusal(b"\xff\xfe<\x00r\x00>\x00\x00\xd8<\x00/\x00r\x00>\x00", **limits).reason == MALFORMED


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("declared, encoding, text", [
    ("iso-8859-1", "iso-8859-1", "J\u00f6rg"),
    ("ISO-8859-1", "iso-8859-1", "\u00e9l\u00e8ve"),
    ("windows-1252", "cp1252", "\u20ac 5"),
    ("us-ascii", "ascii", "plain"),
])
def test_single_byte_declared_encodings_are_read(declared, encoding, text, limits):
    body = f'<?xml version="1.0" encoding="{declared}"?><r><v>{text}</v></r>'.encode(encoding)
    assert not safexml.takes_fast_path(body)
    assert parse(body, **limits).findtext("v") == text


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("declared, message", [
    ("shift_jis", "character encoding not supported"),
    ("utf-32", "character encoding not supported"),
    ("x-no-such-encoding", "character encoding not supported"),
    ("cp037", "character encoding unknown or contradicting the byte order mark"),
    ("utf-16", "character encoding unknown or contradicting the byte order mark"),  # but written in UTF-8
])
def test_other_declared_encodings_are_an_encoding_refusal(declared, message, limits):
    body = f'<?xml version="1.0" encoding="{declared}"?><r>{MARK}</r>'.encode()
    assert not safexml.takes_fast_path(body)
    error = refusal(body, **limits)
    assert (error.reason, error.message) == (ENCODING, message)


@pytest.mark.parametrize("body", [
    DOC.encode(), b"\xef\xbb\xbf" + DOC.encode(), ('<?xml version="1.0" encoding="utf-8"?>' + DOC).encode(),
    ("<?xml version='1.0' encoding='utf-8' standalone='yes'?>" + DOC).encode(),
    ('<?xml version="1.0"?>' + DOC).encode(),
])
def test_plain_utf8_takes_the_c_parser(body, monkeypatch):
    assert safexml.takes_fast_path(body)
    monkeypatch.setattr(safexml, "_defused_fromstring", lambda *a, **k: pytest.fail("took the defusedxml path"))
    monkeypatch.setattr(safexml, "_guarded_parser", lambda: pytest.fail("took the defusedxml path"))
    expected = plain(ET.fromstring(DOC.encode()))
    assert plain(parse(body)) == expected
    assert plain(parse(body, max_depth=3, max_elements=3)) == expected


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("inner", ["", "<!-- c -->"], ids=["fast", "guarded"])
def test_declared_utf8_without_the_dash_is_ascii_only_on_both_paths(inner, limits):
    """expat knows "UTF8" only through Python's single-byte codec bridge: ASCII reads, anything
    beyond it is an invalid token — on the fast path exactly as on the defusedxml one."""
    ascii_only = f"<?xml version='1.0' encoding='UTF8'?><r>{inner}plain</r>".encode()
    assert safexml.takes_fast_path(ascii_only) == (inner == "")
    assert parse(ascii_only, **limits).text == "plain"
    error = refusal(f"<?xml version='1.0' encoding='UTF8'?><r>{inner}J\u00f6rg</r>".encode(), **limits)
    assert (error.reason, error.message) == (MALFORMED, "not well-formed XML (not well-formed (invalid token): "
                                                        f"line 1, column {41 + len(inner)})")


@pytest.mark.parametrize("body", [
    DOC.replace("<w/>", "<!-- c --><w/>").encode(), DOC.replace("J", "<![CDATA[J]]>").encode(),
    b" " + DOC.encode(), DOC.encode("utf-16-le"), ('<?xml version="1.0" encoding="latin-1"?>' + DOC).encode("latin-1"),
    b"<?xml version='1.0' " + b" " * 200 + b"?>" + DOC.encode(),
])
def test_everything_else_goes_through_defusedxml(body, monkeypatch):
    assert not safexml.takes_fast_path(body)
    monkeypatch.setattr(safexml.ET, "fromstring", lambda *a, **k: pytest.fail("took the C parser"))
    parse(body)


# --- never anything but XmlRefused -----------------------------------------------------------------

PIECES = ["<r>", "</r>", "<a b='c'>", "</a>", "<a/>", "text", "&amp;", "&#0;", "&#x10FFFF;", "&e;", "<!-- c -->",
          "<![CDATA[x]]>", "<!DOCTYPE r>", '<!DOCTYPE r [<!ENTITY e "x">]>', "<!ENTITY % p 'x'>", "%p;",
          '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>', '<?xml version="1.0" encoding="x"?>',
          '<?xml version="1.0" encoding="shift_jis"?>', "<?pi x?>", "\x00", "\ufeff", "\ud7ff", "\u00e9", "\n",
          "<", ">", "&", "'", '"', "]]>", "<x:a xmlns:x='urn:x'>", "</x:a>", "<:a>"]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    text = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=30)))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    cut = draw(st.integers(0, len(data)))
    return data if draw(st.booleans()) else data[:cut]


@settings(max_examples=400, deadline=None, database=None)
@given(bodies(), st.sampled_from([None, 1, 2, 5]), st.sampled_from([None, 1, 3, 10]))
def test_parse_raises_nothing_but_xml_refused(body, max_depth, max_elements):
    try:
        root = parse(body, max_depth=max_depth, max_elements=max_elements)
    except XmlRefused as error:
        assert error.reason in REASONS
        assert error.message and "\n" not in error.message
    else:
        assert isinstance(root, ET.Element)
        if max_elements is not None:
            assert len(list(root.iter())) <= max_elements


@settings(max_examples=400, deadline=None, database=None)
@given(bodies())
def test_both_paths_agree_where_the_fast_path_is_taken(body):
    if not safexml.takes_fast_path(body):
        return
    outcomes = []
    for fast in (True, False):
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(safexml, "takes_fast_path", lambda _body, fast=fast: fast)
                outcomes.append(plain(parse(body)))
        except XmlRefused as error:
            outcomes.append((error.reason, error.message))
    assert outcomes[0] == outcomes[1]
