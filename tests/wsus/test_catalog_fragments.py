"""Fragment derivation ([MS-WUSP] §3.1.1.1) on Microsoft's real documents, compared with what real
WSUS served a native Windows Update Agent; the LZX cabinet form; hostile documents refused."""

from __future__ import annotations

import base64
import html
import re
import xml.etree.ElementTree as ET

import pytest
from catalogkit import (
    BUNDLE,
    COMPANY,
    EXCHANGES,
    LEAF,
    NATIVE,
    SMALL,
    captured,
    docs_dir,
    software,
    structure,
)
from helpers.tools import require_tool

from devupdate.wsus.catalog.document import MAX_BYTES, NOT_EXTENDED, DocumentError, parse_update
from devupdate.wsus.catalog.loader import read_bytes

ALL = (COMPANY, BUNDLE, LEAF, SMALL)


def served_fragments(exchange: str) -> list[str]:
    """The ``<Xml>`` fragments of a captured SyncUpdates / GetExtendedUpdateInfo answer."""
    body = (NATIVE / exchange / "response.body").read_text(encoding="utf-8")
    return [html.unescape(m) for m in re.findall(r"<Xml>(.*?)</Xml>", body, re.S)]


def test_core_of_the_company_category_is_what_real_wsus_served():
    doc = parse_update(captured(COMPANY).read_bytes())
    served = served_fragments("scan/000006")
    assert len(served) == 1
    assert structure(doc.core) == structure(served[0])
    assert doc.core == served[0]  # byte for byte, even the " />" of empty elements


def test_extended_and_localized_of_the_company_category_are_what_real_wsus_served():
    doc = parse_update(captured(COMPANY).read_bytes())
    served = served_fragments("scan/000010")
    extended = [f for f in served if 'CategoryType="Company"' in f]
    localized = [f for f in served if f.startswith("<LocalizedProperties>") and "<Title>Microsoft</Title>" in f]
    assert len(extended) == 1 and len(localized) == 1
    assert structure(doc.extended) == structure(extended[0])
    en = {item.language: item for item in doc.localized}["en"]
    assert structure(en.fragment) == structure(localized[0])
    assert len(doc.localized) == 24  # one per language of the document


@pytest.mark.parametrize("update_id", ALL)
def test_fragments_of_real_documents_follow_the_rules(update_id):
    source = captured(update_id)
    doc = parse_update(source.read_bytes())
    root = ET.fromstring(source.read_bytes())
    upd = "{http://schemas.microsoft.com/msus/2002/12/Update}"
    for fragment in (doc.core, doc.extended, *(item.fragment for item in doc.localized)):
        assert "xmlns" not in fragment and "upd:" not in fragment and "bar:" not in fragment
        structure(fragment)  # each parses once wrapped: well-formed apart from the missing root
    core = [path for path, _, _ in structure(doc.core) if path.count("/") == 1]
    expected_core = [f"/{e.tag.removeprefix(upd)}" for e in root
                     if e.tag.removeprefix(upd) in ("UpdateIdentity", "Properties", "Relationships",
                                                    "ApplicabilityRules")]
    assert core == expected_core
    identity = root.find(f"{upd}UpdateIdentity")
    assert structure(doc.core)[0] == ("/UpdateIdentity", list(identity.attrib.items()), "")
    properties = root.find(f"{upd}Properties")
    core_properties = dict(next(a for p, a, _ in structure(doc.core) if p == "/Properties"))
    assert core_properties == {k: v for k, v in properties.attrib.items()
                               if k in ("UpdateType", "ExplicitlyDeployable", "AutoSelectOnWebSites", "OSUpgrade",
                                        "EulaID")}
    extended = structure(doc.extended)
    assert extended[0][0] == "/ExtendedProperties"
    assert dict(extended[0][1]) == {k: v for k, v in properties.attrib.items() if k not in NOT_EXTENDED}
    tops = [p for p, _, _ in extended if p.count("/") == 1]
    assert tops == ["/ExtendedProperties"] + [f"/{e.tag.removeprefix(upd)}" for e in root
                                              if e.tag.removeprefix(upd) in ("Files", "HandlerSpecificData")]
    languages = [e.findtext(f"{upd}Language") for e in root.iter(f"{upd}LocalizedProperties")]
    assert [item.language for item in doc.localized] == languages


