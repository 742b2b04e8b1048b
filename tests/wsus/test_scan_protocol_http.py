"""Parts of §3.5, §3.6 and §6.4 over real HTTP that the replays of the captures cannot show (the
captured client speaks protocol 2.90 and asks one category): what a client's protocol version turns on
(``DriverSyncNotNeeded`` from 1.7, ``AutoSelect``/``AutoDownload``/``SupersedenceBehavior`` from 1.8),
``DeployedOutOfScopeRevisionIds`` for ``NeedTwoGroupOutOfScopeUpdates`` with a filter, and the shapes
of StartCategoryScan (unknown ids in error with their AND-group dropped, product + classification →
the product, any other shape → no preferred categories)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
import requests
from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS

from devupdate.wsus.catalog.models import Update
from devupdate.wsus.client import cookies, keys
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.targeting import service as targeting

CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
CLIENT_ID = "7b3f5a1e-0000-4000-8000-00000000c11f"
OOBE = "dd78b8a1-0b20-45c1-add6-4da72e9364cf"
FAMILY = "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"
UNKNOWN = "01010101-0000-4000-8000-000000000001"
Q = f"{{{CLIENT_NS}}}"


@pytest.fixture
def server(live_server, rt):
    from wsus.test_scan_http import seed

    seed()
    targeting.register_computer(CLIENT_ID, {"OSMajorVersion": 10, "OSBuildNumber": 26200})
    targeting.approve(BUNDLE, "All Computers", "install", actor="test")
    keys.forget_cache()
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")


def rid(update_id: str) -> int:
    return int(Update.get_by_id(update_id).current_revision)


def cookie(protocol: str = "2.90") -> str:
    state = cookies.new_state(cookies.CLIENT, CLIENT_ID, now=datetime.now(UTC), lifetime=3600, protocol=protocol,
                              config=config_stamp())
    return (f"<cookie><Expiration>2026-10-04T16:03:35Z</Expiration><EncryptedData>"
            f"{cookies.to_text(keys.seal(state))}</EncryptedData></cookie>")


def post(server, operation: str, inner: str) -> ET.Element:
    body = (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><{operation} xmlns="{CLIENT_NS}">{inner}</{operation}>'
            "</s:Body></s:Envelope>").encode()
    answer = requests.post(server.url + "/ClientWebService/client.asmx", data=body, timeout=30, headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{CLIENT_NS}/{operation}"'})
    assert answer.status_code == 200, answer.text[:500]
    return ET.fromstring(answer.content)


def sync(server, protocol: str = "2.90", *, installed: list[int] = (), other: list[int] = (),
         filters: list[str] = (), two_group: bool = False, skip_software: bool = False) -> ET.Element:
    ints = lambda ids: "".join(f"<int>{n}</int>" for n in ids)  # noqa: E731
    filter_xml = "".join(f"<CategoryIdentifier><Id>{f}</Id></CategoryIdentifier>" for f in filters)
    return post(server, "SyncUpdates", cookie(protocol) + (
        "<parameters><ExpressQuery>false</ExpressQuery>"
        f"<InstalledNonLeafUpdateIDs>{ints(installed)}</InstalledNonLeafUpdateIDs>"
        f"<OtherCachedUpdateIDs>{ints(other)}</OtherCachedUpdateIDs>"
        f"<SkipSoftwareSync>{'true' if skip_software else 'false'}</SkipSoftwareSync>"
        + (f"<FilterCategoryIds>{filter_xml}</FilterCategoryIds>" if filters else "")
        + f"<NeedTwoGroupOutOfScopeUpdates>{'true' if two_group else 'false'}</NeedTwoGroupOutOfScopeUpdates>"
        "</parameters>")).find(f".//{Q}SyncUpdatesResult")


def test_what_the_protocol_version_turns_on(server):
    for protocol, not_needed, extras in (("1.6", None, False), ("1.7", "true", False), ("1.8", "true", True),
                                         ("2.90", "true", True)):
        for result in (sync(server, protocol), sync(server, protocol, skip_software=True)):  # software, drivers
            assert result.findtext(f"{Q}DriverSyncNotNeeded") == not_needed, protocol
        deployments = sync(server, protocol).findall(f"{Q}NewUpdates/{Q}UpdateInfo/{Q}Deployment")
        assert deployments
        for deployment in deployments:
            names = [child.tag.removeprefix(Q) for child in deployment]
            if extras:
                assert names[-3:] == ["AutoSelect", "AutoDownload", "SupersedenceBehavior"], (protocol, names)
                assert [deployment.findtext(f"{Q}{n}") for n in names[-3:]] == ["0", "0", "0"]
            else:
                assert not {"AutoSelect", "AutoDownload", "SupersedenceBehavior"} & set(names), (protocol, names)


def test_two_group_out_of_scope_with_a_filter(server):
    """A still-deployed revision outside the filter goes to DeployedOutOfScopeRevisionIds when asked
    (NeedTwoGroupOutOfScopeUpdates with a filter), to OutOfScopeRevisionIDs otherwise; an unknown id
    is out of scope either way. The element comes after NewCookie, as the WSDL orders it."""
    deployed, unknown = rid(BUNDLE), 987654
    split = sync(server, other=[deployed, unknown], filters=[OOBE], two_group=True)
    assert [e.text for e in split.findall(f"{Q}DeployedOutOfScopeRevisionIds/{Q}int")] == [str(deployed)]
    assert [e.text for e in split.findall(f"{Q}OutOfScopeRevisionIDs/{Q}int")] == [str(unknown)]
    names = [child.tag.removeprefix(Q) for child in split]
    assert names.index("DeployedOutOfScopeRevisionIds") == names.index("NewCookie") + 1
    for plain in (sync(server, other=[deployed, unknown], filters=[OOBE]),
                  sync(server, other=[deployed, unknown], two_group=True)):  # not asked, or no filter
        assert plain.find(f"{Q}DeployedOutOfScopeRevisionIds") is None
    not_asked = sync(server, other=[deployed, unknown], filters=[OOBE])
    assert sorted(int(e.text) for e in not_asked.findall(f"{Q}OutOfScopeRevisionIDs/{Q}int")) == [deployed, unknown]


def category_scan(server, *groups: tuple[str, ...]) -> tuple[list[str], list[str]]:
    entries = "".join(f"<CategoryRelationship><IndexOfAndGroup>{index}</IndexOfAndGroup><CategoryId>{uid}"
                      "</CategoryId></CategoryRelationship>" for index, group in enumerate(groups) for uid in group)
    root = post(server, "StartCategoryScan", f"<requestedCategories>{entries}</requestedCategories>")
    answer = root.find(f".//{Q}StartCategoryScanResponse")
    return ([e.text for e in answer.findall(f"{Q}preferredCategoryIds/{Q}guid")],
            [e.text for e in answer.findall(f"{Q}requestedCategoryIdsInError/{Q}guid")])


def test_start_category_scan_shapes(server):
    assert category_scan(server, (OOBE,)) == ([OOBE], [])  # the captured one: a product
    assert category_scan(server, (DEFENDER, DEFINITIONS)) == ([DEFENDER], [])  # product + classification
    assert category_scan(server, (OOBE,), (DEFENDER, DEFINITIONS)) == ([OOBE, DEFENDER], [])
    assert category_scan(server, (OOBE,), (UNKNOWN, DEFENDER)) == ([OOBE], [UNKNOWN])  # its AND-group dropped
    assert category_scan(server, (OOBE, DEFENDER)) == ([], [])  # two products in one group
    assert category_scan(server, (OOBE,), (FAMILY,)) == ([], [])  # a product family: no preferred ids
    assert category_scan(server, (DEFINITIONS,)) == ([], [])  # a classification alone
    assert category_scan(server, (COMPANY,)) == ([], [])
    root = post(server, "StartCategoryScan", "<requestedCategories><CategoryRelationship><IndexOfAndGroup>0"
                f"</IndexOfAndGroup><CategoryId>{UNKNOWN}</CategoryId></CategoryRelationship></requestedCategories>")
    answer = root.find(f".//{Q}StartCategoryScanResponse")
    assert [child.tag.removeprefix(Q) for child in answer] == ["requestedCategoryIdsInError"]  # empty arrays omitted


def extended(server, rids: list[int], info_types: list[str], locales: list[str] = (), operation: str =
             "GetExtendedUpdateInfo") -> ET.Element:
    types = "".join(f"<XmlUpdateFragmentType>{t}</XmlUpdateFragmentType>" for t in info_types)
    strings = "".join(f"<string>{loc}</string>" for loc in locales)
    ids = "".join(f"<int>{n}</int>" for n in rids)
    root = post(server, operation, cookie() + f"<revisionIDs>{ids}</revisionIDs><infoTypes>{types}</infoTypes>"
                + (f"<locales>{strings}</locales>" if locales else ""))
    return root.find(f".//{Q}{operation}Result")


def test_extended_info_per_info_type(server):
    """§3.8: Published and VerificationRule return nothing; FileLocations only for revisions whose
    Extended was asked; LocalizedProperties by locale with the language fallback; revisions outside
    the client's closure (an update of no selected product, not approved) and unknown ids out of scope."""
    from catalogkit import LEAF, software

    from devupdate.wsus.catalog import store
    from devupdate.wsus.catalog.document import parse_update

    store.import_documents([parse_update(software("cdcdcdcd-0000-4000-8000-000000000001").encode())])
    bundle, leaf, lonely = rid(BUNDLE), rid(LEAF), rid("cdcdcdcd-0000-4000-8000-000000000001")
    nothing = extended(server, [bundle], ["Published", "VerificationRule"])
    assert [child.tag.removeprefix(Q) for child in nothing] == []  # no Updates, no FileLocations
    localized = extended(server, [leaf], ["LocalizedProperties"], ["de-DE"])
    updates = localized.findall(f"{Q}Updates/{Q}Update")
    assert [u.findtext(f"{Q}Xml").split(">", 1)[0] for u in updates] == ["<LocalizedProperties"]
    assert "<Language>en</Language>" in updates[0].findtext(f"{Q}Xml")  # de-DE → de → en
    assert localized.find(f"{Q}FileLocations") is None  # Extended not asked
    with_files = extended(server, [leaf, lonely, 987654], ["Extended"])
    assert {u.findtext(f"{Q}ID") for u in with_files.findall(f"{Q}Updates/{Q}Update")} == {str(leaf)}
    assert with_files.findall(f"{Q}FileLocations/{Q}FileLocation")
    assert sorted(int(e.text) for e in with_files.findall(f"{Q}OutOfScopeRevisionIDs/{Q}int")) == sorted(
        [lonely, 987654])
    core = extended(server, [bundle], ["Core"])
    assert core.findtext(f"{Q}Updates/{Q}Update/{Q}Xml").startswith(f'<UpdateIdentity UpdateID="{BUNDLE}"')


def test_refresh_cache_leaves_out_bundle_members(server):
    """§3.7: one RefreshCacheResult per identity in the client's closure, whatever its action, but for
    Bundle members (real WSUS leaves them out and the client fetches them again)."""
    from catalogkit import LEAF, SMALL

    def identity(uid: str, number: int) -> str:
        return f"<UpdateIdentity><UpdateID>{uid}</UpdateID><RevisionNumber>{number}</RevisionNumber></UpdateIdentity>"

    root = post(server, "RefreshCache", cookie() + "<globalIDs>" + identity(BUNDLE, 200) + identity(LEAF, 200)
                + identity(SMALL, 200) + identity(COMPANY, 101) + "</globalIDs>")
    results = root.findall(f".//{Q}RefreshCacheResult/{Q}RefreshCacheResult")
    assert [(r.findtext(f"{Q}GlobalID/{Q}UpdateID"), r.findtext(f"{Q}Deployment/{Q}Action")) for r in results] == [
        (BUNDLE, "Install"), (COMPANY, "Evaluate")]
