"""Description files: the DeviceUpdate XML that turns a cab into update rules (update-packages.md §2).

Vendors write these by hand and by tool, so reading is lenient in form — fields as child
elements or attributes, any letter case, unknown elements ignored, UTF-8 or UTF-16 — and strict
in content: every value is checked here, because the importer builds rules and served paths
from them. XML is parsed with defusedxml and any DTD is refused (no entity expansion at all).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree

from devupdate.packages.cab import unsafe_name_reason
from devupdate.packages.errors import PackageError

#: XML names (lower-cased) → UpdateDescription attributes.
FIELDS = {"id": "id", "devicetype": "device_type", "brand": "brand", "model": "model", "revision": "revision",
          "locale": "locale", "updatetype": "update_type", "version": "version"}
TEXT_FIELDS = ("device_type", "brand", "model", "revision", "update_type")
TEXT_MAX = 128
VERSION_PART_MAX = 65535  # a version is four 16-bit words, as in Windows/Lync file versions

_VERSION = re.compile(r"([0-9]{1,10})\.([0-9]{1,10})\.([0-9]{1,10})\.([0-9]{1,10})")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LOCALE = re.compile(r"[A-Za-z]{3}|\*")
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def _bad(message: str) -> PackageError:
    return PackageError("bad-description", message)


def parse_version(text: str) -> str:
    """Validate a version and return its canonical form "a.b.c.d" (no leading zeros)."""
    match = _VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    parts = [int(p) for p in match.groups()] if match else []
    if not match or any(p > VERSION_PART_MAX for p in parts):
        raise _bad(f"version {text!r} is not four dot-separated numbers from 0 to {VERSION_PART_MAX}")
    return ".".join(map(str, parts))


def version_key(version: str) -> tuple[int, ...] | str:
    """The one comparison of versions, imported or reported by a device: numeric when every part
    is ASCII digits, so 4.0.7577.10 sorts after 4.0.7577.9 and '4.0.7577.04372' equals
    '4.0.7577.4372'; anything else compares as its text (a device may report what it likes)."""
    parts = version.split(".")
    if all(part.isascii() and part.isdigit() for part in parts):  # int() alone takes '٤' and ' 4'
        return tuple(int(part) for part in parts)
    return version


def parse_guid(text: str) -> str:
    """Canonical GUID: lower-case, no braces ("{5A1D…}" and "5a1d…" are the same rule)."""
    value = text.strip() if isinstance(text, str) else ""
    if value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    if not _GUID.fullmatch(value):
        raise _bad(f"Id {text!r} is not a GUID like {{5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D11}}")
    return value.lower()


def parse_locale(text: str) -> str:
    """A three-letter Windows language code, upper-cased (ENU, DEU…), or '*' for every locale."""
    value = text.strip() if isinstance(text, str) else ""
    if not _LOCALE.fullmatch(value):
        raise _bad(f"Locale {text!r} is not a three-letter language code (ENU, DEU, …) or '*'")
    return value.upper()


def _check_text(label: str, value: str) -> str:
    value = value.strip() if isinstance(value, str) else ""
    # These become rule keys and path segments of served URLs (DeviceType/Brand/Model/…).
    if not value:
        raise _bad(f"{label} is empty")
    if len(value) > TEXT_MAX:
        raise _bad(f"{label} {value[:40]!r}… is longer than {TEXT_MAX} characters")
    if value in (".", "..") or any(ch in "/\\" or unicodedata.category(ch)[0] == "C" for ch in value):
        raise _bad(f"{label} {value!r} contains '/', '\\', control or format characters, or is '.'/'..'")
    return value


@dataclass(frozen=True)
class FileRef:
    """A file an update installs; ``catalog`` is its signed catalog (.cat), if any."""

    name: str
    catalog: str | None = None

    def __post_init__(self) -> None:
        # Cab member names use '\\' as separator; we use '/' everywhere, as the reader does.
        for attribute in ("name", "catalog"):
            value = getattr(self, attribute)
            if isinstance(value, str):
                object.__setattr__(self, attribute, value.replace("\\", "/"))
        for label, value in (("File Name", self.name), ("File Catalog", self.catalog)):
            if value is None and label == "File Catalog":
                continue
            problem = unsafe_name_reason(value) if isinstance(value, str) else "is missing"
            if problem:
                raise _bad(f"{label} {value!r} {problem}")


@dataclass(frozen=True)
class UpdateDescription:
    """One update rule's new version, canonical: id lower-case without braces, locale upper-case or '*',
    version "a.b.c.d". Construction validates, so an instance is always safe to store and serve."""

    id: str
    device_type: str
    brand: str
    model: str
    revision: str
    locale: str
    update_type: str
    version: str
    files: tuple[FileRef, ...]
    source: str = field(default="", compare=False)  # the description member it came from

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "id", parse_guid(self.id))
        set_(self, "locale", parse_locale(self.locale))
        set_(self, "version", parse_version(self.version))
        for name in TEXT_FIELDS:
            set_(self, name, _check_text(_xml_name(name), getattr(self, name)))
        files = tuple(self.files)
        if not files or not all(isinstance(f, FileRef) for f in files):
            raise _bad(f"update {self.id} lists no files")
        names = [f.name.lower() for f in files]
        if len(set(names)) != len(names):
            raise _bad(f"update {self.id} lists a file twice")
        set_(self, "files", files)

    @property
    def rule_key(self) -> tuple[str, str, str, str, str, str]:
        """What identifies the rule: (DeviceType, Brand, Model, Revision, Locale, UpdateType)."""
        return self.device_type, self.brand, self.model, self.revision, self.locale, self.update_type

    @property
    def version_key(self) -> tuple[int, ...] | str:
        return version_key(self.version)


def _xml_name(attribute: str) -> str:
    return {"id": "Id", "device_type": "DeviceType", "update_type": "UpdateType"}.get(attribute,
                                                                                    attribute.capitalize())


def _local(tag: object) -> str:
    """Element or attribute name without namespace, lower-cased (names match case-insensitively)."""
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _parse_xml(data: bytes, source: str) -> Element:
    text: bytes | str = data
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            # Decode here: Windows tools write UTF-16 with a BOM under encoding="utf-8", which expat refuses.
            try:
                text = data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise _bad(f"{source} is not valid {encoding.upper()}: {exc.reason}") from None
            break
    try:
        return defusedxml.ElementTree.fromstring(text, forbid_dtd=True, forbid_entities=True,
                                                 forbid_external=True)
    except defusedxml.DTDForbidden:
        raise _bad(f"{source} has a DTD (<!DOCTYPE …>); descriptions must not declare one") from None
    except defusedxml.DefusedXmlException as exc:
        raise _bad(f"{source} uses forbidden XML features ({type(exc).__name__})") from None
    except ParseError as exc:
        raise _bad(f"{source} is not well-formed XML: {exc}") from None


def _fields(element: Element, where: str, wanted: Mapping[str, str]) -> dict[str, str]:
    """Values of ``wanted`` names given as attributes or child elements; conflicting repeats are refused."""
    values: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        value = value.strip()
        if key in values and values[key] != value:
            raise _bad(f"{where}: {_xml_name(key)} is given twice ({values[key]!r} and {value!r})")
        values[key] = value

    for name, value in element.attrib.items():
        if _local(name) in wanted:
            put(wanted[_local(name)], value)
    for child in element:
        if _local(child.tag) in wanted:
            put(wanted[_local(child.tag)], "".join(child.itertext()))
    return values


def _parse_update(element: Element, where: str, source: str) -> UpdateDescription:
    values = _fields(element, where, FIELDS)
    missing = [_xml_name(name) for name in FIELDS.values() if not values.get(name)]
    if missing:
        raise _bad(f"{where}: missing {', '.join(missing)}")
    files = []
    for files_element in (c for c in element if _local(c.tag) == "files"):
        for j, file_element in enumerate((c for c in files_element if _local(c.tag) == "file"), 1):
            ref = _fields(file_element, f"{where}, File #{j}", {"name": "name", "catalog": "catalog"})
            if not ref.get("name"):
                raise _bad(f"{where}, File #{j}: missing Name")
            try:
                files.append(FileRef(ref["name"], ref.get("catalog") or None))
            except PackageError as exc:
                raise _bad(f"{where}, File #{j}: {exc.message}") from None
    if not files:
        raise _bad(f"{where}: no Files/File entries")
    try:
        return UpdateDescription(files=tuple(files), source=source, **values)
    except PackageError as exc:
        raise _bad(f"{where}: {exc.message}") from None


def parse_description(data: bytes, source: str = "description") -> list[UpdateDescription] | None:
    """The updates of one XML document, or None when its root is not DeviceUpdate (not a description)."""
    root = _parse_xml(data, source)
    if _local(root.tag) != "deviceupdate":
        return None
    updates = [_parse_update(element, f"{source}, Update #{i}", source)
               for i, element in enumerate((c for c in root if _local(c.tag) == "update"), 1)]
    if not updates:
        raise _bad(f"{source} has a DeviceUpdate root but no Update")
    return updates


def parse_descriptions(documents: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> list[UpdateDescription]:
    """All updates described by the .xml members (name → bytes) of a cab.

    Refuses a cab with no description (no-description) and updates that repeat an Id or a rule
    (bad-description): one cab carries one version per rule.
    """
    items = documents.items() if isinstance(documents, Mapping) else documents
    updates: list[UpdateDescription] = []
    for name, data in items:
        updates.extend(parse_description(data, name) or ())
    if not updates:
        raise PackageError("no-description", "the cab has no description file (an .xml member whose root "
                           "element is DeviceUpdate)")
    by_id: dict[object, UpdateDescription] = {}
    by_rule: dict[object, UpdateDescription] = {}
    for update in updates:
        key = tuple(part.lower() for part in update.rule_key)
        for seen, value, what in ((by_id, update.id, "Id"), (by_rule, key, "rule")):
            if value in seen:
                raise _bad(f"two updates have the same {what} ({seen[value].source} and {update.source}): "
                           f"{update.id} {'/'.join(update.rule_key)}")
            seen[value] = update
    return updates


def describe_updates(updates: Iterable[UpdateDescription]) -> bytes:
    """The description XML for ``updates``, laid out exactly like the spec's example (UTF-8)."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<DeviceUpdate>"]
    for update in updates:
        lines.append(f'  <Update Id="{{{update.id.upper()}}}">')
        for attribute in ("device_type", "brand", "model", "revision", "locale", "update_type", "version"):
            tag = _xml_name(attribute)
            lines.append(f"    <{tag}>{escape(getattr(update, attribute))}</{tag}>")
        lines.append("    <Files>")
        for ref in update.files:
            catalog = f' Catalog="{_attr(ref.catalog)}"' if ref.catalog else ""
            lines.append(f'      <File Name="{_attr(ref.name)}"{catalog}/>')
        lines += ["    </Files>", "  </Update>"]
    lines.append("</DeviceUpdate>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})
