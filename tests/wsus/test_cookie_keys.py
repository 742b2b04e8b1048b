"""Cookie keys and the ServerId in the database (spec/wsus.md §4.3): made once, shared by every
node, rotated by ``devupdate wsus rotate-cookie-key`` with the old key opening cookies for one
lifetime of their kind, then ``ServerChanged``."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from devupdate.wsus.client import cookies, keys
from devupdate.wsus.client.models import CookieKey, ServerIdentity

CLIENT_ID = "e1da06a3-5601-43c9-bac3-52d5db701494"


@pytest.fixture
def ring(database, install):
    keys.forget_cache()
    yield install.settings()
    keys.forget_cache()


def state(kind: str = cookies.CLIENT, now: datetime | None = None, lifetime: int = 3600) -> cookies.CookieState:
    return cookies.new_state(kind, CLIENT_ID, now=now or datetime.now(UTC), lifetime=lifetime, high_water=7)


def code_of(blob: bytes, settings, **options) -> str:
    with pytest.raises(cookies.CookieRefused) as caught:
        keys.unseal(blob, settings=settings, **options)
    return caught.value.code


def test_server_id_is_made_once_and_kept(ring):
    first = keys.server_id()
    assert str(uuid.UUID(first)) == first
    keys.forget_cache()
    assert keys.server_id() == first
    assert [row.server_id for row in ServerIdentity.select()] == [first]


def test_the_first_key_is_made_on_first_use_and_seals(ring):
    assert CookieKey.select().count() == 0
    blob = keys.seal(state())
    rows = list(CookieKey.select())
    assert len(rows) == 1 and rows[0].retired is None and re.fullmatch("[0-9a-f]{8}", rows[0].key_id)
    assert len(rows[0].secret) == 64 and blob[1:5].hex() == rows[0].key_id
    opened = keys.unseal(blob, kind=cookies.CLIENT, settings=ring)
    assert (opened.subject, opened.high_water) == (CLIENT_ID, 7)
    # the tag binds the kind
    assert code_of(blob, ring, kind=cookies.AUTH) == cookies.INVALID_COOKIE


def test_rotation_old_key_opens_for_one_lifetime_of_its_kind(ring):
    before = keys.seal(state(now=datetime.now(UTC) - timedelta(minutes=30)))  # expires 30 min from now
    dss_before = keys.seal(state(cookies.DSS, lifetime=240 * 60))
    old_id = before[1:5].hex()
    result = keys.rotate(ring, actor="test:admin")
    assert result["Retired"] == [old_id] and result["KeyId"] != old_id and result["Removed"] == []
    retired = CookieKey.get_by_id(old_id).retired.replace(tzinfo=UTC)
    after = keys.seal(state())
    assert after[1:5].hex() == result["KeyId"]
    # within one lifetime both keys open
    assert keys.unseal(before, kind=cookies.CLIENT, settings=ring).high_water == 7
    assert keys.unseal(after, kind=cookies.CLIENT, settings=ring).high_water == 7
    # one client lifetime (1 h) after the retirement: ServerChanged, ahead of the expiry check
    later = retired + timedelta(seconds=3600)
    assert code_of(before, ring, kind=cookies.CLIENT, now=later) == cookies.SERVER_CHANGED
    assert code_of(before, ring, kind=cookies.CLIENT, now=later - timedelta(seconds=1)) == cookies.COOKIE_EXPIRED
    assert keys.unseal(before, kind=cookies.CLIENT, settings=ring, now=retired + timedelta(minutes=25)).subject
    # a DSS cookie of the retired key opens for its own lifetime, 240 min
    assert keys.unseal(dss_before, kind=cookies.DSS, settings=ring, now=later).kind == cookies.DSS
    assert code_of(dss_before, ring, kind=cookies.DSS, now=retired + timedelta(minutes=240)) == \
        cookies.SERVER_CHANGED
    # the new key is still held: its cookie is merely expired by then
    assert code_of(after, ring, kind=cookies.CLIENT, now=later) == cookies.COOKIE_EXPIRED


def test_a_later_rotation_removes_keys_past_the_longest_lifetime(ring):
    first = keys.seal(state())[1:5].hex()
    keys.rotate(ring, actor="test:admin")
    retired = CookieKey.get_by_id(first).retired
    CookieKey.update(retired=retired - timedelta(minutes=241)).where(CookieKey.key_id == first).execute()
    second = keys.rotate(ring, actor="test:admin")
    assert second["Removed"] == [first]
    assert {row.key_id for row in CookieKey.select()} == {*second["Retired"], second["KeyId"]}
    assert len(second["Retired"]) == 1


def test_a_key_made_on_another_node_opens_at_once(ring):
    """This worker's cached ring misses the new key id and reloads instead of saying ServerChanged."""
    keys.seal(state())  # the cache now holds the first key
    row = CookieKey.create(key_id="0badc0de", secret=bytes(range(32)).hex(), created=datetime.now(UTC).replace(
        tzinfo=None))  # what another node's rotation writes
    blob = cookies.seal(state(), key_id=bytes.fromhex(row.key_id), secret=bytes(range(32)),
                        server_id=keys.server_id())
    assert keys.unseal(blob, kind=cookies.CLIENT, settings=ring).subject == CLIENT_ID


