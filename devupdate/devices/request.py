"""Parsing an update check (device-protocol.md §3) into a plain ``DeviceRequest``.

Tolerant of how real devices spell things (element case, unknown elements, the GET form),
strict about what could hurt (DTDs and entities, size, malformed identity).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from devupdate.devices.locales import KNOWN_LOCALES
from devupdate.selection import DeviceRequest, Module
from devupdate.web import safexml

MAX_REQUEST_BYTES = 64 * 1024
_MAC_SEPARATORS = re.compile(r"[-:.]")
_MAC = re.compile(r"^[0-9A-F]{12}$")
_SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FIELD = re.compile(r"^[^\x00-\x1f/\\]{1,100}$")
# module fields: no '#' or ';' either — they separate modules and fields in the audit log's Modules cell
_MODULE_FILE_NAME = re.compile(r"^[^\x00-\x1f/\\#;]{1,100}$")
_MODULE_TIMESTAMP = re.compile(r"^[^\x00-\x1f#;]{0,100}$")
_VERSION = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,10}){0,3}$")  # ASCII only: \d takes any script's digits


class RequestError(Exception):
    """A refused update check: ``code`` goes in the XML error body and the audit log."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


_TAGS: dict[object, str] = {}


def _local(tag: object) -> str:
    """Element name without namespace, lower-case; memoized (devices send the same few dozen names)."""
    name = _TAGS.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""
        if len(_TAGS) < 4096:
            _TAGS[tag] = name
    return name


def _parse_root(body: bytes) -> ET.Element:
    """The root element (the safe XML reader; no limits: the body is at most 64 KiB), or a refusal."""
    try:
        return safexml.parse(body)
    except safexml.XmlRefused as exc:
        if exc.reason == safexml.DTD:
            raise RequestError("ForbiddenXml", "DTD and entity declarations are not accepted") from None
        raise RequestError("MalformedXml", "request body is not well-formed XML") from None


def _read_fields(root: ET.Element) -> tuple[dict[str, str], list[Module]]:
    """Top-level fields (first of each name wins) and the ``Modules/Module`` entries, as sent."""
    fields: dict[str, str] = {}
    modules: list[Module] = []
    for child in root:
        name = _local(child.tag)
        if name == "modules":
            for module in child:
                if _local(module.tag) == "module":
                    parts = {}
                    for element in module:
                        text = element.text
                        parts[_local(element.tag)] = text.strip() if text else ""
                    modules.append(Module(parts.get("filename", ""), parts.get("version", ""),
                                          parts.get("timestamp", "")))
        elif name not in fields:
            text = child.text
            fields[name] = text.strip() if text else ""
    return fields, modules


def parse_xml(body: bytes) -> DeviceRequest:
    if len(body) > MAX_REQUEST_BYTES:
        raise RequestError("TooLarge", f"request body over {MAX_REQUEST_BYTES} bytes", 413)
    if not body.strip():
        raise RequestError("EmptyRequest", "empty request body; POST the update check XML")
    root = _parse_root(body)
    if _local(root.tag) != "request":
        raise RequestError("MalformedXml", f"root element must be Request, not {_local(root.tag) or '?'}")
    fields, modules = _read_fields(root)
    return _build(fields, modules)


def raw_fields(body: bytes, names: tuple[str, ...]) -> dict[str, str]:
    """Best effort, for the audit row of a refused check: the named top-level fields as sent."""
    try:
        root = _parse_root(body)
    except RequestError:
        return {}
    fields, _ = _read_fields(root)
    return {name: fields[name][:256] for name in names if name in fields}


def parse_query(args: Mapping[str, str], module_values: list[str]) -> DeviceRequest:
    """The GET form: same fields as query parameters, ``Module=FileName;Version[;TimeStamp]``."""
    fields = {key.lower(): value.strip() for key, value in args.items() if key.lower() != "module"}
    modules = []
    for value in module_values:
        parts = [p.strip() for p in value.split(";")]
        modules.append(Module(parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else ""))
    return _build(fields, modules)


def validate_module(module: Module) -> None:
    """A module's name, version and time stamp, or the refusal (the audit log's cell separators too)."""
    if not module.file_name:
        raise RequestError("BadModule", "each Module needs a FileName")
    if not _MODULE_FILE_NAME.match(module.file_name):
        raise RequestError("BadModule", "module FileName: at most 100 characters, no control characters, "
                                        "'/', '\\', '#' and ';'")
    if not _MODULE_TIMESTAMP.match(module.timestamp):
        raise RequestError("BadModule", f"module {module.file_name}: TimeStamp: at most 100 characters, no "
                                        "control characters, '#' and ';'")
    if module.version and not _VERSION.match(module.version):
        raise RequestError("BadModule", f"module {module.file_name}: Version must be dot-separated numbers")


def normalize_mac(text: str) -> str:
    return _MAC_SEPARATORS.sub("", text).upper()


def _build(fields: dict[str, str], modules: list[Module]) -> DeviceRequest:
    mac_text, serial = fields.get("macaddress", ""), fields.get("serialnumber", "")
    if not mac_text and not serial:
        raise RequestError("MissingIdentity", "MACAddress or SerialNumber is required")
    mac = normalize_mac(mac_text) if mac_text else ""
    if mac_text and not _MAC.match(mac):
        raise RequestError("BadMacAddress", "MACAddress must be 12 hex digits (separators - : . allowed)")
    if serial and not _SERIAL.match(serial):
        raise RequestError("BadSerialNumber", "SerialNumber may contain letters, digits, '-' and '_' only")
    values = {}
    for name, label in (("devicetype", "DeviceType"), ("vendor", "Vendor"), ("model", "Model")):
        value = fields.get(name, "")
        if not value:
            raise RequestError("MissingField", f"{label} is required")
        if not _FIELD.match(value):
            raise RequestError("BadField", f"{label} has characters that are not allowed")
        values[name] = value
    revision = fields.get("revision", "")
    if revision and not _FIELD.match(revision):
        raise RequestError("BadField", "Revision has characters that are not allowed")
    locale = fields.get("locale", "").upper()
    if locale not in KNOWN_LOCALES:
        raise RequestError("UnknownLocale", "Locale must be a Windows three-letter language code such as ENU")
    if len(modules) > 64:
        raise RequestError("TooManyModules", "at most 64 modules per request")
    for module in modules:
        validate_module(module)
    return DeviceRequest(device_type=values["devicetype"], mac=mac, serial=serial, vendor=values["vendor"],
                         model=values["model"], revision=revision, locale=locale,
                         user_id=fields.get("userid", "")[:256], modules=tuple(modules))


def build_request(fields: dict[str, str], modules: list[Module]) -> DeviceRequest:
    """The validation every form of the check shares (XML, the GET form, the device API's JSON):
    ``fields`` keyed by the lower-case XML element names."""
    return _build(fields, modules)
