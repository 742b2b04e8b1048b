"""The update check's core without a server: request bytes → parse → select → render → response
bytes, over plain in-memory rule data. No database, no Flask app, no subprocess server; the last
test proves that this module and the core it drives import neither Flask nor peewee.

The requests are the ones devices send: the example of device-protocol.md §3 and the bodies and
GET queries of the phone simulator the live device tests drive (``tools/phonesim.py``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from devupdate.devices.request import RequestError, parse_query, parse_xml
from devupdate.devices.response import NOTHING, render
from devupdate.packages.description import version_key
from devupdate.selection import OfferedFile, RuleEntry, Snapshot, VersionEntry, family, select
from devupdate.web.errors import render_error

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402 - standard library only

INTERNAL = "http://ucupdates-r2.contoso.com"
EXTERNAL = "https://ucupdates.contoso.com"
CX600 = ("UCPhone", "Polycom", "CX600", "A", "ENU")
AASTRA = ("UCPhone", "Aastra", "6725ip", "A", "DEU")
V0, V1, V2, V3 = "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372", "4.0.7577.4387"
IMPORTED = {V0: "2026-11-02T09:00:00Z", V1: "2026-11-12T10:30:00Z", V2: "2026-11-20T14:03:11Z",
            V3: "2026-11-28T16:45:09Z"}
SPEC_IMAGE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SPEC_CATALOG_SHA256 = hashlib.sha256(b"CPE.cat 4.0.7577.4372").hexdigest()

# device-protocol.md §3, verbatim
SPEC_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<Request>
  <DeviceType>UCPhone</DeviceType>
  <MACAddress>00-04-F2-AA-BB-CC</MACAddress>
  <SerialNumber>CX600-0042</SerialNumber>
  <Vendor>Polycom</Vendor>
  <Model>CX600</Model>
  <Revision>A</Revision>
  <Locale>ENU</Locale>
  <UserID>alice@contoso.com</UserID>
  <Modules>
    <Module>
      <FileName>CPE.nbt</FileName>
      <Version>4.0.7577.4366</Version>
      <TimeStamp>2026-11-21T08:59:58Z</TimeStamp>
    </Module>
  </Modules>
</Request>
"""

# device-protocol.md §5, verbatim but for the catalog's SHA-256 (the example elides it)
SPEC_RESPONSE = f"""<?xml version="1.0" encoding="utf-8"?>
<Response>
  <NumOfFiles>2</NumOfFiles>
  <Files>
    <File>
      <FileName>CPE.nbt</FileName>
      <SignatureFileName>CPE.cat</SignatureFileName>
      <Version>4.0.7577.4372</Version>
      <TimeStamp>2026-11-20T14:03:11Z</TimeStamp>
      <Url>http://ucupdates-r2.contoso.com/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/4.0.7577.4372/CPE.nbt</Url>
      <Size>31457280</Size>
      <SHA256>{SPEC_IMAGE_SHA256}</SHA256>
    </File>
    <File>
      <FileName>CPE.cat</FileName>
      <Version>4.0.7577.4372</Version>
      <TimeStamp>2026-11-20T14:03:11Z</TimeStamp>
      <Url>http://ucupdates-r2.contoso.com/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/4.0.7577.4372/CPE.cat</Url>
      <Size>8211</Size>
      <SHA256>{SPEC_CATALOG_SHA256}</SHA256>
    </File>
  </Files>
</Response>
""".encode()

EMPTY = b'<?xml version="1.0" encoding="utf-8"?>\n<Response><NumOfFiles>0</NumOfFiles><Files/></Response>\n'


# --- plain in-memory rule data, shaped as devices/snapshot.py builds it from the tables ------------------

def files_of(fam: tuple[str, ...], version: str, update_type: str = "CPE", *, image_size: int = 20_000,
             catalog_size: int = 4_096, image: str | None = None) -> tuple[OfferedFile, ...]:
    """An image followed by its catalog, as the snapshot orders them."""
    image = image or f"{update_type}.nbt"
    catalog = image.rsplit(".", 1)[0] + ".cat"
    prefix = "/".join((*fam, version))
    return (OfferedFile(image, catalog, version, IMPORTED[version], f"{prefix}/{image}", image_size,
                        hashlib.sha256(f"{image} {version}".encode()).hexdigest()),
            OfferedFile(catalog, None, version, IMPORTED[version], f"{prefix}/{catalog}", catalog_size,
                        hashlib.sha256(f"{catalog} {version}".encode()).hexdigest()))


