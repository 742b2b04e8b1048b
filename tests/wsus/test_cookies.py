"""Sealed cookies, pure (spec/wsus.md §4.3): every way a cookie can be wrong gives its §4.2 code, in
the check order of §4.3; nothing but the fixed fields can come out of a plaintext."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from devupdate.wsus.client import cookies as c

SERVER = "5b0c7c53-3a4e-4d7e-9a61-1f3b8a0f6e21"
OTHER_SERVER = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
KEY_ID, SECRET = bytes.fromhex("0a0b0c0d"), bytes(range(32))
NOW = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)
STAMP = datetime(2026, 12, 2, tzinfo=UTC)


def keys(*held: tuple[bytes, bytes]):
    table = dict(held or ((KEY_ID, SECRET),))
    return table.get


def client_state(**changes) -> c.CookieState:
    state = c.new_state(c.CLIENT, "e1da06a3-5601-43c9-bac3-52d5db701494", now=NOW, lifetime=3600, protocol="2.90",
                        config=STAMP, high_water=42)
    return state.renewed(**changes)


def sealed(state: c.CookieState | None = None, *, key_id: bytes = KEY_ID, secret: bytes = SECRET,
           server_id: str = SERVER) -> bytes:
    return c.seal(state or client_state(), key_id=key_id, secret=secret, server_id=server_id)


def refused(blob: bytes, *, kind: str = c.CLIENT, server_id: str = SERVER, lookup=None, now: datetime = NOW,
            **options) -> str:
    with pytest.raises(c.CookieRefused) as caught:
        c.unseal(blob, kind=kind, server_id=server_id, keys=lookup or keys(), now=now, **options)
    return caught.value.code


def test_round_trip_and_layout():
    state = client_state()
    blob = sealed(state)
    assert blob[0] == 0x01 and blob[1:5] == KEY_ID and len(blob) == 1 + 4 + 12 + len(c.encode(state)) + 16
    opened = c.unseal(blob, kind=c.CLIENT, server_id=SERVER, keys=keys(), now=NOW, config_stamp=STAMP)
    assert opened == state
    assert opened.expires_at == NOW + timedelta(hours=1) and opened.issued_at == NOW
    assert (opened.subject, opened.protocol, opened.high_water, opened.groups) == (
        "e1da06a3-5601-43c9-bac3-52d5db701494", "2.90", 42, ())
    # the plaintext is the compact JSON of exactly the fixed fields, in order
    nonce, sealed_part = blob[5:17], blob[17:]
    plain = AESGCM(SECRET).decrypt(nonce, sealed_part, f"client\x00{SERVER}".encode())
    assert plain == (b'{"kind":"client","id":"e1da06a3-5601-43c9-bac3-52d5db701494","issued":1796281200,'
                     b'"expiry":1796284800,"protocol":"2.90","config":1796169600000000,"high":42,"gen":0,'
                     b'"groups":[]}')


def test_every_seal_has_a_new_nonce_and_ciphertext():
    state = client_state()
    first, second = sealed(state), sealed(state)
    assert first[5:17] != second[5:17] and first[17:] != second[17:]
    assert c.unseal(second, kind=c.CLIENT, server_id=SERVER, keys=keys(), now=NOW) == state


def test_forged_cookie_is_invalid():
    """Right layout and a held key id, but sealed with a secret that is not ours."""
    assert refused(sealed(secret=os.urandom(32))) == c.INVALID_COOKIE
    # and random bytes behind our key id
    assert refused(b"\x01" + KEY_ID + os.urandom(12 + 80)) == c.INVALID_COOKIE


def test_truncated_cookie_is_invalid():
    blob = sealed()
    for length in (0, 1, 5, 17, 33, len(blob) - 1, len(blob) - 16):
        assert refused(blob[:length]) == c.INVALID_COOKIE, length


def test_every_flipped_bit_is_refused_with_the_code_of_its_place():
    """Format byte → InvalidCookie, key id → ServerChanged (a key this server does not hold), nonce,
    ciphertext or tag → InvalidCookie (the tag check)."""
    blob = sealed()
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            flipped = bytearray(blob)
            flipped[index] ^= bit
            expected = c.SERVER_CHANGED if 1 <= index <= 4 else c.INVALID_COOKIE
            assert refused(bytes(flipped)) == expected, (index, bit)


def test_expired_and_replayed_after_expiry():
    blob = sealed()
    assert c.unseal(blob, kind=c.CLIENT, server_id=SERVER, keys=keys(), now=NOW + timedelta(seconds=3599))
    assert refused(blob, now=NOW + timedelta(seconds=3600)) == c.COOKIE_EXPIRED
    assert refused(blob, now=NOW + timedelta(days=30)) == c.COOKIE_EXPIRED
    # an old cookie handed in for renewal is opened past its expiry
    opened = c.unseal(blob, kind=c.CLIENT, server_id=SERVER, keys=keys(), now=NOW + timedelta(days=30),
                      check_expiry=False)
    assert opened.high_water == 42


def test_unknown_key_is_server_changed_before_anything_else():
    """A rotated-out key or another server's: ServerChanged even when the cookie is expired too."""
    blob = sealed(key_id=b"\x99\x98\x97\x96")
    assert refused(blob) == c.SERVER_CHANGED
    assert refused(blob, now=NOW + timedelta(days=2)) == c.SERVER_CHANGED
    # the key ring decides per call: a key still held opens, once dropped it does not
    old = sealed(key_id=b"\x01\x02\x03\x04", secret=b"k" * 32)
    ring = keys((KEY_ID, SECRET), (b"\x01\x02\x03\x04", b"k" * 32))
    assert c.unseal(old, kind=c.CLIENT, server_id=SERVER, keys=ring, now=NOW).subject
    assert refused(old, lookup=keys((KEY_ID, SECRET))) == c.SERVER_CHANGED


