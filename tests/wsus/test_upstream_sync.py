"""The upstream role over real HTTP against ``devupdate serve`` ([wsus] §1b, §5.1, §5.2, §8.1, §8.2):
zeep built from ServerSyncWebService.wsdl and DssAuthWebService.wsdl drives the DSS sequence and
deserializes every answer; every captured ``wsus-m0-wsusss/exchanges/`` request, replayed unchanged
but for this server's cookie and anchors, gets an answer structurally equal to the recorded one."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
from helpers.xmlshape import differences
from wsus import dsskit
from wsus.catalogkit import (
    BUNDLE,
    COMPANY,
    DEFENDER,
    DEFINITIONS,
    LEAF,
    SMALL,
    SYNTHETIC_A,
    docs_dir,
    seed_catalog,
)
from wsus.wuskit import fault_code, found

zeep = pytest.importorskip("zeep", reason="zeep is a test dependency: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
WSDL = ROOT / "devupdate" / "wsus" / "soap" / "wsdl"
SD = "http://www.microsoft.com/SoftwareDistribution"
LEAF_MUURL = ("http://download.windowsupdate.com/c/msdownload/update/software/defu/2026/10/"
              "am_delta_87f5bd0469585006aa5d3a77d1c662fd2895ddcd.exe")
LEAF_DIGEST = "h/W9BGlYUAaqXTp30cZi/SiV3c0="


@pytest.fixture
def upstream(install, tmp_path, live_server, database):
    docs_dir()
    seed_catalog(install, tmp_path)
    from devupdate.wsus.catalog.models import CatalogFile

    # the captured leaf's origin URL (exchanges/000014): the documents alone do not carry it
    CatalogFile.update(mu_url=LEAF_MUURL).where(
        CatalogFile.sha1 == base64.b64decode(LEAF_DIGEST).hex()).execute()
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")


def test_zeep_drives_the_dss_sequence(upstream):
    sync = zeep.Client(str(WSDL / "ServerSyncWebService.wsdl")).create_service(
        f"{{{SD}}}ServerSyncProxySoap", upstream.url + dsskit.SYNC_PATH)
    config = sync.GetAuthConfig()
    assert [(p.PlugInID, p.ServiceUrl) for p in config.AuthInfo.AuthPlugInInfo] == [
        ("DssTargeting", "DssAuthWebService/DssAuthWebService.asmx")]
    dss = zeep.Client(str(WSDL / "DssAuthWebService.wsdl")).create_service(
        f"{{{SD}/Server/DssAuthWebService}}DssAuthWebServiceSoap",
        upstream.url + "/" + config.AuthInfo.AuthPlugInInfo[0].ServiceUrl)
    auth = dss.GetAuthorizationCookie(accountName="dss.example.invalid", accountGuid=dsskit.ACCOUNT)
    assert auth.PlugInId == "DssTargeting" and len(auth.CookieData) > 20
    cookie = sync.GetCookie(authCookies={"AuthorizationCookie": [auth]}, oldCookie=None, protocolVersion="1.20")
    assert cookie.EncryptedData
    data = sync.GetConfigData(cookie=cookie, configAnchor=None)
    assert (data.CatalogOnlySync, data.LazySync, data.MaxNumberOfUpdatesPerRequest, data.ProtocolVersion) == (
        False, True, 100, "1.20")
    assert {(lang.LanguageID, lang.ShortLanguage) for lang in data.LanguageUpdateList.ServerSyncLanguageData} >= {
        (0, "all"), (1033, "en")}
    seq, _, stamp = data.NewConfigAnchor.partition(",")
    assert seq.isdigit() and len(stamp) == len("2026-10-04 16:33:26.670")
    categories = sync.GetRevisionIdList(cookie=cookie, filter={"GetConfig": True, "Get63LanguageOnly": False})
    category_ids = {u.UpdateID for u in categories.NewRevisions.UpdateIdentity}
    assert {COMPANY, DEFENDER, DEFINITIONS} <= category_ids
    filtered = sync.GetRevisionIdList(cookie=cookie, filter={
        "GetConfig": False, "Get63LanguageOnly": False,
        "Categories": {"IdAndDelta": [{"Id": DEFENDER, "Delta": True}]},
        "Classifications": {"IdAndDelta": [{"Id": DEFINITIONS, "Delta": True}]}})
    updates = {(u.UpdateID, u.RevisionNumber) for u in filtered.NewRevisions.UpdateIdentity}
    assert (BUNDLE, 200) in updates and SYNTHETIC_A not in {u for u, _ in updates}  # A has no classification
    everything = sync.GetRevisionIdList(cookie=cookie, filter={"GetConfig": False, "Get63LanguageOnly": False})
    assert (SYNTHETIC_A, 101) in {(u.UpdateID, u.RevisionNumber) for u in everything.NewRevisions.UpdateIdentity}
    again = sync.GetRevisionIdList(cookie=cookie, filter={"Anchor": everything.Anchor, "GetConfig": False,
                                                          "Get63LanguageOnly": False})
    assert again.NewRevisions is None  # Delta: nothing changed since
    data = sync.GetUpdateData(cookie=cookie, updateIds={"UpdateIdentity": [
        {"UpdateID": LEAF, "RevisionNumber": 200}, {"UpdateID": SMALL, "RevisionNumber": 200}]})
    by_id = {u.Id.UpdateID: u for u in data.updates.ServerSyncUpdateData}
    assert set(by_id) == {LEAF, SMALL}
    assert by_id[LEAF].XmlUpdateBlob == (docs_dir() / f"{LEAF}-r200.xml").read_text("utf-8")
    assert [base64.b64encode(d).decode() for d in by_id[LEAF].FileDigestList.base64Binary] == [LEAF_DIGEST]
    assert [(base64.b64encode(u.FileDigest).decode(), u.MUUrl) for u in data.fileUrls.ServerSyncUrlData] == [
        (LEAF_DIGEST, LEAF_MUURL)]
    decryption = sync.GetUpdateDecryptionData(cookie=cookie, updateIds={"UpdateIdentity": [
        {"UpdateID": LEAF, "RevisionNumber": 200}]})
    assert decryption is None or decryption.UpdateFileDecryptionData is None  # nothing is encrypted here
    related = sync.GetRelatedRevisionsForUpdates(cookie=cookie, updateIDs={"guid": [SYNTHETIC_A, LEAF]})
    assert [(u.UpdateID, u.RevisionNumber) for u in related] == [(SYNTHETIC_A, 101), (LEAF, 200)]
    assert sync.DownloadFiles(cookie=cookie, fileDigestList={"base64Binary": [base64.b64decode(LEAF_DIGEST)]}) is None
    assert sync.Ping(pingLevel=1).SuccessFlag is True


# --- replay of the captured exchanges -----------------------------------------------------------------

VARY = ["…/LastChange", "…/CookieData", "…/Expiration", "…/EncryptedData", "…/Anchor", "…/NewConfigAnchor",
        "…/Enabled", "…/detail/ID", "…/faultcode"]


def _drop_faultactor(path: str, element: ET.Element) -> bool:
    return path.endswith("/faultactor")  # optional in SOAP 1.1; devupdate sends none


def _compare(ours: bytes, recorded: bytes, *drop: str) -> list[str]:
    return differences(dsskit.without(ours, *drop), dsskit.without(recorded, *drop), vary=VARY,
                       drop_recorded=_drop_faultactor)


@pytest.fixture
def replayed(upstream):
    cookie = dsskit.dss_cookie(upstream)
    return upstream, cookie, dsskit.anchor(upstream, cookie)


def test_replay_authorization_sequence(upstream):
    for number in ("000001", "000002"):
        response, exchange = dsskit.replay(upstream, number)
        assert response.status_code == 200, (number, response.text)
        assert _compare(response.content, (exchange / "response.body").read_bytes()) == [], number
    response, exchange = dsskit.replay(upstream, "000003")
    assert fault_code(response) == "InvalidAuthorizationCookie"  # the redacted authorization cookie
    response, exchange = dsskit.replay(upstream, "000003", auth_data=dsskit.authorization_cookie(upstream))
    assert response.status_code == 200, response.text
    assert _compare(response.content, (exchange / "response.body").read_bytes()) == []


@pytest.mark.parametrize("number", ["000004", "000005", "000007", "000008", "000011", "000012"])
def test_replay_config_and_empty_lists(replayed, number):
    server, cookie, anchor = replayed
    redacted, _ = dsskit.replay(server, number)
    assert fault_code(redacted) == "InvalidCookie"
    response, exchange = dsskit.replay(server, number, cookie=cookie, anchor_value=anchor)
    assert response.status_code == 200, response.text
    assert _compare(response.content, (exchange / "response.body").read_bytes()) == []


@pytest.mark.parametrize("number", ["000006", "000009", "000010"])
def test_replay_lists(replayed, number):
    """The lists differ (another catalog); everything around them, and each item's shape, do not."""
    server, cookie, anchor = replayed
    response, exchange = dsskit.replay(server, number, cookie=cookie, anchor_value=anchor)
    assert response.status_code == 200, response.text
    assert "Content-Length" not in response.headers  # streamed
    assert _compare(response.content, (exchange / "response.body").read_bytes(), "UpdateIdentity") == []
    ours = dsskit.identities(response)
    assert ours
    item = differences(ET.tostring(ET.fromstring(response.content).find(f".//{{{SD}}}UpdateIdentity")),
                       ET.tostring(ET.fromstring((exchange / "response.body").read_bytes())
                                   .find(f".//{{{SD}}}UpdateIdentity")), vary=["…/UpdateID", "…/RevisionNumber"])
    assert item == []
    if number == "000006":
        assert {COMPANY, DEFENDER, DEFINITIONS} <= {u for u, _ in ours}
    else:  # Delta=false (000010, with an anchor) lists everything under the ids again, as 000009
        assert (BUNDLE, 200) in ours