def rule(fam: tuple[str, ...], update_type: str = "CPE", *, approved: str | None = None,
         pending: str | None = None, versions: tuple[str, ...] = (), image: str | None = None) -> RuleEntry:
    every = {v for v in (approved, pending, *versions) if v}
    names = frozenset(f.file_name.lower() for v in every for f in files_of(fam, v, update_type, image=image)
                      if f.signature_file_name)
    entry = lambda v: VersionEntry(v, files_of(fam, v, update_type, image=image)) if v else None  # noqa: E731
    return RuleEntry(f"rule-{'-'.join(fam)}-{update_type}".lower(), update_type.lower(), names,
                     entry(approved), entry(pending))


def snapshot(*rules: RuleEntry, locale_wildcards: tuple[RuleEntry, ...] = (), test_macs: tuple[str, ...] = (),
             test_serials: tuple[str, ...] = ()) -> Snapshot:
    by_family: dict[tuple[str, str, str, str, str], list[RuleEntry]] = {}
    for item in rules:
        fam = tuple(item.approved.files[0].path.split("/")[:5]) if item.approved else None
        fam = fam or tuple(item.pending.files[0].path.split("/")[:5])  # type: ignore[union-attr]
        by_family.setdefault(family(*fam), []).append(item)
    for item in locale_wildcards:
        fam = tuple((item.approved or item.pending).files[0].path.split("/")[:4])  # type: ignore[union-attr]
        by_family.setdefault(family(*fam, "*"), []).append(item)
    return Snapshot(generation=1, rules={key: tuple(value) for key, value in by_family.items()},
                    test_macs=frozenset(test_macs), test_serials=frozenset(s.upper() for s in test_serials))


def wildcard(fam: tuple[str, ...], approved: str) -> RuleEntry:
    """A rule for every locale of a family: its files' paths carry the '*' the import gives them."""
    star = (*fam[:4], "*")
    return RuleEntry(f"rule-{'-'.join(star)}-cpe".lower(), "cpe",
                     frozenset({"cpe.nbt"}), VersionEntry(approved, files_of(star, approved)), None)


BASES = {"Int": INTERNAL, "Ext": EXTERNAL}


def check_post(snap: Snapshot, body: bytes, side: str = "Int") -> bytes:
    """What ``devices/check.py`` does after access control, for a POST: parse → select → render."""
    return render(select(snap, parse_xml(body)), BASES[side], side)


def query_of(device: phonesim.Phone) -> tuple[dict[str, str], list[str]]:
    """The GET form's fields and ``Module`` values, read from the query string the simulator sends
    as the check reads them (first value of a name wins)."""
    args: dict[str, str] = {}
    modules: list[str] = []
    for key, value in parse_qsl(device.query(), keep_blank_values=True):
        if key.lower() == "module":
            modules.append(value)
        else:
            args.setdefault(key, value)
    return args, modules


def check_get(snap: Snapshot, device: phonesim.Phone, side: str = "Int") -> bytes:
    return render(select(snap, parse_query(*query_of(device))), BASES[side], side)


def phone(fam: tuple[str, str, str, str, str] = CX600, modules: dict[str, str] | None = None, *,
          mac: str = "00-04-F2-AA-BB-CC", serial: str = "CX600-0042") -> phonesim.Phone:
    return phonesim.Phone(mac, serial, *fam, modules={"CPE.nbt": V1} if modules is None else modules,
                          user_id="alice@contoso.com")


def answered(body: bytes) -> list[dict[str, str]]:
    """The File elements as dicts, in document order, after the phone simulator's strict parse
    (NumOfFiles must equal the number of File elements)."""
    return [{"FileName": f.file_name, "SignatureFileName": f.signature_file_name or "", "Version": f.version,
             "TimeStamp": f.timestamp, "Url": f.url, "Size": str(f.size), "SHA256": f.sha256}
            for f in phonesim.parse_response(body)]


def urls(body: bytes) -> list[str]:
    return [f["Url"] for f in answered(body)]


# --- the spec's own example -----------------------------------------------------------------------------

