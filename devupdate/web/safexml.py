"""Reading untrusted XML: the one parser every request and document reader of the service uses.

``parse(body)`` returns the root element or raises :class:`XmlRefused`, whose ``reason`` is one
of the constants below (stable, for codes and metrics) and whose ``message`` is one line for a
human (it never echoes the body). Nothing else escapes: not ``ParseError``, not the
``ValueError``/``LookupError`` expat raises on odd encodings, not defusedxml's exceptions.

Two paths, one result. The common case — UTF-8, no ``<!`` — goes to the C ElementTree parser,
about three times faster than defusedxml (which must use the pure-Python parser to hook expat).
It is just as safe: without the two bytes ``<!`` a UTF-8 document cannot declare a DTD or an
entity, so nothing but the five predefined entities and character references can ever be
expanded; and without NUL bytes, a BOM other than UTF-8's or a declared encoding other than
UTF-8, expat reads it as UTF-8. Everything else (UTF-16 with or without BOM, another declared
encoding, a DOCTYPE, a comment, CDATA) goes to defusedxml with DTDs, entity declarations and
external references refused. Entities can only be declared inside a DTD, and the DTD is refused
at its first byte, so a billion laughs, an external entity and a parameter entity are all
refused as :data:`DTD` before any declaration is read.

Encodings are expat's: UTF-8 (with or without BOM), UTF-16 LE/BE (with a BOM, or without one when the document
starts with ``<``), and single-byte encodings a declaration names (ISO-8859-1,
Windows-1252, …). A multi-byte encoding other than those, an unknown one, or a declaration that
contradicts the BOM is refused as :data:`ENCODING`.

Limits: ``max_depth`` and ``max_elements`` are checked while the document streams through the
parser, so a hostile body is stopped at the first element too many rather than after the whole
tree is built. A fast-path body with no more ``<`` than ``max_elements`` cannot exceed that cap:
it is parsed in one C call and its depth measured after (the same answer, without a Python step
per element: a scan request carries thousands of ids). Without limits (``None``, the default)
the document is parsed in one call, the fastest form; callers that read small bounded bodies
(the update check, at most 64 KiB) use it.

``iterparse(read)`` is the same reader for a body too large to hold: it pulls blocks from ``read``
(a file's or a response's ``read``), yields the ``start``/``end`` events as they are parsed, and
refuses past ``max_bytes`` as well; the caller takes what it needs from each element and removes it
from its parent, so memory does not grow with the body. Its fast path is chosen from the first
block: a DTD can only stand in the prolog, before the root element, so a first block that holds the
root's start tag and passes :func:`takes_fast_path` cannot declare one later.

Pure: the standard library and defusedxml only.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pyexpat import ErrorString
from pyexpat import errors as _expat_errors
from typing import Any, Final

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from defusedxml.ElementTree import fromstring as _defused_fromstring

__all__ = ["DEPTH", "DTD", "ELEMENTS", "ENCODING", "MALFORMED", "REASONS", "SIZE", "XmlRefused", "iterparse", "parse",
           "takes_fast_path"]

#: a document type declaration (``<!DOCTYPE …>``), with or without entity declarations in it
DTD: Final = "dtd"
#: nested deeper than ``max_depth``
DEPTH: Final = "depth"
#: more than ``max_elements`` elements
ELEMENTS: Final = "elements"
#: an encoding expat cannot read, or a declaration contradicting the byte order mark
ENCODING: Final = "encoding"
#: not well-formed (truncated, mismatched tags, undefined entity, empty, …)
MALFORMED: Final = "malformed"
#: longer than ``max_bytes`` (:func:`iterparse`)
SIZE: Final = "size"
REASONS: Final = frozenset((DTD, DEPTH, ELEMENTS, ENCODING, MALFORMED, SIZE))

_FEED = 64 * 1024
_ENCODING_ERRORS = frozenset(_expat_errors.codes[message] for message in (
    _expat_errors.XML_ERROR_UNKNOWN_ENCODING, _expat_errors.XML_ERROR_INCORRECT_ENCODING))


class XmlRefused(ValueError):
    """An unacceptable body: ``reason`` is one of :data:`REASONS`, ``message`` one line for a human."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# The fast-path test, kept exactly as the update check has always routed its bodies.
_DECLARATION = re.compile(rb"\A<\?xml\s[^<>]{0,200}?\?>")
_DECLARED_ENCODING = re.compile(rb"\bencoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")
_UTF8 = frozenset((b"utf-8", b"utf8"))
_COMMON = (b'<?xml version="1.0" encoding="utf-8"?>', b'<?xml version="1.0" encoding="UTF-8"?>',
           b"<?xml version='1.0' encoding='utf-8'?>", b"<?xml version='1.0' encoding='UTF-8'?>")


def takes_fast_path(body: bytes) -> bool:
    """True when ``body`` cannot declare a DTD or an entity and is read by expat as UTF-8.

    (A declared ``UTF8`` — no dash — is not an expat name: both parsers read it through Python's
    single-byte codec bridge, ASCII only, and refuse the same bytes; the C parser stays as safe.)"""
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
        encoding = _DECLARED_ENCODING.search(declaration.group())
        return encoding is None or encoding.group(1).lower() in _UTF8
    return body.startswith(b"<")


def _where(exc: ET.ParseError) -> str:
    """expat's fixed text for the error and its position ("mismatched tag: line 1, column 9"), built
    from the code: the exception's own text may quote the body (an undefined entity's name)."""
    code, position = getattr(exc, "code", None), getattr(exc, "position", None)
    text = ErrorString(code) if isinstance(code, int) else None
    if not text or not (isinstance(position, tuple) and len(position) == 2):
        return "at an unknown position"
    return f"{text}: line {position[0]}, column {position[1]}"