def test_base_applicability_rules_keep_the_b_prefix():
    doc = parse_update(captured(LEAF).read_bytes())
    assert "<b." in doc.core and "bar:" not in doc.core
    names = {path.rsplit("/", 1)[1] for path, _, _ in structure(doc.core)}
    assert any(name.startswith("b.") for name in names)


def test_files_digests_and_relationships_of_real_documents():
    leaf = parse_update(captured(LEAF).read_bytes())
    assert [(f.file_name, f.sha1, f.size, f.sha256 is not None) for f in leaf.files] == [
        ("AM_Delta.exe", base64.b64decode("h/W9BGlYUAaqXTp30cZi/SiV3c0=").hex(), 11606440, True)]
    bundle = parse_update(captured(BUNDLE).read_bytes())
    assert bundle.kb_article == "2267602"
    assert [c.is_category for c in bundle.prerequisites].count(True) == 2
    assert (LEAF, 200) in [m for clause in bundle.bundled for m in clause]
    assert len(bundle.superseded) == 10
    company = parse_update(captured(COMPANY).read_bytes())
    assert (company.update_id, company.revision_number, company.category_type) == (COMPANY, 101, "Company")


# -- the XmlUpdateBlobCompressed form -----------------------------------------------------------------------

@pytest.mark.parametrize("exchange", ["000013", "000014", "000015", "000016"])
def test_captured_get_update_data_blobs_decode_to_the_documents(exchange, tmp_path):
    docs_dir()
    require_tool("cabextract")  # LZX: cabarchive reads only stored and MSZIP folders
    body = (EXCHANGES / exchange / "response.body").read_text(encoding="utf-8")
    update_id = re.search(r"<UpdateID>([^<]+)</UpdateID>", body).group(1)
    compressed = re.search(r"<XmlUpdateBlobCompressed>([^<]+)</XmlUpdateBlobCompressed>", body)
    if compressed:
        cab = tmp_path / "blob.cab"
        cab.write_bytes(base64.b64decode(compressed.group(1)))
        data = read_bytes(cab)
        assert data[:2] == b"<\x00"  # UTF-16LE without BOM
    else:
        data = html.unescape(re.search(r"<XmlUpdateBlob>([^<]+)</XmlUpdateBlob>", body).group(1)).encode("utf-8")
    doc = parse_update(data)
    reference = parse_update(captured(update_id).read_bytes())
    assert doc.identity == reference.identity
    assert doc.text == reference.text and doc.sha256 == reference.sha256


@pytest.mark.parametrize("update_id", [BUNDLE, LEAF, COMPANY])
def test_shared_lzx_cabinets_decode_to_the_documents(update_id, samples):
    require_tool("cabextract")
    doc = parse_update(read_bytes(next(samples.glob(f"wsus-xmlblob-{update_id}-*.cab"))))
    assert doc.text == captured(update_id).read_text(encoding="utf-8")


def test_utf16_with_a_bom_and_a_declaration():
    text = software("11111111-2222-3333-4444-555555555555")
    data = ('<?xml version="1.0" encoding="utf-16"?>' + text).encode("utf-16")
    doc = parse_update(data)
    assert doc.update_id == "11111111-2222-3333-4444-555555555555" and doc.title == "An update"


# -- hostile documents ----------------------------------------------------------------------------------------

GOOD = software("11111111-2222-3333-4444-555555555555")


