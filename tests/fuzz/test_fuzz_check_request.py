"""Properties of the update-check parser (devupdate/devices/request.py), POST XML and the GET form."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qsl

from defusedxml.ElementTree import fromstring as defused_fromstring
from fuzzkit import FUZZ, check_documents, mixed_text, valid_phones
from hypothesis import given
from hypothesis import strategies as st

from devupdate.devices.locales import KNOWN_LOCALES
from devupdate.devices.request import (
    MAX_REQUEST_BYTES,
    DeviceRequest,
    Module,
    RequestError,
    parse_query,
    parse_xml,
    raw_fields,
)
from devupdate.web.safexml import takes_fast_path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import phonesim  # noqa: E402

CODES = {"TooLarge", "EmptyRequest", "MalformedXml", "ForbiddenXml", "MissingIdentity", "BadMacAddress",
         "BadSerialNumber", "MissingField", "BadField", "UnknownLocale", "TooManyModules", "BadModule"}
_FIELD_OK = re.compile(r"[^\x00-\x1f/\\]{1,100}")


def check_refusal(error: RequestError) -> None:
    assert error.code in CODES, error.code
    assert error.status == (413 if error.code == "TooLarge" else 400)
    assert error.message and "\n" not in error.message


def check_accepted(req: DeviceRequest) -> None:
    """What every accepted check satisfies, whatever was sent: the rest of the service (selection,
    inventory, audit rows, paths) relies on it."""
    assert req.mac or req.serial
    assert req.mac == "" or re.fullmatch(r"[0-9A-F]{12}", req.mac), req.mac
    assert req.serial == "" or re.fullmatch(r"[A-Za-z0-9_-]{1,64}", req.serial), req.serial
    assert re.fullmatch(r"[0-9A-F]{12}|SN-[A-Z0-9_-]{1,64}", req.device_id)
    for value in (req.device_type, req.vendor, req.model):
        assert _FIELD_OK.fullmatch(value) and value == value.strip(), value
    assert req.revision == "" or _FIELD_OK.fullmatch(req.revision)
    assert req.locale in KNOWN_LOCALES
    assert len(req.user_id) <= 256
    assert len(req.modules) <= 64
    for module in req.modules:
        assert _FIELD_OK.fullmatch(module.file_name) and not set(module.file_name) & set("#;"), module
        assert not set(module.timestamp) & set("#;") and len(module.timestamp) <= 100
        assert module.version == "" or re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,10}){0,3}", module.version), module


def parse_or_refuse(body: bytes) -> DeviceRequest | None:
    try:
        req = parse_xml(body)
    except RequestError as error:
        check_refusal(error)
        return None
    check_accepted(req)
    return req


@FUZZ
@given(st.one_of(st.binary(max_size=2000), st.binary(max_size=200).map(lambda b: b"<Request>" + b)))
def test_any_bytes_are_parsed_or_refused(body):
    parse_or_refuse(body)
    assert isinstance(raw_fields(body, ("macaddress", "model")), dict)


@FUZZ
@given(check_documents())
def test_grammar_built_checks_are_parsed_or_refused(body):
    req = parse_or_refuse(body)
    fields = raw_fields(body, ("macaddress", "serialnumber", "model", "userid"))
    assert all(len(value) <= 256 for value in fields.values())
    if req is not None:
        assert req.model == fields["model"]  # the audit row of a check shows what the check used


@FUZZ
@given(st.integers(0, 3).map(lambda n: MAX_REQUEST_BYTES - 1 + n))
def test_the_size_limit_is_exact(size):
    body = b"<Request>" + b" " * (size - len(b"<Request></Request>")) + b"</Request>"
    assert len(body) == size
    try:
        parse_xml(body)
    except RequestError as error:
        assert error.code == ("TooLarge" if size > MAX_REQUEST_BYTES else "MissingIdentity")


def plain(element: ET.Element) -> tuple:
    return (element.tag, sorted(element.attrib.items()), element.text, element.tail,
            [plain(child) for child in element])


@FUZZ
@given(st.one_of(check_documents(), st.binary(max_size=300).map(lambda b: b"<a>" + b + b"</a>")))
def test_fast_path_reads_what_defusedxml_reads(body):
    """The C parser is only used where it is as safe as defusedxml; there the two must agree on
    every tree (or both refuse), or the fast path would change what phones are answered."""
    if not takes_fast_path(body):
        return
    outcomes = []
    for parser in (ET.fromstring, lambda b: defused_fromstring(b, forbid_dtd=True, forbid_entities=True,
                                                                 forbid_external=True)):
        try:
            outcomes.append(plain(parser(body)))
        except ET.ParseError:
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1]


def expected_request(spec: dict) -> DeviceRequest:
    modules = tuple(Module(name, version, "2026-01-01T00:00:00Z") for name, version in sorted(spec["modules"].items()))
    return DeviceRequest(device_type=spec["device_type"], mac=spec["mac"].replace("-", "").replace(":", "").upper(),
                         serial=spec["serial"], vendor=spec["vendor"], model=spec["model"], revision=spec["revision"],
                         locale=spec["locale"].upper(), user_id=spec["user_id"], modules=modules)


@FUZZ
@given(valid_phones())
def test_a_valid_phone_is_read_exactly_in_both_forms(spec):
    """What phonesim sends (the protocol's own form) is read back field for field, POST and GET alike."""
    phone = phonesim.Phone(**spec)
    posted = parse_xml(phone.request_xml())
    assert posted == expected_request(spec)
    args: dict[str, str] = {}
    modules = []
    for key, value in parse_qsl(phone.query(), keep_blank_values=True):
        if key.lower() == "module":
            modules.append(value)
        else:
            args.setdefault(key, value)
    got = parse_query(args, modules)
    assert got == DeviceRequest(**{**posted.__dict__, "modules": tuple(Module(m.file_name, m.version)
                                                                       for m in posted.modules)})


@FUZZ
@given(st.dictionaries(st.sampled_from(["DeviceType", "macaddress", "SERIALNUMBER", "Vendor", "Model", "Revision",
                                        "Locale", "UserID", "x"]), mixed_text),
       st.lists(st.one_of(mixed_text, st.builds(lambda a, b, c: f"{a};{b};{c}", mixed_text, mixed_text, mixed_text)),
                max_size=66))
def test_any_get_form_is_parsed_or_refused(args, modules):
    try:
        req = parse_query(args, modules)
    except RequestError as error:
        check_refusal(error)
        return
    check_accepted(req)