def test_same_key_but_another_server_id_fails_the_tag():
    assert refused(sealed(server_id=OTHER_SERVER)) == c.INVALID_COOKIE
    assert refused(sealed(), server_id=OTHER_SERVER) == c.INVALID_COOKIE


@pytest.mark.parametrize("sealed_kind,asked", [(c.AUTH, c.CLIENT), (c.CLIENT, c.AUTH), (c.DSS, c.DSS_AUTH),
                                               (c.DSS_AUTH, c.CLIENT), (c.CLIENT, c.DSS)])
def test_sealed_for_another_kind_is_invalid(sealed_kind, asked):
    state = c.new_state(sealed_kind, "e1da06a3-5601-43c9-bac3-52d5db701494", now=NOW, lifetime=3600)
    assert refused(sealed(state), kind=asked) == c.INVALID_COOKIE
    assert c.unseal(sealed(state), kind=sealed_kind, server_id=SERVER, keys=keys(), now=NOW).kind == sealed_kind


def test_oversized_cookie_is_invalid_before_any_key_lookup():
    looked_up = []

    def lookup(key_id):
        looked_up.append(key_id)
        return SECRET

    blob = sealed()
    assert refused(blob + os.urandom(c.MAX_SEALED - len(blob) + 1), lookup=lookup) == c.INVALID_COOKIE
    assert looked_up == []
    # an authentic seal of a plaintext above 1 KiB is refused too (a writer could not make one)
    big = b'{"kind":"client","id":"' + b"a" * 1100 + b'"}'
    nonce = os.urandom(12)
    forged = b"\x01" + KEY_ID + nonce + AESGCM(SECRET).encrypt(nonce, big, f"client\x00{SERVER}".encode())
    assert refused(forged) == c.INVALID_COOKIE


