"""Two devupdate installations on loopback, A upstream of B, separate databases and filestores, real
HTTP (spec/wsus.md §5.1, §5.3 step 7, §8.4): computers reporting to B appear in A's compliance report
marked with B (the rollup phase of B's sync), and a second run sends nothing again; the fault rules
that ``test_dss_faults.py`` and ``test_dss_content.py`` prove against the fake upstream, against a
real A: rotating A's cookie key sends B through ``ServerChanged`` without losing anything;
``ServerBusy`` from A's admission control makes B back off, then complete; ``kill -9`` of a B
mid-run keeps its anchors consistent and a restart completes the catalog.

B is this test's installation (PostgreSQL when the suite runs on it), A a second one on SQLite
serving with ``devupdate serve``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from helpers.installation import Installation, LiveServer
from wsus import dsskit
from wsus.catalogkit import category, software
from wsus.reportkit import PATH as REPORTING_PATH
from wsus.reportkit import SD, batch, event
from wsus.wuskit import fault_code, mint_cookie

from devupdate.wsus.catalog.models import Revision
from devupdate.wsus.downstream import service
from devupdate.wsus.downstream.models import SyncRun, UpstreamState

PC1 = "0b5e2d9a-1111-4c2c-a42b-000000000001"
PC2 = "0b5e2d9a-2222-4c2c-a42b-000000000002"
KB = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"
OTHER = "0daf8592-9e3f-4a8a-9141-d83fafebd09f"
THIRD = "266f6222-c89d-43f2-9f8a-69340271e677"


PRODUCT = "11111111-2222-4333-8444-555555555555"
CLASSIFICATION = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"


def _documents(count: int) -> dict[str, str]:
    """A synthetic catalog: a product and a classification; a prerequisite chain, a bundle and its
    member, one update in two revisions, one superseding another; then ``count`` plain updates."""
    cats = (PRODUCT, CLASSIFICATION)
    chain = [f"dddddddd-0000-4000-8000-00000000000{n}" for n in range(1, 8)]
    docs = {"product": category(PRODUCT, "A product", "Product", revision=1),
            "classification": category(CLASSIFICATION, "Updates", "UpdateClassification", revision=1),
            "prereq": software(chain[0], 3, title="prerequisite", categories=cats),
            "needs": software(chain[1], 1, title="needs the prerequisite", prerequisites=(chain[0],), categories=cats),
            "member": software(chain[2], 2, title="member"),
            "bundle": software(chain[3], 5, title="bundle", categories=cats, bundles=((chain[2], 2),)),
            "two-1": software(chain[4], 1, title="two revisions", categories=cats),
            "two-2": software(chain[4], 2, title="two revisions", categories=cats),
            "old": software(chain[5], 1, title="superseded", categories=cats),
            "new": software(chain[6], 1, title="supersedes", categories=cats, supersedes=(chain[5],))}
    for n in range(count):
        docs[f"plain-{n}"] = software(f"cccccccc-0000-4000-8000-{n:012d}", 1, title=f"Synthetic {n}", categories=cats)
    return docs


def _start_a(tmp_path, *, catalog: int | None = 0, **env: str) -> LiveServer:
    """A: its own home and SQLite database, the synthetic catalog (unless ``catalog`` is None), serving."""
    home = tmp_path / "a"
    home.mkdir()
    a = Installation(home, "")
    a.cli("db", "upgrade")
    if catalog is not None:
        folder = tmp_path / "catalog"
        folder.mkdir()
        for name, text in _documents(catalog).items():
            (folder / f"{name}.xml").write_text(text)
        a.cli("wsus", "import", str(folder))
    return LiveServer(a, workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", **env).start()


def _b_catalog() -> set[tuple[str, int]]:
    """B's current revisions of every software update (what ``wsus updates list`` shows on A)."""
    from devupdate.wsus.catalog.models import Update

    return {(uid, number) for uid, number in Update.select(Update.update_id, Revision.revision_number).join(
        Revision, on=(Revision.id == Update.current_revision)).where(Update.update_type == "Software").tuples()}


@pytest.fixture
def servers():
    started: list[LiveServer] = []
    yield started
    for server in started:
        server.stop()


def _json(installation: Installation, *args: str, **env: str) -> dict | list:
    return json.loads(installation.cli(*args, "--json", **env).stdout)


