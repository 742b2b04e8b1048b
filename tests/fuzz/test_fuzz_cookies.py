"""Property: whatever bytes arrive as a cookie, opening it gives a §4.2 code or the fixed fields —
never another exception, never anything but plain values (spec/wsus.md §4.3)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fuzzkit import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from devupdate.wsus.client import cookies

SERVER = "5b0c7c53-3a4e-4d7e-9a61-1f3b8a0f6e21"
KEY_ID, SECRET = b"\x0a\x0b\x0c\x0d", bytes(range(32))
NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
CODES = {cookies.INVALID_COOKIE, cookies.SERVER_CHANGED, cookies.COOKIE_EXPIRED, cookies.CONFIG_CHANGED}
FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                         st.lists(st.text(max_size=10), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                     st.integers(), max_size=2))


def _open(blob: bytes):
    try:
        state = cookies.unseal(blob, kind=cookies.CLIENT, server_id=SERVER, keys={KEY_ID: SECRET}.get, now=NOW)
    except cookies.CookieRefused as refused:
        assert refused.code in CODES
        return None
    assert isinstance(state, cookies.CookieState)
    return state


@FUZZ
@given(st.binary(max_size=1200), st.booleans())
def test_any_bytes_open_to_a_code(data, with_our_header):
    _open((b"\x01" + KEY_ID + data) if with_our_header else data)


@FUZZ
@given(st.text(max_size=1500))
def test_any_text_is_base64_or_invalid_cookie(text):
    try:
        blob = cookies.from_text(text)
    except cookies.CookieRefused as refused:
        assert refused.code == cookies.INVALID_COOKIE
        return
    _open(blob)


@FUZZ
@given(st.fixed_dictionaries({name: FIELD_VALUES for name in cookies.FIELDS}), st.booleans())
def test_authentic_plaintexts_give_only_checked_fields(fields, drop_one):
    """Even sealed with our key, a plaintext of the right names but any values (or a name short)
    either opens to fields of their types or is InvalidCookie."""
    import json

    if drop_one:
        fields.pop("gen")
    try:
        plaintext = json.dumps(fields).encode()
    except ValueError:
        return
    nonce = os.urandom(12)
    blob = b"\x01" + KEY_ID + nonce + AESGCM(SECRET).encrypt(nonce, plaintext, cookies.associated_data(
        cookies.CLIENT, SERVER))
    state = _open(blob)
    if state is not None:
        assert type(state.issued) is int and type(state.expiry) is int and isinstance(state.subject, str)
        assert all(isinstance(name, str) for name in state.groups) and state.groups == ()