def test_config_stamp_is_checked_last_and_only_when_asked():
    blob = sealed()
    later = STAMP + timedelta(microseconds=1)
    assert refused(blob, config_stamp=later) == c.CONFIG_CHANGED
    assert c.unseal(blob, kind=c.CLIENT, server_id=SERVER, keys=keys(), now=NOW).config == c.stamp_micros(STAMP)
    # expiry comes before the config stamp
    assert refused(blob, config_stamp=later, now=NOW + timedelta(hours=2)) == c.COOKIE_EXPIRED


def _authentic(plaintext: bytes, kind: str = "client") -> bytes:
    nonce = os.urandom(12)
    return b"\x01" + KEY_ID + nonce + AESGCM(SECRET).encrypt(nonce, plaintext, f"{kind}\x00{SERVER}".encode())


@pytest.mark.parametrize("plaintext", [
    b'{"kind":"client"}',  # fields missing
    b'["client","x",1,2,"",0,0,0,[]]',  # not an object
    b'{"kind":"client","id":"x","issued":1,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":[],'
    b'"extra":1}',  # a field more
    b'{"kind":"client","id":"x","issued":1.5,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":[]}',
    b'{"kind":"client","id":"x","issued":NaN,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":[]}',
    b'{"kind":"client","id":"x","issued":true,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":[]}',
    b'{"kind":"client","id":{"__class__":"x"},"issued":1,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,'
    b'"groups":[]}',
    b'{"kind":"client","id":"x","issued":-1,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":[]}',
    b'{"kind":"client","id":"x","issued":1,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":["a"]}',
    b'{"kind":"client","id":"","issued":1,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":[]}',
    b'{"kind":"client","id":"x","issued":1,"expiry":2,"protocol":"","config":0,"high":0,"gen":0,"groups":{}}',
    "{\"kind\":\"client\",\"id\":\"\u00e9\"}".encode(),  # not ASCII
    b"\x80\x81",
    b"[" * 900 + b"]" * 90,
])
def test_authentic_but_malformed_plaintext_is_invalid(plaintext):
    """Even with the key (only a defect of ours could seal these) nothing but the fixed fields of
    their types come out: no objects, no floats, no NaN, no extra or missing field."""
    assert refused(_authentic(plaintext)) == c.INVALID_COOKIE


def test_auth_cookie_carries_the_requested_groups_and_the_cap_is_kept():
    state = c.new_state(c.AUTH, "e1da06a3-5601-43c9-bac3-52d5db701494", now=NOW, lifetime=3600,
                        groups=("Ring 1", "Berlin; Floor 2"))
    opened = c.unseal(sealed(state), kind=c.AUTH, server_id=SERVER, keys=keys(), now=NOW)
    assert opened.groups == ("Ring 1", "Berlin; Floor 2")
    with pytest.raises(c.CookieTooLarge):
        c.encode(state.renewed(groups=tuple(f"group {n:03d}" for n in range(100))))
    with pytest.raises(ValueError):
        c.encode(client_state(groups=("x",)))  # groups only in an auth cookie
    largest = state.renewed(groups=("g" * 200,) * 4)
    assert len(c.encode(largest)) <= c.MAX_PLAINTEXT
    assert len(sealed(largest)) <= c.MAX_SEALED


def test_base64_text():
    blob = sealed()
    assert c.from_text(" " + c.to_text(blob)[:10] + "\n" + c.to_text(blob)[10:]) == blob
    for bad in (None, "", "   ", "not base64!", "QUJD" * 1000, "QUJDRA"):
        with pytest.raises(c.CookieRefused) as caught:
            c.from_text(bad)
        assert caught.value.code == c.INVALID_COOKIE, bad
    # the redacted captured cookies (A… runs) decode to zeros: format byte 0 → InvalidCookie
    redacted = base64.b64decode("A" * 400)
    assert refused(redacted) == c.INVALID_COOKIE


def test_plaintext_is_plain_json_of_fixed_fields():
    data = c.encode(client_state())
    assert list(json.loads(data)) == list(c.FIELDS)
    assert c.decode(data) == client_state()
