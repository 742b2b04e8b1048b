"""One update XML document (the ``XmlUpdateBlob`` form, [MS-WSUSSS] §3.1.1.1) → a plain document.

Pure: no database, no settings, no web framework (XML is read by the web kit's pure safe XML
reader, ``devupdate.web.safexml``). The server interprets only the XPaths the protocols name;
everything else stays in the stored text verbatim. The client fragments of [MS-WUSP] §3.1.1.1
(Core, Extended, LocalizedProperties per language, Eula per language) are derived here, once, at
import, so no request ever re-derives them.

Refused (``DocumentError``, one line each): above 16 MiB, a DTD or entity, nesting deeper than
``MAX_DEPTH``, more than ``MAX_ELEMENTS`` elements, not ``upd:Update``, a malformed identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from devupdate.web import safexml

MAX_BYTES = 16 << 20
MAX_DEPTH = 128
MAX_ELEMENTS = 200_000
MAX_REVISION = (1 << 31) - 1

UPD = "http://schemas.microsoft.com/msus/2002/12/Update"
#: [MS-WUSP] §3.1.1.1: rule elements of these namespaces keep a short prefix in the fragments
FRAGMENT_PREFIXES = {
    "http://schemas.microsoft.com/msus/2002/12/BaseApplicabilityRules": "b.",
    "http://schemas.microsoft.com/msus/2002/12/MsiApplicabilityRules": "m.",
    "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/WindowsDriver": "d.",
}
CORE_PROPERTIES = ("UpdateType", "ExplicitlyDeployable", "AutoSelectOnWebSites", "OSUpgrade", "EulaID")
NOT_EXTENDED = frozenset({"UpdateType", "ExplicitlyDeployable", "AutoSelectOnWebSites", "EulaID", "PublicationState",
                          "PublisherID", "CreationDate", "IsPublic", "LegacyName", "DetectoidType", "OSUpgrade"})
UPDATE_TYPES = frozenset({"Software", "Driver", "Category", "Detectoid"})

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


class DocumentError(ValueError):
    """A refused document; ``code`` for scripts, ``message`` one line naming what is wrong."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Clause:
    """One CNF clause of the prerequisites: any of ``update_ids`` satisfies it."""

    update_ids: tuple[str, ...]
    is_category: bool


@dataclass(frozen=True)
class FileEntry:
    sha1: str  # lower-case hex
    sha256: str | None
    size: int
    file_name: str
    patching_type: str | None
    modified: str | None


@dataclass(frozen=True)
class Localized:
    language: str
    title: str
    description: str
    fragment: str


@dataclass(frozen=True)
class Eula:
    language: str
    fragment: str


@dataclass
class UpdateDocument:
    update_id: str  # lower case
    revision_number: int
    update_type: str
    publication_state: str
    default_language: str
    creation_date: str | None
    kb_article: str | None
    category_type: str | None
    text: str  # the document, character for character as received
    sha256: str  # of ``text`` in UTF-8
    core: str
    extended: str
    localized: list[Localized] = field(default_factory=list)
    eulas: list[Eula] = field(default_factory=list)
    prerequisites: list[Clause] = field(default_factory=list)
    bundled: list[tuple[tuple[str, int], ...]] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)

    @property
    def title(self) -> str:
        by_language = {item.language.lower(): item.title for item in self.localized}
        return by_language.get("en") or by_language.get(self.default_language.lower()) or next(
            iter(by_language.values()), "")

    @property
    def identity(self) -> tuple[str, int]:
        return self.update_id, self.revision_number


# -- decoding and safe parsing -----------------------------------------------------------------------

def decode(data: bytes) -> str:
    """The document's characters: UTF-8 (the form of the captured documents) or UTF-16 (the form
    inside an ``XmlUpdateBlobCompressed`` cabinet, without BOM)."""
    if len(data) > MAX_BYTES:
        raise DocumentError("too-large", f"document is {len(data)} bytes, above the {MAX_BYTES >> 20} MiB limit")
    try:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return data.decode("utf-16")
        if data[:2] == b"<\x00":
            return data.decode("utf-16-le")
        if data[:2] == b"\x00<":
            return data.decode("utf-16-be")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError("bad-encoding", f"document is neither UTF-8 nor UTF-16 ({exc.reason} at byte "
                            f"{exc.start})") from None


def _strip_declaration(text: str) -> str:
    """An XML declaration naming an encoding would contradict the already decoded text."""
    if text.startswith("<?xml"):
        end = text.find("?>")
        if end > 0:
            return text[end + 2:]
    return text


_REFUSALS = {
    safexml.DTD: ("dtd", "document has a DTD (<!DOCTYPE …>); update documents never do"),
    safexml.DEPTH: ("too-deep", f"document nests deeper than {MAX_DEPTH} elements"),
    safexml.ELEMENTS: ("too-many-elements", f"document has more than {MAX_ELEMENTS} elements"),
}


