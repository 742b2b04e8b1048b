"""SOAP 1.1/1.2 envelopes for the WSUS services, with no web framework, database or settings:
reading a request leniently (spec/wsus.md §2.3), writing a response the way real WSUS does
(§2.2) and writing faults exactly as §4.1. Operations and tests build on these functions only,
so every answer has the same shape whoever writes it.

Reading: children are matched by local name in any namespace (or none), unknown elements are
ignored, and an absent, empty or ``xsi:nil`` element counts as absent. Writing: the operation
element carries the service namespace as its default ``xmlns`` (children inherit it, as
``elementFormDefault="qualified"`` wants), ``None`` children are left out, booleans are
``true``/``false`` and times are UTC with ``Z``.
"""

from __future__ import annotations

import re
import secrets
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from xml.sax.saxutils import escape, quoteattr

from devupdate.web import safexml

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
VERSIONS = {SOAP11: "1.1", SOAP12: "1.2"}
CONTENT_TYPES = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}

# --- §4.2 error codes; the server-side ones get faultcode s:Server (soap:Receiver in 1.2) ------------
INVALID_COOKIE = "InvalidCookie"
SERVER_CHANGED = "ServerChanged"
COOKIE_EXPIRED = "CookieExpired"
CONFIG_CHANGED = "ConfigChanged"
REGISTRATION_REQUIRED = "RegistrationRequired"
INVALID_AUTHORIZATION_COOKIE = "InvalidAuthorizationCookie"
INVALID_PARAMETERS = "InvalidParameters"
FILE_LOCATION_CHANGED = "FileLocationChanged"
SERVER_BUSY = "ServerBusy"
INTERNAL_SERVER_ERROR = "InternalServerError"
INCOMPATIBLE_PROTOCOL_VERSION = "IncompatibleProtocolVersion"
FILE_DIGESTS_MISSING = "FileDigestsMissing"
DEPLOYMENT_SYNCHRONIZATION_NOT_ALLOWED = "DeploymentSynchronizationNotAllowed"
ERROR_CODES = frozenset((INVALID_COOKIE, SERVER_CHANGED, COOKIE_EXPIRED, CONFIG_CHANGED, REGISTRATION_REQUIRED,
                         INVALID_AUTHORIZATION_COOKIE, INVALID_PARAMETERS, FILE_LOCATION_CHANGED, SERVER_BUSY,
                         INTERNAL_SERVER_ERROR, INCOMPATIBLE_PROTOCOL_VERSION, FILE_DIGESTS_MISSING,
                         DEPLOYMENT_SYNCHRONIZATION_NOT_ALLOWED))
SERVER_SIDE = frozenset((SERVER_BUSY, INTERNAL_SERVER_ERROR, SERVER_CHANGED))


class SoapFault(Exception):
    """A fault to answer: ``error_code`` from §4.2 and a ``message`` naming what was wrong (for
    ``InvalidParameters`` the parameter, e.g. ``parameters.InstalledNonLeafUpdateIDs``)."""

    def __init__(self, error_code: str, message: str = ""):
        if error_code not in ERROR_CODES:
            raise ValueError(f"{error_code!r} is no error code of spec/wsus.md §4.2")
        super().__init__(f"{error_code}: {message}")
        self.error_code, self.message = error_code, message


def invalid(message: str) -> SoapFault:
    return SoapFault(INVALID_PARAMETERS, message)


