"""``devupdate wsus report computers|updates|groups [--json]`` and ``/api/v1/wsus/report/…`` on a
real ``devupdate serve``: exact outputs over a seeded fleet (two computers in two groups, the
captured catalog, reported events), the API equal to the CLI's JSON and checked against the OpenAPI
document, group filters, pages, and refusals."""

from __future__ import annotations

import json
import re

import pytest
from catalogkit import BUNDLE, LEAF, SMALL, seed_catalog
from reportkit import CLIENT, batch, event
from test_catalog_api import Api

from devupdate.wsus.client.reporting import parse_batch
from devupdate.wsus.compliance import store
from devupdate.wsus.soap.envelope import parse_envelope
from devupdate.wsus.targeting import service as targeting

pytestmark = pytest.mark.timeout(180)
PC2 = "5b0e6f4a-8d51-4c3e-9a4b-2f6c7d8e9f01"
GHOST = "77777777-8888-4999-8aaa-bbbbbbbbbbbb"  # reported events, never got a cookie here
UNKNOWN_UPDATE = "12345678-1234-4234-8234-123456789abc"


def record(client: str, *events: str) -> None:
    store.record_batch(client, parse_batch(parse_envelope(batch(*events), max_depth=64,
                                                          max_elements=200_000).operation))


@pytest.fixture
def fleet(install, rt, tmp_path):
    seed_catalog(install, tmp_path)
    targeting.register_computer(CLIENT, {"DnsName": "pc1.contoso.test"})
    targeting.register_computer(PC2, {"DnsName": "PC2.contoso.test"})
    targeting.add_group("Pilot", actor="test")
    targeting.add_group("Pilot East", parent="Pilot", actor="test")
    targeting.assign_computer("pc1.contoso.test", ["Pilot East"], actor="test")
    record(CLIENT, event(156, misc=(f"U={BUNDLE};{LEAF};{SMALL}",), time="2026-10-04T15:00:00Z", target=CLIENT),
           event(182, update=BUNDLE, hresult=-2145099769, time="2026-10-04T15:10:00Z"),
           event(183, update=LEAF, time="2026-10-04T15:10:00Z"),
           event(147, time="2026-10-04T15:00:00Z"),
           event(183, update=SMALL, target=PC2))  # another computer's: dropped
    record(PC2, event(156, misc=(f"V={BUNDLE}", f"W={LEAF}"), time="2026-10-04T16:00:00Z", target=PC2),
           event(148, hresult=-2145123272, time="2026-10-04T16:00:00Z", target=PC2))
    record(GHOST, event(161, update=UNKNOWN_UPDATE, hresult=-5, target=GHOST, time="2026-10-04T17:00:00Z"))


HEADER = ("ComputerId                            DnsName           Needed  Installed  Failed  NotApplicable  "
          "LastSyncTime  LastStatusTime        LastScanError  ReportedBy")
COMPUTERS = f"""\
{HEADER}
{GHOST}                    0       0          1       0                            YYYY-MM-DDTHH:MM:SSZ
{CLIENT}  pc1.contoso.test  1       1          1       0                            YYYY-MM-DDTHH:MM:SSZ
{PC2}  PC2.contoso.test  0       2          0       0                            YYYY-MM-DDTHH:MM:SSZ  0x80240438
"""


def masked(text: str) -> str:
    """The time a batch arrived varies: each ISO time becomes a placeholder of the same width."""
    return re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "YYYY-MM-DDTHH:MM:SSZ", text)