def parse_xml(text: str) -> ET.Element:
    """The one place the catalog parses XML (the safe XML reader): no DTD, no entities, bounded
    depth and element count."""
    try:
        data = _strip_declaration(text).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in text handed over already decoded
        raise DocumentError("bad-encoding", f"document text is not Unicode ({exc.reason} at character "
                            f"{exc.start})") from None
    try:
        return safexml.parse(data, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS)
    except safexml.XmlRefused as exc:
        code, message = _REFUSALS.get(exc.reason, ("malformed", f"document is {exc.message}"))
        raise DocumentError(code, message) from None


# -- fragments ([MS-WUSP] §3.1.1.1) ---------------------------------------------------------------------

def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(value: str) -> str:
    return _escape_text(value).replace('"', "&quot;")


def _fragment_name(tag: str) -> str:
    ns, local = _split(tag)
    return FRAGMENT_PREFIXES.get(ns, "") + local


def _write(element: ET.Element, out: list[str], *, name: str | None = None,
           attributes: list[tuple[str, str]] | None = None, children: list[ET.Element] | None = None) -> None:
    """Serialize as WSUS does: no prefixes but ``b.``/``m.``/``d.``, no ``xmlns``, ``<X a="v" />``."""
    name = name or _fragment_name(element.tag)
    if attributes is None:
        attributes = [(_split(key)[1], value) for key, value in element.attrib.items()]
    out.append("<" + name)
    for key, value in attributes:
        out.append(f' {key}="{_escape_attr(value)}"')
    kids = list(element) if children is None else children
    text = element.text or ""
    if not kids and not text:
        out.append(" />")
        return
    out.append(">" + _escape_text(text))
    for child in kids:
        _write(child, out)
        if child.tail:
            out.append(_escape_text(child.tail))
    out.append(f"</{name}>")


def _child(parent: ET.Element | None, local: str) -> ET.Element | None:
    return None if parent is None else parent.find(f"{{{UPD}}}{local}")


def core_fragment(root: ET.Element) -> str:
    out: list[str] = []
    properties = _child(root, "Properties")
    for element in root:
        local = _split(element.tag)[1]
        if local == "UpdateIdentity" or local in ("Relationships", "ApplicabilityRules"):
            _write(element, out)
        elif element is properties:
            kept = [(key, properties.attrib[key]) for key in properties.attrib if _split(key)[1] in CORE_PROPERTIES]
            _write(ET.Element(properties.tag), out, attributes=kept)
    return "".join(out)


def extended_fragment(root: ET.Element) -> str:
    out: list[str] = []
    for element in root:
        local = _split(element.tag)[1]
        if local == "Properties":
            kept = [(_split(key)[1], value) for key, value in element.attrib.items()
                    if _split(key)[1] not in NOT_EXTENDED]
            _write(element, out, name="ExtendedProperties", attributes=kept)
        elif local in ("Files", "HandlerSpecificData"):
            _write(element, out)
    return "".join(out)


def serialize(element: ET.Element) -> str:
    out: list[str] = []
    _write(element, out)
    return "".join(out)


# -- the document -----------------------------------------------------------------------------------------

def _guid(value: str | None, where: str) -> str:
    if value is None or not _GUID.match(value):
        shown = "missing" if value is None else repr(value[:60])
        raise DocumentError("bad-identity", f"{where}: UpdateID {shown} is not a GUID")
    return value.lower()


def _revision(value: str | None, where: str) -> int:
    if value is None:
        raise DocumentError("bad-identity", f"{where}: RevisionNumber is missing")
    if not value.isascii() or not value.isdigit() or int(value) < 1 or int(value) > MAX_REVISION:
        raise DocumentError("bad-identity", f"{where}: RevisionNumber {value[:20]!r} is not a whole number "
                            f"from 1 to {MAX_REVISION}")
    return int(value)


def _text(element: ET.Element | None) -> str:
    return "" if element is None else (element.text or "").strip()


def _hex_digest(value: str | None, length: int, where: str) -> str:
    try:
        raw = base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise DocumentError("bad-file", f"{where}: digest {str(value)[:60]!r} is not base64 of {length} bytes")
    return raw.hex()


def _files(root: ET.Element) -> list[FileEntry]:
    files: list[FileEntry] = []
    for item in root.iterfind(f"{{{UPD}}}Files/{{{UPD}}}File"):
        name = item.get("FileName") or ""
        where = f"file {name[:80]!r}"
        algorithm = (item.get("DigestAlgorithm") or "SHA1").upper()
        if algorithm != "SHA1":
            raise DocumentError("bad-file", f"{where}: DigestAlgorithm {algorithm[:20]!r}, expected SHA1")
        size = item.get("Size") or ""
        if not size.isascii() or not size.isdigit():
            raise DocumentError("bad-file", f"{where}: Size {size[:20]!r} is not a whole number")
        sha256 = None
        for extra in item.iterfind(f"{{{UPD}}}AdditionalDigest"):
            if (extra.get("Algorithm") or "").upper() == "SHA256":
                sha256 = _hex_digest(extra.text, 32, where)
        files.append(FileEntry(sha1=_hex_digest(item.get("Digest"), 20, where), sha256=sha256, size=int(size),
                               file_name=name, patching_type=item.get("PatchingType"),
                               modified=item.get("Modified")))
    return files


