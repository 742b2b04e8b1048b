"""Shared pieces of the property-based fuzzing suite: the example budget and the input strategies.

``DEVUPDATE_FUZZ_EXAMPLES`` (default 25) is the number of examples per property; the suite stays
fast with the default, ``tools/fuzz.py --fuzz`` runs the same properties with thousands. No
example database is written (the suite must not write into the tree); a failure prints the
falsifying example and how to reproduce it.
"""

from __future__ import annotations

import os
import string
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("DEVUPDATE_FUZZ_EXAMPLES") or 25)

#: The settings every property uses. ``function_scoped_fixture``: the live properties share one
#: server across their examples on purpose.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
                                       HealthCheck.large_base_example])

def rarely(draw, one_in: int) -> bool:
    """True about once in ``one_in`` draws. (Hypothesis favours the first element of a
    ``sampled_from`` and the ends of an ``integers`` range, so "== 0" would not be rare.)"""
    return draw(st.sampled_from(range(one_in))) == one_in - 1


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, one_in: int) -> st.SearchStrategy:
    """``good``, and ``bad`` about once in ``one_in`` (``one_of`` weighs its branches equally)."""
    return st.sampled_from([good] * (one_in - 1) + [bad]).flatmap(lambda strategy: strategy)


# --- text ------------------------------------------------------------------------------------------

#: Characters that have broken parsers before: separators, quotes, markup, controls, format and
#: private-use characters, non-ASCII digits and letters whose upper case is ASCII, lone halves of
#: XML's forbidden range.
NASTY_CHARS = ("/\\:;#,\"'<>&=+-@.%_ \t\r\n\x00\x01\x1f\x7f\x85\xa0\u00df\u017f\u0131\u0660\u0664\u06f4"
               "\u0966\uff11\u2028\u2029\u200b\u200e\u202e\ufeff\ufffd\ufffe\uffff\U0001f4de\ue000")

nasty_text = st.text(st.one_of(st.sampled_from(NASTY_CHARS), st.characters(codec="utf-8")), max_size=40)
ascii_word = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)
#: Text an XML 1.0 document can carry (no C0 controls but tab/newline, no U+FFFE/U+FFFF, no surrogates).
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",),
                                 exclude_characters="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                                                    "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c"
                                                    "\x1d\x1e\x1f\ufffe\uffff"), max_size=40)
mixed_text = st.one_of(ascii_word, nasty_text, xml_text)
clean_text = st.one_of(ascii_word, xml_text)  # what a well-formed document can carry

hex_digit = st.sampled_from("0123456789abcdefABCDEF")
mac_digits = st.text(hex_digit, min_size=12, max_size=12)


@st.composite
def mac_spellings(draw) -> str:
    """A valid MAC in one of the spellings devices use (plain, - : . separated, any case)."""
    digits = draw(mac_digits)
    separator = draw(st.sampled_from(["", "-", ":", "."]))
    if separator == ".":
        return ".".join(digits[i:i + 4] for i in range(0, 12, 4))
    return separator.join(digits[i:i + 2] for i in range(0, 12, 2))


macs = st.one_of(mac_spellings(), mixed_text, st.text(hex_digit, max_size=14))
serials = st.one_of(st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=64), mixed_text)
numeric_versions = st.lists(st.integers(0, 70000).map(str), min_size=1, max_size=5).map(".".join)
versions = st.one_of(
    numeric_versions,
    st.lists(st.text("0123456789\u0664\u0660\uff11", min_size=1, max_size=11), min_size=1, max_size=5).map(".".join),
    mixed_text)
guids = st.uuids().map(str)
guid_spellings = st.builds(lambda u, upper, braces: ("{%s}" if braces else "%s") % (str(u).upper() if upper
                                                                                      else str(u)),
                           st.uuids(), st.booleans(), st.booleans())


def case_variants(name: str) -> st.SearchStrategy[str]:
    """``name`` as written, lower-case, upper-case, or with random letter case."""
    return st.one_of(st.just(name), st.just(name.lower()), st.just(name.upper()),
                     st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
                         lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(name, flips,
                                                                                             strict=True))))


