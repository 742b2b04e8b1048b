"""Structural comparison of two XML documents (spec/wsus.md §8.2): same elements with the same
namespaces in the same order at every path, the same attribute names, and values of the same
format (UTC dateTime with Z, date, boolean, integer, GUID, …). Values are compared exactly too,
except at the paths named ``vary`` (times, cookies, ids: what the spec says not to compare)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable

FORMATS = (
    ("dateTime-Z", re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z")),
    ("dateTime-local", re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?")),
    ("date", re.compile(r"\d{4}-\d{2}-\d{2}")),
    ("boolean", re.compile(r"true|false")),
    ("integer", re.compile(r"-?\d+")),
    ("decimal", re.compile(r"-?\d+\.\d+")),
    ("guid", re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),
    ("base64", re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")),
)


def value_format(text: str | None) -> str:
    value = (text or "").strip()
    if not value:
        return "empty"
    return next((name for name, pattern in FORMATS if pattern.fullmatch(value)), "text")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _walk(element: ET.Element, path: str, drop: Callable[[str, ET.Element], bool],
          out: list[tuple[str, str, tuple[str, ...], str, str]]) -> None:
    here = f"{path}/{_local(element.tag)}" if path else _local(element.tag)
    text = (element.text or "").strip() if len(element) == 0 else ""
    out.append((here, element.tag, tuple(sorted(element.attrib)), value_format(text), text))
    for child in element:
        if not drop(f"{here}/{_local(child.tag)}", child):
            _walk(child, here, drop, out)


def shape(document: bytes, drop: Callable[[str, ET.Element], bool] = lambda path, element: False):
    out: list[tuple[str, str, tuple[str, ...], str, str]] = []
    _walk(ET.fromstring(document), "", drop, out)
    return out


def differences(ours: bytes, recorded: bytes, *, vary: Iterable[str] = (),
                drop_recorded: Callable[[str, ET.Element], bool] = lambda path, element: False) -> list[str]:
    """Human-readable differences, empty when the documents are structurally equal. ``vary``:
    element paths (local names joined by ``/``, e.g. ``Envelope/Body/…/LastChange``, or a suffix
    starting with ``…/``) whose values may differ in content but not in format. ``drop_recorded``:
    recorded elements left out of the comparison on purpose (the spec decides otherwise)."""
    vary = tuple(vary)

    def varies(path: str) -> bool:
        return any(path == v or (v.startswith("…/") and path.endswith(v[1:])) for v in vary)

    a, b = shape(ours), shape(recorded, drop_recorded)
    found = []
    for index in range(max(len(a), len(b))):
        if index >= len(a):
            found.append(f"missing in ours: {b[index][0]} ({b[index][1]})")
            continue
        if index >= len(b):
            found.append(f"extra in ours: {a[index][0]} ({a[index][1]})")
            continue
        (path, tag, attrs, fmt, text), (rpath, rtag, rattrs, rfmt, rtext) = a[index], b[index]
        if (path, tag) != (rpath, rtag):
            found.append(f"element {index}: ours {tag} at {path}, recorded {rtag} at {rpath}")
            break  # everything after is shifted
        if attrs != rattrs:
            found.append(f"{path}: attributes {attrs} vs recorded {rattrs}")
        if fmt != rfmt:
            found.append(f"{path}: value format {fmt} ({text!r}) vs recorded {rfmt} ({rtext!r})")
        elif text != rtext and not varies(path):
            found.append(f"{path}: value {text!r} vs recorded {rtext!r}")
    return found
