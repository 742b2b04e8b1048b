"""Description XML: lenient in form, strict in content, and never expanding entities."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from helpers.cabs import SHARED, make_update, realistic_updates

from devupdate.packages import (
    FileRef,
    PackageError,
    UpdateDescription,
    describe_updates,
    parse_description,
    parse_descriptions,
    parse_guid,
    parse_locale,
    parse_version,
    version_key,
)

SPEC = SHARED / "spec" / "update-packages.md"
GUID = "5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11"
EXAMPLE = UpdateDescription(id=GUID, device_type="UCPhone", brand="Polycom", model="CX600", revision="A",
                            locale="ENU", update_type="CPE", version="4.0.7577.4372",
                            files=(FileRef("CPE.nbt", "CPE.cat"),))
FIELDS = ('DeviceType="UCPhone" Brand="Polycom" Model="CX600" Revision="A" Locale="ENU" UpdateType="CPE" '
          'Version="4.0.7577.4372"')


def spec_example() -> bytes:
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} not found")
    return re.search(r"```xml\n(.*?)```", SPEC.read_text(encoding="utf-8"), re.S).group(1).encode()


def one(xml: str | bytes) -> UpdateDescription:
    updates = parse_description(xml.encode() if isinstance(xml, str) else xml, "t.xml")
    assert updates is not None and len(updates) == 1
    return updates[0]


def bad(xml: str | bytes) -> str:
    with pytest.raises(PackageError) as refused:
        parse_description(xml.encode() if isinstance(xml, str) else xml, "t.xml")
    assert refused.value.code == "bad-description"
    return refused.value.message


def test_spec_example_parses_to_canonical_values():
    assert one(spec_example()) == EXAMPLE
    assert EXAMPLE.id == GUID and EXAMPLE.rule_key == ("UCPhone", "Polycom", "CX600", "A", "ENU", "CPE")


def test_describe_updates_writes_exactly_the_spec_example():
    assert describe_updates([EXAMPLE]) == spec_example()


def test_round_trip_of_many_updates():
    updates = realistic_updates() + [make_update(locale="*", version="3.5.6907.187", update_type="UCA")]
    assert parse_descriptions({"u.xml": describe_updates(updates)}) == updates


def test_fields_as_attributes():
    assert one(f'<DeviceUpdate><Update Id="{{{GUID.upper()}}}" {FIELDS}><Files><File Name="CPE.nbt" '
               f'Catalog="CPE.cat"/></Files></Update></DeviceUpdate>') == EXAMPLE


def test_mixed_case_insensitive_names_and_unknown_elements():
    xml = (f'<deviceupdate><!-- vendor tool 2.1 --><Generator>makeupd</Generator><UPDATE id="{GUID}" '
           'devicetype="UCPhone" BRAND="Polycom"><MODEL>CX600</MODEL><revision> A </revision><LoCaLe>enu</LoCaLe>'
           '<updateType>CPE</updateType><Notes>fixes</Notes><VERSION>4.0.7577.4372</VERSION>'
           '<files><file><name>CPE.nbt</name><CATALOG>CPE.cat</CATALOG></file></files></UPDATE></deviceupdate>')
    assert one(xml) == EXAMPLE


def test_namespaced_document():
    assert one(f'<DeviceUpdate xmlns="urn:vendor:x"><Update Id="{GUID}" {FIELDS}><Files><File Name="CPE.nbt" '
               'Catalog="CPE.cat"/></Files></Update></DeviceUpdate>') == EXAMPLE


def test_file_without_catalog_and_several_files():
    update = one(f'<DeviceUpdate><Update Id="{GUID}" {FIELDS}><Files><File Name="CPE.nbt" Catalog="CPE.cat"/>'
                 '<File Name="readme.txt"/></Files></Update></DeviceUpdate>')
    assert update.files == (FileRef("CPE.nbt", "CPE.cat"), FileRef("readme.txt", None))


def test_utf16_with_bom_and_utf8_bom():
    text = spec_example().decode()
    assert one(text.replace("utf-8", "utf-16").encode("utf-16")) == EXAMPLE  # BOM + matching declaration
    assert one(text.encode("utf-16")) == EXAMPLE  # BOM + declaration still saying utf-8 (Windows tools do)
    assert one(text.replace("utf-8", "UTF-16BE").encode("utf-16-be")) == EXAMPLE  # no BOM, declared
    assert one(b"\xef\xbb\xbf" + text.encode()) == EXAMPLE


def test_non_ascii_values_survive():
    update = one(f'<DeviceUpdate><Update Id="{GUID}" DeviceType="UCPhone" Brand="Polycöm" Model="CX600" '
                 'Revision="A" Locale="DEU" UpdateType="CPE" Version="4.0.7577.4372"><Files><File Name="CPE.nbt"/>'
                 '</Files></Update></DeviceUpdate>'.encode("utf-16"))
    assert update.brand == "Polycöm" and update.locale == "DEU"


def test_other_xml_documents_are_not_descriptions():
    assert parse_description(b"<Catalog><Update/></Catalog>") is None
    with pytest.raises(PackageError) as refused:
        parse_descriptions({"notes.xml": b"<Notes/>", "other.xml": b"<x/>"})
    assert refused.value.code == "no-description"


def test_updates_from_several_description_files():
    a, b = realistic_updates()[:2]
    assert parse_descriptions({"a.xml": describe_updates([a]), "b.xml": describe_updates([b])}) == [a, b]


def test_duplicate_id_or_rule_across_documents():
    a = make_update()
    assert "same Id" in _refused(parse_descriptions, {"a.xml": describe_updates([a]), "b.xml": describe_updates([a])})
    twin = make_update(id="00000000-0000-0000-0000-000000000001")
    assert "same rule" in _refused(parse_descriptions, {"a.xml": describe_updates([a, twin])})


def _refused(function, *args) -> str:
    with pytest.raises(PackageError) as refused:
        function(*args)
    assert refused.value.code == "bad-description"
    return refused.value.message


# --- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"not xml", b"<DeviceUpdate>", b"<DeviceUpdate><Update></DeviceUpdate>",
                                  b"\xff\xfe<\x00D\x00\x00\xd8"])
def test_not_xml(data):
    bad(data)


def test_dtd_is_refused():
    assert "DTD" in bad('<?xml version="1.0"?><!DOCTYPE DeviceUpdate><DeviceUpdate/>')


def test_internal_entity_is_refused():
    bad('<!DOCTYPE d [<!ENTITY brand "Polycom">]><DeviceUpdate><Update Brand="&brand;"/></DeviceUpdate>')


def test_external_entity_is_refused():
    bad('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><DeviceUpdate><Update Brand="&x;"/></DeviceUpdate>')


def test_billion_laughs_is_refused_quickly():
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "lol">{entities}]><DeviceUpdate>&l9;</DeviceUpdate>'
    tracemalloc.start()
    try:
        message = bad(xml)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # refused at the DOCTYPE, before any entity is declared, let alone expanded (~3 GB of "lol")
    assert "has a DTD" in message
    assert peak < 1_000_000, peak


@pytest.mark.parametrize("field", ["Id", "DeviceType", "Brand", "Model", "Revision", "Locale", "UpdateType",
                                   "Version"])
def test_missing_field(field):
    xml = describe_updates([EXAMPLE]).decode()
    xml = re.sub(rf' {field}="[^"]*"', "", xml) if field == "Id" else re.sub(rf"<{field}>[^<]*</{field}>", "", xml)
    assert f"missing {field}" in bad(xml)


def test_empty_field_counts_as_missing():
    assert "missing Model" in bad(describe_updates([EXAMPLE]).decode().replace(">CX600<", ">  <"))


def test_missing_files():
    assert "no Files/File" in bad(f'<DeviceUpdate><Update Id="{GUID}" {FIELDS}/></DeviceUpdate>')
    assert "missing Name" in bad(f'<DeviceUpdate><Update Id="{GUID}" {FIELDS}><Files><File Catalog="x.cat"/>'
                                 '</Files></Update></DeviceUpdate>')


def test_no_update_in_a_description():
    assert "no Update" in bad("<DeviceUpdate><Comment/></DeviceUpdate>")


def test_conflicting_attribute_and_element():
    assert "given twice" in bad(f'<DeviceUpdate><Update Id="{GUID}" {FIELDS}><Model>CX700</Model><Files>'
                                '<File Name="CPE.nbt"/></Files></Update></DeviceUpdate>')


@pytest.mark.parametrize("version", ["4.0.7577", "4.0.7577.4372.1", "4.0.7577.x", "4.0.7577.65536", "-4.0.1.2",
                                     "4..7577.1", "４.0.7577.4372", "4.0.7577.4372 beta", "", "99999999999.0.0.0"])
def test_bad_version(version):
    assert "ersion" in bad(describe_updates([EXAMPLE]).decode().replace("4.0.7577.4372", version))


@pytest.mark.parametrize("locale", ["EN", "ENUS", "E1U", "**", "en-US", ""])
def test_bad_locale(locale):
    bad(describe_updates([EXAMPLE]).decode().replace(">ENU<", f">{locale}<"))


@pytest.mark.parametrize("guid", ["5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D1", "{5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D11",
                                  "5A1D2C3E0B7F4F0E9C392C1B7E0E5D11", "zzzzzzzz-0b7f-4f0e-9c39-2c1b7e0e5d11",
                                  "urn:uuid:5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11"])
def test_bad_guid(guid):
    assert "GUID" in bad(describe_updates([EXAMPLE]).decode().replace("{5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D11}", guid))


@pytest.mark.parametrize("model", ["CX/600", "..", "CX\\600", "CX\t600", "x" * 129])
def test_values_that_cannot_be_path_segments(model):
    bad(describe_updates([EXAMPLE]).decode().replace(">CX600<", f">{model}<"))


@pytest.mark.parametrize("name", ["../CPE.nbt", "/CPE.nbt", "C:\\CPE.nbt", "CPE\x01.nbt"])
def test_unsafe_file_names(name):
    bad(f'<DeviceUpdate><Update Id="{GUID}" {FIELDS}><Files><File Name="{name}"/></Files></Update></DeviceUpdate>')


def test_an_unsafe_file_name_is_refused_saying_where():
    message = bad(f'<DeviceUpdate><Update Id="{GUID}" {FIELDS}><Files><File Name="CPE.nbt" Catalog="CPE.cat"/>'
                  '<File Name="..\\x.nbt"/></Files></Update></DeviceUpdate>')
    assert message == "t.xml, Update #1, File #2: File Name '../x.nbt' contains '..'"


# --- value helpers ----------------------------------------------------------------------------------

def test_versions_are_canonical_and_ordered_numerically():
    assert parse_version(" 04.00.7577.04372 ") == "4.0.7577.4372"
    assert parse_version("65535.0.0.65535") == "65535.0.0.65535"
    ordered = ["3.5.6907.187", "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372", "4.0.7577.4387", "10.0.0.0"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("4.0.7577.10") > version_key("4.0.7577.9")


def test_guid_and_locale_canonical_forms():
    assert parse_guid("{5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D11}") == GUID == parse_guid(GUID.upper())
    assert parse_locale("enu") == "ENU" and parse_locale("*") == "*"


def test_update_description_validates_on_construction():
    with pytest.raises(PackageError):
        make_update(version="1.2.3")
    with pytest.raises(PackageError):
        make_update(files=[])
    assert make_update(locale="deu").locale == "DEU"
