"""External users live in the database: a users file of an earlier version is imported once, every
process sees a change within seconds, and a database outage refuses with a reason, not a 500."""

from __future__ import annotations

import peewee
import pytest

from devupdate.devices import users as users_module
from devupdate.devices.users import DatabaseUserStore, ExternalUser, UserStoreUnavailable, hash_password


def test_a_users_file_of_an_earlier_version_is_imported_once_and_kept_as_a_backup(install):
    legacy = install.home / "users"
    legacy.write_text(f"# kept by devupdate\nphones:{hash_password('correct horse')}\n"
                      f"branch-7@contoso.com:{hash_password('battery staple')}\nnot a user line\n"
                      "bad name!:scrypt$1$2$3$x$y\n", "utf-8")
    install.runtime()
    assert sorted(ExternalUser.select(ExternalUser.name).tuples()) == [("branch-7@contoso.com",), ("phones",)]
    assert not legacy.exists() and (install.home / "users.imported").is_file()
    assert DatabaseUserStore().verify("phones", "correct horse")
    assert not DatabaseUserStore().verify("phones", "battery staple")
    # a second start imports nothing (the file is gone), and a name already in the database wins
    legacy.write_text(f"phones:{hash_password('another one')}\n", "utf-8")
    install.runtime()
    assert DatabaseUserStore().verify("phones", "correct horse")
    assert not DatabaseUserStore().verify("phones", "another one")


def test_a_change_reaches_a_running_store_within_the_lookup_time(install, monkeypatch):
    install.runtime()
    store, clock = DatabaseUserStore(), [1000.0]
    monkeypatch.setattr(users_module.time, "monotonic", lambda: clock[0])
    store.add("phones", "correct horse")
    assert store.verify("phones", "correct horse")
    DatabaseUserStore().remove("phones")  # another process (the CLI, another node)
    assert store.verify("phones", "correct horse")  # the copy read a moment ago
    clock[0] += DatabaseUserStore.LOOKUP_SECONDS
    assert not store.verify("phones", "correct horse")


def test_database_away_keeps_known_users_and_refuses_others_with_the_reason(install, monkeypatch):
    install.runtime()
    store = DatabaseUserStore()
    store.add("phones", "correct horse")
    assert store.verify("phones", "correct horse")

    def away(*args, **kwargs):
        raise peewee.OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(ExternalUser, "get_or_none", away)
    monkeypatch.setattr(DatabaseUserStore, "LOOKUP_SECONDS", 0.0)
    assert store.verify("phones", "correct horse")  # the last copy read keeps answering
    with pytest.raises(UserStoreUnavailable, match=r"the user store is unavailable \(database: could not connect"):
        store.verify("someone-else", "whatever-pass")


def test_adding_a_user_hashes_before_the_write_transaction(install, monkeypatch):
    """scrypt takes a deliberate tenth of a second or more: computed inside the transaction it would hold
    SQLite's write lock (BEGIN IMMEDIATE) and make every writer wait. The user and its audit entry
    still commit together."""
    from devupdate import db
    from devupdate.audit.models import AuditEvent
    from devupdate.devices.cli import add_user

    install.runtime()
    seen: list[bool] = []
    real = users_module.hash_password

    def hashing(password: str, **kwargs) -> str:
        seen.append(db.database.in_transaction())
        return real(password, **kwargs)

    monkeypatch.setattr(users_module, "hash_password", hashing)
    assert add_user(DatabaseUserStore(), "phones", "correct horse", replace=False, actor="test") == {
        "Name": "phones", "Replaced": False}
    assert add_user(DatabaseUserStore(), "phones", "battery staple", replace=True, actor="test") == {
        "Name": "phones", "Replaced": True}
    assert seen == [False, False]
    assert DatabaseUserStore().verify("phones", "battery staple")
    assert [e.action for e in AuditEvent.select().where(AuditEvent.target == "user:phones")] == ["user.add"] * 2
