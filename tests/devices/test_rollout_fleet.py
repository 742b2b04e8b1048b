"""A staged rollout end to end: a fleet of simulated phones (the Lync check and the device API mixed),
each connecting from an address of its own, against a real ``devupdate serve`` (2 workers), the rollout
driven with the real CLI. A full rollout over three stages, a halt caused by phones that download the
image and stay on the old one, report a failure or fall back, a resume, and an abort — with the exact
counts per stage, from the phones' side and the server's. And Lync phones only, with the watch running
by itself: the rollout halts on the phones that fetched the image and still run the old one, not on
those that never fetched it, nor on two behind one address (nobody can tell which fetched it)."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from fleet import CX600, V0, V1, V2, client, fleet, import_release, phonesim, server_env
from helpers.tools import wait_for

from devupdate.selection import bucket

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]


def _db(install):
    from devupdate import db

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    return db


def total_checks(install) -> int:
    from devupdate.devices.inventory import Device

    db = _db(install)
    try:
        return int(sum(d.checks for d in Device.select()))
    finally:
        db.database.close()


def failed_reports(install) -> int:
    from devupdate.devices.reports import DeviceReport

    db = _db(install)
    try:
        return DeviceReport.select().where(DeviceReport.state == "failed").count()
    finally:
        db.database.close()


def inventory_versions(install) -> dict[str, str]:
    """Device id → the version its inventory row shows (the fleet runs one module)."""
    from devupdate.devices.inventory import Device

    db = _db(install)
    try:
        return {d.device_id: next(iter(json.loads(d.versions).values())) for d in Device.select()}
    finally:
        db.database.close()


def generation(install) -> int:
    from devupdate.rules.lifecycle import current_generation

    db = _db(install)
    try:
        return current_generation()
    finally:
        db.database.close()


def served_everywhere(server, wanted: int, steady: float = 1.5) -> bool:
    """Every worker serves the rules generation ``wanted``: new connections, which land on whichever
    worker accepts them, all say so for ``steady`` seconds (a busy worker may accept none for a while;
    each refreshes its snapshot every 0.5 s, so answers that stay right that long mean every one has it)."""
    host = server.url.split("//")[1]
    since = time.monotonic()
    while True:
        conn = http.client.HTTPConnection(host, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        conn.close()
        if int(response.getheader("X-Snapshot-Generation", "-1")) < wanted:
            return False
        if time.monotonic() - since >= steady:
            return True
        time.sleep(0.05)


class Fleet:
    """The phones, split by protocol, and a round that counts like the server should."""

    def __init__(self, install, server, phones, json_ids: set[str], failing: dict[str, str]):
        self.install, self.server, self.phones, self.failing = install, server, phones, failing
        self.cl = client(server)
        self.json_phones = [p for p in phones if p.device_id in json_ids]
        self.xml_phones = [p for p in phones if p.device_id not in json_ids]
        self.rounds = 0

    def round(self, reports: int | None = None) -> phonesim.RolloutRound:
        before = {p.device_id: (next(iter(p.modules.values())), p.fell_back) for p in self.phones}
        a = phonesim.rollout_round(self.cl, self.xml_phones, failing=self.failing)
        b = phonesim.rollout_round(self.cl, self.json_phones, failing=self.failing, use_json=True)
        assert a.problems == [] and b.problems == []
        self.rounds += 1
        # the server has written every check (and the reports) before the watch looks: what each phone
        # checked with, or what a device API phone reported installed after its check
        assert wait_for(lambda: total_checks(self.install) == self.rounds * len(self.phones), timeout=20)
        expected = {}
        for phone in self.phones:
            version, fell_back = before[phone.device_id]
            now = next(iter(phone.modules.values()))
            took = phone in self.json_phones and now != version and phone.fell_back == fell_back
            expected[phone.device_id] = now if took else version
        assert wait_for(lambda: inventory_versions(self.install) == expected, timeout=20)
        if reports is not None:
            assert wait_for(lambda: failed_reports(self.install) == reports, timeout=20)
        versions = dict(a.versions)
        for version, n in b.versions.items():
            versions[version] = versions.get(version, 0) + n
        return phonesim.RolloutRound(a.checked + b.checked, a.offered + b.offered, a.installed + b.installed,
                                     a.failed + b.failed, versions)

    def watch(self) -> dict:
        rows = json.loads(self.install.cli("rules", "rollout", "check", "--json").stdout)
        assert len(rows) == 1
        return rows[0]

    def change(self, *args: str) -> dict:
        before = generation(self.install)
        result = self.install.cli("rules", "rollout", *args, "--json")
        if generation(self.install) != before:
            assert wait_for(lambda: served_everywhere(self.server, generation(self.install)), timeout=15)
        return json.loads(result.stdout)


def test_fleet_through_a_staged_rollout(install, live_server, tmp_path):
    v1 = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", v1.rule_id)
    import_release(install, tmp_path, V2)
    rule = v1.rule_id
    phones = fleet(200, installed=V1, source_network="127.0.0.0/8")
    tester, rest = phones[0], phones[1:]
    install.cli("test-devices", "add", "lab", "--mac", tester.mac)
    place = {p.device_id: bucket(rule, p.device_id) for p in rest}
    stage1 = {i for i, b in place.items() if b < 1000}
    stage2 = {i for i, b in place.items() if b < 5000}
    assert 8 <= len(stage1) <= 35 and 80 <= len(stage2) <= 120  # the hash spreads the fleet
    # one phone of the last stage still runs V0: it is offered the previous approved version, V1
    old = next(p for p in rest if place[p.device_id] >= 5000)
    old.modules = {"CPE.nbt": V0}
    second_only = sorted(stage2 - stage1)
    failing = {second_only[0]: "stuck", second_only[1]: "stuck", second_only[2]: "report",
               second_only[3]: "report", second_only[4]: "fallback", second_only[5]: "fallback"}
    json_ids = {p.device_id for p in phones[::4]} | {second_only[2], second_only[3]}

    approved = json.loads(install.cli("rules", "approve", rule, "--rollout", "10%,50%,100%", "--every", "24h",
                                      "--halt-at", "5%", "--fail-after-checks", "2", "--json").stdout)
    assert approved["ApprovedVersion"] == V2 and approved["RestoreVersion"] == V1
    assert {k: approved["Rollout"][k] for k in ("State", "Stage", "Stages", "Share", "PreviousVersion", "HaltAt")} == {
        "State": "running", "Stage": 1, "Stages": ["10%", "50%", "100%"], "Share": "10%", "PreviousVersion": V1,
        "HaltAt": "5%"}
    server = live_server(workers=2, **server_env(DEVUPDATE_ROLLOUT_CHECK_SECONDS="0"))
    f = Fleet(install, server, phones, json_ids, failing)

    # stage 1 (10 %): its phones and the test device take V2; the V0 phone gets V1; nobody else is offered
    first = f.round()
    assert (first.offered, first.installed, first.failed) == (len(stage1) + 2, len(stage1) + 2, 0)
    assert first.versions == {V2: len(stage1) + 1, V1: 199 - len(stage1)}
    assert f.round().offered == 0  # they now report what they run
    assert f.watch() == {"RuleId": rule, "Offered": len(stage1), "Updated": len(stage1), "Failed": 0,
                         "FailedBy": {}, "State": "running", "Stage": 1}

    # stage 2 (50 %): six of its new phones fail — two stay on V1, two report a failure, two fall back
    assert f.change("advance", rule)["Share"] == "50%"
    third = f.round(reports=2)
    new = len(stage2) - len(stage1)
    assert (third.offered, third.installed, third.failed) == (new, new - 4, 4)
    # what a Lync phone runs is known from its next check: the new ones still count as waiting; the
    # device API phones that reported "installed" count as updated already
    reported = sum(1 for i in second_only if i in json_ids and failing.get(i) not in ("stuck", "report"))
    assert f.watch() == {"RuleId": rule, "Offered": len(stage2), "Updated": len(stage1) + reported, "Failed": 2,
                         "FailedBy": {"reported": 2}, "State": "running", "Stage": 2}  # 2 % < 5 %
    fourth = f.round(reports=2)  # the fallback phones report V2, then fall back
    assert (fourth.offered, fourth.installed, fourth.failed) == (4, 0, 6)
    assert f.watch() == {"RuleId": rule, "Offered": len(stage2), "Updated": len(stage2) - 4, "Failed": 2,
                         "FailedBy": {"reported": 2}, "State": "running", "Stage": 2}
    fifth = f.round(reports=2)
    assert (fifth.offered, fifth.installed) == (6, 0)
    halted = f.watch()
    assert halted == {"RuleId": rule, "Offered": len(stage2), "Updated": len(stage2) - 6, "Failed": 6,
                      "FailedBy": {"fallback": 2, "reported": 2, "stuck": 2}, "State": "halted", "Stage": 2}
    shown = json.loads(install.cli("rules", "rollout", "show", rule, "--json").stdout)
    assert shown["State"] == "halted" and shown["Reason"].startswith(f"6 of {len(stage2)} devices offered failed")
    refused = install.cli("rules", "rollout", "advance", rule, check=False)
    assert (refused.returncode, "resume a halted one first" in refused.stderr) == (1, True)
    events = json.loads(install.cli("audit", "list", "--action", "rule.rollout", "--json").stdout)
    halts = [e for e in events if e["Action"] == "rule.rollout.halt"]
    assert len(halts) == 1 and halts[0]["Actor"] == "devupdate" and halts[0]["After"]["State"] == "halted"
    conn = http.client.HTTPConnection(server.url.split("//")[1])
    conn.request("GET", "/metrics")
    scrape = conn.getresponse().read().decode()
    assert f'devupdate_rollout_halted{{rule="{rule}"}} 1.0' in scrape
    assert f'devupdate_rollout_devices{{outcome="failed",rule="{rule}"}} 6.0' in scrape
    # the state survives a restart: halted, the share stays at 50 % (nobody new is offered)
    server.stop()
    server = f.server = live_server(workers=2, **server_env(DEVUPDATE_ROLLOUT_CHECK_SECONDS="0"))
    f.cl = client(server)
    assert f.round(reports=2).offered == 6
    assert f.watch()["State"] == "halted"

    # resume: those six are accepted; then the last stage: everyone
    assert f.change("resume", rule)["State"] == "running"
    assert f.watch()["State"] == "running"
    assert f.change("advance", rule)["Share"] == "100%"
    last = f.round(reports=2)
    rest_count = 199 - len(stage2)
    assert (last.offered, last.installed) == (rest_count + 6, rest_count)
    f.round(reports=2)
    assert f.watch() == {"RuleId": rule, "Offered": 199, "Updated": 193, "Failed": 6,
                         "FailedBy": {"fallback": 2, "reported": 2, "stuck": 2}, "State": "running", "Stage": 3}
    assert {k: v for k, v in json.loads(install.cli("rules", "show", rule, "--json").stdout)["Rollout"].items()
            if k in ("Offered", "Updated", "Failed", "AcknowledgedFailures")} == {
        "Offered": 199, "Updated": 193, "Failed": 6, "AcknowledgedFailures": 6}

    # abort = restore: V1 for everyone again, the rollout ends
    aborted = f.change("abort", rule)
    assert (aborted["ApprovedVersion"], aborted["RestoreVersion"]) == (V1, None)
    back = f.round()
    assert (back.offered, back.installed) == (194, 194)  # the 193 and the test device
    assert back.versions == {V1: 200}
    gone = install.cli("rules", "rollout", "show", rule, check=False)
    assert gone.returncode == 1 and "has no rollout" in gone.stderr
    trail = json.loads(install.cli("audit", "list", "--action", "rule.rollout", "--json").stdout)
    actions = [e["Action"] for e in trail]
    assert sorted(set(actions)) == ["rule.rollout.advance", "rule.rollout.end", "rule.rollout.halt",
                                    "rule.rollout.resume", "rule.rollout.start"]


def rollout_rows(install, rule: str) -> dict[str, tuple[str, str, bool]]:
    """Device id → (outcome, reason, downloaded) as the watch stored them."""
    from devupdate.rules.models import RolloutDevice

    db = _db(install)
    try:
        return {t.device_id: (t.outcome, t.reason, t.downloaded_at is not None)
                for t in RolloutDevice.select().where(RolloutDevice.rule_id == rule)}
    finally:
        db.database.close()


def test_lync_phones_that_download_and_keep_the_old_image_halt_the_rollout(install, live_server, tmp_path):
    """Lync phones say nothing after their check: the server knows one fetched the image from its
    download (GET of the image, from the address of the phone's last check). Three of them fetch it
    and keep the old version: after two more checks the watch — running by itself every second —
    halts the rollout. One never fetches it and two fetch it behind one address (NAT): those are not
    failures, they wait."""
    v1 = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", v1.rule_id)
    import_release(install, tmp_path, V2)
    rule = v1.rule_id
    phones = fleet(40, installed=V1, source_network="127.0.0.0/8")
    first = sorted((p for p in phones if bucket(rule, p.device_id) < 5000), key=lambda p: p.device_id)
    n = len(first)
    assert 12 <= n <= 28
    stuck, nat, ignoring = first[:3], first[3:5], first[5]
    nat[1].address = nat[0].address  # two phones behind one address
    failing = {p.device_id: "stuck" for p in stuck + nat} | {ignoring.device_id: "ignore"}
    halt_at = f"{250 / n:.2f}%"  # 3 failures of n halt it, 2 do not
    install.cli("rules", "approve", rule, "--rollout", "50%,100%", "--every", "24h", "--halt-at", halt_at,
                "--fail-after-checks", "2")
    server = live_server(workers=2, **server_env(DEVUPDATE_ROLLOUT_CHECK_SECONDS="1"))
    cl = client(server)

    def show() -> dict:
        return json.loads(install.cli("rules", "rollout", "show", rule, "--json").stdout)

    def counts() -> tuple:
        found = show()
        return found["State"], found["Offered"], found["Updated"], found["Failed"]

    def round_of_checks(number: int) -> phonesim.RolloutRound:
        result = phonesim.rollout_round(cl, phones, failing=failing)
        assert result.problems == []
        assert wait_for(lambda: total_checks(install) == number * len(phones), timeout=60)
        return result

    one = round_of_checks(1)
    assert (one.offered, one.installed, one.failed) == (n, n - 6, 5)
    # every phone of the first half offered; the downloads of the five that fetched it are theirs
    # (the NAT pair's is nobody's); no phone updated yet as far as the server knows (next check)
    downloaded = {p.device_id for p in first if p is not ignoring and p not in nat}
    assert wait_for(lambda: counts() == ("running", n, 0, 0)
                    and {i for i, row in rollout_rows(install, rule).items() if row[2]} == downloaded, timeout=60)
    two = round_of_checks(2)
    assert (two.offered, two.installed, two.failed) == (6, 0, 5)
    assert wait_for(lambda: counts() == ("running", n, n - 6, 0), timeout=60)
    three = round_of_checks(3)  # two checks after the download, still the old version: failed
    assert (three.offered, three.installed, three.failed) == (6, 0, 5)
    assert wait_for(lambda: counts() == ("halted", n, n - 6, 3), timeout=60)
    halted = show()
    assert halted["Reason"] == (f"3 of {n} devices offered failed ({3 / n:.1%}; threshold {halt_at}) — 3 stuck")
    rows = rollout_rows(install, rule)
    assert {i: rows[i] for i in failing} == {
        **{p.device_id: ("failed", "stuck", True) for p in stuck},
        **{p.device_id: ("waiting", "", False) for p in nat}, ignoring.device_id: ("waiting", "", False)}
    assert sum(1 for row in rows.values() if row[:2] == ("updated", "")) == n - 6
    events = json.loads(install.cli("audit", "list", "--action", "rule.rollout.halt", "--json").stdout)
    assert [(e["Actor"], e["After"]["Failed"]) for e in events] == [("devupdate", 3)]
    # halted: the share stays; nobody of the second half is offered
    four = round_of_checks(4)
    assert (four.offered, four.installed) == (6, 0)
    assert counts() == ("halted", n, n - 6, 3)
