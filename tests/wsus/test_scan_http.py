"""The scan operations over real HTTP on ``devupdate serve`` (spec/wsus.md §3.5–§3.8, §8.2):
the captured native requests replayed with a cookie minted here, answers compared structurally
with the recorded ones; oversized arrays give InvalidParameters naming the parameter."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
import requests
from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS, NATIVE, category, docs_dir, software
from helpers.xmlshape import differences

from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.catalog.models import CatalogFile, Update
from devupdate.wsus.client import cookies, keys, scan
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.targeting import autoapproval
from devupdate.wsus.targeting import service as targeting
from devupdate.wsus.targeting.models import Computer

CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
ACTION = CLIENT_NS + "/"
CLIENT_ID = "7b3f5a1e-0000-4000-8000-00000000c11e"
FAMILY = "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"  # the product family of the captured category scan
OOBE = "dd78b8a1-0b20-45c1-add6-4da72e9364cf"  # the product it filters on ("OOBE ZDP")
DETECTOIDS = ("be4048db-157c-4532-9582-7f05099590c9", "0aac58ee-82a0-4452-a7fa-19f68398f1fa",
              "59653007-e2e9-4f71-8525-2ff588527978")
#: what §8.2 does not compare: cookie bytes, RevisionIDs, deployment ids, times
VARY = ("…/EncryptedData", "…/Expiration", "…/UpdateInfo/ID", "…/Deployment/ID", "…/LastChangeTime",
        "…/Update/ID", "…/FileDigest", "…/Url")


def seed() -> None:
    docs = [parse_update(path.read_bytes()) for path in sorted(docs_dir().glob("*.xml"))]
    extra = [category(DEFENDER, "Microsoft Defender Antivirus", "Product", parent=COMPANY),
             category(DEFINITIONS, "Definition Updates", "UpdateClassification"),
             category(FAMILY, "Windows", "ProductFamily", parent=COMPANY),
             category(OOBE, "OOBE ZDP", "Product", parent=FAMILY, revision=202),
             *(software(uid, title="A detectoid").replace('UpdateType="Software"', 'UpdateType="Detectoid"')
               for uid in DETECTOIDS)]
    store.import_documents(docs + [parse_update(text.encode()) for text in extra])


def rid(update_id: str) -> int:
    return int(Update.get_by_id(update_id).current_revision)


def mint(*, protocol: str = "2.90", config: datetime | None = None, subject: str = CLIENT_ID) -> str:
    state = cookies.new_state(cookies.CLIENT, subject, now=datetime.now(UTC), lifetime=3600, protocol=protocol,
                              config=config or config_stamp())
    return cookies.to_text(keys.seal(state))


@pytest.fixture
def scan_server(live_server, rt):
    seed()
    targeting.register_computer(CLIENT_ID, {"OSMajorVersion": 10, "OSBuildNumber": 26200})
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true",
                         DEVUPDATE_WSUS_CONTENT_BASE_URL="http://192.0.2.1:8530")
    return server


def post(server, operation: str, body: bytes) -> requests.Response:
    return requests.post(server.url + "/ClientWebService/client.asmx", data=body, timeout=30, headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ACTION}{operation}"'})


def captured(name: str) -> tuple[bytes, bytes]:
    folder = NATIVE / name
    return (folder / "request.body").read_bytes(), (folder / "response.body").read_bytes()


def with_cookie(body: bytes, cookie: str) -> bytes:
    return re.sub(rb"<EncryptedData>[^<]*</EncryptedData>", b"<EncryptedData>" + cookie.encode() + b"</EncryptedData>",
                  body, count=1)


def remap(body: bytes, ids: dict[int, int]) -> bytes:
    return re.sub(rb"<int>(\d+)</int>", lambda m: b"<int>%d</int>" % ids.get(int(m.group(1)), int(m.group(1))), body)


def fault_of(response: requests.Response) -> dict[str, str | None]:
    detail = ET.fromstring(response.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/detail")
    assert detail is not None, response.text
    return {element.tag: element.text for element in detail}


def test_captured_category_scan_replays_wave_by_wave(scan_server):
    """cap:wsus-m0-native/scan/000005–000010: StartCategoryScan, three SyncUpdates waves of the
    category chain, the driver pass, GetExtendedUpdateInfo of the three categories."""
    cookie = mint()
    ids = {108226: rid(COMPANY), 108231: rid(FAMILY), 72571: rid(OOBE)}
    request, recorded = captured("scan/000005")
    answer = post(scan_server, "StartCategoryScan", request)
    assert answer.status_code == 200, answer.text
    assert differences(answer.content, recorded) == []
    for exchange in ("scan/000006", "scan/000007", "scan/000008", "scan/000009"):
        request, recorded = captured(exchange)
        answer = post(scan_server, "SyncUpdates", remap(with_cookie(request, cookie), ids))
        assert answer.status_code == 200, (exchange, answer.text)
        assert differences(answer.content, recorded, vary=VARY + ("…/Xml",)) == [], exchange
        cookie = ET.fromstring(answer.content).find(f".//{{{CLIENT_NS}}}NewCookie/{{{CLIENT_NS}}}EncryptedData").text
    # the Core fragment of the captured Company document is served as recorded
    request, recorded = captured("scan/000006")
    answer = post(scan_server, "SyncUpdates", with_cookie(request, mint()))
    assert differences(answer.content, recorded, vary=VARY) == []
    request, recorded = captured("scan/000010")
    answer = post(scan_server, "GetExtendedUpdateInfo", remap(with_cookie(request, cookie), ids))
    assert answer.status_code == 200, answer.text
    assert differences(answer.content, recorded, vary=VARY + ("…/Xml",)) == []


def test_captured_extended_info_of_the_approved_update(scan_server):
    """cap:wsus-m0-native/flow/000015 for the revision this catalog has (KB2267602 r200): its Extended
    and LocalizedProperties fragments and a FileLocation per file; the recording server's other ids
    are out of scope here."""
    request, recorded = captured("flow/000015")
    targeting.approve(BUNDLE, "All Computers", "install", actor="test")
    answer = post(scan_server, "GetExtendedUpdateInfo", remap(with_cookie(request, mint()), {200996: rid(BUNDLE)}))
    assert answer.status_code == 200, answer.text
    root = ET.fromstring(answer.content)
    q = f"{{{CLIENT_NS}}}"
    updates = root.findall(f".//{q}Updates/{q}Update")
    assert [u.find(f"{q}ID").text for u in updates] == [str(rid(BUNDLE))] * 2
    assert updates[0].find(f"{q}Xml").text.startswith("<ExtendedProperties ")
    assert updates[1].find(f"{q}Xml").text.startswith("<LocalizedProperties><Language>en</Language>")
    out = [int(e.text) for e in root.findall(f".//{q}OutOfScopeRevisionIDs/{q}int")]
    assert len(out) == 17 and rid(BUNDLE) not in out
    # the recorded answer's element paths, in order, for the entries both have
    recorded_root = ET.fromstring(recorded)
    recorded_paths = {e.tag for e in recorded_root.iter()}
    assert {e.tag for e in root.iter()} - recorded_paths == {f"{q}OutOfScopeRevisionIDs", f"{q}int"}


def test_installed_ids_over_the_limit_give_the_recorded_fault(scan_server):
    recorded = (NATIVE.parent / "wsus-m0" / "000141" / "response.body").read_bytes()
    ids = "".join(f"<int>{n}</int>" for n in range(401))

    def body(installed: str, other: str = "") -> bytes:
        return (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><SyncUpdates xmlns="{CLIENT_NS}"><cookie><Expiration>'
                f"2026-10-04T16:03:35Z</Expiration><EncryptedData>{mint()}</EncryptedData></cookie><parameters>"
                f"<ExpressQuery>false</ExpressQuery><InstalledNonLeafUpdateIDs>{installed}</InstalledNonLeafUpdateIDs>"
                f"<OtherCachedUpdateIDs>{other}</OtherCachedUpdateIDs><SkipSoftwareSync>false</SkipSoftwareSync>"
                "</parameters></SyncUpdates></s:Body></s:Envelope>").encode()

    answer = post(scan_server, "SyncUpdates", body(ids))
    assert answer.status_code == 500
    assert differences(answer.content, recorded, vary=("…/detail/ID",)) == []
    ok = post(scan_server, "SyncUpdates", body(ids.replace("<int>400</int>", "")))
    assert ok.status_code == 200, ok.text
    other = "".join(f"<int>{n}</int>" for n in range(20_001))
    assert fault_of(post(scan_server, "SyncUpdates", body("", other)))["Message"] == "parameters.OtherCachedUpdateIDs"
    assert fault_of(post(scan_server, "SyncUpdates", body("<int>x</int>")))["Message"] == \
        "parameters.InstalledNonLeafUpdateIDs"


def envelope(operation: str, inner: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><{operation} xmlns="{CLIENT_NS}">{inner}'
            f"</{operation}></s:Body></s:Envelope>").encode()


def cookie_xml(value: str) -> str:
    return f"<cookie><Expiration>2026-10-04T16:03:35Z</Expiration><EncryptedData>{value}</EncryptedData></cookie>"


def test_hostile_arrays_and_cookies_name_the_parameter(scan_server):
    c = cookie_xml(mint())
    cases = [
        ("GetExtendedUpdateInfo", c + "<revisionIDs>" + "<int>1</int>" * 51 + "</revisionIDs><infoTypes>"
         "<XmlUpdateFragmentType>Extended</XmlUpdateFragmentType></infoTypes>", "InvalidParameters", "revisionIDs"),
        ("GetExtendedUpdateInfo", c + "<revisionIDs><int>1</int></revisionIDs>", "InvalidParameters", "infoTypes"),
        ("GetExtendedUpdateInfo", c + "<revisionIDs><int>1</int></revisionIDs><infoTypes><XmlUpdateFragmentType>"
         "LocalizedProperties</XmlUpdateFragmentType></infoTypes>", "InvalidParameters", "locales"),
        ("RefreshCache", c + "<globalIDs>" + f"<UpdateIdentity><UpdateID>{BUNDLE}</UpdateID><RevisionNumber>200"
         "</RevisionNumber></UpdateIdentity>" * 20_001 + "</globalIDs>", "InvalidParameters", "globalIDs"),
        ("GetFileLocations", c + "<fileDigests>" + "<base64Binary>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</base64Binary>"
         * 1001 + "</fileDigests>", "InvalidParameters", "fileDigests"),
        ("GetFileLocations", c + "<fileDigests><base64Binary>AAAA</base64Binary></fileDigests>", "InvalidParameters",
         "fileDigests"),
        ("StartCategoryScan", "<requestedCategories>" + f"<CategoryRelationship><IndexOfAndGroup>0</IndexOfAndGroup>"
         f"<CategoryId>{OOBE}</CategoryId></CategoryRelationship>" * 200 + "</requestedCategories>",
         "InvalidParameters", "requestedCategories"),
        ("StartCategoryScan", "", "InvalidParameters", "requestedCategories"),
        ("SyncUpdates", c, "InvalidParameters", "parameters"),
        ("SyncUpdates", c + "<parameters><ExpressQuery>false</ExpressQuery><SystemSpec><Device><HardwareIDs>"
         "<string>x</string></HardwareIDs></Device></SystemSpec><SkipSoftwareSync>false</SkipSoftwareSync>"
         "</parameters>", "InvalidParameters", "parameters.SystemSpec"),
        ("SyncUpdates", c + "<parameters><FilterCategoryIds>" + f"<CategoryIdentifier><Id>{OOBE}</Id>"
         "</CategoryIdentifier>" * 200 + "</FilterCategoryIds></parameters>", "InvalidParameters",
         "parameters.FilterCategoryIds"),
        ("SyncUpdates", cookie_xml("A" * 100) + "<parameters/>", "InvalidCookie", "cookie"),
        ("SyncUpdates", cookie_xml(mint(config=datetime(2020, 1, 1, tzinfo=UTC))) + "<parameters><SkipSoftwareSync>"
         "false</SkipSoftwareSync></parameters>", "ConfigChanged", "cookie"),
        ("SyncUpdates", cookie_xml(mint(subject="someone-unregistered")) + "<parameters><SkipSoftwareSync>false"
         "</SkipSoftwareSync></parameters>", "RegistrationRequired", "cookie"),
        ("GetFileLocations", cookie_xml("A" * 300), "InvalidCookie", "cookie"),
    ]
    for operation, inner, code, message in cases:
        answer = post(scan_server, operation, envelope(operation, inner))
        assert answer.status_code == 500, (operation, message, answer.text[:300])
        fault = fault_of(answer)
        assert (fault["ErrorCode"], fault["Message"]) == (code, message), (operation, message)


def test_refresh_cache_and_file_locations(scan_server):
    targeting.approve(BUNDLE, "All Computers", "install", actor="test")
    c = cookie_xml(mint())
    identity = f"<UpdateIdentity><UpdateID>{BUNDLE}</UpdateID><RevisionNumber>200</RevisionNumber></UpdateIdentity>"
    unknown = ("<UpdateIdentity><UpdateID>00000000-0000-4000-8000-000000000000</UpdateID>"
               "<RevisionNumber>1</RevisionNumber></UpdateIdentity>")
    company = f"<UpdateIdentity><UpdateID>{COMPANY}</UpdateID><RevisionNumber>101</RevisionNumber></UpdateIdentity>"
    answer = post(scan_server, "RefreshCache", envelope("RefreshCache", c + f"<globalIDs>{identity}{unknown}{company}"
                                                                          "</globalIDs>"))
    assert answer.status_code == 200, answer.text
    q = f"{{{CLIENT_NS}}}"
    results = ET.fromstring(answer.content).findall(f".//{q}RefreshCacheResponse/{q}RefreshCacheResult/"
                                                   f"{q}RefreshCacheResult")
    got = [(r.find(f"{q}RevisionID").text, r.find(f"{q}GlobalID/{q}UpdateID").text, r.find(f"{q}IsLeaf").text,
            r.find(f"{q}Deployment/{q}Action").text) for r in results]
    assert got == [(str(rid(BUNDLE)), BUNDLE, "true", "Install"), (str(rid(COMPANY)), COMPANY, "false", "Evaluate")]
    # file locations by SHA-1: a file of the captured leaf, and an unknown digest left out
    sha1, name = CatalogFile.select(CatalogFile.sha1, CatalogFile.file_name).order_by(CatalogFile.id).tuples().first()
    known = base64.b64encode(bytes.fromhex(sha1)).decode()
    unknown_digest = base64.b64encode(b"\x01" * 20).decode()
    answer = post(scan_server, "GetFileLocations", envelope("GetFileLocations", c + "<fileDigests><base64Binary>"
                                                            f"{unknown_digest}</base64Binary><base64Binary>{known}"
                                                            "</base64Binary></fileDigests>"))
    assert answer.status_code == 200, answer.text
    root = ET.fromstring(answer.content)
    locations = root.findall(f".//{q}GetFileLocationsResult/{q}FileLocations/{q}FileLocation")
    extension = name.rsplit(".", 1)[-1].lower()
    assert [(e.find(f"{q}FileDigest").text, e.find(f"{q}Url").text) for e in locations] == [
        (known, f"http://192.0.2.1:8530/Content/{sha1.upper()[-2:]}/{sha1.upper()}.{extension}")]
    assert root.find(f".//{q}GetFileLocationsResult/{q}NewCookie/{q}EncryptedData").text


def sync_body(cookie: str, installed: list[int] = ()) -> bytes:
    ints = "".join(f"<int>{n}</int>" for n in installed)
    return envelope("SyncUpdates", cookie_xml(cookie) + "<parameters><ExpressQuery>false</ExpressQuery>"
                    + (f"<InstalledNonLeafUpdateIDs>{ints}</InstalledNonLeafUpdateIDs>" if ints else "")
                    + "<SkipSoftwareSync>false</SkipSoftwareSync></parameters>")


def new_update_ids(answer: requests.Response) -> list[int]:
    assert answer.status_code == 200, answer.text
    q = f"{{{CLIENT_NS}}}"
    return [int(e.text) for e in ET.fromstring(answer.content).findall(f".//{q}NewUpdates/{q}UpdateInfo/{q}ID")]


def test_client_scope_approved_offers_only_explicit_deployments(live_server, rt, install):
    seed()
    store.import_documents([parse_update(software("abababab-0000-4000-8000-000000000001",
                                                  categories=(DEFENDER,)).encode())])
    from devupdate.wsus.catalog import service

    service.select_product(DEFENDER, actor="test")
    for rule in autoapproval.list_rules():  # the servers' job would approve the definitions, imported around it
        autoapproval.set_rule(rule["Name"], actor="test", enabled=False)
    targeting.register_computer(CLIENT_ID, {"OSMajorVersion": 10, "OSBuildNumber": 26200})
    everything = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    approved = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_CLIENT_SCOPE="approved")
    first_wave = sorted([rid(COMPANY), rid(DEFINITIONS), *(rid(uid) for uid in DETECTOIDS)])
    assert sorted(new_update_ids(post(everything, "SyncUpdates", sync_body(mint())))) == first_wave
    assert new_update_ids(post(approved, "SyncUpdates", sync_body(mint()))) == []
    targeting.approve(BUNDLE, "All Computers", "install", actor="test")
    assert sorted(new_update_ids(post(approved, "SyncUpdates", sync_body(mint())))) == first_wave
    second = new_update_ids(post(approved, "SyncUpdates", sync_body(mint(), first_wave)))
    assert second == [rid(DEFENDER)]
    third = new_update_ids(post(approved, "SyncUpdates", sync_body(mint(), [*first_wave, rid(DEFENDER)])))
    assert rid(BUNDLE) in third and rid("abababab-0000-4000-8000-000000000001") not in third
    refused = install.cli("wsus", "updates", "list", check=False, DEVUPDATE_WSUS_CLIENT_SCOPE="some")
    assert refused.returncode != 0, refused.stdout
    assert "DEVUPDATE_WSUS_CLIENT_SCOPE='some': expected all or approved" in refused.stderr


def test_file_location_changed_until_get_file_locations(scan_server):
    """§3.8: a cookie whose file URLs came from another content base URL gets FileLocationChanged from
    GetExtendedUpdateInfo; GetFileLocations renews it for the current one."""
    state = cookies.new_state(cookies.CLIENT, CLIENT_ID, now=datetime.now(UTC), lifetime=3600, protocol="2.90",
                              config=config_stamp(),
                              content_generation=scan.content_generation("http://old.example.test:8530"))
    stale = cookies.to_text(keys.seal(state))
    ask = ("<revisionIDs><int>1</int></revisionIDs><infoTypes><XmlUpdateFragmentType>Extended"
           "</XmlUpdateFragmentType></infoTypes>")
    answer = post(scan_server, "GetExtendedUpdateInfo", envelope("GetExtendedUpdateInfo", cookie_xml(stale) + ask))
    assert (answer.status_code, fault_of(answer)["ErrorCode"]) == (500, "FileLocationChanged")
    renewed = post(scan_server, "GetFileLocations", envelope("GetFileLocations", cookie_xml(stale)))
    assert renewed.status_code == 200, renewed.text
    fresh = ET.fromstring(renewed.content).find(f".//{{{CLIENT_NS}}}NewCookie/{{{CLIENT_NS}}}EncryptedData").text
    opened = keys.unseal(cookies.from_text(fresh), kind=cookies.CLIENT, settings=scan_server.install.settings())
    assert opened.content_generation == scan.content_generation("http://192.0.2.1:8530")
    assert opened.expiry == state.expiry and opened.subject == CLIENT_ID
    answer = post(scan_server, "GetExtendedUpdateInfo", envelope("GetExtendedUpdateInfo", cookie_xml(fresh) + ask))
    assert answer.status_code == 200, answer.text
    assert mint() and post(scan_server, "GetExtendedUpdateInfo", envelope(
        "GetExtendedUpdateInfo", cookie_xml(mint()) + ask)).status_code == 200  # none recorded: current


def test_the_whole_captured_native_scan_with_the_cookies_this_server_issues(live_server, rt):
    """cap:wsus-m0-native/scan/000001–000010 posted in order as recorded; only what the client would
    have taken from this server's earlier answers is put in: the auth cookie, the client cookie of
    each NewCookie, GetConfig's LastChange, and the RevisionIDs it reports installed."""
    seed()
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true",
                         DEVUPDATE_WSUS_CONTENT_BASE_URL="http://192.0.2.1:8530")
    import json

    ids = {108226: rid(COMPANY), 108231: rid(FAMILY), 72571: rid(OOBE)}
    auth_cookie = client_cookie = last_change = ""
    for n in range(1, 11):
        folder = NATIVE / f"scan/{n:06d}"
        meta = json.loads((folder / "meta.json").read_text())
        body = (folder / "request.body").read_bytes()
        body = re.sub(rb"<CookieData>[^<]*</CookieData>", f"<CookieData>{auth_cookie}</CookieData>".encode(), body)
        body = re.sub(rb"<lastChange>[^<]*</lastChange>", f"<lastChange>{last_change}</lastChange>".encode(), body)
        if client_cookie:
            body = remap(with_cookie(body, client_cookie), ids)
        answer = requests.post(server.url + meta["path"], data=body, timeout=30, headers={
            "Content-Type": "text/xml; charset=utf-8", "SOAPAction": meta["soap_action"]})
        assert answer.status_code == 200, (n, answer.text[:500])
        recorded = (folder / "response.body").read_bytes()
        if n >= 5:  # the scan operations (GetConfig and authorization are compared by their own tests)
            assert differences(answer.content, recorded, vary=VARY + ("…/Xml",)) == [], n
        root = ET.fromstring(answer.content)
        for element in root.iter():
            name = element.tag.rsplit("}", 1)[-1]
            if name == "CookieData":
                auth_cookie = element.text or ""
            elif name == "EncryptedData":
                client_cookie = element.text or ""
            elif name == "LastChange":
                last_change = element.text or ""
    assert Computer.get(Computer.computer_id == "e1da06a3-5601-43c9-bac3-52d5db701494").os_build == 26200


