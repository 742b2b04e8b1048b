"""Which captured requests are replayed (spec/wsus.md §8.2), and what stands in for the ones the
captures lack.

Every exchange of ``cap:wsus-m0-native/{scan,flow}/`` and ``cap:wsus-m0/000141`` is accounted for:
either a named test posts its ``request.body`` (with a cookie this server minted put in) and
compares the answer structurally with ``response.body``, or the exchange is listed here as having no
recorded request — ``flow/000001`` (the first software page of the flow capture), ``flow/000014``
(its driver pass) and ``wsus-m0/000141`` (the 401-id SyncUpdates) keep only the response — and a
stand-in request built from the capture's other requests of the same operation is posted instead,
its answer compared with the recorded response. The README of the flow capture also names
exchanges 000003, 000012 and 000013, which the copy does not hold at all: nothing can replay them.
A new capture with a request, or a missing request turning up, fails :func:`test_inventory` until it
is replayed or listed.
"""

from __future__ import annotations

import importlib
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
import requests
from catalogkit import BUNDLE, NATIVE
from helpers.xmlshape import differences

from devupdate.wsus.client import cookies, keys
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.targeting import service as targeting

M0 = NATIVE.parent / "wsus-m0"
CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
CLIENT_ID = "7b3f5a1e-0000-4000-8000-00000000c11e"
VARY = ("…/EncryptedData", "…/Expiration", "…/UpdateInfo/ID", "…/Deployment/ID", "…/LastChangeTime", "…/Xml")

#: exchange → the tests that post its recorded request and compare the answer with the recorded one
REPLAYED = {
    "wsus-m0-native/scan/000001": ["test_soap_zeep::test_captured_native_get_config_replays_structurally_equal",
                                   "test_scan_http::test_the_whole_captured_native_scan_with_the_cookies_this_server_"
                                   "issues"],
    "wsus-m0-native/scan/000002": ["test_client_auth::test_captured_get_authorization_cookie_replays_structurally_"
                                   "equal"],
    "wsus-m0-native/scan/000003": ["test_client_auth::test_captured_get_cookie_redacted_is_refused_and_minted_"
                                   "replays_equal"],
    "wsus-m0-native/scan/000004": ["test_client_auth::test_captured_register_computer_redacted_is_refused_and_"
                                   "minted_replays_equal"],
    **{f"wsus-m0-native/scan/{n:06d}": ["test_scan_http::test_captured_category_scan_replays_wave_by_wave",
                                        "test_scan_http::test_the_whole_captured_native_scan_with_the_cookies_"
                                        "this_server_issues"] for n in range(5, 11)},
    "wsus-m0-native/flow/000015": ["test_scan_http::test_captured_extended_info_of_the_approved_update"],
    **{f"wsus-m0-native/flow/{n:06d}": ["test_reporting_http::test_captured_batches_replayed_answer_as_recorded"]
       for n in (16, 17, 18)},
}
#: exchanges whose request the capture lacks → the test that posts a stand-in and compares the answer
NO_REQUEST = {
    "wsus-m0-native/flow/000001": "test_replay_inventory::test_stand_in_for_flow_000001_software_page",
    "wsus-m0-native/flow/000014": "test_replay_inventory::test_stand_in_for_flow_000014_driver_pass",
    "wsus-m0/000141": "test_scan_http::test_installed_ids_over_the_limit_give_the_recorded_fault",
}
#: named by the flow capture's README, absent from the copy: no request and no response to compare
NOT_IN_THE_COPY = ("wsus-m0-native/flow/000003", "wsus-m0-native/flow/000012", "wsus-m0-native/flow/000013")


def exchanges() -> dict[str, bool]:
    """Every exchange of the captures in scope → whether its request body was recorded."""
    found = {}
    for folder in [*sorted((NATIVE / "scan").glob("0*")), *sorted((NATIVE / "flow").glob("0*")), M0 / "000141"]:
        if folder.is_dir():
            found[str(folder.relative_to(NATIVE.parent))] = (folder / "request.body").is_file()
    return found


def test_inventory():
    found = exchanges()
    if not found:
        pytest.skip(f"captures not found at {NATIVE} (clone shared/ beside the repository)")
    missing = sorted(name for name, has_request in found.items() if not has_request)
    assert missing == sorted(NO_REQUEST), "these captured exchanges have no request.body: replay a stand-in"
    assert sorted(name for name, has_request in found.items() if has_request) == sorted(REPLAYED), \
        "every captured request is replayed by a named test"
    assert not any((NATIVE.parent / name).exists() for name in NOT_IN_THE_COPY), "replay the new exchanges"
    for name in NOT_IN_THE_COPY:
        assert name.rsplit("/", 1)[1] in (NATIVE / "README.md").read_text()
    for named in [*(t for tests in REPLAYED.values() for t in tests), *NO_REQUEST.values()]:
        module, function = named.split("::")
        assert callable(getattr(importlib.import_module(f"wsus.{module}"), function, None)), named


# --- stand-ins --------------------------------------------------------------------------------------