def _catalog(installation: Installation) -> set[tuple[str, int]]:
    rows = _json(installation, "wsus", "updates", "list")
    return {(row["UpdateID"], row["RevisionNumber"]) for row in rows}


def _report(installation: Installation) -> dict[str, dict]:
    return {row["ComputerId"]: row for row in _json(installation, "wsus", "report", "computers")}


def _report_events(server: LiveServer, computer: str, *events_xml: str) -> None:
    cookie = mint_cookie(server, computer, dns_name=f"{computer[-4:]}.branch.example.invalid")
    response = requests.post(server.url + REPORTING_PATH, data=batch(*events_xml, cookie=cookie.xml()), timeout=30,
                             headers={"Content-Type": "text/xml; charset=utf-8",
                                      "SOAPAction": f'"{SD}/ReportEventBatch"'})
    assert response.status_code == 200, response.text


# -- hierarchy reporting ---------------------------------------------------------------------------------

def test_computers_reporting_to_b_appear_in_as_report_marked_with_b(install, live_server, tmp_path, servers):
    a = _start_a(tmp_path, catalog=None)
    servers.append(a)
    b = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    _report_events(b, PC1, event(183, update=KB, target=PC1), event(182, update=OTHER, target=PC1, hresult=-5))
    _report_events(b, PC2, event(183, update=KB, target=PC2))
    rt = install.runtime()
    from devupdate.wsus.client import keys
    from devupdate.wsus.compliance import reports

    mine = {row["ComputerId"]: row for row in reports.computers()}
    assert (mine[PC1]["Installed"], mine[PC1]["Failed"], mine[PC2]["Installed"]) == (1, 1, 1)

    b_id, b_name = keys.server_id(), install.settings().effective_server_name

    done = _json(install, "wsus", "sync", "--upstream", a.url)
    assert done["Outcome"] == "ok", done
    assert done["Rollup"] == {"Servers": 1, "Computers": 2, "StatusesSent": 2, "NewParent": 0}
    report = _report(a.install)
    assert set(report) == {PC1, PC2}
    marked = f"{b_name} ({b_id})"
    assert [(report[pc]["Installed"], report[pc]["Failed"], report[pc]["ReportedBy"]) for pc in (PC1, PC2)] == [
        (1, 1, marked), (1, 0, marked)]
    # A's own report of its own clients is untouched: both computers are B's
    assert all(row["ReportedBy"] for row in report.values())
    # idempotent: nothing changed on B, so no status goes up again and A's report stays as it was
    again = _sync(rt, a.url)
    assert again["Rollup"] == {"Servers": 1, "Computers": 0, "StatusesSent": 0, "NewParent": 0}
    assert "RollupComputers" not in again["Operations"] and "RollupComputerStatus" not in again["Operations"]
    assert _report(a.install) == report
    # a change on B goes up on the next run: exactly that computer's status
    _report_events(b, PC2, event(182, update=THIRD, target=PC2, hresult=-7, time="2026-10-04T16:00:00Z"))
    third = _sync(rt, a.url)
    assert third["Rollup"]["StatusesSent"] == 1 and third["Operations"]["RollupComputerStatus"] == 1
    assert third["Rollup"]["Computers"] == 1
    after = _report(a.install)
    assert (after[PC2]["Installed"], after[PC2]["Failed"], after[PC2]["ReportedBy"]) == (1, 1, marked)
    assert after[PC1] == report[PC1]


