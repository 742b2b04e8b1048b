"""devupdate as the downstream server of a recorded real WSUS (spec/wsus.md §5.3, §8.4): a loopback
fake upstream answers with the captured ``wsus-m0-wsusss/exchanges/`` responses, and the sync ends
with the four real documents, decoded from plain and LZX-compressed blobs, character for character.

Three of the documents name revisions the recording does not hold (detectoids, the Defender product,
bundle members): they are stored but held out of the catalog (D4) until what they name is present,
then released by the next run — which fetches nothing again."""

from __future__ import annotations

import json

import pytest
from catalogkit import BUNDLE, COMPANY, LEAF, SMALL, category, docs_dir, software
from fakeupstream import FakeUpstream, document_path

from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.catalog.models import Revision, Update
from devupdate.wsus.downstream import service
from devupdate.wsus.downstream.apply import names
from devupdate.wsus.downstream.models import HeldRevision, SyncRun, UpstreamState

SOFTWARE = [(BUNDLE, 200), (LEAF, 200), (SMALL, 200)]


@pytest.fixture
def fake():
    docs_dir()
    upstream = FakeUpstream(updates=list(SOFTWARE)).start()
    yield upstream
    upstream.stop()


def _text(update_id: str) -> str:
    return document_path(update_id).read_text("utf-8")


def _held_text(update_id: str) -> str:
    import zlib

    row = HeldRevision.get(HeldRevision.update_id == update_id)
    return zlib.decompress(bytes(row.document)).decode("utf-8")


def _stubs() -> list[str]:
    """Minimal documents for every revision the three software documents name (they are not recorded)."""
    out: dict[tuple[str, int], str] = {}
    for update_id, _n in SOFTWARE:
        prerequisites, members = names(parse_update(_text(update_id)))
        for uid in prerequisites:
            out.setdefault((uid, 1), category(uid, f"stub {uid[:8]}", "Product", revision=1))
        for uid, number in members:
            if uid not in {u for u, _ in SOFTWARE}:
                out.setdefault((uid, number), software(uid, number, title=f"member {uid[:8]}"))
    return list(out.values())


def test_sync_from_the_recorded_wsus_stores_the_four_real_documents(rt, fake, tmp_path):
    done = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)

    # the handshake and phases went as a Windows DSS's do, each answered with the recorded bytes
    ops = fake.operations()
    assert ops[:4] == ["GetAuthConfig", "GetAuthorizationCookie", "GetCookie", "GetRollupConfiguration"]
    assert ops[4:7] == ["GetConfigData", "GetRevisionIdList", "GetUpdateData"]
    assert ops.count("GetRevisionIdList") == 2
    # the category: in the catalog, from its LZX cabinet, exactly the captured document
    rid = Revision.get(Revision.update_id == COMPANY, Revision.revision_number == 101).id
    assert store.document_text(rid) == _text(COMPANY)
    # the software documents are stored, but held: each names revisions the recording does not hold
    for update_id, _n in SOFTWARE:
        assert _held_text(update_id) == _text(update_id)
        assert not Update.select().where(Update.update_id == update_id).exists()
    assert done["NewRevisions"] == 1 and done["HeldRevisions"] == 3
    assert done["CompressedBlobs"] == 3  # 000013, 000014, 000016 are cabinets; 000015 is plain
    # the other 29 captured category identities are not recorded: real WSUS faults the whole batch
    # (000017), so the run split the batches down to each of them
    assert done["FailedRevisions"] == 29
    assert {f["Reason"] for f in done["Failures"]} == {"InternalServerError from GetUpdateData"}
    state = UpstreamState.get_by_id(fake.url)
    assert state.config_anchor == "9438,2026-10-04 16:33:26.670"
    assert state.sync_anchor == "9438,2026-10-04 16:33:26.671"  # the categories list's, the earlier
    assert json.loads(state.config)["LazySync"] is True
    assert done["Anchors"]["SyncAnchor"] == state.sync_anchor

    # what they name arrives (here: imported locally); the next run releases them, fetching nothing
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for index, text in enumerate(_stubs()):
        (stubs / f"{index}.xml").write_text(text, "utf-8")
    from devupdate.wsus.catalog.service import import_paths

    import_paths([stubs], actor="test")
    failed = sorted((f["UpdateID"], int(f["RevisionNumber"])) for f in done["Failures"])
    assert sorted((uid, n) for uid, n, runs in json.loads(state.retry) if runs == 1) == failed
    again = service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
    # the 29 that failed are asked for again (and fail again: kept for the next run); nothing else is fetched
    assert sorted((f["UpdateID"], int(f["RevisionNumber"])) for f in again["Failures"]) == failed
    assert again["RetryRevisions"] == 29
    assert again["NewRevisions"] == 3 and again["ReleasedRevisions"] == 3 and again["HeldRevisions"] == 0
    for update_id, number in [*SOFTWARE, (COMPANY, 101)]:
        rid = Revision.get(Revision.update_id == update_id, Revision.revision_number == number).id
        assert store.document_text(rid) == _text(update_id)
        assert Update.get_by_id(update_id).current_revision == rid
    assert HeldRevision.select().count() == 0
    # the second run sent the stored anchors: incremental, nothing new listed
    lists = [r for r in fake.requests if r["operation"] == "GetRevisionIdList"]
    assert len(lists) == 4
    assert [r.outcome for r in SyncRun.select().order_by(SyncRun.id)] == ["ok", "ok"]


