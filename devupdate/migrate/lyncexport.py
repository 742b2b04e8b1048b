"""Reading what a Lync / Skype for Business pool exports: ``Get-CsDeviceUpdateRule | Export-Csv``,
``Get-CsTestDevice | Export-Csv`` and ``Get-CsDeviceUpdateConfiguration | Export-Csv``. Pure: bytes
in, plain records or :class:`ExportError` lines out.

PowerShell's CSV as it comes: an optional ``#TYPE <.NET type>`` first line (Windows PowerShell writes
it unless ``-NoTypeInformation``), a header of quoted property names, every value quoted with ``""``
for a quote inside, UTF-8 with or without BOM or UTF-16 (``Out-File``), ``,`` or — with
``-UseCulture`` in a German or French locale — ``;`` between fields, values that span lines, and an
empty string for a property that is null. Column names are matched case-insensitively; columns this
reader does not use (``Element``, ``XsAnyElements`` …) are ignored.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

#: what Export-Csv writes for a property that is a collection: its .NET type name, not the items
_TYPE_NAME = re.compile(r"^(System|Microsoft)\.[\w.`\[\], ]+$")


class ExportError(ValueError):
    """One thing of an export that cannot be mapped; ``lines`` says each, ready to print."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class LyncRule:
    source: str  # the file's name, for messages
    line: int  # in the CSV file, for messages
    id: str
    identity: str
    device_type: str
    brand: str
    model: str
    revision: str
    locale: str
    update_type: str
    approved: str | None
    pending: str | None
    restore: str | None

    @property
    def name(self) -> str:
        return f"{self.brand} {self.model} {self.locale}".strip()


@dataclass(frozen=True)
class LyncTestDevice:
    source: str  # the file's name, for messages
    line: int
    site: str | None  # None: global
    name: str
    identifier_type: str  # MACAddress | SerialNumber
    identifier: str


@dataclass(frozen=True)
class LyncConfiguration:
    source: str  # the file's name, for messages
    line: int
    site: str | None  # None: global
    values: dict[str, str]  # devupdate setting name → text its parser takes