def xml_escape_text(value: str, draw, clean: bool = False) -> str:
    """``value`` as element content: escaped, sometimes as character references or CDATA, and
    (unless ``clean``) sometimes not escaped at all."""
    how = draw(st.sampled_from(["escape", "charref", "cdata"] + ([] if clean else ["raw"])))
    if how == "raw":  # unescaped: may be malformed, which is the point
        return value
    if how == "cdata" and "]]>" not in value:
        return f"<![CDATA[{value}]]>"
    if how == "charref":
        return "".join(f"&#x{ord(c):x};" if not c.isalnum() else c for c in value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


GOOD_ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-bom", "utf-16", "utf-16-le-bom", "utf-16-be-bom"]
BAD_ENCODINGS = ["declared-latin-1", "declared-utf-16-but-utf-8", "latin-1-undeclared"]


@st.composite
def encoded(draw, text: str, clean: bool = False) -> bytes:
    """A document's text as bytes, in an encoding a device or a Windows tool might pick (``clean``:
    one a parser must read)."""
    choice = draw(st.sampled_from(GOOD_ENCODINGS if clean else GOOD_ENCODINGS + BAD_ENCODINGS))
    if clean and choice.startswith("utf-16"):  # a UTF-16 document must not declare UTF-8
        text = text.replace(' encoding="utf-8"', "")
    try:
        if choice == "utf-8":
            return text.encode("utf-8", "surrogatepass")
        if choice == "utf-8-bom":
            return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
        if choice == "utf-16":
            return text.encode("utf-16")
        if choice == "utf-16-le-bom":
            return b"\xff\xfe" + text.encode("utf-16-le", "surrogatepass")
        if choice == "utf-16-be-bom":
            return b"\xfe\xff" + text.encode("utf-16-be", "surrogatepass")
        if choice == "declared-latin-1":
            return ('<?xml version="1.0" encoding="ISO-8859-1"?>' + text).encode("latin-1", "replace")
        if choice == "declared-utf-16-but-utf-8":
            return ('<?xml version="1.0" encoding="utf-16"?>' + text).encode("utf-8", "surrogatepass")
        return text.encode("latin-1", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def mutate(draw, data: bytes) -> bytes:
    """``data`` with a few byte-level edits: flips, inserted or deleted runs, a cut."""
    blob = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not blob:
            break
        where = draw(st.integers(0, len(blob) - 1))
        edit = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if edit == "set":
            blob[where] = draw(st.integers(0, 255))
        elif edit == "insert":
            blob[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del blob[where:where + draw(st.integers(1, 8))]
        else:
            del blob[where:]
    return bytes(blob)


# --- update checks (device-protocol.md §3) ---------------------------------------------------------

REQUEST_FIELDS = ("DeviceType", "MACAddress", "SerialNumber", "Vendor", "Model", "Revision", "Locale", "UserID")
LOCALES = ("ENU", "enu", "DEU", "FRA", "JPN", "XYZ", "", "EN", "ſve", "ﬁn")


GOOD_VALUES = {"MACAddress": mac_spellings(), "SerialNumber": st.text(string.ascii_letters + string.digits + "-_",
                                                                     min_size=1, max_size=64),
               "Locale": st.sampled_from(["ENU", "enu", "DEU", "JPN"]),
               "UserID": st.one_of(ascii_word, xml_text)}


def field_value(name: str, clean: bool) -> st.SearchStrategy[str]:
    """A value for field ``name``: mostly valid when ``clean``, anything otherwise."""
    good = GOOD_VALUES.get(name, st.one_of(ascii_word, st.sampled_from(["UCPhone", "Polycom", "CX600", "A"])))
    text = clean_text if clean else mixed_text
    if name == "MACAddress":
        bad = st.one_of(text, st.text(hex_digit, max_size=14))
    elif name == "SerialNumber":
        bad = text
    elif name == "Locale":
        bad = st.one_of(st.sampled_from(LOCALES), text)
    else:
        bad = st.one_of(st.sampled_from([".", "..", "a/b", "x" * 101, " pad "]), text)
    return mostly(good, bad, 8 if clean else 2)


@st.composite
def check_documents(draw, clean: bool | None = None) -> bytes:
    """An update-check body built from the protocol's grammar, then bent: any field missing,
    repeated, in any letter case, namespaced or unknown; any text; modules good and bad; odd
    encodings, comments, DOCTYPEs and entity declarations; sometimes byte-level damage. Half are
    ``clean`` (well-formed, mostly valid values), so the checks after parsing are exercised too."""
    clean = draw(st.booleans()) if clean is None else clean
    parts = []
    for name in draw(st.permutations(REQUEST_FIELDS)):
        if rarely(draw, 30 if clean else 10):
            continue
        for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
            tag = draw(case_variants(name))
            if not clean and rarely(draw, 12):
                tag = f"ns:{tag}"
            parts.append(f"<{tag}>{xml_escape_text(draw(field_value(name, clean)), draw, clean)}</{tag}>")
    if draw(st.booleans()):
        modules = []
        names = st.sampled_from(["CPE.nbt", "CPE#x;y.nbt", "a/b.nbt", ""])
        for _ in range(draw(st.sampled_from([0, 1, 2, 3, 65]))):
            name = draw(st.one_of(names, ascii_word) if clean else st.one_of(names, mixed_text))
            module = [f"<FileName>{xml_escape_text(name, draw, clean)}</FileName>"]
            text = clean_text if clean else mixed_text
            if draw(st.booleans()):
                version = draw(st.one_of(numeric_versions, text) if clean else versions)
                module.append(f"<Version>{xml_escape_text(version, draw, clean)}</Version>")
            if draw(st.booleans()):
                module.append(f"<TimeStamp>{xml_escape_text(draw(text), draw, clean)}</TimeStamp>")
            tag = draw(case_variants("Module"))
            modules.append(f"<{tag}>{''.join(module)}</{tag}>")
        parts.append(f"<Modules>{''.join(modules)}</Modules>")
    if rarely(draw, 6):
        parts.insert(draw(st.integers(0, len(parts))), f"<{draw(ascii_word.filter(str.isidentifier))}/>")
    roots = ["Request", "request", "REQUEST"] + ([] if clean else ["Response", "x:Request"])
    root = draw(st.sampled_from(roots))
    namespace = ' xmlns:ns="urn:x" xmlns:x="urn:y"' if draw(st.booleans()) else ""
    document = f"<{root}{namespace}>{''.join(parts)}</{root}>"
    prologs = ["", '<?xml version="1.0" encoding="utf-8"?>\n', "<!-- phone -->", "<?xml version='1.0'?>"]
    prolog = draw(st.sampled_from(prologs if clean else prologs + ['<!DOCTYPE Request [<!ENTITY x "y">]>']))
    body = draw(encoded(prolog + document, clean))
    if not clean and rarely(draw, 3):
        body = mutate(draw, body)
    return body


@st.composite
def valid_phones(draw):
    """A phone whose every field is within the protocol: its check must be answered."""
    safe = st.text(string.ascii_letters + string.digits + " -_.()", min_size=1, max_size=30).map(str.strip).filter(
        lambda s: s and s not in (".", ".."))
    digits = draw(mac_digits).upper()
    mac = draw(st.sampled_from(["", "-", ":"])).join(digits[i:i + 2] for i in range(0, 12, 2))
    serial = draw(st.one_of(st.just(""), st.text(string.ascii_letters + string.digits + "-_", min_size=1,
                                                  max_size=64)))
    if not serial:
        mac = mac or digits
    module_name = st.text(string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=40).map(
        str.strip).filter(bool)
    version = st.lists(st.integers(0, 99999).map(str), min_size=1, max_size=4).map(".".join)
    modules = draw(st.dictionaries(module_name, version, max_size=4))
    return dict(mac=draw(st.sampled_from(["", mac])) if serial else mac, serial=serial,
                device_type=draw(safe), vendor=draw(safe), model=draw(safe),
                revision=draw(st.one_of(st.just(""), safe)), locale=draw(st.sampled_from(["ENU", "DEU", "jpn"])),
                modules=modules, user_id=draw(st.one_of(st.just(""), safe)))


# --- descriptions (update-packages.md §2) ------------------------------------------------------------

DESCRIPTION_FIELDS = ("Id", "DeviceType", "Brand", "Model", "Revision", "Locale", "UpdateType", "Version")


GOOD_DESCRIPTION_VALUES = {
    "Id": guid_spellings, "Locale": st.sampled_from(["ENU", "deu", "*"]),
    "Version": st.lists(st.integers(0, 65535).map(str), min_size=4, max_size=4).map(".".join)}


def description_value(name: str, clean: bool) -> st.SearchStrategy[str]:
    """A value for description field ``name``: mostly valid when ``clean``, anything otherwise."""
    good = GOOD_DESCRIPTION_VALUES.get(name, st.one_of(ascii_word, st.sampled_from(["UCPhone", "Polycom", "CPE"])))
    text = clean_text if clean else mixed_text
    if name == "Id":
        bad = text
    elif name == "Locale":
        bad = st.one_of(st.sampled_from(["EN", "ENUS", "1NU", "ſve"]), text)
    elif name == "Version":
        bad = versions
    else:
        bad = st.one_of(st.sampled_from([".", "..", "x" * 129, " pad ", "a/b"]), text)
    return mostly(good, bad, 8 if clean else 2)


HOSTILE_FILE_NAMES = ["sub/CPE.nbt", "..\\x.nbt", "/etc/passwd", "C:x", "a::$DATA", "a//b", "./a", "", "CON",
                      "a\u202eb", "x" * 300]
file_names = st.one_of(st.sampled_from(HOSTILE_FILE_NAMES), mixed_text)
good_file_names = st.builds(lambda stem, ext: f"{stem}.{ext}", ascii_word, st.sampled_from(["nbt", "cat", "bin"]))


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


@st.composite
def description_documents(draw, clean: bool | None = None) -> bytes:
    """A description file from the grammar, bent like ``check_documents``: fields as attributes or
    elements, any case, repeated (same or different value), missing; files good and hostile."""
    clean = draw(st.booleans()) if clean is None else clean
    updates = []
    for _ in range(draw(st.integers(1 if clean else 0, 3))):
        attributes, elements = [], []
        for name in DESCRIPTION_FIELDS:
            if rarely(draw, 40 if clean else 12):
                continue
            value = draw(description_value(name, clean))
            for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
                tag = draw(case_variants(name))
                if draw(st.booleans()):
                    attributes.append(f'{tag}="{_attr(value)}"')
                else:
                    elements.append(f"<{tag}>{xml_escape_text(value, draw, clean)}</{tag}>")
                if rarely(draw, 4 if clean else 2):
                    value = draw(description_value(name, clean))  # a repeat that may disagree
        files = []
        names = mostly(good_file_names, file_names, 8 if clean else 2)
        for _ in range(draw(st.sampled_from([1, 2, 3, 0] if clean else [0, 1, 2, 3]))):
            catalog = f' Catalog="{_attr(draw(names))}"' if draw(st.booleans()) else ""
            files.append(f'<File Name="{_attr(draw(names))}"{catalog}/>')
        elements.append(f"<Files>{''.join(files)}</Files>")
        unique: dict[str, str] = {}
        for attribute in attributes:  # XML refuses a repeated attribute: keep the first of each name
            unique.setdefault(attribute.split("=", 1)[0], attribute)
        updates.append(f"<Update {' '.join(unique.values())}>{''.join(draw(st.permutations(elements)))}</Update>")
    root = draw(st.sampled_from(["DeviceUpdate", "deviceupdate"] + ([] if clean else ["Other"])))
    prologs = ["", '<?xml version="1.0" encoding="utf-8"?>\n', "<!-- vendor tool -->"]
    prolog = draw(st.sampled_from(prologs if clean else prologs + ['<!DOCTYPE x [<!ENTITY a "b">]>']))
    body = draw(encoded(f"{prolog}<{root}>{''.join(updates)}</{root}>", clean))
    if not clean and rarely(draw, 3):
        body = mutate(draw, body)
    return body


text_field = st.text(string.ascii_letters + string.digits + " -_.()&<>\"'é", min_size=1, max_size=40).map(
    str.strip).filter(lambda s: s and s not in (".", ".."))
member_name = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)


@st.composite
def updates(draw):
    """A valid UpdateDescription (what a vendor tool writes)."""
    from devupdate.packages import FileRef, UpdateDescription

    names = draw(st.lists(member_name, min_size=1, max_size=3, unique_by=str.lower))
    files = tuple(FileRef(f"{name}.nbt", draw(st.one_of(st.none(), st.just(f"{name}.cat")))) for name in names)
    return UpdateDescription(id=str(draw(st.uuids())), device_type=draw(text_field), brand=draw(text_field),
                             model=draw(text_field), revision=draw(text_field),
                             locale=draw(st.sampled_from(["ENU", "DEU", "*"])), update_type=draw(text_field),
                             version=".".join(str(draw(st.integers(0, 65535))) for _ in range(4)), files=files)


# --- download headers (RFC 9110 §13, §14) ---------------------------------------------------------

range_number = st.one_of(st.integers(0, 5000).map(str), st.sampled_from(["", " ", "-1", "1e3", "0x10", "٣", "9" * 25]))
range_item = st.one_of(st.builds(lambda a, b: f"{a}-{b}", range_number, range_number),
                       range_number.map(lambda b: f"-{b}"), mixed_text, st.text(string.digits + "-, ", max_size=12))
range_header = st.one_of(
    st.lists(range_item, max_size=40).map(lambda items: "bytes=" + ",".join(items)),
    st.builds(lambda unit, rest: f"{unit}={rest}", st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
              st.text(string.digits + "-, =", max_size=30)),
    mixed_text)
dates = st.one_of(st.sampled_from(["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                   "Sun Nov  6 08:49:37 1994", "Mon, 01 Jan 0001 00:00:00 GMT",
                                   "Fri, 31 Dec 9999 23:59:59 GMT", "Tue, 31 Feb 2026 25:61:61 GMT"]), mixed_text)
etags = st.one_of(st.sampled_from(['"abc"', 'W/"abc"', "*", '"abc", "def"', 'W/', '"', '""']), mixed_text)


# --- cabs ------------------------------------------------------------------------------------------

cab_members = st.dictionaries(
    st.one_of(member_name, st.builds(lambda a, b: f"{a}/{b}", member_name, member_name),
              st.text(string.ascii_letters + "é中 -", min_size=1, max_size=8)),
    st.one_of(st.binary(max_size=3000), st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=4),
                                                  st.integers(1, 40000))),
    min_size=1, max_size=5).filter(lambda members: _distinct_names(list(members)))