# --- reading -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Envelope:
    """A parsed request: the SOAP ``version`` ("1.1" or "1.2") and the body's first element.
    ``int_runs``: the arrays of ints read without an element per item (see :func:`parse_envelope`),
    by their array element; :func:`int_items` reads an array either way."""

    version: str
    operation: ET.Element
    int_runs: Mapping[ET.Element, list[int]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return local(self.operation.tag)

    @property
    def namespace(self) -> str:
        return namespace(self.operation.tag)


def version_of(content_type: str) -> str:
    """The SOAP version a request's ``Content-Type`` announces ("1.1" unless soap+xml); used
    only when the body cannot tell (a fault for a body that does not parse)."""
    return "1.2" if content_type.split(";", 1)[0].strip().lower() == "application/soap+xml" else "1.1"


#: the int arrays a scan sends by the thousand (§3.5: 1,000–1,400 ids a page), and how WUA writes
#: them: no prefix, no attribute, no blank, a run of plain ``<int>`` items; read by one regular
#: expression instead of an element object each (that cost more than the rest of the page)
INT_ARRAYS = ("InstalledNonLeafUpdateIDs", "OtherCachedUpdateIDs", "CachedDriverIDs", "revisionIDs")
_INT_RUN = re.compile(rb"<(" + "|".join(INT_ARRAYS).encode() + rb")>((?:<int>\d{1,10}</int>){8,})</\1>")


def parse_envelope(body: bytes, *, max_depth: int, max_elements: int) -> Envelope:
    """The envelope of ``body``, or ``SoapFault(InvalidParameters, "body")``: not well-formed, a
    DTD or entity, over a cap, no SOAP envelope, or no element in its body.

    A plain UTF-8 body (no ``<!``: no DTD, comment or CDATA to hide markup in) has its long int
    arrays (:data:`INT_ARRAYS`) cut out before it is parsed and read by a regular expression; their
    items still count against ``max_elements`` and ``max_depth``. Anything unexpected (a run that
    is not an element after all, a cap reached) and the whole body is parsed the ordinary way, so
    the answer, and any refusal, is the same."""
    if safexml.takes_fast_path(body) and _INT_RUN.search(body) is not None:
        cut = _with_int_runs(body, max_depth=max_depth, max_elements=max_elements)
        if cut is not None:
            return cut
    return _envelope_of(_parsed(body, max_depth, max_elements))


def _parsed(body: bytes, max_depth: int, max_elements: int) -> ET.Element:
    try:
        return safexml.parse(body, max_depth=max_depth, max_elements=max_elements)
    except safexml.XmlRefused:
        raise invalid("body") from None


def _envelope_of(root: ET.Element, int_runs: Mapping[ET.Element, list[int]] | None = None) -> Envelope:
    version = VERSIONS.get(namespace(root.tag))
    if version is None or local(root.tag) != "Envelope":
        raise invalid("body")
    soap_body = next((c for c in root if c.tag == f"{{{namespace(root.tag)}}}Body"), None)
    operation = next(iter(soap_body), None) if soap_body is not None else None
    if operation is None or not isinstance(operation.tag, str):
        raise invalid("body")
    return Envelope(version, operation, int_runs or {})


def _with_int_runs(body: bytes, *, max_depth: int, max_elements: int) -> Envelope | None:
    """The envelope with its int runs read apart, or ``None``: parse it the ordinary way."""
    runs: list[bytes] = []
    marker = f"dvu{secrets.token_hex(8)}".encode()  # an attribute name the client cannot have sent

    def cut(match: re.Match[bytes]) -> bytes:
        runs.append(match.group(2))
        name = match.group(1)
        return b"<" + name + b" " + marker + b'="' + str(len(runs) - 1).encode() + b'">-</' + name + b">"

    reduced = _INT_RUN.sub(cut, body)
    # each run matched (<int>digits</int>)+ exactly: its digits are what lies between the tags
    values = [list(map(int, run[5:-6].replace(b"</int><int>", b" ").split(b" "))) for run in runs]
    removed = sum(map(len, values))
    if removed > max_elements:
        return None
    try:
        root = safexml.parse(reduced, max_depth=max_depth, max_elements=max_elements - removed)
    except safexml.XmlRefused:
        return None
    attribute = marker.decode()
    found: dict[ET.Element, list[int]] = {}
    stack = [(root, 1)]
    while stack:  # the tree without the runs is a few dozen elements
        element, depth = stack.pop()
        index = element.attrib.pop(attribute, None)
        if index is not None:
            if depth + 1 > max_depth:
                return None
            found[element] = values[int(index)]
        stack.extend((item, depth + 1) for item in element)
    if len(found) != len(runs):  # a run inside a processing instruction, say: not an element
        return None
    return _envelope_of(root, found)


def local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def namespace(tag: object) -> str:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


def is_absent(element: ET.Element | None) -> bool:
    """Absent, ``xsi:nil`` (``true`` or ``1``), or empty (no child, no text but blanks)."""
    if element is None:
        return True
    if (element.get(f"{{{XSI}}}nil") or "").strip() in ("true", "1"):
        return True
    return len(element) == 0 and not (element.text or "").strip()


def child(parent: ET.Element | None, name: str) -> ET.Element | None:
    """The first present child named ``name`` (any namespace), or ``None``."""
    if parent is None:
        return None
    for element in parent:
        if local(element.tag) == name and not is_absent(element):
            return element
    return None


def children(parent: ET.Element | None, name: str) -> Iterator[ET.Element]:
    """Every present child named ``name`` (any namespace), in document order."""
    if parent is None:
        return
    for element in parent:
        if local(element.tag) == name and not is_absent(element):
            yield element


def text(parent: ET.Element | None, name: str) -> str | None:
    """The stripped text of the child ``name``, ``None`` when it is absent, empty or nil."""
    element = child(parent, name)
    return None if element is None else (element.text or "").strip()


def array(parent: ET.Element | None, name: str, item: str, *, limit: int, where: str = "parameters") -> list[str]:
    """The texts of ``<name><item>…</item>…</name>`` (absent = empty); more than ``limit`` items
    is ``InvalidParameters`` with ``Message`` = ``<where>.<name>`` (S2, as real WSUS says it)."""
    values: list[str] = []
    container = child(parent, name)
    if container is None:
        return values
    fast = _plain_items(container, item)
    if fast is not None:
        if len(fast) > limit:
            raise invalid(f"{where}.{name}")
        return fast
    nil = f"{{{XSI}}}nil"
    for element in container:  # children() and is_absent() inlined: SyncUpdates sends thousands of items
        tag = element.tag
        if not isinstance(tag, str) or tag.rsplit("}", 1)[-1] != item:
            continue
        value = (element.text or "").strip()
        if not value and len(element) == 0 or element.attrib and (element.get(nil) or "").strip() in ("true", "1"):
            continue
        if len(values) == limit:
            raise invalid(f"{where}.{name}")
        values.append(value)
    return values


def int_run(int_runs: Mapping[ET.Element, list[int]], parent: ET.Element | None, name: str) -> list[int] | None:
    """The ints of the array ``name`` of ``parent`` when :func:`parse_envelope` read it apart, else
    ``None`` (read it with :func:`array`)."""
    if not int_runs:
        return None
    container = child(parent, name)
    return None if container is None else int_runs.get(container)


_TAG, _TEXT, _ATTRIB = attrgetter("tag"), attrgetter("text"), attrgetter("attrib")


def _plain_items(container: ET.Element, item: str) -> list[str] | None:
    """The stripped texts when every child is an ``item`` with text and neither attributes nor
    children (what clients send), checked element-wise in C; ``None``: take the general path."""
    tags = set(map(_TAG, container))
    if len(tags) != 1:
        return None if tags else []
    tag = next(iter(tags))
    if not isinstance(tag, str) or tag.rsplit("}", 1)[-1] != item or any(map(_ATTRIB, container)) \
            or any(map(len, container)):
        return None
    texts = list(map(_TEXT, container))
    if None in texts:
        return None
    values = list(map(str.strip, texts))
    return values if all(values) else None


# --- value normalisation (§2.3) ----------------------------------------------------------------------

_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})\}?")
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})?")