def spec_snapshot() -> Snapshot:
    prefix = "UCPhone/Polycom/CX600/A/ENU/4.0.7577.4372"
    files = (OfferedFile("CPE.nbt", "CPE.cat", V2, "2026-11-20T14:03:11Z", f"{prefix}/CPE.nbt", 31457280,
                         SPEC_IMAGE_SHA256),
             OfferedFile("CPE.cat", None, V2, "2026-11-20T14:03:11Z", f"{prefix}/CPE.cat", 8211, SPEC_CATALOG_SHA256))
    entry = RuleEntry("5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11", "cpe", frozenset({"cpe.nbt"}),
                      VersionEntry(V2, files), None)
    return Snapshot(generation=1, rules={family(*CX600): (entry,)})


def test_the_spec_example_request_gets_the_spec_example_response_byte_for_byte():
    request = parse_xml(SPEC_REQUEST)
    assert (request.device_type, request.mac, request.serial, request.vendor, request.model, request.revision,
            request.locale, request.user_id) == ("UCPhone", "0004F2AABBCC", "CX600-0042", "Polycom", "CX600", "A",
                                                 "ENU", "alice@contoso.com")
    assert [(m.file_name, m.version, m.timestamp) for m in request.modules] == [
        ("CPE.nbt", V1, "2026-11-21T08:59:58Z")]
    assert check_post(spec_snapshot(), SPEC_REQUEST) == SPEC_RESPONSE


def test_the_get_form_and_the_external_side_of_the_spec_example():
    device = phone(modules={"CPE.nbt": V1})
    assert check_get(spec_snapshot(), device) == SPEC_RESPONSE
    external = check_get(spec_snapshot(), device, "Ext")
    assert external == SPEC_RESPONSE.replace(b"http://ucupdates-r2.contoso.com/DeviceUpdateFiles_Int/",
                                             b"https://ucupdates.contoso.com/DeviceUpdateFiles_Ext/")
    assert urls(external) == [f"{EXTERNAL}/DeviceUpdateFiles_Ext/UCPhone/Polycom/CX600/A/ENU/{V2}/CPE.nbt",
                              f"{EXTERNAL}/DeviceUpdateFiles_Ext/UCPhone/Polycom/CX600/A/ENU/{V2}/CPE.cat"]


def test_the_simulated_phones_post_and_get_forms_parse_to_the_same_request():
    fleet = phonesim.make_fleet(12, families=[CX600, AASTRA], installed={"CPE.nbt": V1, "UCD.nbt": V0},
                                serial_only_every=4, seed=3)
    assert sum(1 for device in fleet if not device.mac) == 3
    for device in fleet:
        posted, got = parse_xml(device.request_xml()), parse_query(*query_of(device))
        # the GET form's Module=FileName;Version carries no TimeStamp here
        assert replace(posted, modules=()) == replace(got, modules=())
        assert [(m.file_name, m.version, m.timestamp) for m in posted.modules] == [
            ("CPE.nbt", V1, "2026-01-01T00:00:00Z"), ("UCD.nbt", V0, "2026-01-01T00:00:00Z")]
        assert [(m.file_name, m.version, m.timestamp) for m in got.modules] == [
            ("CPE.nbt", V1, ""), ("UCD.nbt", V0, "")]
        assert posted.device_id == device.device_id
        assert (posted.device_type, posted.vendor, posted.model, posted.revision, posted.locale) == (
            device.device_type, device.vendor, device.model, device.revision, device.locale)


# --- approved ----------------------------------------------------------------------------------------

def test_approved_version_is_offered_as_image_then_catalog_with_every_field():
    snap = snapshot(rule(CX600, approved=V2, versions=(V1,)))
    body = check_post(snap, phone(modules={"CPE.nbt": V1}).request_xml())
    prefix = f"{INTERNAL}/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/{V2}"
    assert answered(body) == [
        {"FileName": "CPE.nbt", "SignatureFileName": "CPE.cat", "Version": V2, "TimeStamp": IMPORTED[V2],
         "Url": f"{prefix}/CPE.nbt", "Size": "20000", "SHA256": hashlib.sha256(f"CPE.nbt {V2}".encode()).hexdigest()},
        {"FileName": "CPE.cat", "SignatureFileName": "", "Version": V2, "TimeStamp": IMPORTED[V2],
         "Url": f"{prefix}/CPE.cat", "Size": "4096", "SHA256": hashlib.sha256(f"CPE.cat {V2}".encode()).hexdigest()}]
    assert body.count(b"<File>") == 2 and b"<NumOfFiles>2</NumOfFiles>" in body
    assert body.count(b"<SignatureFileName>") == 1  # only the image names its catalog