def test_cli_reports_exact(install, fleet):
    out = install.cli("wsus", "report", "computers").stdout
    assert masked(out) == COMPUTERS, out
    updates = install.cli("wsus", "report", "updates").stdout.splitlines()
    assert updates[0].split() == ["UpdateID", "KB", "Needed", "Installed", "Failed", "NotApplicable", "Unknown",
                                  "Title"]
    rows = [line.split(None, 7) for line in updates[1:]]
    # the most failed first, then the most needed, then by UpdateID
    assert [r[0] for r in rows] == [UNKNOWN_UPDATE, BUNDLE, SMALL, LEAF]
    assert rows[0][1:] == ["0", "0", "1", "0", "2"]  # no KB, no title: not in the catalog
    assert rows[1][1:7] == ["2267602", "0", "1", "1", "0", "1"]

    data = json.loads(install.cli("wsus", "report", "updates", "--json").stdout)
    assert [(u["UpdateID"], u["Needed"], u["Installed"], u["Failed"], u["NotApplicable"], u["Unknown"],
             u["PendingReboot"]) for u in data] == [
        (UNKNOWN_UPDATE, 0, 0, 1, 0, 2, 0), (BUNDLE, 0, 1, 1, 0, 1, 0), (SMALL, 1, 0, 0, 0, 2, 0),
        (LEAF, 0, 2, 0, 0, 1, 1)]
    assert data[1]["KB"] == "2267602" and data[1]["Title"].startswith("Security Intelligence Update")
    assert data[0]["Title"] is None and data[0]["KB"] is None

    groups = json.loads(install.cli("wsus", "report", "groups", "--json").stdout)
    assert [(g["Path"], g["Computers"], g["Needed"], g["Installed"], g["Failed"], g["NotApplicable"],
             g["ComputersNeeding"], g["ComputersFailed"]) for g in groups] == [
        ("All Computers", 3, 1, 3, 2, 0, 1, 2),
        ("All Computers / Pilot", 1, 1, 1, 1, 0, 1, 1),
        ("All Computers / Pilot / Pilot East", 1, 1, 1, 1, 0, 1, 1),
        ("All Computers / Test", 0, 0, 0, 0, 0, 0, 0),
        ("All Computers / Unassigned Computers", 2, 0, 2, 1, 0, 0, 1)]
    text = install.cli("wsus", "report", "groups").stdout.splitlines()
    assert text[0].split() == ["Path", "Computers", "Needed", "Installed", "Failed", "NotApplicable",
                               "ComputersNeeding", "ComputersFailed"]
    assert text[1].split() == ["All", "Computers", "3", "1", "3", "2", "0", "1", "2"]

    computers = json.loads(install.cli("wsus", "report", "computers", "--group", "pilot", "--json").stdout)
    assert len(computers) == 1
    (pc1,) = computers
    assert {k: v for k, v in pc1.items() if k not in ("LastStatusTime", "TargetId")} == {
        "ComputerId": CLIENT, "DnsName": "pc1.contoso.test", "Needed": 1, "Installed": 1, "Failed": 1,
        "NotApplicable": 0, "PendingReboot": 0, "LastSyncTime": None, "LastScanTime": "2026-10-04T15:00:00Z",
        "LastScanError": None, "LastScanErrorTime": None, "EventsDropped": 1, "ReportedBy": None}
    unassigned = json.loads(install.cli("wsus", "report", "updates", "--group", "Unassigned Computers",
                                        "--json").stdout)
    assert [(u["UpdateID"], u["Installed"], u["Failed"], u["Unknown"]) for u in unassigned] == [
        (UNKNOWN_UPDATE, 0, 1, 1), (LEAF, 1, 0, 1), (BUNDLE, 1, 0, 1)]
    shown = json.loads(install.cli("wsus", "computers", "show", CLIENT, "--json").stdout)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", shown["LastStatusTime"])
    assert shown["LastStatusTime"] == pc1["LastStatusTime"]
    missing = install.cli("wsus", "report", "computers", "--group", "Nowhere", check=False)
    assert missing.returncode != 0 and "no target group 'Nowhere'" in missing.stderr
    assert json.loads(install.cli("wsus", "report", "computers", "--limit", "1", "--offset", "2",
                                  "--json").stdout)[0]["ComputerId"] == PC2