def _distinct_names(names: list[str]) -> bool:
    """No two names equal ignoring case, and no name is also the folder of another."""
    lower = {name.lower() for name in names}
    folders = {name.lower().rsplit("/", 1)[0] for name in names if "/" in name}
    return len(lower) == len(names) and not lower & folders

#: Offsets and widths of the integer fields of a cab's header, first folder and first file entry,
#: where a single wrong value does the most damage (MS-CAB 2.1-2.3; no reserve area).
CAB_FIELDS = [(8, 4), (16, 4), (24, 1), (25, 1), (26, 2), (28, 2), (30, 2), (32, 2), (34, 2),
              (36, 4), (40, 2), (42, 2), (44, 4), (48, 4), (52, 2), (54, 2), (56, 2), (58, 2)]
BOUNDARY = (0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFC, 0xFFFD, 0xFFFF, 0x10000,
            0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


@st.composite
def damaged_cab(draw, blob: bytes) -> bytes:
    """A cab with header/table fields set to boundary values and a few byte edits."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(0, 3))):
        offset, width = draw(st.sampled_from(CAB_FIELDS))
        if offset + width <= len(data):
            value = draw(st.sampled_from(BOUNDARY)) & ((1 << (8 * width)) - 1)
            data[offset:offset + width] = value.to_bytes(width, "little")
    return mutate(draw, bytes(data))


def new_uuid() -> str:
    return str(uuid.uuid4())