def _refusal(exc: Exception) -> XmlRefused:
    if isinstance(exc, DefusedXmlException):
        return XmlRefused(DTD, "DTDs and entity declarations are not accepted")
    if isinstance(exc, ET.ParseError):
        if exc.code in _ENCODING_ERRORS:
            return XmlRefused(ENCODING, "character encoding unknown or contradicting the byte order mark")
        return XmlRefused(MALFORMED, f"not well-formed XML ({_where(exc)})")
    if isinstance(exc, (ValueError, LookupError)):  # "multi-byte encodings are not supported", unknown codec
        return XmlRefused(ENCODING, "character encoding not supported")
    return XmlRefused(MALFORMED, "not well-formed XML")


def _guarded_parser() -> DefusedXMLParser:
    return DefusedXMLParser(target=ET.TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True)


def parse(body: bytes, *, max_depth: int | None = None, max_elements: int | None = None) -> ET.Element:
    """The root element of ``body``, or :class:`XmlRefused` (see the module notes)."""
    fast = takes_fast_path(body)
    if max_depth is None and max_elements is None:
        try:
            if fast:
                return ET.fromstring(body)
            return _defused_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a refusal
            raise _refusal(exc) from None
    return _parse_bounded(body, fast, max_depth, max_elements)


def _parse_bounded(body: bytes, fast: bool, max_depth: int | None, max_elements: int | None) -> ET.Element:
    depth_cap = sys.maxsize if max_depth is None else max_depth
    elements_cap = sys.maxsize if max_elements is None else max_elements
    if fast and body.count(b"<") <= elements_cap:
        counted = _parse_counted(body, depth_cap)
        if counted is not None:
            return counted
    parser: ET.XMLPullParser[Any]
    if fast:
        parser = ET.XMLPullParser(("start", "end"))
    else:
        parser = ET.XMLPullParser(("start", "end"), _parser=_guarded_parser())
    depth = elements = 0
    root: ET.Element | None = None
    try:
        for offset in range(0, max(len(body), 1), _FEED):
            parser.feed(body[offset:offset + _FEED])
            for item in parser.read_events():
                assert isinstance(item, tuple) and len(item) == 2  # start/end events only: (name, element)
                event, element = item[0], item[1]
                if event == "end":
                    depth -= 1
                    continue
                depth += 1
                elements += 1
                if root is None and isinstance(element, ET.Element):
                    root = element
                if depth > depth_cap:
                    raise XmlRefused(DEPTH, f"nested deeper than {max_depth} elements")
                if elements > elements_cap:
                    raise XmlRefused(ELEMENTS, f"more than {max_elements} elements")
        parser.close()
        for _ in parser.read_events():
            pass
    except XmlRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a refusal
        raise _refusal(exc) from None
    if root is None:  # expat refuses a document without an element at close(); kept for the type
        raise XmlRefused(MALFORMED, "not well-formed XML (no element found)")
    return root


def _parse_counted(body: bytes, depth_cap: int) -> ET.Element | None:
    """The streaming check's answer in one C parse, for a body that cannot hold more elements than
    the cap (every element starts with a ``<``): the tree is built whole, then its depth is measured
    level by level (a list per level, no Python call per element). ``None`` when the body does not
    parse: the streaming path then says which refusal comes first in document order, as always."""
    try:
        root = ET.fromstring(body)
    except Exception:  # noqa: BLE001 - any failure: the streaming path names it
        return None
    level = [root]
    for _ in range(depth_cap):
        level = [item for element in level for item in element]
        if not level:
            return root
    raise XmlRefused(DEPTH, f"nested deeper than {depth_cap} elements")


_ROOT_START = re.compile(rb"<[A-Za-z_]")


def iterparse(read: Callable[[int], bytes], *, max_bytes: int, max_depth: int | None = None,
              max_elements: int | None = None, block: int = _FEED) -> Iterator[tuple[str, ET.Element]]:
    """``("start" | "end", element)`` for the document ``read`` returns block by block, or
    :class:`XmlRefused` (see the module notes). Elements stay in the tree unless the caller removes them."""
    depth_cap = sys.maxsize if max_depth is None else max_depth
    elements_cap = sys.maxsize if max_elements is None else max_elements
    head = read(block)
    fast = takes_fast_path(head) and _ROOT_START.search(head) is not None
    parser: ET.XMLPullParser[Any]
    if fast:
        parser = ET.XMLPullParser(("start", "end"))
    else:
        parser = ET.XMLPullParser(("start", "end"), _parser=_guarded_parser())
    depth = elements = total = 0
    chunk, closed = head, False
    try:
        while True:
            if chunk:
                total += len(chunk)
                if total > max_bytes:
                    raise XmlRefused(SIZE, f"longer than {max_bytes} bytes")
                parser.feed(chunk)
            else:
                parser.close()
                closed = True
            for item in parser.read_events():
                assert isinstance(item, tuple) and len(item) == 2  # start/end events only: (name, element)
                event, element = item[0], item[1]
                assert isinstance(event, str) and isinstance(element, ET.Element)
                if event == "end":
                    depth -= 1
                else:
                    depth += 1
                    elements += 1
                    if depth > depth_cap:
                        raise XmlRefused(DEPTH, f"nested deeper than {max_depth} elements")
                    if elements > elements_cap:
                        raise XmlRefused(ELEMENTS, f"more than {max_elements} elements")
                yield event, element
            if closed:
                return
            chunk = read(block)
    except XmlRefused:
        raise
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise _refusal(exc) from None
