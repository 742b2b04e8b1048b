"""Every kind of audit target by name — test devices with their MAC or serial, configuration scopes,
admin accounts, tokens, external users, WSUS updates (title and KB), target groups (their path),
computers (their DNS name), sync runs — looked up one query per kind per page, never per row; and
log cleanup audited like file cleanup, from the CLI and the JSON API."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import urllib.request

import pytest

from devupdate.audit.trail import record

pytestmark = pytest.mark.timeout(120)

UID = "0d5b5c8f-36a6-4f5e-9b55-2b0f7c7f6d31"
GONE_UID = "11111111-2222-3333-4444-555555555555"


def _seed(rows: int = 1) -> None:
    """Targets of every kind, the changes recorded the way their services record them."""
    from devupdate import configuration
    from devupdate.admin import tokens
    from devupdate.admin.console.auth import add_admin
    from devupdate.db import write_transaction
    from devupdate.rules import test_devices
    from devupdate.wsus.catalog.models import Update
    from devupdate.wsus.downstream.models import SyncRun
    from devupdate.wsus.targeting import service as targeting
    from devupdate.wsus.targeting.models import Computer

    test_devices.add("lab-desk", mac="00-04-F2-AA-BB-CC", actor="test:a")
    test_devices.add("front", serial="SN-77", site="Berlin", actor="test:a")
    test_devices.add("gone", mac="0004F2000001", actor="test:a")
    test_devices.remove("gone", actor="test:a")
    configuration.set_value("LogCleanUpInterval", "3", site=None, actor="test:a")
    configuration.set_value("LogCleanUpInterval", "4", site="Berlin", actor="test:a")
    configuration.remove(site="Berlin", actor="test:a")
    add_admin("alice", "correct horse battery", "operator", actor="test:a")
    tokens.create("ci", "admin", actor="test:a")
    tokens.create("old", "operator", actor="test:a")
    tokens.revoke("old", actor="test:a")
    lab = targeting.add_group("Lab", actor="test:a")
    phones = targeting.add_group("Phones", parent=lab["Id"], actor="test:a")
    with write_transaction():
        Update.create(update_id=UID, current_revision=1, update_type="Software", change_seq=1,
                      title="Security Update for Windows", kb_article="5031356")
        computer = Computer.create(computer_id="c-1", dns_name="pc-17.corp.example")
        run = SyncRun.create(upstream="https://up.example:8531", mode="autonomous", trigger="cli")
        for _ in range(rows):
            record("test:a", "user.add", "user:bob", after={"Name": "bob"})
            record("test:a", "wsus.decline", UID, after={"Declined": True})
            record("test:a", "wsus.decline", GONE_UID, after={"Declined": True})
            record("test:a", "wsus.approve", f"{UID} @ Phones", after={"Action": "Install"})
            record("test:a", "wsus.computer.assign", str(computer.id), after={"Groups": ["Phones"]})
            record("test:a", "wsus.sync", "https://up.example:8531", detail={"RunId": run.id})
    assert phones["Id"]


def _names(limit: int = 1000) -> list[tuple[str, str, str]]:
    from devupdate.audit.readable import list_events
    from devupdate.audit.trail import Filter

    return [(e["Action"], e["Target"], e["TargetName"]) for e in reversed(list_events(Filter(), limit=limit))]


def test_every_kind_of_target_by_name(database):
    from devupdate.wsus.targeting.models import TargetGroup

    _seed()
    lab = TargetGroup.get(TargetGroup.name == "Lab").id
    phones = TargetGroup.get(TargetGroup.name == "Phones").id
    computer = _names()[-2][1]
    assert _names() == [
        ("test-device.add", "global/lab-desk", "test device lab-desk (MAC 0004F2AABBCC), global"),
        ("test-device.add", "site:Berlin/front", "test device front (serial SN-77), site Berlin"),
        ("test-device.add", "global/gone", "test device gone (MAC 0004F2000001), global"),
        ("test-device.remove", "global/gone", "test device gone (MAC 0004F2000001), global"),
        ("config.set", "global/LogCleanUpInterval", "global configuration: LogCleanUpInterval"),
        ("config.set", "site:Berlin/LogCleanUpInterval", "site Berlin configuration: LogCleanUpInterval"),
        ("config.remove", "site:Berlin", "site Berlin configuration"),
        ("admin.add", "admin:alice", "admin account alice (operator)"),
        ("token.create", "ci", "token ci (admin)"),
        ("token.create", "old", "token old (operator, revoked)"),
        ("token.revoke", "old", "token old (operator, revoked)"),
        ("wsus.group.add", lab, "group All Computers / Lab"),
        ("wsus.group.add", phones, "group All Computers / Lab / Phones"),
        ("user.add", "user:bob", "external user bob"),
        ("wsus.decline", UID, "Security Update for Windows (KB5031356)"),
        ("wsus.decline", GONE_UID, GONE_UID),  # not in the catalog: the raw id
        ("wsus.approve", f"{UID} @ Phones", "Security Update for Windows (KB5031356) @ All Computers / Lab / Phones"),
        ("wsus.computer.assign", computer, "computer pc-17.corp.example"),
        ("wsus.sync", "https://up.example:8531", "sync run 1 (autonomous, cli) from https://up.example:8531"),
    ]


def test_a_page_asks_once_per_kind_not_per_row(database):
    """Twenty rows of each kind cost the same queries as one row of each."""
    from devupdate import db
    from devupdate.wsus.targeting.models import Computer

    _seed(rows=1)

    def queries() -> int:
        seen: list[str] = []
        real = db.database.obj.execute_sql

        def counting(sql, params=None, *args, **kwargs):
            seen.append(sql)
            return real(sql, params, *args, **kwargs)
        db.database.obj.execute_sql = counting
        try:
            _names()
        finally:
            del db.database.obj.execute_sql
        return len(seen)

    few = queries()
    with db.write_transaction():
        computers = [Computer.create(computer_id=f"c-{n}", dns_name=f"pc-{n}") for n in range(2, 22)]
        for computer in computers:
            record("test:a", "wsus.computer.assign", str(computer.id))
            record("test:a", "wsus.approve", f"{UID} @ Lab")
            record("test:a", "token.revoke", "ci")
            record("test:a", "test-device.set", "global/lab-desk")
    assert queries() == few
    assert _names()[-1] == ("test-device.set", "global/lab-desk", "test device lab-desk (MAC 0004F2AABBCC), global")
    assert _names()[-4] == ("wsus.computer.assign", str(computers[-1].id), "computer pc-21")


def _put_old_log(store, relpath: str, data: bytes, days: int = 30) -> None:
    store.write_named("logs/client", relpath, io.BytesIO(data))
    when = time.time() - days * 86400
    os.utime(store.named_path("logs/client", relpath), (when, when))


def test_log_cleanup_is_audited_from_the_cli_and_the_api(install, live_server):
    rt = install.runtime()
    _put_old_log(rt.store, "Watson/0004F2AABBCC/old.dmp", b"1234567")
    out = install.cli("logs", "cleanup", "--days-back", "7", DEVUPDATE_ACTOR="cli:ops").stdout
    assert out.splitlines()[-1] == "removed 1 file(s), 7 bytes, last written more than 7 day(s) ago"
    assert install.cli("logs", "cleanup", "--days-back", "7").stdout.startswith("removed 0 file(s)")
    trail = json.loads(install.cli("audit", "list", "--json", "--action", "logs.").stdout)
    assert [(e["Actor"], e["Action"], e["Target"], e["TargetName"]) for e in trail] == [
        ("cli:ops", "logs.cleanup", "logs", "device logs and request audit logs")]
    after = trail[0]["After"]
    assert {k: v for k, v in after.items() if k != "Cutoff"} == {
        "DaysBack": 7, "FilesRemoved": 1, "BytesFreed": 7, "Paths": ["Logs/Client/Watson/0004F2AABBCC/old.dmp"],
        "PathsNotListed": 0}
    text = install.cli("audit", "list", "--action", "logs.").stdout.splitlines()
    assert text[0].split() == ["Time", "Actor", "Action", "Target", "Outcome"]
    assert len(text) == 2
    assert text[1].split()[1:] == "cli:ops logs.cleanup device logs and request audit logs ok".split()

    # the service's own cleanup (older than LogCleanUpInterval) leaves this one to the API call
    install.cli("config", "set", "LogCleanUpInterval", "20")
    _put_old_log(rt.store, "DiagLog/SN-X1/old.clg", b"12", days=10)
    server = live_server(workers=1)
    secret = install.cli("tokens", "create", "ops-api", "--role", "admin").stdout.split()[-1]

    def call(method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(server.url + "/api/v1" + path, data=body, method=method, headers={
            "Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    report = json.loads(call("POST", "/logs/cleanup", b'{"DaysBack": 7}'))
    assert (report["FilesRemoved"], report["BytesFreed"]) == (1, 2)
    page = json.loads(call("GET", "/audit?action=logs."))
    assert [(e["Actor"], e["Target"], e["TargetName"], e["After"]["Paths"]) for e in page["Items"]] == [
        ("token:ops-api", "logs", "device logs and request audit logs", ["Logs/Client/DiagLog/SN-X1/old.clg"]),
        ("cli:ops", "logs", "device logs and request audit logs", ["Logs/Client/Watson/0004F2AABBCC/old.dmp"])]
    rows = list(csv.DictReader(io.StringIO(call("GET", "/audit/export?action=token.").decode())))
    assert [(r["Action"], r["Target"], r["TargetName"]) for r in rows] == [
        ("token.create", "ops-api", "token ops-api (admin)")]
