"""Parsing an update check (device-protocol.md §3) into a plain ``DeviceRequest``.

Tolerant of how real devices spell things (element case, unknown elements, the GET form),
strict about what could hurt (DTDs and entities, size, malformed identity).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from devupdate.devices.locales import KNOWN_LOCALES
from devupdate.selection import DeviceRequest, Module

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


# The common case — UTF-8, no DOCTYPE, no comment — is parsed with the C ElementTree parser, about
# three times faster than defusedxml (which must use the pure-Python parser to hook expat). It is
# just as safe: without the two bytes "<!" a UTF-8 document cannot declare a DTD or an entity, so
# nothing but the five predefined entities and character references can ever be expanded; and
# without NUL bytes, a BOM or a declared encoding other than UTF-8, expat reads it as UTF-8.
# Anything else (UTF-16, another declared encoding, a DOCTYPE, a comment, CDATA) goes to defusedxml.
_DECLARATION = re.compile(rb"\A<\?xml\s[^<>]{0,200}?\?>")
_ENCODING = re.compile(rb"\bencoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")
_UTF8 = frozenset((b"utf-8", b"utf8"))
_COMMON = (b'<?xml version="1.0" encoding="utf-8"?>', b'<?xml version="1.0" encoding="UTF-8"?>',
           b"<?xml version='1.0' encoding='utf-8'?>", b"<?xml version='1.0' encoding='UTF-8'?>")


def _plain_utf8(body: bytes) -> bool:
    """True when ``body`` cannot declare a DTD or an entity and is read by expat as UTF-8."""
    if b"<!" in body or b"\x00" in body:  # no NUL: expat cannot detect UTF-16/32 without a BOM either
        return False
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if body.startswith(_COMMON):
        return True
    if body.startswith(b"<?xml"):
        declaration = _DECLARATION.match(body)
        if declaration is None:
            return False
        encoding = _ENCODING.search(declaration.group())
        return encoding is None or encoding.group(1).lower() in _UTF8
    return body.startswith(b"<")


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
    if _plain_utf8(body):
        try:
            return ET.fromstring(body)
        except Exception:  # ParseError and friends
            raise RequestError("MalformedXml", "request body is not well-formed XML") from None
    try:
        return fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise RequestError("ForbiddenXml", "DTD and entity declarations are not accepted") from None
    except Exception:  # ParseError, ValueError on odd encodings
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
    return DeviceRequest(device_type=values["devicetype"], mac=mac, serial=serial, vendor=values["vendor"],
                         model=values["model"], revision=revision, locale=locale,
                         user_id=fields.get("userid", "")[:256], modules=tuple(modules))