def test_a_device_on_the_approved_version_or_without_a_target_gets_the_empty_answer():
    assert NOTHING == EMPTY
    assert check_post(snapshot(rule(CX600, approved=V2)), phone(modules={"CPE.nbt": V2}).request_xml()) == EMPTY
    assert check_post(snapshot(rule(CX600, pending=V2)), phone(modules={"CPE.nbt": V1}).request_xml()) == EMPTY


def test_a_device_that_reports_no_module_of_the_rule_is_offered_the_approved_version():
    snap = snapshot(rule(CX600, approved=V2))
    for modules in ({}, {"UCD.nbt": V2}):
        assert [f["FileName"] for f in answered(check_post(snap, phone(modules=modules).request_xml()))] == [
            "CPE.nbt", "CPE.cat"]


def test_older_approved_version_is_offered_to_newer_devices_a_rollback():
    snap = snapshot(rule(CX600, approved=V1, versions=(V2, V3)))
    assert [(f["FileName"], f["Version"]) for f in answered(check_post(snap, phone(modules={"CPE.nbt": V3})
                                                                        .request_xml()))] == [
        ("CPE.nbt", V1), ("CPE.cat", V1)]


# --- pending + test device ------------------------------------------------------------------------------

def test_pending_version_goes_to_test_devices_by_mac_or_serial_approved_to_the_rest():
    snap = snapshot(rule(CX600, approved=V1, pending=V2), test_macs=("0004F2AABBCC",), test_serials=("cx600-0099",))
    versions = lambda body: {f["Version"] for f in answered(body)}  # noqa: E731
    # the MAC as the device spells it (any separators, any case) is normalized before the comparison
    for mac in ("00-04-F2-AA-BB-CC", "00:04:f2:aa:bb:cc", "0004.f2aa.bbcc"):
        assert versions(check_post(snap, phone(modules={"CPE.nbt": V0}, mac=mac).request_xml())) == {V2}
    # serial compared case-insensitively; a serial-only test device
    assert versions(check_post(snap, phone(modules={"CPE.nbt": V0}, mac="", serial="CX600-0099").request_xml())) == {V2}
    # not a test device: approved
    assert versions(check_post(snap, phone(modules={"CPE.nbt": V0}, mac="00-04-F2-00-00-01",
                                           serial="CX600-0100").request_xml())) == {V1}
    # a test device already on the pending version: nothing; a non-test one on approved: nothing
    assert check_post(snap, phone(modules={"CPE.nbt": V2}).request_xml()) == EMPTY
    assert check_post(snap, phone(modules={"CPE.nbt": V1}, mac="00-04-F2-00-00-01",
                                  serial="CX600-0100").request_xml()) == EMPTY
    # a test device running approved is moved on to pending: exact URLs
    assert urls(check_post(snap, phone(modules={"CPE.nbt": V1}).request_xml())) == [
        f"{INTERNAL}/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/{V2}/CPE.nbt",
        f"{INTERNAL}/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/{V2}/CPE.cat"]


def test_a_test_device_gets_approved_where_the_rule_has_no_pending_version():
    snap = snapshot(rule(CX600, approved=V1), rule(CX600, "UCD", approved=V1, pending=V2),
                    test_macs=("0004F2AABBCC",))
    body = check_post(snap, phone(modules={"CPE.nbt": V0, "UCD.nbt": V0}).request_xml())
    assert [(f["FileName"], f["Version"]) for f in answered(body)] == [
        ("CPE.nbt", V1), ("CPE.cat", V1), ("UCD.nbt", V2), ("UCD.cat", V2)]


