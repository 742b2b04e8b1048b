"""What the console stands on, without a server: the fleet aggregates and the confirmation sentences
(``devupdate.admin.console.fleet``), the inventory search, console accounts and sign-in limits, the session cookie,
the signing key and the ``devupdate admins`` commands — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading

import pytest
from click.testing import CliRunner
from helpers.cabs import make_package, make_update

from devupdate.admin.console import auth, fleet, session
from devupdate.db import utcnow
from devupdate.devices import compliance
from devupdate.devices.inventory import upsert
from devupdate.errors import DevupdateError, SettingsError
from devupdate.rules.models import Rule

OLD, MID, NEW = "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372"


def rule(approved=None, pending=None, restore=None, locale="ENU", device_type="UCPhone") -> Rule:
    return Rule(id="5a1d2c3e-0000-0000-0000-000000000001", key="k", device_type=device_type, brand="Polycom",
                model="CX600", revision="A", locale=locale, update_type="CPE", approved_version=approved,
                pending_version=pending, restore_version=restore)


@pytest.mark.parametrize("state, action, summary", [
    ((MID, NEW, None), "approve", f"All Polycom CX600 ENU phones will be offered CPE {NEW} (upgrade from {MID})."),
    ((None, NEW, None), "approve",
     f"All Polycom CX600 ENU phones will be offered CPE {NEW} (nothing approved before)."),
    ((NEW, MID, None), "approve", f"All Polycom CX600 ENU phones will be offered CPE {MID} (downgrade from {NEW})."),
    ((NEW, None, MID), "restore", f"All Polycom CX600 ENU phones will be offered CPE {MID} (downgrade from {NEW})."),
    ((NEW, None, None), "restore", f"Nobody will be offered anything for this rule: {NEW} is withdrawn and there "
                                   "is no earlier version to return to."),
    ((MID, NEW, None), "reset", f"Pending {NEW} is rejected. All Polycom CX600 ENU phones keep being offered "
                                f"CPE {MID}; test devices go back to it."),
    ((None, NEW, None), "reset", f"Pending {NEW} is rejected. Nobody will be offered anything for this rule: it "
                                 "has no approved version."),
])
def test_preview_states_what_the_fleet_receives(state, action, summary):
    preview = fleet.preview(rule(*state), action, known_devices=3)
    assert preview["Allowed"] and preview["Summary"] == summary
    assert preview["Details"][0] == "3 such devices checked in so far."
    assert preview["State"] == "|".join(v or "-" for v in state)


def test_preview_details_and_refusals():
    approve = fleet.preview(rule(MID, NEW), "approve")
    assert approve["Details"] == [f"{MID} becomes the restore version: rolling back returns to it."]
    rollback = fleet.preview(rule(NEW, OLD, MID), "restore")
    assert f"Test devices keep being offered the pending {OLD}." in rollback["Details"]
    for state, action, reason in (((MID, None, None), "approve", "no pending version to approve"),
                                  ((MID, None, None), "reset", "no pending version to reject"),
                                  ((None, NEW, None), "restore", "no approved version to roll back")):
        refused = fleet.preview(rule(*state), action)
        assert not refused["Allowed"] and reason in refused["Reason"]
    assert fleet.family_label(rule(locale="*")) == "Polycom CX600 phones (every locale)"
    assert fleet.family_label(rule(device_type="Speaker")) == "Polycom CX600 ENU Speaker devices"
    with pytest.raises(ValueError):
        fleet.preview(rule(), "remove")


def compliance_row(brand, model, updates=(), versions=None):
    return {"Brand": brand, "Model": model, "Updates": [
        {"UpdateType": "CPE", "InstalledVersion": installed, "ApprovedVersion": approved}
        for installed, approved in updates], "Versions": versions or {}}


def test_version_distribution_counts_per_model_and_shows_approved_versions():
    groups = [(compliance_row("Polycom", "CX600", [(MID, NEW)]), 2),
              (compliance_row("Polycom", "CX600", [(MID, NEW)]), 1),
              (compliance_row("Polycom", "CX600", [(NEW, NEW)]), 1),
              (compliance_row("polycom", "cx600", [(None, NEW)]), 1),
              (compliance_row("HP", "4120", versions={"CPE.nbt": OLD, "UCA.nbt": "1.0"}), 1)]
    found = fleet.version_distribution(groups)
    assert [(r["Brand"], r["Model"], r["UpdateType"], r["Devices"]) for r in found] == [
        ("HP", "4120", "CPE", 1), ("HP", "4120", "UCA", 1), ("Polycom", "CX600", "CPE", 5)]
    cx600 = found[2]
    assert cx600["ApprovedVersions"] == [NEW]
    assert cx600["Versions"] == [{"Version": NEW, "Devices": 1, "Approved": True},
                                 {"Version": MID, "Devices": 3, "Approved": False},
                                 {"Version": "unknown", "Devices": 1, "Approved": False}]
    nobody = fleet.version_distribution([(compliance_row("Polycom", "CX600", [(MID, NEW)]), 1)])[0]["Versions"]
    assert nobody[0] == {"Version": NEW, "Devices": 0, "Approved": True}  # approved, nobody on it yet


def device_row(device_id, *, mac="", serial="", user="", seen_hours_ago=1, network="internal", locale="ENU"):
    seen = utcnow() - dt.timedelta(hours=seen_hours_ago)
    return {"device_id": device_id, "mac": mac, "serial": serial, "device_type": "UCPhone", "brand": "Polycom",
            "model": "CX600", "revision": "A", "locale": locale, "versions": json.dumps({"CPE.nbt": MID}),
            "user_id": user, "address": "10.0.0.1", "network": network, "first_seen": seen, "last_seen": seen,
            "checks": 1}


def test_inventory_search_and_devices_seen(database):
    upsert([device_row("0004F2AABBCC", mac="0004F2AABBCC", serial="CX600-0001", user="Alice@contoso.com"),
            device_row("000E08112233", mac="000E08112233", serial="CX600-0002", user="bob@contoso.com",
                       seen_hours_ago=30),
            device_row("SN-CX600-0003", serial="CX600-0003", user="carol_100%@contoso.com", network="external")])

    def ids(text):
        return [row["DeviceId"] for row in compliance.list_devices(search=text)]
    assert ids("00-04-f2-aa-bb-cc") == ["0004F2AABBCC"]
    assert ids("aa:bb:cc") == ["0004F2AABBCC"]
    assert ids("cx600-0002") == ["000E08112233"]
    assert ids("ALICE") == ["0004F2AABBCC"]
    assert ids("contoso") == ["0004F2AABBCC", "000E08112233", "SN-CX600-0003"]
    assert ids("100%") == ["SN-CX600-0003"] and ids("c_rol") == []  # LIKE wildcards are matched literally
    assert ids("sn-cx600-0003") == ["SN-CX600-0003"] and ids("nobody") == []
    assert fleet.devices_seen(24) == {"Hours": 24, "Devices": 2, "Internal": 1, "External": 1, "Known": 3}
    assert fleet.devices_seen(48)["Devices"] == 3
    upsert([device_row("0004F2000DEU", mac="0004F2000DEU", locale="DEU", seen_hours_ago=100)])
    enu, every = rule(locale="ENU"), rule(locale="*")
    every.id = "every"
    assert fleet.family_device_counts([enu, every]) == {enu.id: 3, "every": 4}
    assert (fleet.family_devices(enu), fleet.family_devices(every)) == (3, 4)


def test_accounts_sign_in_and_limits(database, monkeypatch):
    auth.add_admin("alice", "correct horse battery", "admin", actor="test")
    with pytest.raises(auth.DevupdateError, match="exists"):
        auth.add_admin("alice", "correct horse battery", "operator", actor="test")
    with pytest.raises(auth.DevupdateError, match="too short"):
        auth.add_admin("bob", "short", "operator", actor="test")
    with pytest.raises(auth.DevupdateError, match="role"):
        auth.add_admin("bob", "long enough pass", "root", actor="test")
    with pytest.raises(auth.DevupdateError, match="admin name"):
        auth.add_admin("bob smith", "long enough pass", "admin", actor="test")

    admin = auth.authenticate("alice", "correct horse battery", address="10.0.0.1")
    assert (admin.name, admin.role, admin.can_change, admin.actor) == ("alice", "admin", True, "console:alice")
    assert auth.current_admin("alice", admin.fingerprint) == admin
    for name, password in (("alice", "wrong password"), ("nobody", "whatever it is"), ("", "")):
        with pytest.raises(auth.SignInRefused):
            auth.authenticate(name, password, address="10.0.0.1")

    # A new password (or role) ends sessions opened with the old one; removal ends them too.
    auth.add_admin("alice", "another good password", "operator", actor="test", replace=True)
    assert auth.current_admin("alice", admin.fingerprint) is None
    fresh = auth.authenticate("alice", "another good password", address="10.0.0.2")
    assert fresh.role == "operator" and not fresh.can_change
    auth.remove_admin("alice", actor="test")
    assert auth.current_admin("alice", fresh.fingerprint) is None
    with pytest.raises(auth.DevupdateError, match="no admin"):
        auth.remove_admin("alice", actor="test")

    # Per (name, source): the 3rd failure locks carol for 10.0.0.1 only, before the password is checked.
    lockout = auth.Lockout(failures=3, seconds=10)
    auth.add_admin("carol", "carol's good password", "admin", actor="test")
    for _ in range(3):
        with pytest.raises(auth.SignInRefused):
            auth.authenticate("carol", "wrong", address="10.0.0.1", lockout=lockout)
    with pytest.raises(auth.TooManyAttempts, match="this name from your address") as limited:
        auth.authenticate("carol", "carol's good password", address="10.0.0.1", lockout=lockout)
    assert limited.value.retry_after == 10 and limited.value.status == 429
    assert auth.authenticate("carol", "carol's good password", address="10.0.0.2", lockout=lockout).name == "carol"
    with pytest.raises(auth.SignInRefused):  # another name from the locked source is still checked
        auth.authenticate("nobody", "wrong", address="10.0.0.1", lockout=lockout)
    # Backoff: after the lock, each further failure doubles it.
    start = utcnow()
    for offset, lock in ((11, 20), (32, 40)):
        monkeypatch.setattr(auth, "utcnow", lambda offset=offset: start + dt.timedelta(seconds=offset))
        with pytest.raises(auth.SignInRefused):
            auth.authenticate("carol", "wrong", address="10.0.0.1", lockout=lockout)
        with pytest.raises(auth.TooManyAttempts) as limited:
            auth.authenticate("carol", "carol's good password", address="10.0.0.1", lockout=lockout)
        assert limited.value.retry_after == lock
    assert auth.Lockout(3, 10).lock_seconds(40) == auth.MAX_LOCK
    # The lock passes; a success clears the source's failures for that name.
    monkeypatch.setattr(auth, "utcnow", lambda: start + dt.timedelta(seconds=73))
    assert auth.authenticate("carol", "carol's good password", address="10.0.0.1", lockout=lockout).name == "carol"
    with pytest.raises(auth.SignInRefused):
        auth.authenticate("carol", "wrong", address="10.0.0.1", lockout=lockout)


def test_session_cookie_signing_expiry_and_csrf(tmp_path):
    cookie = session.SessionCookie(session.load_signing_key(tmp_path), secure=True)
    data = session.SessionData(name="alice", fingerprint="f" * 24, signed_in_at=int(__import__("time").time()))
    token = data.ensure_csrf()
    data.notice("ok", "Approved.")
    raw = cookie.dump(data)
    loaded = cookie.load(raw)
    assert (loaded.name, loaded.csrf, loaded.notices) == ("alice", token, [["ok", "Approved."]])
    assert loaded.csrf_ok(token) and not loaded.csrf_ok(token[:-1] + "x") and not loaded.csrf_ok(None)
    assert not session.SessionData().csrf_ok("")  # no token in the session: nothing matches
    assert cookie.load(raw[:-2] + "xx").name == ""  # tampered
    other = session.SessionCookie(b"k" * 64, secure=True)
    assert other.load(raw).name == ""  # signed with another key
    assert cookie.load(raw, now=data.signed_in_at + session.MAX_SECONDS + 1).name == ""  # absolute lifetime
    assert cookie.cookie_options() == {"path": "/console", "secure": True, "httponly": True, "samesite": "Strict"}


def test_signing_key_is_created_once_private_and_shared(tmp_path):
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(session.load_signing_key(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    path = tmp_path / session.KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [session.KEY_FILE]  # no temp file left behind
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        session.load_signing_key(tmp_path)


def test_secure_cookie_can_be_off_only_on_loopback(tmp_path):
    from devupdate.settings import Settings

    def settings(host: str, value: str | None) -> Settings:
        environ = {"DEVUPDATE_HOST": host} | ({session.SECURE_VARIABLE: value} if value is not None else {})
        return Settings.load(environ, home=str(tmp_path))

    assert session.cookie_secure(settings("0.0.0.0", None)) is True
    assert session.cookie_secure(settings("10.0.0.5", "true")) is True
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert session.cookie_secure(settings(host, "false")) is False
    for host in ("0.0.0.0", "10.0.0.5", "::", "updates.example.com"):
        with pytest.raises(SettingsError, match="loopback"):
            session.cookie_secure(settings(host, "off"))
    with pytest.raises(SettingsError, match="true or false"):
        settings("127.0.0.1", "maybe")


def test_admins_commands(install):
    from devupdate.cli import main

    runner = CliRunner()

    def run(*args, stdin=None):
        return runner.invoke(main, ["admins", *args], input=stdin, env=install.environ())
    added = run("add", "alice", "--role", "admin", "--password-stdin", stdin="correct horse battery\n")
    assert added.exit_code == 0 and added.output == "added admin alice\n"
    assert run("add", "olga", "--role", "operator", "--password-stdin", stdin="operator password\n").exit_code == 0
    listed = json.loads(run("list", "--json").output)
    assert [(row["Name"], row["Role"]) for row in listed] == [("alice", "admin"), ("olga", "operator")]
    assert "scrypt" not in run("list").output and "hash" not in json.dumps(listed).lower()
    duplicate = run("add", "alice", "--role", "admin", "--password-stdin", stdin="correct horse battery\n")
    assert duplicate.exit_code == 1 and "exists" in duplicate.output
    assert run("add", "bob", "--role", "root", "--password-stdin", stdin="x" * 12).exit_code == 2
    assert run("add", "bob", "--role", "admin", "--password-stdin", stdin="\n").exit_code == 1
    assert run("add", "olga", "--role", "admin", "--password-stdin", "--replace",
               stdin="a new password\n").output == "updated admin olga\n"
    assert run("remove", "olga").output == "removed olga\n"
    missing = run("remove", "olga")
    assert missing.exit_code == 1 and "no admin 'olga'" in missing.output
    trail = runner.invoke(main, ["audit", "list", "--action", "admin.", "--json"], env=install.environ())
    assert [event["Action"] for event in json.loads(trail.output)] == [
        "admin.remove", "admin.replace", "admin.add", "admin.add"]


class Body:
    """A request body that delivers ``data`` in small pieces, then (``cut``) raises like a dropped client."""

    def __init__(self, data: bytes, cut: bool = False):
        self.data, self.cut = data, cut

    def read(self, size: int = -1) -> bytes:
        if not self.data and self.cut:
            raise OSError("connection reset")
        piece, self.data = self.data[:4096], self.data[4096:]
        return piece


def test_import_upload_streams_into_incoming_and_leaves_nothing(install, tmp_path):
    from devupdate.imports.upload import import_upload

    runtime = install.runtime(max_cab_size="200KiB", quota_incoming="150KiB")
    cab = make_package(tmp_path, [make_update("Polycom", "CX600", NEW)], image_sizes=20_000).read_bytes()

    def upload(body, size, **kwargs):
        return import_upload(runtime.store, runtime.settings, body, size=size, file_name="UCUpdates.cab",
                             actor="console:test", **kwargs)
    result = upload(Body(cab), len(cab))
    assert result.outcome == "imported" and result.rules[0]["Change"] == "created"
    assert upload(Body(cab), None).outcome == "nothing-new"  # no announced size (chunked): the same
    refusals = [((Body(b"x" * 10), 300 * 1024), 413, "cab-too-large"),  # announced too large: body never read
                ((Body(b"x" * 210 * 1024), None), 413, "cab-too-large"),  # streamed past the limit
                ((Body(b"x" * 160 * 1024), None), 507, "incoming-quota-exceeded"),
                ((Body(cab[:1000], cut=True), len(cab)), 400, "incomplete-body"),
                ((Body(cab[:1000]), len(cab)), 400, "incomplete-body"),
                ((Body(b""), 0), 400, "empty-body"),
                ((Body(b"MSCF" + b"\0" * 500), 504), 400, None)]
    for (body, size), status, code in refusals:
        with pytest.raises(DevupdateError) as refused:
            upload(body, size)
        assert refused.value.status == status, (status, refused.value.message)
        assert code is None or refused.value.code == code
    incoming = [u for u in runtime.store.usage_all() if u.area == "incoming"][0]
    assert incoming.used_bytes == 0 and incoming.objects == 0
    assert not [p for p in (install.home / "filestore" / "incoming").rglob("*") if p.is_file()]