def test_api_is_the_cli(install, fleet, live_server):
    operator = install.cli("tokens", "create", "ci-operator", "--role", "operator").stdout.strip().splitlines()[-1]
    server = live_server(workers=1)
    api = Api(server.url, operator)
    for kind in ("computers", "updates"):
        key = "Items"
        _, page = api.call("GET", f"/wsus/report/{kind}", 200)
        assert page == {key: json.loads(install.cli("wsus", "report", kind, "--json").stdout), "Limit": 50,
                        "Total": None, "Next": None}
        pages, link = [], f"/wsus/report/{kind}?limit=2"
        while link is not None:
            _, step = api.call("GET", link, 200)
            pages.extend(step[key])
            assert step["Limit"] == 2 and (step["Next"] is None or step["Next"].startswith(
                f"/api/v1/wsus/report/{kind}?limit=2&cursor="))
            link = step["Next"] and step["Next"].removeprefix("/api/v1")
        assert pages == page[key] and len(pages) > 2
        status, refused = api.call("GET", f"/wsus/report/{kind}?cursor=WyJ4IiwiIl0")
        assert (status, refused["error"]["code"]) == (400, "bad-cursor")
        assert "belongs to another listing ('x')" in refused["error"]["message"]
        _, pilot = api.call("GET", f"/wsus/report/{kind}?group=Pilot%20East", 200)
        assert pilot[key] == json.loads(install.cli("wsus", "report", kind, "--group", "Pilot East",
                                                    "--json").stdout)
        status, missing = api.call("GET", f"/wsus/report/{kind}?group=Nowhere", 404)
        assert missing["error"]["code"] == "no-such-group"
        for bad in ("limit=0", "limit=501", "offset=-1", "group=a%00b", "group=" + "x" * 259, "other=1"):
            status, refused = api.call("GET", f"/wsus/report/{kind}?{bad}")
            assert status == 400, (kind, bad, refused)
    _, groups = api.call("GET", "/wsus/report/groups", 200)
    assert groups == json.loads(install.cli("wsus", "report", "groups", "--json").stdout)
    status, _ = Api(server.url, "nope").call("GET", "/wsus/report/groups")
    assert status == 401


def bar(text: str, element_id: str) -> str:
    """The ``aria-label`` of the stacked bar in the row ``element_id``: what the chart shows."""
    match = re.search(rf'<div class="bar-row" id="{element_id}">.*?aria-label="([^"]*)"', text, re.S)
    assert match, element_id
    return match.group(1)


def test_console_compliance_charts(install, fleet, live_server):
    from admin import consolekit as kit

    kit.setup_install(install)
    kit.add_admin(install, "olga", "operator")
    server = live_server(workers=1)
    olga = kit.Browserless(server)
    assert olga.sign_in("olga").status_code == 303
    shown = olga.get("/compliance")
    assert shown.status_code == 200 and "WSUS compliance" in shown.text
    assert 'aria-current="page"' in shown.text.split('href="/console/compliance"', 1)[1][:40]
    groups = {g["Id"]: g for g in json.loads(install.cli("wsus", "report", "groups", "--json").stdout)}
    pilot = next(g for g in groups.values() if g["Name"] == "Pilot")
    assert bar(shown.text, f"group-{pilot['Id']}") == ("All Computers / Pilot: Installed 1, Needed 1, Failed 1, "
                                                         "Not applicable 0")
    assert bar(shown.text, f"update-{BUNDLE}").endswith(": Installed 1, Needed 0, Failed 1, Not applicable 0, "
                                                        "Unknown 1")
    assert bar(shown.text, f"update-{UNKNOWN_UPDATE}") == (f"{UNKNOWN_UPDATE}: Installed 0, Needed 0, Failed 1, "
                                                          "Not applicable 0, Unknown 2")
    assert re.findall(r'<tr id="computer-([0-9a-f-]{36})">', shown.text) == [GHOST, CLIENT, PC2]
    assert "0x80240438" in shown.text and "<script" not in shown.text.split("</head>", 1)[1]
    narrowed = olga.get(f"/compliance?group={pilot['Id']}")
    assert re.findall(r'<tr id="computer-([0-9a-f-]{36})">', narrowed.text) == [CLIENT]
    assert re.findall(r'<div class="bar-row" id="update-([0-9a-f-]{36})">', narrowed.text) == [BUNDLE, SMALL, LEAF]
    missing = olga.get("/compliance?group=Nowhere")
    assert missing.status_code == 404 and "no target group" in missing.text