@pytest.fixture
def scan_server(live_server, rt):
    from wsus.test_scan_http import seed

    seed()
    targeting.register_computer(CLIENT_ID, {"OSMajorVersion": 10, "OSBuildNumber": 26200})
    targeting.approve(BUNDLE, "All Computers", "install", actor="test")  # KB2267602, approved as in flow
    keys.forget_cache()
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true",
                       DEVUPDATE_WSUS_CONTENT_BASE_URL="http://192.0.2.1:8530")


def mint() -> str:
    state = cookies.new_state(cookies.CLIENT, CLIENT_ID, now=datetime.now(UTC), lifetime=3600, protocol="2.90",
                              config=config_stamp())
    return cookies.to_text(keys.seal(state))


def headers_of(exchange: str) -> dict[str, str]:
    """The recorded request headers (they were kept even where the body was not)."""
    lines = (NATIVE.parent / exchange / "request.headers").read_text().split("\n")[1:]
    kept = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() not in ("host", "content-length", "connection"):
            kept[name.strip()] = value.strip()
    return kept


def stand_in(source: str, **changes: str) -> bytes:
    """A captured SyncUpdates request of the same client with a cookie of this server and the
    ``parameters`` children in ``changes`` replaced ("" drops one)."""
    body = (NATIVE / source / "request.body").read_bytes().decode()
    body = re.sub(r"<EncryptedData>[^<]*</EncryptedData>", f"<EncryptedData>{mint()}</EncryptedData>", body, count=1)
    for name, value in changes.items():
        body, count = re.subn(rf"<{name}>.*?</{name}>|<{name}/>", value, body, count=1, flags=re.S)
        if not count:
            body = body.replace("</parameters>", value + "</parameters>")
    return body.encode()


def post(server, exchange: str, body: bytes) -> requests.Response:
    meta_path = "/ClientWebService/client.asmx"
    return requests.post(server.url + meta_path, data=body, headers=headers_of(exchange), timeout=30)


def test_stand_in_for_flow_000001_software_page(scan_server):
    """flow/000001: the first software page of a scan without a category filter. Stand-in: the
    captured first SyncUpdates (scan/000006) without its filter, as ``AlsoPerformRegularSync`` flow
    sends it; the answer has the recorded response's elements in its order, and every ``UpdateInfo``
    the children (and ``Deployment`` the children) of the recorded ones."""
    answer = post(scan_server, "wsus-m0-native/flow/000001", stand_in(
        "scan/000006", FilterCategoryIds="", NeedTwoGroupOutOfScopeUpdates=
        "<NeedTwoGroupOutOfScopeUpdates>false</NeedTwoGroupOutOfScopeUpdates>",
        AlsoPerformRegularSync="<AlsoPerformRegularSync>true</AlsoPerformRegularSync>"))
    assert answer.status_code == 200, answer.text
    recorded = (NATIVE / "flow/000001/response.body").read_bytes()
    q = f"{{{CLIENT_NS}}}"
    ours, theirs = ET.fromstring(answer.content), ET.fromstring(recorded)
    result, recorded_result = ours.find(f".//{q}SyncUpdatesResult"), theirs.find(f".//{q}SyncUpdatesResult")
    assert [c.tag for c in result] == [c.tag for c in recorded_result]  # NewUpdates, Truncated, NewCookie, DSNN
    first = recorded_result.find(f"{q}NewUpdates/{q}UpdateInfo")
    infos = result.findall(f"{q}NewUpdates/{q}UpdateInfo")
    assert "Evaluate" in {info.findtext(f"{q}Deployment/{q}Action") for info in infos}  # the first wave's
    for info in infos:  # each of ours shaped as the recorded first one (an Evaluate, not leaf)
        action = info.findtext(f"{q}Deployment/{q}Action")
        if action == "Evaluate":
            assert differences(ET.tostring(info), ET.tostring(first),
                               vary=VARY + ("UpdateInfo/ID", "UpdateInfo/IsLeaf", "UpdateInfo/Xml")) == []
        else:
            assert [c.tag for c in info] == [c.tag for c in first]
    assert differences(ET.tostring(result.find(f"{q}NewCookie")), ET.tostring(recorded_result.find(
        f"{q}NewCookie")), vary=VARY) == []
    assert result.findtext(f"{q}Truncated") == "false" and result.findtext(f"{q}DriverSyncNotNeeded") == "true"


def test_stand_in_for_flow_000014_driver_pass(scan_server):
    """flow/000014: the driver pass (75 devices recorded; the body was not). Stand-in: the captured
    driver pass of the scan capture (scan/000009, 70 devices) without its category filter, with the
    flow exchange's recorded headers; the answer equals the recorded response but for the cookie."""
    answer = post(scan_server, "wsus-m0-native/flow/000014", stand_in("scan/000009", FilterCategoryIds=""))
    assert answer.status_code == 200, answer.text
    assert differences(answer.content, (NATIVE / "flow/000014/response.body").read_bytes(), vary=VARY) == []