@pytest.mark.parametrize("number", ["000013", "000014", "000015", "000016"])
def test_replay_update_data(replayed, number):
    """devupdate sends the plain XmlUpdateBlob (§5.1) where real WSUS compressed three of the four:
    compared without the blob elements, the blob itself equal to the captured document."""
    server, cookie, _ = replayed
    response, exchange = dsskit.replay(server, number, cookie=cookie)
    assert response.status_code == 200, response.text
    recorded = (exchange / "response.body").read_bytes()
    assert _compare(response.content, recorded, "XmlUpdateBlob", "XmlUpdateBlobCompressed") == []
    root = ET.fromstring(response.content)
    update_id = root.findtext(f".//{{{SD}}}UpdateID")
    blob = root.findtext(f".//{{{SD}}}XmlUpdateBlob")
    assert blob == next(docs_dir().glob(f"{update_id}-r*.xml")).read_text("utf-8")


def test_replay_unknown_update_faults(replayed):
    """000017: real WSUS answers InternalServerError for one unknown identity; devupdate leaves the
    unknown identity out (§5.1) — the envelope is the recorded 000015's with no update in it."""
    server, cookie, _ = replayed
    response, _ = dsskit.replay(server, "000017", cookie=cookie)
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    assert root.find(f".//{{{SD}}}updates") is not None and root.find(f".//{{{SD}}}ServerSyncUpdateData") is None