def test_cookie_of_another_installation_is_server_changed(ring, tmp_path):
    from devupdate import db, schema

    ours = keys.seal(state())
    our_id = keys.server_id()
    other_url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    main = db.database.obj
    try:
        db.open_database(other_url).connect(reuse_if_open=True)
        schema.upgrade()
        theirs = keys.seal(state())
        assert keys.server_id() != our_id
        assert code_of(ours, ring, kind=cookies.CLIENT) == cookies.SERVER_CHANGED
    finally:
        db.database.obj.close()
        db.database.initialize(main)
    assert code_of(theirs, ring, kind=cookies.CLIENT) == cookies.SERVER_CHANGED
    assert keys.unseal(ours, kind=cookies.CLIENT, settings=ring).subject == CLIENT_ID


def test_rotate_cookie_key_cli(ring, install):
    keys.seal(state())
    old = CookieKey.select().get().key_id
    proc = install.cli("wsus", "rotate-cookie-key", "--json")
    result = json.loads(proc.stdout)
    assert result["Retired"] == [old] and re.fullmatch("[0-9a-f]{8}", result["KeyId"])
    shown = {key["KeyId"]: key for key in result["Keys"]}
    assert shown[result["KeyId"]]["Retired"] is None and shown[result["KeyId"]]["OpensUntil"] is None
    assert set(shown[old]["OpensUntil"]) == {"auth", "client", "dss-auth", "dss"}
    assert "secret" not in proc.stdout.lower() and CookieKey.get_by_id(old).secret not in proc.stdout
    text = install.cli("wsus", "rotate-cookie-key").stdout
    assert text.startswith("new cookie key ") and f"retired {result['KeyId']}" in text
    from devupdate.audit.trail import list_events

    events = list_events(action="wsus.cookie-key.rotate")
    assert [event["Actor"] for event in events] == ["test:admin", "test:admin"]
    assert events[-1]["After"] == {"Current": [result["KeyId"]]}


MASTER = "6d" * 32


def test_with_a_master_key_secrets_are_stored_wrapped(ring, install):
    import dataclasses

    plain_blob = keys.seal(state(), ring)  # the first key, made before the master key was set
    plain_id = plain_blob[1:5].hex()
    plain_secret = CookieKey.get_by_id(plain_id).secret
    assert re.fullmatch("[0-9a-f]{64}", plain_secret)
    mastered = install.settings(wsus_cookie_master_key=MASTER)
    assert MASTER not in repr(mastered)
    result = keys.rotate(mastered, actor="test:admin")
    assert result["Wrapped"] == [plain_id]
    for row in CookieKey.select():
        assert row.secret.startswith("w:") and len(row.secret) == 58, row.key_id  # fits the 64-character column
    assert CookieKey.get_by_id(plain_id).secret != plain_secret
    blob = keys.seal(state(), mastered)
    assert blob[1:5].hex() == result["KeyId"]
    assert keys.unseal(blob, kind=cookies.CLIENT, settings=mastered).subject == CLIENT_ID
    assert keys.unseal(plain_blob, kind=cookies.CLIENT, settings=mastered).subject == CLIENT_ID
    # a node without the master key (or with another) reads none of them
    keys.forget_cache()
    for other in (ring, dataclasses.replace(mastered, wsus_cookie_master_key="00" * 32)):
        assert code_of(blob, other, kind=cookies.CLIENT) == cookies.SERVER_CHANGED
        with pytest.raises(RuntimeError, match="cookie_master_key"):
            keys.seal(state(), other)
    assert CookieKey.select().where(CookieKey.retired.is_null()).count() == 1  # no key made in its place


def test_a_bad_master_key_is_refused_without_showing_it(install):
    from devupdate.errors import SettingsError

    for bad in ("abc", "zz" * 32, "6d" * 31):
        with pytest.raises(SettingsError) as caught:
            install.settings(wsus_cookie_master_key=bad)
        assert "64 hex digits" in str(caught.value) and bad not in str(caught.value)
    assert install.settings(wsus_cookie_master_key=MASTER.upper()).wsus_cookie_master_key == MASTER


def test_unknown_key_ids_reload_the_ring_at_most_once_a_second(ring, monkeypatch):
    """Random key ids (anyone can send them) cost one reload a second per worker, not one each."""
    keys.seal(state())
    loads = []
    load = keys._load
    monkeypatch.setattr(keys, "_load", lambda master: loads.append(1) or load(master))
    clock = [1000.0]
    monkeypatch.setattr(keys, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    keys.forget_cache()
    keys.seal(state())  # the ring, loaded at 1000.0
    loads.clear()
    for n in range(50):
        blob = cookies.seal(state(), key_id=n.to_bytes(4, "big"), secret=bytes(32), server_id=keys.server_id())
        assert code_of(blob, ring, kind=cookies.CLIENT) == cookies.SERVER_CHANGED
    assert len(loads) == 1
    clock[0] += keys.MISS_RELOAD_SECONDS
    assert code_of(blob, ring, kind=cookies.CLIENT) == cookies.SERVER_CHANGED
    assert len(loads) == 2