def _relationships(root: ET.Element, document: UpdateDocument) -> None:
    relationships = _child(root, "Relationships")
    prerequisites = _child(relationships, "Prerequisites")
    for clause in [] if prerequisites is None else list(prerequisites):
        local = _split(clause.tag)[1]
        if local == "UpdateIdentity":
            document.prerequisites.append(Clause((_guid(clause.get("UpdateID"), "prerequisite"),), False))
        elif local == "AtLeastOne":
            ids = tuple(_guid(item.get("UpdateID"), "prerequisite")
                        for item in clause.iterfind(f"{{{UPD}}}UpdateIdentity"))
            if ids:
                document.prerequisites.append(Clause(ids, clause.get("IsCategory", "").lower() == "true"))
    for clause in root.iterfind(f"{{{UPD}}}Relationships/{{{UPD}}}BundledUpdates/{{{UPD}}}AtLeastOne"):
        members = tuple((_guid(item.get("UpdateID"), "bundled update"),
                         _revision(item.get("RevisionNumber"), "bundled update"))
                        for item in clause.iterfind(f"{{{UPD}}}UpdateIdentity"))
        if members:
            document.bundled.append(members)
    for item in root.iterfind(f"{{{UPD}}}Relationships/{{{UPD}}}SupersededUpdates/{{{UPD}}}UpdateIdentity"):
        document.superseded.append(_guid(item.get("UpdateID"), "superseded update"))


def _localized(root: ET.Element, document: UpdateDocument) -> None:
    seen: set[str] = set()
    for item in root.iterfind(f"{{{UPD}}}LocalizedPropertiesCollection/*"):
        local = _split(item.tag)[1]
        if local == "LocalizedProperties":
            language = _text(_child(item, "Language"))
            if language and language.lower() not in seen:
                seen.add(language.lower())
                document.localized.append(Localized(language, _text(_child(item, "Title")),
                                                    _text(_child(item, "Description")), serialize(item)))
        elif local == "EulaFile":
            document.eulas.append(Eula(item.get("Language") or "", serialize(item)))


def parse_update(data: bytes | str, *, expected: tuple[str, int] | None = None) -> UpdateDocument:
    """Read one update document (bytes as received, or already decoded text).

    ``expected``: the identity it was requested under; a different one is refused (§6.1)."""
    if isinstance(data, str):
        if len(data) > MAX_BYTES:
            raise DocumentError("too-large", f"document is above the {MAX_BYTES >> 20} MiB limit")
        text = data
    else:
        text = decode(data)
    root = parse_xml(text)
    if root.tag != f"{{{UPD}}}Update":
        raise DocumentError("not-an-update", f"root element is {_split(root.tag)[1][:60]!r}, expected upd:Update "
                            f"({UPD})")
    identity = _child(root, "UpdateIdentity")
    if identity is None:
        raise DocumentError("bad-identity", "document has no UpdateIdentity")
    update_id = _guid(identity.get("UpdateID"), "UpdateIdentity")
    revision = _revision(identity.get("RevisionNumber"), f"UpdateIdentity {update_id}")
    if expected is not None and (update_id, revision) != (expected[0].lower(), expected[1]):
        raise DocumentError("identity-mismatch", f"document is {update_id} r{revision}, requested as "
                            f"{expected[0].lower()} r{expected[1]}")
    properties = _child(root, "Properties")
    if properties is None:
        raise DocumentError("malformed", f"{update_id} r{revision}: no Properties element")
    update_type = properties.get("UpdateType") or ""
    if update_type not in UPDATE_TYPES:
        raise DocumentError("malformed", f"{update_id} r{revision}: UpdateType {update_type[:30]!r} is not one of "
                            f"{', '.join(sorted(UPDATE_TYPES))}")
    category = root.find(f"{{{UPD}}}HandlerSpecificData/*[@CategoryType]")
    document = UpdateDocument(
        update_id=update_id, revision_number=revision, update_type=update_type,
        publication_state=properties.get("PublicationState") or "Published",
        default_language=properties.get("DefaultPropertiesLanguage") or "en",
        creation_date=properties.get("CreationDate"), kb_article=_text(_child(properties, "KBArticleID")) or None,
        category_type=None if category is None else category.get("CategoryType"),
        text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        core=core_fragment(root), extended=extended_fragment(root))
    _relationships(root, document)
    _localized(root, document)
    document.files = _files(root)
    return document


def summary(document: UpdateDocument) -> dict[str, Any]:
    """The document's identity and kind, for messages and logs."""
    return {"UpdateID": document.update_id, "RevisionNumber": document.revision_number,
            "UpdateType": document.update_type, "Title": document.title}