@pytest.mark.parametrize("number", ["000018", "000019"])
def test_replay_recorded_faults(replayed, number):
    server, cookie, _ = replayed
    response, exchange = dsskit.replay(server, number, cookie=cookie)
    assert response.status_code == 500
    assert _compare(response.content, (exchange / "response.body").read_bytes()) == []


# --- anchors, filters, limits, hostile input ----------------------------------------------------------

def _fault(response: requests.Response) -> tuple[str | None, str | None]:
    assert response.status_code == 500, response.text
    return fault_code(response), found(response, "Message")


def test_anchors_advance_and_list_only_what_changed(upstream, install, tmp_path):
    cookie = dsskit.dss_cookie(upstream)
    first = dsskit.call(upstream, "GetRevisionIdList", cookie.xml() + "<filter><GetConfig>false</GetConfig></filter>")
    anchor = found(first, "Anchor")
    seq = int(anchor.split(",")[0])
    assert dsskit.identities(first)
    from wsus.catalogkit import software

    extra = tmp_path / "new"
    extra.mkdir()
    (extra / "a-102.xml").write_text(software(SYNTHETIC_A, 102, title="Synthetic A", categories=(DEFENDER,)))
    install.cli("wsus", "import", str(extra))
    later = dsskit.call(upstream, "GetRevisionIdList",
                        cookie.xml() + f"<filter><Anchor>{anchor}</Anchor><GetConfig>false</GetConfig></filter>")
    assert dsskit.identities(later) == [(SYNTHETIC_A, 102)]
    assert int(found(later, "Anchor").split(",")[0]) > seq