def test_a_chain_c_b_a_carries_cs_computers_to_a_marked_with_c(install, live_server, tmp_path, servers):
    a = _start_a(tmp_path, catalog=None)
    servers.append(a)
    b = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    home = tmp_path / "c"
    home.mkdir()
    c = Installation(home, "")
    c.cli("db", "upgrade")
    c_server = LiveServer(c, workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true").start()
    servers.append(c_server)
    _report_events(c_server, PC1, event(183, update=KB, target=PC1))
    _report_events(b, PC2, event(182, update=OTHER, target=PC2, hresult=-5))
    up = _json(c, "wsus", "sync", "--upstream", b.url)
    assert up["Rollup"] == {"Servers": 1, "Computers": 1, "StatusesSent": 1, "NewParent": 0}, up
    rt = install.runtime()
    from devupdate.wsus.client import keys
    from devupdate.wsus.upstream.models import RolledUpServer

    (c_row,) = RolledUpServer.select()
    b_id, b_name = keys.server_id(), install.settings().effective_server_name
    assert c_row.server_id != b_id and c_row.full_domain_name == c.settings().effective_server_name
    done = _sync(rt, a.url)
    # B reports itself, then C below it; its own computer and C's
    assert done["Rollup"] == {"Servers": 2, "Computers": 2, "StatusesSent": 2, "NewParent": 0}, done
    report = _report(a.install)
    assert (report[PC1]["Installed"], report[PC1]["ReportedBy"]) == (1, f"{c_row.full_domain_name} ({c_row.server_id})")
    assert (report[PC2]["Failed"], report[PC2]["ReportedBy"]) == (1, f"{b_name} ({b_id})")
    again = _sync(rt, a.url)
    assert again["Rollup"]["StatusesSent"] == 0


# -- §8.4 against a real A ----------------------------------------------------------------------------

def _sync(rt, upstream: str, sleeps: list[float] | None = None, on_sleep=None):
    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        if on_sleep is not None:
            on_sleep()
        time.sleep(0.05)

    return service.sync(rt.settings, rt.store, upstream=upstream, sleep=sleep)


def _poll(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_rotating_as_cookie_key_sends_b_through_server_changed_without_losing_data(rt, tmp_path, servers):
    a = _start_a(tmp_path)
    servers.append(a)
    first = _sync(rt, a.url)
    assert first["ServerChanged"] == 0 and first["NewRevisions"] > 0
    stored = UpstreamState.get_by_id(a.url)
    before = {(r.update_id, r.revision_number): r.id for r in Revision.select()}
    assert _b_catalog() == _catalog(a.install) and first["HeldRevisions"] == 0
    a.install.cli("wsus", "rotate-cookie-key")
    # past the retired key's lifetime: its retirement moved back by more than the DSS cookie's 240 min
    database = a.install.settings().database_path
    with sqlite3.connect(database) as connection:
        moved = connection.execute("UPDATE wsus_cookie_key SET retired = ? WHERE retired IS NOT NULL", (
            (datetime.now(UTC) - timedelta(minutes=241)).replace(tzinfo=None).isoformat(" "),)).rowcount
    assert moved == 1
    cookie = dsskit.Cookie(stored.cookie_expiration, stored.cookie_data)
    # A's workers see the ring change within seconds: then B's stored cookie is another key's
    _poll(lambda: fault_code(dsskit.call(a, "GetConfigData", cookie.xml())) == "ServerChanged",
          "A to answer ServerChanged for the cookie sealed with the retired key")
    again = _sync(rt, a.url)
    assert again["ServerChanged"] == 1
    assert again["Operations"]["GetAuthConfig"] == 1 and again["Operations"]["GetCookie"] == 1
    # the anchors were cleared: everything listed again, nothing fetched, nothing lost, the same RevisionIDs
    assert again["NewRevisions"] == 0 and again["UpdatedRevisions"] == 0 and again["UnchangedRevisions"] == len(before)
    assert "GetUpdateData" not in again["Operations"]
    assert {(r.update_id, r.revision_number): r.id for r in Revision.select()} == before
    state = UpstreamState.get_by_id(a.url)
    assert state.sync_anchor is not None and state.cookie_data != stored.cookie_data
    assert again["Anchors"]["SyncAnchor"] == state.sync_anchor


class Hammer:
    """Threads keeping A's one heavy slot busy with whole-catalog GetRevisionIdList calls of another
    downstream server, so a request of B meets admission control (ServerBusy) while they run."""

    ACCOUNT = "5e0c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4"

    def __init__(self, server: LiveServer, threads: int = 4):
        self.server, self.stop_event = server, threading.Event()
        self.saturated = threading.Event()  # a call of the hammer itself was turned away: the slot is full
        self.cookie = dsskit.dss_cookie(server, self.ACCOUNT)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        inner = self.cookie.xml() + "<filter><GetConfig>false</GetConfig></filter>"
        while not self.stop_event.is_set():
            try:
                answer = dsskit.call(self.server, "GetRevisionIdList", inner)
            except requests.RequestException:
                continue
            if "ServerBusy" in answer.text:
                self.saturated.set()

    def start(self, *, until_full: bool = True) -> Hammer:
        """Started; with ``until_full``, returned once A turns the hammer's own calls away (on a slow
        machine the threads take a while to fill the slot)."""
        for thread in self.threads:
            thread.start()
        assert not until_full or self.saturated.wait(60), "the hammer never filled A's heavy slot"
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join(15)


TINY = {"DEVUPDATE_WSUS_HEAVY_IN_FLIGHT": "1", "DEVUPDATE_WSUS_HEAVY_QUEUE": "0"}


def test_server_busy_from_a_makes_b_back_off_then_complete(rt, tmp_path, servers):
    a = _start_a(tmp_path, **TINY)
    servers.append(a)
    hammer = Hammer(a, threads=8).start()
    try:
        # the hammer fills A's slot but leaves gaps between its calls: a run of B that slipped through
        # every gap met no ServerBusy and proves nothing, so B runs again (nothing new to fetch) until one did
        for _ in range(5):
            sleeps: list[float] = []
            done = _sync(rt, a.url, sleeps, on_sleep=hammer.stop_event.set)  # the first back-off lets A breathe
            if done["ServerBusy"]:
                break
    finally:
        hammer.stop()
    assert done["ServerBusy"] >= 1 and done["Retries"] == len(sleeps) >= 1, done
    # full jitter under 30 s · 2^(n-1) per step
    assert all(0 <= wait <= 30 * 2 ** n for n, wait in enumerate(sleeps))
    assert done["FailedRevisions"] == 0 and done["HeldRevisions"] == 0
    assert _b_catalog() == _catalog(a.install)
    assert UpstreamState.get_by_id(a.url).sync_anchor == done["Anchors"]["SyncAnchor"] is not None


def test_kill_9_of_b_mid_run_keeps_anchors_consistent_and_a_restart_completes(install, tmp_path, servers):
    # five updates per GetUpdateData: B takes sixty calls to store them, time enough to meet the hammer
    a = _start_a(tmp_path, catalog=300, DEVUPDATE_WSUS_MAX_UPDATES_PER_REQUEST="5", **TINY)
    servers.append(a)
    expected = _catalog(a.install)
    rt = install.runtime()
    before = Revision.select().count()
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "wsus", "sync", "--upstream", a.url, "--json"],
                            env=install.environ(DEVUPDATE_WSUS_SYNC_RETRY_BASE="600"), cwd=install.home.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hammer = Hammer(a, threads=8)
    backing_off = threading.Event()

    def watch() -> None:
        for line in proc.stderr:
            if " of 8 in " in line:
                backing_off.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        # B is storing the updates (more than the categories are in): A gets busy, B backs off for minutes
        _poll(lambda: proc.poll() is not None or Revision.select().count() > before + 20, "B to store updates")
        assert proc.poll() is None, "B finished before it could be stopped mid-run"
        hammer.start(until_full=False)  # B backing off is the sign that counts here
        _poll(lambda: backing_off.is_set() or proc.poll() is not None, "B to back off")
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        hammer.stop()
        if proc.poll() is None:
            proc.kill()
    # killed mid-run: the config phase committed its anchor, the updates phase did not; the row says running
    state = UpstreamState.get_by_id(a.url)
    assert state.config_anchor is not None and state.sync_anchor is None
    partial = {(r.update_id, r.revision_number) for r in Revision.select()}
    assert 0 < len(partial & expected) < len(expected)
    assert SyncRun.get().outcome == "running"
    # the restart: the dead run marked interrupted, the rest fetched, the catalog complete and A's
    done = service.sync(rt.settings, rt.store, upstream=a.url, sleep=lambda _s: None)
    assert [r.outcome for r in SyncRun.select().order_by(SyncRun.id)] == ["interrupted", "ok"]
    assert done["NewRevisions"] == len(expected - partial) and done["FailedRevisions"] == 0
    assert done["UnchangedRevisions"] >= len(partial & expected)
    assert _b_catalog() == expected
    state = UpstreamState.get_by_id(a.url)
    assert state.sync_anchor is not None and done["Anchors"]["SyncAnchor"] == state.sync_anchor
    # and a run after it transfers nothing
    again = service.sync(rt.settings, rt.store, upstream=a.url, sleep=lambda _s: None)
    assert again["NewRevisions"] == 0 and "GetUpdateData" not in again["Operations"]