def test_one_computer_cli_and_api(install, fleet, live_server):
    """``wsus report computer`` and ``/wsus/report/computers/{computer}``: one computer's state per update
    with the event that set it, failed first; the API equal to the CLI's JSON; a computer that only
    reported events is found by its client id; an unknown one is a 404 naming the listing."""
    pc1 = json.loads(install.cli("wsus", "report", "computer", "PC1.contoso.test", "--json").stdout)
    assert (pc1["ComputerId"], pc1["Needed"], pc1["Installed"], pc1["Failed"], pc1["UpdatesTotal"]) == (
        CLIENT, 1, 1, 1, 3)
    assert [(u["UpdateID"], u["State"], u["HResult"], u["Event"]["EventID"], u["Event"]["Name"],
             u["Event"]["TimeAtTarget"], u["Event"]["AppName"]) for u in pc1["Updates"]] == [
        (BUNDLE, "failed", "0x80246007", 182, "AGENT_INSTALLING_FAILED", "2026-10-04T15:10:00Z", "OOBE ZDP"),
        (SMALL, "needed", None, 156, "AGENT_STATUS_30", "2026-10-04T15:00:00Z", "OOBE ZDP"),
        (LEAF, "installed", None, 183, "AGENT_INSTALLING_SUCCEEDED", "2026-10-04T15:10:00Z", "OOBE ZDP")]
    assert re.fullmatch(r"[0-9a-f-]{36}", pc1["Updates"][0]["Event"]["EventInstanceID"])
    assert pc1["Updates"][0]["Event"]["ReceivedTime"] == pc1["LastStatusTime"]
    text = install.cli("wsus", "report", "computer", CLIENT).stdout.splitlines()
    assert text[:3] == [f"ComputerId: {CLIENT}", "DnsName: pc1.contoso.test", "Needed: 1"]
    assert [line.split()[:4] for line in text[11:]] == [
        [BUNDLE, "failed", "0x80246007", "182"], [SMALL, "needed", "156", "2026-10-04T15:00:00Z"],
        [LEAF, "installed", "183", "2026-10-04T15:10:00Z"]]
    ghost = json.loads(install.cli("wsus", "report", "computer", GHOST.upper(), "--json").stdout)
    assert (ghost["TargetId"], ghost["DnsName"], [(u["UpdateID"], u["Title"], u["State"], u["HResult"])
                                                  for u in ghost["Updates"]]) == (
        None, None, [(UNKNOWN_UPDATE, None, "failed", "0xFFFFFFFB")])
    missing = install.cli("wsus", "report", "computer", "nowhere.contoso.test", check=False)
    assert missing.returncode != 0 and "'devupdate wsus computers list'" in missing.stderr

    operator = install.cli("tokens", "create", "ci-operator", "--role", "operator").stdout.strip().splitlines()[-1]
    api = Api(live_server(workers=1).url, operator)
    _, shown = api.call("GET", f"/wsus/report/computers/{pc1['TargetId']}", 200)
    assert shown == pc1
    _, shown = api.call("GET", f"/wsus/report/computers/{GHOST}", 200)
    assert shown == ghost
    _, refused = api.call("GET", "/wsus/report/computers/nowhere", 404)
    assert refused["error"]["code"] == "no-such-computer"
    status, _ = api.call("GET", "/wsus/report/computers/" + "x" * 300)
    assert status == 400