def test_get_extended_update_info2_by_identity(scan_server):
    """§3.8: keyed by UpdateIdentity; FileLocation carries FileDigestAlgorithm SHA1; unknown
    identities are left out."""
    from catalogkit import LEAF

    targeting.approve(BUNDLE, "All Computers", "install", actor="test")
    identity = f"<UpdateIdentity><UpdateID>{LEAF}</UpdateID><RevisionNumber>200</RevisionNumber></UpdateIdentity>"
    unknown = ("<UpdateIdentity><UpdateID>00000000-0000-4000-8000-000000000000</UpdateID><RevisionNumber>1"
               "</RevisionNumber></UpdateIdentity>")
    answer = post(scan_server, "GetExtendedUpdateInfo2", envelope("GetExtendedUpdateInfo2", cookie_xml(mint()) + (
        f"<updateIDs>{identity}{unknown}</updateIDs><infoTypes><XmlUpdateFragmentType>Extended"
        "</XmlUpdateFragmentType><XmlUpdateFragmentType>LocalizedProperties</XmlUpdateFragmentType>"
        "</infoTypes><locales><string>de-DE</string></locales>")))
    assert answer.status_code == 200, answer.text
    q = f"{{{CLIENT_NS}}}"
    root = ET.fromstring(answer.content).find(f".//{q}GetExtendedUpdateInfo2Result")
    updates = root.findall(f"{q}Updates/{q}Update")
    assert {u.find(f"{q}ID").text for u in updates} == {str(rid(LEAF))}
    assert [u.find(f"{q}Xml").text.split(">", 1)[0].split(" ", 1)[0] for u in updates] == [
        "<ExtendedProperties", "<LocalizedProperties"]  # de-DE → de → en
    files = CatalogFile.select().where(CatalogFile.revision == rid(LEAF)).count()
    locations = root.findall(f"{q}FileLocations/{q}FileLocation")
    assert files and len(locations) == files
    assert {loc.find(f"{q}FileDigestAlgorithm").text for loc in locations} == {"SHA1"}
    assert all(len(base64.b64decode(loc.find(f"{q}FileDigest").text)) == 20 for loc in locations)