def test_cli_json_summary_and_status(install, fake):
    install.runtime()
    proc = install.cli("wsus", "sync", "--upstream", fake.url, "--json")
    done = json.loads(proc.stdout)
    for key in ("NewRevisions", "UpdatedRevisions", "UnchangedRevisions", "Files", "DeploymentsApplied",
                "DurationSeconds", "Anchors"):
        assert key in done, key
    assert set(done["Files"]) >= {"Fetched", "Bytes", "Resumed", "Corrupt"}
    assert done["Outcome"] == "ok" and done["NewRevisions"] == 1
    status = json.loads(install.cli("wsus", "sync", "status", "--json").stdout)
    assert status["Runs"][0]["Outcome"] == "ok"
    assert status["Upstreams"][0]["SyncAnchor"] == "9438,2026-10-04 16:33:26.671"
    assert status["HeldRevisions"] == 3
    text = install.cli("wsus", "sync", "status").stdout
    assert fake.url in text and "ok" in text


def test_no_upstream_is_one_line_naming_the_fix(install):
    install.runtime()
    proc = install.cli("wsus", "sync", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "devupdate: error: no upstream server: give --upstream URL or set DEVUPDATE_WSUS_UPSTREAM_URL "
        "(e.g. https://wsus.example.org:8531)"]


def test_console_sync_page_shows_the_history(install, fake, live_server):
    from admin import consolekit as kit

    kit.setup_install(install)
    kit.add_admin(install, "olga", "operator")
    install.cli("wsus", "sync", "--upstream", fake.url)
    install.cli("wsus", "needed", "add", BUNDLE, "--source", "mdm")
    server = live_server(workers=1)
    olga = kit.Browserless(server)
    assert olga.sign_in("olga").status_code == 303
    shown = olga.get("/sync")
    assert shown.status_code == 200 and "WSUS sync" in shown.text
    assert 'aria-current="page"' in shown.text.split('href="/console/sync"', 1)[1][:40]
    assert fake.url in shown.text and "9438,2026-10-04 16:33:26.671" in shown.text
    run = shown.text.split('id="run-1"', 1)[1].split("</tr>", 1)[0]
    assert "<strong>ok</strong>" in run and "1 / 0 / 0" in run and "(29 failed)" in run
    assert "3 revision(s) held" in shown.text
    assert BUNDLE in shown.text.split('id="needed"', 1)[1]
