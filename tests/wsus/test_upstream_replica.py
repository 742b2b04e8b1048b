"""Replica deployments and rollups of the upstream role over real HTTP ([wsus] §1b U5, §5.1, W9):
zeep, built from ServerSyncWebService.wsdl and ServerReportingWebService.wsdl, reads GetDeployments
(groups, deployments between two anchors, dead ones, declined updates, accepted EULAs) and sends the
five rollup operations, whose states show in the compliance report marked with the reporting server."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wsus import dsskit
from wsus.catalogkit import BUNDLE, LEAF, SMALL, SYNTHETIC_A, SYNTHETIC_B, docs_dir, seed_catalog
from wsus.wuskit import fault_code, found

zeep = pytest.importorskip("zeep", reason="zeep is a test dependency: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
WSDL = ROOT / "devupdate" / "wsus" / "soap" / "wsdl"
SD = "http://www.microsoft.com/SoftwareDistribution"
ALL_COMPUTERS = "a0a08746-4dbe-4a37-9adf-9e7652c0b421"
ZERO = "00000000-0000-0000-0000-000000000000"
EULA = "0d3a6b2c-1111-4222-8333-944455556666"
DUMMY = {"Expiration": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "EncryptedData": None}


@pytest.fixture
def upstream(install, tmp_path, live_server, database):
    docs_dir()
    seed_catalog(install, tmp_path)
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")


def _sync(server):
    return zeep.Client(str(WSDL / "ServerSyncWebService.wsdl")).create_service(
        f"{{{SD}}}ServerSyncProxySoap", server.url + dsskit.SYNC_PATH)


def _anchor(sync, cookie) -> str:
    return sync.GetRevisionIdList(cookie=cookie, filter={"GetConfig": False, "Get63LanguageOnly": False}).Anchor


def test_get_deployments_mirrors_groups_approvals_declines_and_eulas(upstream, install, database):
    install.cli("wsus", "groups", "add", "Pilot")
    install.cli("wsus", "approve", BUNDLE, "--group", "Pilot", "--action", "install", "--deadline",
                "2026-12-24T18:00:00Z", "--priority", "high")
    install.cli("wsus", "approve", SYNTHETIC_A, "--group", "All Computers", "--action", "optional")
    install.cli("wsus", "updates", "decline", SYNTHETIC_B)
    from devupdate.wsus.targeting.models import EulaAcceptance

    EulaAcceptance.create(eula_id=EULA, accepted_by="test")
    sync = _sync(upstream)
    cookie = dsskit.dss_cookie(upstream)
    cookie = {"Expiration": cookie.expiration, "EncryptedData": cookie.encrypted}
    first_sync = _anchor(sync, cookie)
    result = sync.GetDeployments(cookie=cookie, deploymentAnchor=None, syncAnchor=first_sync)
    assert result.Anchor.split(",")[0] == first_sync.split(",")[0]
    groups = {g.Name: g for g in result.Groups.ServerSyncTargetGroup}
    assert (groups["All Computers"].TargetGroupID, groups["All Computers"].ParentGroupId,
            groups["All Computers"].IsBuiltin) == (ALL_COMPUTERS, ZERO, True)
    assert groups["Pilot"].ParentGroupId == ALL_COMPUTERS and groups["Pilot"].IsBuiltin is False
    assert {"Unassigned Computers", "Test"} <= set(groups)
    deployments = {(d.UpdateId, d.TargetGroupId): d for d in result.Deployments.ServerSyncDeployment}
    bundle = deployments[(BUNDLE, groups["Pilot"].TargetGroupID)]
    assert (bundle.RevisionNumber, bundle.Action, bundle.IsAssigned, bundle.DownloadPriority, bundle.AdminName) == (
        200, 0, True, 3, "test:admin")
    assert bundle.Deadline == datetime(2026, 12, 24, 18, tzinfo=UTC)
    optional = deployments[(SYNTHETIC_A, ALL_COMPUTERS)]
    assert (optional.RevisionNumber, optional.Action, optional.IsAssigned, optional.Deadline.year) == (
        101, 0, False, 9999)  # OptionalInstall: Install, not assigned; no deadline
    assert result.DeadDeployments is None
    assert SYNTHETIC_B in result.HiddenUpdates.guid and result.AcceptedEulas.guid == [EULA]

    install.cli("wsus", "unapprove", BUNDLE, "--group", "Pilot")
    install.cli("wsus", "approve", LEAF, "--group", "Pilot", "--action", "install")
    # not after syncAnchor: a deployment made since the DSS's last metadata run waits for the next one
    held = sync.GetDeployments(cookie=cookie, deploymentAnchor=result.Anchor, syncAnchor=first_sync)
    assert held.Deployments is None and held.DeadDeployments is None
    later = sync.GetDeployments(cookie=cookie, deploymentAnchor=result.Anchor, syncAnchor=_anchor(sync, cookie))
    assert [(d.UpdateId, d.RevisionNumber) for d in later.Deployments.ServerSyncDeployment] == [(LEAF, 200)]
    assert later.DeadDeployments.guid == [bundle.DeploymentGuid]
    assert {g.Name for g in later.Groups.ServerSyncTargetGroup} == set(groups)  # the whole tree every time

    for bad in ({"deploymentAnchor": None, "syncAnchor": None}, {"deploymentAnchor": "x", "syncAnchor": first_sync}):
        response = dsskit.call(upstream, "GetDeployments", dsskit.Cookie(cookie["Expiration"], cookie["EncryptedData"])
                               .xml() + "".join(f"<{k}>{v}</{k}>" for k, v in bad.items() if v))
        assert fault_code(response) == "InvalidParameters"
        assert found(response, "Message") == ("syncAnchor" if bad["syncAnchor"] is None else "deploymentAnchor")


def test_an_approval_left_out_while_its_update_was_deleted_comes_with_the_restore(upstream, install):
    install.cli("wsus", "approve", LEAF, "--group", "All Computers", "--action", "install")
    install.cli("wsus", "updates", "delete", LEAF)
    sync = _sync(upstream)
    cookie = dsskit.dss_cookie(upstream)
    cookie = {"Expiration": cookie.expiration, "EncryptedData": cookie.encrypted}
    first = sync.GetDeployments(cookie=cookie, deploymentAnchor=None, syncAnchor=_anchor(sync, cookie))
    assert LEAF not in [d.UpdateId for d in (first.Deployments.ServerSyncDeployment if first.Deployments else [])]
    install.cli("wsus", "updates", "restore", LEAF)
    later = sync.GetDeployments(cookie=cookie, deploymentAnchor=first.Anchor, syncAnchor=_anchor(sync, cookie))
    assert [(d.UpdateId, d.RevisionNumber, d.TargetGroupId) for d in later.Deployments.ServerSyncDeployment] == [
        (LEAF, 200, ALL_COMPUTERS)]
    again = sync.GetDeployments(cookie=cookie, deploymentAnchor=later.Anchor, syncAnchor=_anchor(sync, cookie))
    assert again.Deployments is None


def _reporting(server):
    return zeep.Client(str(WSDL / "ServerReportingWebService.wsdl")).create_service(
        f"{{{SD}}}WebServiceSoap", server.url + "/ReportingWebService/ReportingWebService.asmx")


def test_rollups_feed_the_compliance_report_marked_with_the_reporting_server(upstream, install):
    dsskit.dss_cookie(upstream)  # the downstream authorized once: the report shows its name
    reporting = _reporting(upstream)
    config = reporting.GetRollupConfiguration(cookie=DUMMY)
    assert config.DoDetailedRollup is True
    assert (config.RollupDownstreamServersMaxBatchSize, config.RollupComputersMaxBatchSize,
            config.GetOutOfSyncComputersMaxBatchSize, config.RollupComputerStatusMaxBatchSize) == (
        5000, 1500, 20000, 500)
    now = datetime.now(UTC).replace(microsecond=0)
    late = now - timedelta(minutes=10)  # the downstream's clock is 10 minutes behind
    reporting.RollupDownstreamServers(cookie=DUMMY, clientTime=late, downstreamServers={"DownstreamServerRollupInfo": [{
        "ServerId": dsskit.ACCOUNT, "FullDomainName": "branch.example.invalid", "LastSyncTime": late,
        "ParentServerId": config.ServerId, "Version": "devupdate", "IsReplica": True, "LastRollupTime": late}]})
    from devupdate.wsus.upstream.models import RolledUpServer

    row = RolledUpServer.get_by_id(dsskit.ACCOUNT)
    assert abs(row.last_sync_time - now.replace(tzinfo=None)) < timedelta(seconds=30)  # corrected by clientTime
    computer = {"ComputerId": "pc-b1", "LastSyncTime": late, "LastSyncResult": 0, "LastReportedRebootTime": late,
                "LastReportedStatusTime": late, "LastInventoryTime": late, "ParentServerId": dsskit.ACCOUNT,
                "Details": {"FullDomainName": "pc-b1.branch.example.invalid", "OSMajorVersion": 10,
                            "OSMinorVersion": 0, "OSBuildNumber": 26200, "OSServicePackMajorNumber": 0,
                            "OSServicePackMinorNumber": 0, "BiosReleaseDate": late, "SuiteMask": 256,
                            "OldProductType": 1, "NewProductType": 48, "SystemMetrics": 0}}
    assert not reporting.RollupComputers(cookie=DUMMY, clientTime=late, computers={"ComputerRollupInfo": [computer]})
    numbers = {"ComputerLastRollupNumber": [{"ComputerId": "pc-b1", "RollupNumber": 3}]}
    assert reporting.GetOutOfSyncComputers(cookie=DUMMY, parentServerId=dsskit.ACCOUNT,
                                           lastRollupNumbers=numbers) == ["pc-b1"]
    statuses = [{"UpdateId": BUNDLE, "SummarizationState": 2, "LastChangeTime": late},
                {"UpdateId": LEAF, "SummarizationState": 4, "LastChangeTime": late},
                {"UpdateId": SMALL, "SummarizationState": 5, "LastChangeTime": late}]
    assert reporting.RollupComputerStatus(cookie=DUMMY, clientTime=late, parentServerId=dsskit.ACCOUNT, computers={
        "ComputerStatusRollupInfo": [{"InstanceId": str(uuid.uuid4()), "ComputerId": "pc-b1",
                                      "EffectiveLastDetectionTime": late, "RollupNumber": 3, "IsFullRollup": True,
                                      "UpdateStatus": {"ComputerStatusRollupUpdateStatus": statuses}}]}) is True
    assert not reporting.GetOutOfSyncComputers(cookie=DUMMY, parentServerId=dsskit.ACCOUNT, lastRollupNumbers=numbers)
    computers = json.loads(install.cli("wsus", "report", "computers", "--json").stdout)
    (pc,) = [c for c in computers if c["ComputerId"] == "pc-b1"]
    assert (pc["Needed"], pc["Installed"], pc["Failed"], pc["ReportedBy"]) == (
        1, 1, 1, f"{dsskit.ACCOUNT_NAME} ({dsskit.ACCOUNT})")
    updates = {u["UpdateID"]: u for u in json.loads(install.cli("wsus", "report", "updates", "--json").stdout)}
    assert (updates[BUNDLE]["Needed"], updates[LEAF]["Installed"], updates[SMALL]["Failed"]) == (1, 1, 1)
    # a later full rollup that no longer names SMALL drops its state
    # installed, pending reboot: a state changed after the one held (whose time the clock correction moved to
    # when the first rollup arrived)
    statuses[1].update(SummarizationState=6, LastChangeTime=datetime.now(UTC) + timedelta(seconds=1))
    assert reporting.RollupComputerStatus(cookie=DUMMY, clientTime=now, parentServerId=dsskit.ACCOUNT, computers={
        "ComputerStatusRollupInfo": [{"InstanceId": str(uuid.uuid4()), "ComputerId": "pc-b1",
                                      "EffectiveLastDetectionTime": now, "RollupNumber": 4, "IsFullRollup": True,
                                      "UpdateStatus": {"ComputerStatusRollupUpdateStatus": statuses[:2]}}]}) is True
    (pc,) = [c for c in json.loads(install.cli("wsus", "report", "computers", "--json").stdout)
             if c["ComputerId"] == "pc-b1"]
    assert (pc["Needed"], pc["Installed"], pc["PendingReboot"], pc["Failed"]) == (1, 1, 1, 0)


def test_rollup_refusals(upstream):
    forged = "<cookie><Expiration>2030-01-01T00:00:00Z</Expiration><EncryptedData>AAAA</EncryptedData></cookie>"

    def post(operation: str, inner: str):
        import requests
        from wsus.wuskit import envelope

        return requests.post(upstream.url + "/ReportingWebService/ReportingWebService.asmx", timeout=30,
                             data=envelope(f'<{operation} xmlns="{SD}">{inner}</{operation}>'),
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SD}/{operation}"'})

    assert fault_code(post("GetRollupConfiguration", forged)) == "InvalidCookie"
    many = "".join(f"<ComputerStatusRollupInfo><InstanceId>{uuid.uuid4()}</InstanceId><ComputerId>c{n}</ComputerId>"
                   "<EffectiveLastDetectionTime>2026-12-01T00:00:00Z</EffectiveLastDetectionTime><RollupNumber>1"
                   "</RollupNumber><IsFullRollup>true</IsFullRollup></ComputerStatusRollupInfo>" for n in range(501))
    head = f"<clientTime>2026-12-01T00:00:00Z</clientTime><parentServerId>{dsskit.ACCOUNT}</parentServerId>"
    response = post("RollupComputerStatus", head + f"<computers>{many}</computers>")
    assert (fault_code(response), found(response, "Message")) == ("InvalidParameters", "computers")
    bad_state = (f"<computers><ComputerStatusRollupInfo><InstanceId>{uuid.uuid4()}</InstanceId><ComputerId>c1"
                 "</ComputerId><RollupNumber>1</RollupNumber><IsFullRollup>true</IsFullRollup><UpdateStatus>"
                 f"<ComputerStatusRollupUpdateStatus><UpdateId>{BUNDLE}</UpdateId><SummarizationState>9"
                 "</SummarizationState><LastChangeTime>2026-12-01T00:00:00Z</LastChangeTime>"
                 "</ComputerStatusRollupUpdateStatus></UpdateStatus></ComputerStatusRollupInfo></computers>")
    response = post("RollupComputerStatus", head + bad_state)
    assert (fault_code(response), found(response, "Message")) == (
        "InvalidParameters", "computers.ComputerStatusRollupInfo.UpdateStatus.SummarizationState")


def test_download_files_fetches_a_missing_file_from_its_origin(install, tmp_path, live_server, database):
    """U6: a file the catalog knows but does not hold is fetched from its MUUrl, verified and stored;
    /Content then serves it."""
    import base64
    import hashlib
    import http.server
    import threading
    import time

    import requests
    from wsus.catalogkit import NS

    payload = bytes(range(256)) * 4096  # 1 MiB
    sha1, sha256 = hashlib.sha1(payload).digest(), hashlib.sha256(payload).digest()
    update_id = "cccccccc-0000-4000-8000-000000000003"
    document = (f'<upd:Update {NS}><upd:UpdateIdentity UpdateID="{update_id}" RevisionNumber="100" />'
                '<upd:Properties UpdateType="Software" DefaultPropertiesLanguage="en" PublicationState="Published" />'
                '<upd:LocalizedPropertiesCollection><upd:LocalizedProperties><upd:Language>en</upd:Language>'
                '<upd:Title>With a file</upd:Title></upd:LocalizedProperties></upd:LocalizedPropertiesCollection>'
                f'<upd:Files><upd:File Digest="{base64.b64encode(sha1).decode()}" DigestAlgorithm="SHA1" '
                f'FileName="payload.cab" Size="{len(payload)}" Modified="2026-01-01T00:00:00Z">'
                f'<upd:AdditionalDigest Algorithm="SHA256">{base64.b64encode(sha256).decode()}</upd:AdditionalDigest>'
                '</upd:File></upd:Files></upd:Update>')
    folder = tmp_path / "withfile"
    folder.mkdir()
    (folder / "u.xml").write_text(document)
    install.cli("wsus", "import", str(folder))
    asked: list[str] = []

    class Origin(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server hook
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        from devupdate.wsus.catalog.models import CatalogFile

        CatalogFile.update(mu_url=f"http://127.0.0.1:{origin.server_port}/msdownload/payload.cab").where(
            CatalogFile.sha1 == sha1.hex()).execute()
        server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
        content = f"{server.url}/Content/{sha1.hex()[-2:].upper()}/{sha1.hex().upper()}.cab"
        assert requests.get(content, timeout=10).status_code == 404
        cookie = dsskit.dss_cookie(server)
        response = dsskit.call(server, "DownloadFiles", cookie.xml() + "<fileDigestList><base64Binary>"
                               f"{base64.b64encode(sha1).decode()}</base64Binary></fileDigestList>")
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 60
        while (answer := requests.get(content, timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.2)
        assert answer.content == payload and asked == ["/msdownload/payload.cab"]
    finally:
        origin.shutdown()