def decode(data: bytes, what: str) -> str:
    """The text of an export: BOM-marked UTF-8 / UTF-16, else UTF-8, else Windows-1252 (PowerShell 5.1's
    'Default' encoding on western systems)."""
    try:
        if data.startswith(b"\xef\xbb\xbf"):
            return data[3:].decode("utf-8")
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
    except UnicodeDecodeError as exc:
        at = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # counted in the file, BOM included
        raise ExportError([f"{what}: marked as Unicode but not valid ({exc.reason} at byte {at}); "
                           "export it again with Export-Csv"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise ExportError([f"{what}: not text (neither UTF-8, UTF-16 nor Windows-1252)"]) from None


def read_rows(data: bytes, what: str, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {lower-case column: value}) per record; refuses a file without ``required`` columns."""
    text = decode(data, what)
    lines = text.splitlines(keepends=True)
    first = 1
    if lines and lines[0].startswith("#TYPE"):
        lines, first = lines[1:], 2
    body = "".join(lines)
    if not body.strip():
        raise ExportError([f"{what}: no header line; export with '… | Export-Csv -Path FILE'"])
    header = lines[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter, quotechar='"', doublequote=True,
                        strict=True)
    try:
        columns = [column.strip().lower() for column in next(reader)]
        missing = [name for name in required if name.lower() not in columns]
        if missing:
            raise ExportError([f"{what}: no column {', '.join(missing)} (the header has {', '.join(columns)}); "
                               "export the objects whole: '… | Export-Csv -Path FILE'"])
        rows = []
        for values in reader:
            line = first + reader.line_num - 1
            if not any(value.strip() for value in values):
                continue
            if len(values) != len(columns):
                raise ExportError([f"{what} line {line}: {len(values)} fields, the header has {len(columns)}"])
            rows.append((line, dict(zip(columns, values, strict=True))))
    except csv.Error as exc:
        raise ExportError([f"{what} line {first + reader.line_num - 1}: not CSV ({exc})"]) from None
    return rows


def _text(row: dict[str, str], column: str) -> str:
    return row.get(column.lower(), "").strip()


def _optional(row: dict[str, str], column: str) -> str | None:
    return _text(row, column) or None


_SCOPE = re.compile(r"^(?:(global)|site:(.+))$", re.I)


def _scope(identity: str) -> tuple[bool, str | None]:
    """('Global' | 'site:NAME') → (understood, site or None)."""
    match = _SCOPE.match(identity.strip())
    if not match:
        return False, None
    return True, (match.group(2).strip() if match.group(2) else None)


RULE_COLUMNS = ("Identity", "Id", "DeviceType", "Brand", "Model", "Revision", "Locale", "UpdateType",
                "ApprovedVersion", "PendingVersion", "RestoreVersion")


def rules(data: bytes, what: str = "rules") -> list[LyncRule]:
    """``Get-CsDeviceUpdateRule`` rows. ``Id`` may be empty when ``Identity`` ends in the GUID."""
    out = []
    for line, row in read_rows(data, what, ("Brand", "Model", "ApprovedVersion", "PendingVersion",
                                            "RestoreVersion")):
        identity = _text(row, "Identity")
        rule_id = _text(row, "Id") or identity.rsplit("/", 1)[-1]
        out.append(LyncRule(what, line, rule_id, identity, _text(row, "DeviceType"), _text(row, "Brand"),
                            _text(row, "Model"), _text(row, "Revision"), _text(row, "Locale"),
                            _text(row, "UpdateType"), _optional(row, "ApprovedVersion"),
                            _optional(row, "PendingVersion"), _optional(row, "RestoreVersion")))
    return out


def test_devices(data: bytes, what: str = "test devices") -> list[LyncTestDevice]:
    """``Get-CsTestDevice`` rows: Identity ``global/NAME`` or ``site:SITE/NAME``."""
    out, problems = [], []
    for line, row in read_rows(data, what, ("Identity", "IdentifierType", "Identifier")):
        identity = _text(row, "Identity")
        scope, _, tail = identity.rpartition("/")
        name = _text(row, "Name") or tail
        understood, site = _scope(scope)
        if not understood or not name:
            problems.append(f"{what} line {line}: Identity {identity!r} is neither global/NAME nor site:SITE/NAME")
            continue
        kind = {"macaddress": "MACAddress", "serialnumber": "SerialNumber"}.get(_text(row, "IdentifierType").lower())
        if kind is None:
            problems.append(f"{what} line {line} ({name}): IdentifierType {_text(row, 'IdentifierType')!r} is "
                            "neither MACAddress nor SerialNumber")
            continue
        out.append(LyncTestDevice(what, line, site, name, kind, _text(row, "Identifier")))
    if problems:
        raise ExportError(problems)
    return out


_TIMESPAN = re.compile(r"^(?:([0-9]{1,8})\.)?([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,7})?)?$")


def _timespan_seconds(text: str) -> int | None:
    """A .NET TimeSpan as PowerShell prints it (``10.00:00:00``, ``00:05:00``) in seconds."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _list(text: str) -> str:
    return " ".join(part for part in re.split(r"[\s,;]+", text) if part)


#: Lync property → (devupdate setting, how the CSV text becomes the text devupdate's parser takes)
CONFIG_COLUMNS = ("MaxLogFileSize", "MaxLogCacheLimit", "LogFlushInterval", "LogCleanUpInterval",
                  "LogCleanUpTimeOfDay", "ValidLogFileTypes", "ValidLogFileExtensions")


def configuration(data: bytes, what: str = "configuration") -> list[LyncConfiguration]:
    """``Get-CsDeviceUpdateConfiguration`` rows: Identity ``Global`` or ``site:SITE``; intervals as
    TimeSpans, sizes in bytes, log types as the flags' names (``Watson, Config``)."""
    out, problems = [], []
    for line, row in read_rows(data, what, ("Identity",)):
        identity = _text(row, "Identity")
        understood, site = _scope(identity)
        if not understood:
            problems.append(f"{what} line {line}: Identity {identity!r}: devupdate keeps a global configuration and "
                            "per-site overrides only; fold a service-level configuration into Global or a site")
            continue
        values: dict[str, str] = {}
        for column in CONFIG_COLUMNS:
            text = _text(row, column)
            if column.lower() not in row or not text:
                continue
            where = f"{what} line {line} ({identity}) {column}"
            if _TYPE_NAME.match(text) and not text.startswith("."):
                problems.append(f"{where} is {text!r}, the name of a .NET collection, not its items: export "
                                f"it as text (\"@{{n='{column}';e={{$_.{column} -join ' '}}}}\", see "
                                f"docs/migrating-from-lync.md), or leave the column empty and set it afterwards "
                                f"with 'devupdate config set {column} …'")
                continue
            if column in ("LogFlushInterval", "LogCleanUpInterval"):
                seconds = _timespan_seconds(text)
                values[column] = f"{seconds}s" if seconds is not None else text
            elif column == "LogCleanUpTimeOfDay":
                match = _TIMESPAN.match(text)
                values[column] = f"{int(match.group(2)):02d}:{match.group(3)}" if match and not match.group(1) else text
            elif column == "ValidLogFileTypes":
                values[column] = _list(text)
            elif column == "ValidLogFileExtensions":  # Lync lists them without the dot
                values[column] = " ".join(e if e.startswith(".") else f".{e}" for e in _list(text).split())
            else:
                values[column] = text.replace(",", "").replace(" ", "")
        out.append(LyncConfiguration(what, line, site, values))
    if problems:
        raise ExportError(problems)
    return out
