"""Properties of the description parser (devupdate/packages/description.py)."""

from __future__ import annotations

import re
import unicodedata
import uuid

from fuzzkit import FUZZ, description_documents, guid_spellings, mixed_text, updates, versions
from hypothesis import given
from hypothesis import strategies as st

from devupdate.packages import PackageError, describe_updates, parse_description, parse_descriptions
from devupdate.packages.cab import unsafe_name_reason
from devupdate.packages.description import (
    TEXT_FIELDS,
    UpdateDescription,
    parse_guid,
    parse_locale,
    parse_version,
    version_key,
)


def check_update(update: UpdateDescription) -> None:
    """What every accepted update satisfies: its values become rule keys, served URL segments and
    file names in the filestore."""
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", update.id)
    assert re.fullmatch(r"[A-Z]{3}|\*", update.locale)
    parts = update.version.split(".")
    assert len(parts) == 4 and all(re.fullmatch(r"0|[1-9][0-9]{0,4}", p) and int(p) <= 65535 for p in parts)
    for name in TEXT_FIELDS:
        value = getattr(update, name)
        assert value == value.strip() and 0 < len(value) <= 128 and value not in (".", "..")
        assert not any(c in "/\\" or unicodedata.category(c)[0] == "C" for c in value), value
    assert update.files
    assert len({f.name.lower() for f in update.files}) == len(update.files)
    for ref in update.files:
        for name in (ref.name, ref.catalog):
            if name is not None:
                assert "\\" not in name and unsafe_name_reason(name) is None, name


def parse_or_refuse(data: bytes):
    try:
        result = parse_description(data, "fuzz.xml")
    except PackageError as error:
        assert error.code == "bad-description" and error.message.startswith("fuzz.xml"), error
        return None
    assert result is None or (result and all(isinstance(u, UpdateDescription) for u in result))
    for update in result or ():
        check_update(update)
    return result


@FUZZ
@given(st.one_of(st.binary(max_size=2000), st.binary(max_size=300).map(lambda b: b"<DeviceUpdate>" + b)))
def test_any_bytes_are_parsed_or_refused(data):
    parse_or_refuse(data)


@FUZZ
@given(description_documents())
def test_grammar_built_descriptions_are_parsed_or_refused(data):
    parse_or_refuse(data)


@FUZZ
@given(st.lists(updates(), min_size=1, max_size=4, unique_by=lambda u: u.id))
def test_what_describe_updates_writes_reads_back_the_same(written):
    data = describe_updates(written)
    assert parse_description(data, "x.xml") == written
    rules = {tuple(p.lower() for p in u.rule_key) for u in written}
    try:
        assert parse_descriptions({"x.xml": data}) == written
    except PackageError as error:  # two of the drawn updates happen to share a rule
        assert len(rules) < len(written) and "same rule" in error.message
    # the same document in UTF-16 with a BOM under encoding="utf-8", as Windows tools write it
    assert parse_description(b"\xff\xfe" + data.decode().encode("utf-16-le"), "x.xml") == written


@FUZZ
@given(versions)
def test_versions_are_canonical_or_refused(text):
    try:
        canonical = parse_version(text)
    except PackageError as error:
        assert error.code == "bad-description"
        return
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", canonical)  # ASCII digits only
    assert parse_version(canonical) == canonical
    assert version_key(text) == tuple(int(p) for p in text.strip().split("."))


@FUZZ
@given(st.lists(st.integers(0, 65535), min_size=4, max_size=4), st.lists(st.integers(0, 65535), min_size=4,
                                                                        max_size=4))
def test_version_order_is_numeric(a, b):
    assert (version_key(".".join(map(str, a))) < version_key(".".join(map(str, b)))) == (a < b)


@FUZZ
@given(guid_spellings)
def test_every_spelling_of_a_guid_is_the_same_rule(text):
    assert parse_guid(text) == str(uuid.UUID(text.strip("{}")))


@FUZZ
@given(st.one_of(mixed_text, guid_spellings))
def test_ids_and_locales_are_canonical_or_refused(text):
    for parse in (parse_guid, parse_locale):
        try:
            value = parse(text)
        except PackageError as error:
            assert error.code == "bad-description"
            continue
        assert parse(value) == value and value.isascii()