@pytest.mark.parametrize("data,code,message", [
    ('<!DOCTYPE upd:Update [<!ELEMENT a ANY>]>' + GOOD, "dtd", "document has a DTD"),
    ('<!DOCTYPE x [<!ENTITY big "aaaa">]>' + GOOD.replace("An update", "&big;"), "dtd", "document has a DTD"),
    (GOOD.replace("An update", "&big;"), "malformed", "document is not well-formed XML"),
    (GOOD.replace("11111111-2222-3333-4444-555555555555", "not-a-guid"), "bad-identity",
     "UpdateIdentity: UpdateID 'not-a-guid' is not a GUID"),
    (GOOD.replace(' RevisionNumber="100"', ""), "bad-identity",
     "UpdateIdentity 11111111-2222-3333-4444-555555555555: RevisionNumber is missing"),
    (GOOD.replace('RevisionNumber="100"', 'RevisionNumber="-1"'), "bad-identity", "is not a whole number"),
    (GOOD.replace('RevisionNumber="100"', 'RevisionNumber="4294967296"'), "bad-identity", "is not a whole number"),
    (GOOD.replace("</upd:Update>", "<a>" * 200 + "</a>" * 200 + "</upd:Update>"), "too-deep",
     "document nests deeper than 128 elements"),
    ("<Update/>", "not-an-update", "expected upd:Update"),
    (GOOD[:-20], "malformed", "not well-formed"),
    (GOOD.replace('UpdateType="Software"', 'UpdateType="Evil"'), "malformed", "UpdateType 'Evil'"),
])
def test_hostile_documents_refused_with_one_line(data, code, message):
    with pytest.raises(DocumentError) as caught:
        parse_update(data.encode("utf-8"))
    assert caught.value.code == code
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_decoded_text_with_a_lone_surrogate_refused():
    with pytest.raises(DocumentError) as caught:
        parse_update(GOOD.replace("An update", "An \ud800 update"))
    assert (caught.value.code, caught.value.message) == ("bad-encoding", "document text is not Unicode (surrogates "
                                                         f"not allowed at character {GOOD.index('An update') + 3})")


def test_document_above_16_mib_refused_before_parsing():
    data = GOOD.replace("An update", "x" * MAX_BYTES).encode("utf-8")
    with pytest.raises(DocumentError) as caught:
        parse_update(data)
    assert caught.value.code == "too-large"
    assert caught.value.message == f"document is {len(data)} bytes, above the 16 MiB limit"


def test_identity_other_than_requested_refused():
    with pytest.raises(DocumentError) as caught:
        parse_update(GOOD.encode(), expected=("11111111-2222-3333-4444-555555555555", 101))
    assert caught.value.code == "identity-mismatch"


def test_eula_fragments_one_per_language():
    text = GOOD.replace("</upd:LocalizedPropertiesCollection>",
                        '<upd:EulaFile Language="de"><upd:File FileName="eula-de.txt" /></upd:EulaFile>'
                        '<upd:EulaFile Language="en"><upd:File FileName="eula-en.txt" /></upd:EulaFile>'
                        "</upd:LocalizedPropertiesCollection>")
    doc = parse_update(text.encode())
    assert [(e.language, e.fragment) for e in doc.eulas] == [
        ("de", '<EulaFile Language="de"><File FileName="eula-de.txt" /></EulaFile>'),
        ("en", '<EulaFile Language="en"><File FileName="eula-en.txt" /></EulaFile>')]
    assert [item.language for item in doc.localized] == ["en"]


def test_damaged_documents_raise_only_document_errors():
    """Truncations and byte changes of a real document: a DocumentError or a document, nothing else."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    original = captured(SMALL).read_bytes()

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.integers(0, len(original)), st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)),
                                                    max_size=4))
    def check(cut, changes):
        data = bytearray(original[:cut] if cut < len(original) else original)
        for where, value in changes:
            if where < len(data):
                data[where] = value
        try:
            doc = parse_update(bytes(data))
        except DocumentError as exc:
            assert exc.message and "\n" not in exc.message
        else:
            assert doc.core.startswith("<UpdateIdentity ")

    check()