# --- no match ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fam", [
    ("UCPhone", "Polycom", "CX700", "A", "ENU"),  # other model
    ("UCPhone", "Polycom", "CX600", "B", "ENU"),  # other revision
    ("UCPhone", "Polycom", "CX600", "A", "DEU"),  # other locale
    ("UCPhone", "Aastra", "CX600", "A", "ENU"),  # other vendor
    ("IPPhone", "Polycom", "CX600", "A", "ENU"),  # other device type
])
def test_a_device_of_no_rule_family_gets_the_empty_answer(fam):
    snap = snapshot(rule(CX600, approved=V2), rule(AASTRA, approved=V2))
    assert check_post(snap, phone(fam, {"CPE.nbt": V0}).request_xml()) == EMPTY
    assert check_get(snap, phone(fam, {"CPE.nbt": V0})) == EMPTY


def test_family_fields_match_case_insensitively_and_a_wildcard_locale_rule_matches_every_locale():
    snap = snapshot(rule(CX600, approved=V2), locale_wildcards=(wildcard(AASTRA, V3),))
    shouting = ("ucphone", "POLYCOM", "cx600", "a", "enu")
    assert [f["Version"] for f in answered(check_post(snap, phone(shouting, {"CPE.nbt": V0}).request_xml()))] == [
        V2, V2]
    for locale in ("DEU", "FRA", "ENU"):
        body = check_post(snap, phone((*AASTRA[:4], locale), {"CPE.nbt": V0}).request_xml())
        assert urls(body) == [f"{INTERNAL}/DeviceUpdateFiles_Int/UCPhone/Aastra/6725ip/A/%2A/{V3}/CPE.nbt",
                              f"{INTERNAL}/DeviceUpdateFiles_Int/UCPhone/Aastra/6725ip/A/%2A/{V3}/CPE.cat"]


# --- several modules ------------------------------------------------------------------------------------

def test_several_modules_each_rule_compares_its_own_module():
    snap = snapshot(rule(CX600, "CPE", approved=V2), rule(CX600, "UCD", approved=V3), rule(CX600, "BT", approved=V1))
    device = {"CPE.nbt": V2, "UCD.nbt": V1, "BT.nbt": V1, "Other.nbt": V0}
    body = check_post(snap, phone(modules=device).request_xml())
    assert [(f["FileName"], f["Version"]) for f in answered(body)] == [("UCD.nbt", V3), ("UCD.cat", V3)]
    # every module behind: every rule's files, in rule order, NumOfFiles counting them all
    body = check_post(snap, phone(modules={"CPE.nbt": V0, "UCD.nbt": V0, "BT.nbt": V0}).request_xml())
    assert [(f["FileName"], f["Version"]) for f in answered(body)] == [
        ("CPE.nbt", V2), ("CPE.cat", V2), ("UCD.nbt", V3), ("UCD.cat", V3), ("BT.nbt", V1), ("BT.cat", V1)]
    assert b"<NumOfFiles>6</NumOfFiles>" in body and body.count(b"<File>") == 6
    assert check_get(snap, phone(modules={"CPE.nbt": V0, "UCD.nbt": V0, "BT.nbt": V0})) == body
    # all current: nothing
    assert check_post(snap, phone(modules={"CPE.nbt": V2, "UCD.nbt": V3, "BT.nbt": V1}).request_xml()) == EMPTY


def test_a_module_is_the_rules_by_image_name_or_by_stem_equal_to_the_update_type_any_case():
    snap = snapshot(rule(CX600, "CPE", approved=V2, image="cpe_cx600.nbt"))
    for name in ("CPE_CX600.NBT", "cpe.nbt", "CPE.bin"):
        assert check_post(snap, phone(modules={name: V2}).request_xml()) == EMPTY, name
        assert [f["FileName"] for f in answered(check_post(snap, phone(modules={name: V1}).request_xml()))] == [
            "cpe_cx600.nbt", "cpe_cx600.cat"], name


# --- version ordering -----------------------------------------------------------------------------------

def test_version_key_orders_numerically_and_equates_leading_zeros():
    assert version_key("4.0.7577.10") > version_key("4.0.7577.9")
    assert version_key("4.0.7577.04372") == version_key("4.0.7577.4372") == (4, 0, 7577, 4372)
    assert sorted(["4.0.7577.4387", "4.0.7577.10", "4.0.7577.4363", "4.0.7577.9", "4.0.10.1", "4.0.9.99"],
                  key=version_key) == ["4.0.9.99", "4.0.10.1", "4.0.7577.9", "4.0.7577.10", "4.0.7577.4363",
                                       "4.0.7577.4387"]
    assert version_key("4.0.7577.\u0664") == "4.0.7577.\u0664"  # Arabic-Indic digit: text, not the number 4
    assert version_key("4.0.7577.4") != version_key("4.0.7577.\u0664")