def test_hostile_input_gets_faults_naming_the_parameter(upstream):
    cookie = dsskit.dss_cookie(upstream)
    c = cookie.xml()
    many = "".join(f"<UpdateIdentity><UpdateID>{LEAF}</UpdateID><RevisionNumber>{n}</RevisionNumber>"
                   "</UpdateIdentity>" for n in range(101))
    assert _fault(dsskit.call(upstream, "GetUpdateData", c + f"<updateIds>{many}</updateIds>")) == (
        "InvalidParameters", "updateIds")
    assert _fault(dsskit.call(upstream, "GetUpdateData", c + "<updateIds/>")) == ("InvalidParameters", "updateIds")
    ids = "".join(f"<IdAndDelta><Id>{DEFENDER}</Id><Delta>true</Delta></IdAndDelta>" for _ in range(1001))
    assert _fault(dsskit.call(upstream, "GetRevisionIdList", c + f"<filter><GetConfig>false</GetConfig>"
                              f"<Categories>{ids}</Categories></filter>")) == ("InvalidParameters", "filter.Categories")
    for bad in ("garbage", "99999999,2026-10-04 16:33:26.670", "5,2026-13-44 99:00:00.000", "-1,x"):
        assert _fault(dsskit.call(upstream, "GetRevisionIdList", c + f"<filter><Anchor>{bad}</Anchor>"
                                  "<GetConfig>false</GetConfig></filter>")) == ("InvalidParameters", "filter"), bad
    assert _fault(dsskit.call(upstream, "GetConfigData", c + "<configAnchor>garbage</configAnchor>")) == (
        "InvalidParameters", "configAnchor")
    digests = "".join(f"<base64Binary>{LEAF_DIGEST}</base64Binary>" for _ in range(101))
    assert _fault(dsskit.call(upstream, "DownloadFiles", c + f"<fileDigestList>{digests}</fileDigestList>")) == (
        "InvalidParameters", "parameters.fileDigestList")
    unknown = base64.b64encode(b"\x01" * 20).decode()
    assert _fault(dsskit.call(upstream, "DownloadFiles", c + f"<fileDigestList><base64Binary>{unknown}"
                              "</base64Binary></fileDigestList>")) == ("FileDigestsMissing", unknown)
    assert _fault(dsskit.call(upstream, "GetCookie", dsskit.get_cookie_body(
        dsskit.authorization_cookie(upstream), protocol="2.0"))) == ("IncompatibleProtocolVersion", "protocolVersion")
    assert _fault(dsskit.call(upstream, "GetAuthorizationCookie", "<accountName>x</accountName>"
                              "<accountGuid>not-a-guid</accountGuid>")) == ("InvalidParameters", "accountGuid")
    dtd = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><s:Envelope xmlns:s="http://schemas.xmlsoap.org/'
           b'soap/envelope/"><s:Body><GetConfigData xmlns="http://www.microsoft.com/SoftwareDistribution">&a;'
           b'</GetConfigData></s:Body></s:Envelope>')
    response = requests.post(upstream.url + dsskit.SYNC_PATH, data=dtd, headers=dsskit.headers("GetConfigData"),
                             timeout=30)
    assert _fault(response) == ("InvalidParameters", "body")
    # a client (MS-WUSP) cookie is no DSS cookie
    from wsus.wuskit import mint_cookie

    client_cookie = mint_cookie(upstream)
    assert _fault(dsskit.call(upstream, "GetConfigData", client_cookie.xml()))[0] == "InvalidCookie"


def test_access_is_limited_to_sync_networks_accounts_and_credentials(install, live_server):
    closed = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_SYNC_NETWORKS="10.0.0.0/8")
    refused = dsskit.call(closed, "GetAuthConfig", "")
    assert refused.status_code == 403 and "DEVUPDATE_WSUS_SYNC_NETWORKS" in refused.text
    closed.stop()
    other = "11111111-2222-4333-8444-555555555555"
    guarded = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_SYNC_TOKEN="s3cret-token",
                          DEVUPDATE_WSUS_SYNC_ACCOUNTS=dsskit.ACCOUNT)
    assert dsskit.call(guarded, "GetAuthConfig", "").status_code == 403
    assert dsskit.call(guarded, "GetAuthConfig", "", Authorization="Bearer wrong").status_code == 403
    bearer = {"Authorization": "Bearer s3cret-token"}
    assert dsskit.call(guarded, "GetAuthConfig", "", **bearer).status_code == 200
    cookie = dsskit.dss_cookie(guarded, **bearer)
    assert dsskit.call(guarded, "GetConfigData", cookie.xml(), **bearer).status_code == 200
    response = dsskit.call(guarded, "GetAuthorizationCookie", f"<accountName>x</accountName>"
                                                              f"<accountGuid>{other}</accountGuid>", **bearer)
    assert response.status_code == 403 and "DEVUPDATE_WSUS_SYNC_ACCOUNTS" in response.text
    # the client protocol is not guarded by S6
    assert requests.post(guarded.url + "/ClientWebService/Client.asmx", timeout=10,
                         data=b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetConfig '
                              b'xmlns="http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"/>'
                              b'</s:Body></s:Envelope>').status_code == 200