def parse_guid(value: str) -> str:
    """A GUID with or without braces, any case → ``xxxxxxxx-xxxx-…`` lower case; else ValueError."""
    match = _GUID.fullmatch(value.strip())
    if match is None or value.strip().startswith("{") != value.strip().endswith("}"):
        raise ValueError(f"not a GUID: {value[:60]!r}")
    return str(uuid.UUID(match.group(1)))


def parse_bool(value: str) -> bool:
    """``true``/``false``/``1``/``0`` (any case, blanks around) → bool; else ValueError."""
    text_value = value.strip().lower()
    if text_value in ("true", "1"):
        return True
    if text_value in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {value[:20]!r}")


def parse_datetime(value: str) -> datetime:
    """An ``xs:dateTime`` → an aware UTC datetime; no zone means UTC, up to 7 fraction digits
    (.NET writes 7; the 7th is dropped)."""
    match = _DATETIME.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a dateTime: {value[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                          int((fraction or "0")[:6].ljust(6, "0")), tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a dateTime: {value[:40]!r}") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        try:
            moment = moment - sign * offset
        except OverflowError:
            raise ValueError(f"not a dateTime: {value[:40]!r}") from None
    return moment


def format_datetime(moment: datetime) -> str:
    """UTC with ``Z``, the fraction only when there is one (``2026-10-04T13:17:07.59Z``, as WSUS)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        stamp += "." + f"{moment.microsecond:06d}".rstrip("0")
    return stamp + "Z"


def format_date(day: date | datetime) -> str:
    """``YYYY-MM-DD`` (``Deployment.LastChangeTime``)."""
    if isinstance(day, datetime):
        day = (day.astimezone(UTC) if day.tzinfo else day).date()
    return day.isoformat()


# --- writing -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class El:
    """An element to write: a name and its content (elements, or one text value)."""

    name: str
    content: tuple[object, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()  # (name, value), for the few attribute-only types

    @property
    def start(self) -> str:
        if not self.attributes:
            return self.name
        return self.name + "".join(f" {key}={quoteattr(_NOT_XML.sub(chr(0xFFFD), value))}"
                                   for key, value in self.attributes)


class Raw(str):
    """Markup written as it is, made by the caller from trusted values (GUIDs and numbers read from
    the catalog, fragments through :func:`value_text`): a long list without an element object per
    item, as a ``Lazy`` list's items or as any element's content."""


@dataclass(frozen=True)
class Lazy:
    """Children made while the answer is written: an answer holding one is *streamed* (written in
    chunks as ``items`` yields them), so a list as long as the catalog never sits in memory. Whatever
    can fault must be checked before the handler returns: once streaming, no fault can be sent."""

    items: Iterable[El | Raw]
    #: the items hold no Lazy part of their own (each is written in one piece: much faster)
    flat: bool = False


def el(name: str, *content: object) -> El:
    """``el("Name", "text")``, ``el("Array", el("int", 1), …)``; ``None`` content is left out,
    lists are flattened, booleans become ``true``/``false``, datetimes UTC ``Z``."""
    flat: list[object] = []
    for item in content:
        if isinstance(item, list | tuple):
            flat.extend(i for i in item if i is not None)
        elif item is not None:
            flat.append(item)
    return El(name, tuple(flat))


def optional(name: str, items: Iterable[object]) -> El | None:
    """An optional array: ``None`` (left out, as real WSUS does) when it has no items."""
    content = [item for item in items if item is not None]
    return el(name, content) if content else None


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def value_text(value: object) -> str:
    """A value as element text, exactly as :func:`el` content is written (for :class:`Raw` markup)."""
    return _text(value)


def _text(value: object) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_date(value)
    return escape(_NOT_XML.sub("\ufffd", str(value)))


def _write(element: El, out: list[str], xmlns: str = "") -> None:
    out.append(f'<{element.start}{xmlns}')
    if not element.content:
        out.append("/>")
        return
    out.append(">")
    for item in element.content:
        if isinstance(item, El):
            _write(item, out)
        elif type(item) is Raw:
            out.append(item)
        else:
            out.append(_text(item))
    out.append(f"</{element.name}>")


def _emit(element: El, xmlns: str = "") -> Iterator[str]:
    """The text of ``element`` piece by piece (``Lazy`` children are pulled as they are written)."""
    if not element.content:
        yield f"<{element.start}{xmlns}/>"
        return
    yield f"<{element.start}{xmlns}>"
    for item in element.content:
        if isinstance(item, El):
            yield from _emit(item)
        elif type(item) is Raw:
            yield item
        elif isinstance(item, Lazy):
            for produced in item.items:
                if isinstance(produced, Raw):
                    yield produced
                elif item.flat:
                    out: list[str] = []
                    _write(produced, out)
                    yield "".join(out)
                else:
                    yield from _emit(produced)
        else:
            yield _text(item)
    yield f"</{element.name}>"


def is_streamed(element: El) -> bool:
    """Whether ``element`` holds a :class:`Lazy` part anywhere (its answer is to be streamed)."""
    for item in element.content:
        if isinstance(item, Lazy) or isinstance(item, El) and item.content and is_streamed(item):
            return True
    return False


def render_stream(version: str, operation: El, service_namespace: str, *, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The response envelope of :func:`render_response`, in chunks of about ``chunk`` bytes, with
    its ``Lazy`` parts pulled only as the chunks are taken: memory stays one chunk and one item."""
    head, _, tail = _envelope(version, "\x00", f' xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"').partition(b"\x00")
    parts: list[str] = []
    size = 0
    yield head
    for piece in _emit(operation, f' xmlns="{escape(service_namespace)}"'):
        parts.append(piece)
        size += len(piece)
        if size >= chunk:
            yield "".join(parts).encode()
            parts, size = [], 0
    yield "".join(parts).encode() + tail


def _envelope(version: str, body: str, body_attributes: str = "") -> bytes:
    if version == "1.2":
        return (f'<soap:Envelope xmlns:soap="{SOAP12}"><soap:Body{body_attributes}>{body}'
                "</soap:Body></soap:Envelope>").encode()
    return f'<s:Envelope xmlns:s="{SOAP11}"><s:Body{body_attributes}>{body}</s:Body></s:Envelope>'.encode()


def render_response(version: str, operation: El, service_namespace: str) -> bytes:
    """The response envelope: ``operation`` (e.g. ``GetConfigResponse``) with the service namespace
    as its default ``xmlns``, inside a Body that declares xsi/xsd as real WSUS's does."""
    out: list[str] = []
    _write(operation, out, f' xmlns="{escape(service_namespace)}"')
    return _envelope(version, "".join(out), f' xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"')


def render_fault(version: str, fault: SoapFault, fault_id: str, method: str | None = None) -> bytes:
    """A fault exactly as §4.1: unqualified ``ErrorCode``, ``Message``, ``ID`` and (client services)
    ``Method``, the SOAPAction in quotes; ``Detail`` without namespace in 1.2."""
    detail = [el("ErrorCode", fault.error_code), el("Message", fault.message[:500]), el("ID", fault_id)]
    if method is not None:
        detail.append(el("Method", f'"{method}"'))
    out: list[str] = []
    server = fault.error_code in SERVER_SIDE
    if version == "1.2":
        out.append(f"<soap:Fault><soap:Code><soap:Value>soap:{'Receiver' if server else 'Sender'}</soap:Value>"
                   '</soap:Code><soap:Reason><soap:Text xml:lang="en">Fault occurred</soap:Text></soap:Reason>')
        _write(el("Detail", detail), out)
        out.append("</soap:Fault>")
    else:
        out.append(f"<s:Fault><faultcode>s:{'Server' if server else 'Client'}</faultcode>"
                   "<faultstring>Fault occurred</faultstring>")
        _write(el("detail", detail), out)
        out.append("</s:Fault>")
    return _envelope(version, "".join(out))


__all__ = ["CONTENT_TYPES", "SOAP11", "SOAP12", "El", "Envelope", "Lazy", "Raw", "SoapFault", "array", "child",
           "children", "el", "format_date", "format_datetime", "int_run", "invalid", "is_absent", "is_streamed",
           "local", "namespace", "optional", "parse_bool", "parse_datetime", "parse_envelope", "parse_guid",
           "render_fault", "render_response", "render_stream", "text", "value_text", "version_of"]