def test_selection_compares_versions_by_version_key_not_text():
    snap = snapshot(rule(CX600, approved=V2))
    assert check_post(snap, phone(modules={"CPE.nbt": "4.0.7577.04372"}).request_xml()) == EMPTY
    assert check_post(snap, phone(modules={"CPE.nbt": "04.00.07577.4372"}).request_xml()) == EMPTY
    assert [f["Version"] for f in answered(check_post(snap, phone(modules={"CPE.nbt": "4.0.7577.437"})
                                                       .request_xml()))] == [V2, V2]


# --- rendering of what a name can hold; refusals ---------------------------------------------------------

def test_names_are_escaped_in_elements_and_percent_encoded_in_urls():
    prefix = "UCPhone/Polycom/CX600/A/ENU/" + V2
    files = (OfferedFile("CPE A&B.nbt", "CPE A&B.cat", V2, IMPORTED[V2], f"{prefix}/CPE A&B.nbt", 7, "ab" * 32),)
    assert render(list(files), INTERNAL + "/", "Int") == (
        '<?xml version="1.0" encoding="utf-8"?>\n<Response>\n  <NumOfFiles>1</NumOfFiles>\n  <Files>\n'
        "    <File>\n"
        "      <FileName>CPE A&amp;B.nbt</FileName>\n"
        "      <SignatureFileName>CPE A&amp;B.cat</SignatureFileName>\n"
        f"      <Version>{V2}</Version>\n"
        f"      <TimeStamp>{IMPORTED[V2]}</TimeStamp>\n"
        f"      <Url>{INTERNAL}/DeviceUpdateFiles_Int/{prefix}/CPE%20A%26B.nbt</Url>\n"
        "      <Size>7</Size>\n"
        f"      <SHA256>{'ab' * 32}</SHA256>\n"
        "    </File>\n  </Files>\n</Response>\n").encode()


@pytest.mark.parametrize("body, code, status", [
    (SPEC_REQUEST.replace(b"00-04-F2-AA-BB-CC", b"").replace(b"CX600-0042", b""), "MissingIdentity", 400),
    (SPEC_REQUEST.replace(b"00-04-F2-AA-BB-CC", b"00-04-F2-AA-BB-ZZ"), "BadMacAddress", 400),
    (SPEC_REQUEST.replace(b"<Locale>ENU", b"<Locale>XYZ"), "UnknownLocale", 400),
    (SPEC_REQUEST.replace(b"4.0.7577.4366", b"4.0;DROP"), "BadModule", 400),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><Request/>', "ForbiddenXml", 400),
    (SPEC_REQUEST[:-20], "MalformedXml", 400),
    (SPEC_REQUEST + b" " * 65536, "TooLarge", 413),
])
def test_refused_requests_get_their_code_and_the_xml_error_body(body, code, status):
    with pytest.raises(RequestError) as refused:
        check_post(spec_snapshot(), body)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert render_error(refused.value.code, refused.value.message) == (
        f'<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{refused.value.message}</Message></Error>\n").encode()


# --- purity -------------------------------------------------------------------------------------------

FORBIDDEN = ("flask", "werkzeug", "peewee", "devupdate.db", "devupdate.settings", "devupdate.runtime",
             "devupdate.app")


def test_this_module_and_the_core_it_drives_import_no_web_framework_database_or_settings():
    """A fresh interpreter imports this very test module (and so everything it imports) and the
    core modules: none of them may pull in Flask, werkzeug, peewee or the service's settings."""
    program = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        f"spec = importlib.util.spec_from_file_location('pure_core_under_test', {str(Path(__file__))!r})\n"
        "module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "import devupdate.selection, devupdate.devices.request, devupdate.devices.response, devupdate.web.errors\n"
        "assert callable(module.check_post)\n"
        "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert {"devupdate.selection", "devupdate.devices.request", "devupdate.devices.response",
            "pure_core_under_test"} <= loaded
    pulled = sorted(name for name in loaded
                    if any(name == forbidden or name.startswith(f"{forbidden}.") for forbidden in FORBIDDEN))
    assert pulled == []
