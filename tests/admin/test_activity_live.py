"""The activity series end to end: phones check in and download over HTTP from a real ``devupdate serve``,
the inventory's batch writes the hours, and ``GET /activity``, ``GET /rules/{rule}/adoption``,
``devupdate devices activity`` and ``devupdate devices adoption`` answer exactly what happened; a
malformed parameter is a 4xx (the CLI: exit 2) with the reason."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request

import consolekit as kit
import pytest
from helpers.cabs import make_update
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(180)
API = "/api/v1"
RULE = make_update("Polycom", "CX600").id


def get(url: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="seconds") + "Z"


def utc(posix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(posix, dt.UTC).replace(tzinfo=None)


def serve(install, live_server) -> dict:
    """A server with an operator token."""
    token = install.cli("tokens", "create", "ci-operator", "--role", "operator").stdout.strip().splitlines()[-1]
    return {"server": live_server(workers=1, DEVUPDATE_PUBLIC_INTERNAL_URL="http://updates.test"), "token": token}


@pytest.fixture
def served(install, live_server) -> dict:
    """A server with nothing seen yet."""
    kit.setup_install(install)
    install.cli("db", "upgrade")
    return serve(install, live_server)


@pytest.fixture
def fleet(install, live_server, tmp_path) -> dict:
    """Five CX600 phones check in (three on the old version, two on the approved one) and one of the
    old ones downloads the approved image; returns what the answers must say."""
    kit.setup_install(install)
    install.cli("db", "upgrade")
    # all of it within one UTC hour: the curve then has its one point, now
    wait_for(lambda: time.time() % 3600 < 3600 - 60, timeout=70, interval=1)
    kit.import_in_process(install, kit.cab_in(tmp_path / "cab", [make_update("Polycom", "CX600", kit.V_MID)]),
                          approve=(RULE,))
    served = serve(install, live_server)
    server, token = served["server"], served["token"]
    old = kit.phones(3, kit.CX600, kit.V_OLD, seed=1)
    results = kit.check_in(server, old + kit.phones(2, kit.CX600, kit.V_MID, seed=2))
    image = next(f for f in results[0].files if f.signature_file_name)  # the image, not its catalog
    import phonesim

    client = phonesim.Client(server.url, url_map={"http://updates.test": server.url})
    assert len(client.download(image)) == image.size

    def written() -> bool:
        status, days = get(f"{server.url}{API}/activity?days=1", token)
        return status == 200 and days[-1]["Checks"] == 5 and days[-1]["Downloads"] == 1  # type: ignore[index]

    assert wait_for(written, timeout=30), "the inventory's batch did not write the activity"
    from devupdate import db
    from devupdate.rules.models import Rule

    install.runtime()
    try:
        approved_at = Rule.get_by_id(RULE).approved_at
    finally:
        db.database.close()
    return {"server": server, "token": token, "size": image.size, "approved_at": approved_at}


def expected_days(days: int, size: int) -> list[dict]:
    today = dt.datetime.now(dt.UTC).date()
    rows = [{"Date": (today - dt.timedelta(days=n)).isoformat(), "Checks": 0, "ChecksInternal": 0, "ChecksExternal": 0,
             "Downloads": 0, "DownloadsInternal": 0, "DownloadsExternal": 0, "DownloadBytes": 0}
            for n in range(days - 1, 0, -1)]
    return rows + [{"Date": today.isoformat(), "Checks": 5, "ChecksInternal": 5, "ChecksExternal": 0, "Downloads": 1,
                    "DownloadsInternal": 1, "DownloadsExternal": 0, "DownloadBytes": size}]


def expected_adoption(fleet: dict, now: str) -> dict:
    approved_at = fleet["approved_at"]
    return {"RuleId": RULE, "ApprovedVersion": kit.V_MID, "ApprovedTime": iso(approved_at),
            "Since": iso(approved_at.replace(minute=0, second=0, microsecond=0)), "Resolution": "hour",
            "Devices": 5, "OnApproved": 2,
            "Versions": [{"Version": kit.V_MID, "Devices": 2, "Internal": 2, "External": 0, "Approved": True},
                         {"Version": kit.V_OLD, "Devices": 3, "Internal": 3, "External": 0, "Approved": False}],
            "Curve": [{"Time": now, "Approved": 2, "Devices": 5}], "Checks": 5, "Downloads": 1,
            "DownloadBytes": fleet["size"]}


def curve_time(answer: dict, before: float, after: float) -> str:
    """The curve's last point is "now" as the answer was made: between ``before`` and ``after``."""
    now = answer["Curve"][-1]["Time"]
    assert iso(utc(before)) <= now <= iso(utc(after)), (before, now, after)
    return now


def test_api_activity_days_and_rule_adoption(fleet):
    url, token = fleet["server"].url + API, fleet["token"]
    assert get(f"{url}/activity?days=3", token) == (200, expected_days(3, fleet["size"]))
    status, days = get(f"{url}/activity", token)
    assert (status, days) == (200, expected_days(30, fleet["size"]))  # 30 days unless told
    before = time.time()
    status, answer = get(f"{url}/rules/{RULE}/adoption", token)
    assert status == 200, answer
    assert answer == expected_adoption(fleet, curve_time(answer, before, time.time()))


BAD_DAYS = [
    ("days=0", "query parameter 'days' must be at least 1"),
    ("days=-1", "query parameter 'days' must be at least 1"),
    ("days=3651", "query parameter 'days' must be at most 3650"),
    ("days=ten", "query parameter 'days' must be a whole number (digits 0-9)"),
    ("days=", "query parameter 'days' must be a whole number (digits 0-9)"),
    ("days=1.5", "query parameter 'days' must be a whole number (digits 0-9)"),
    ("days=%EF%BC%91", "query parameter 'days' must be a whole number (digits 0-9)"),  # a full-width digit one
]


def test_api_refuses_malformed_parameters_with_the_reason(served):
    url, token = served["server"].url + API, served["token"]
    for query, reason in BAD_DAYS:
        assert get(f"{url}/activity?{query}", token) == (400, {"error": {"code": "bad-parameter",
                                                                          "message": reason}}), query
    dead = "00000000-0000-0000-0000-00000000dead"
    assert get(f"{url}/rules/{dead}/adoption", token) == (404, {"error": {
        "code": "no-such-rule", "message": f"no rule matches '{dead}'; list them with 'devupdate rules list'"}})
    assert get(f"{url}/rules/{'x' * 300}/adoption", token) == (400, {"error": {
        "code": "bad-rule-ref", "message": "path parameter 'rule' is longer than 38 characters"}})


def test_cli_activity_and_adoption_text_and_json(install, fleet):
    days = expected_days(3, fleet["size"])
    assert json.loads(install.cli("devices", "activity", "--days", "3", "--json").stdout) == days
    widths = {"Date": 10, "Checks": 6, "ChecksInternal": 14, "ChecksExternal": 14, "Downloads": 9,
              "DownloadBytes": max(13, len(str(fleet["size"])))}
    lines = ["  ".join(name.ljust(width) for name, width in widths.items()).rstrip()]
    lines += ["  ".join(str(row[name]).ljust(width) for name, width in widths.items()).rstrip() for row in days]
    assert install.cli("devices", "activity", "--days", "3").stdout == "\n".join(lines) + "\n"

    before = time.time()
    answer = json.loads(install.cli("devices", "adoption", RULE, "--json").stdout)
    assert answer == expected_adoption(fleet, curve_time(answer, before, time.time()))
    before = time.time()
    text = install.cli("devices", "adoption", RULE).stdout
    now = text.rsplit("\n", 2)[-2].split()[0]
    assert iso(utc(before)) <= now <= iso(utc(time.time()))
    since = iso(fleet["approved_at"].replace(minute=0, second=0, microsecond=0))
    assert text == (
        f"2 of 5 devices on the approved version {kit.V_MID} (since {since}: 5 check-ins, 1 downloads)\n"
        "\n"
        "Version        Devices  Internal  External  Approved\n"
        f"{kit.V_MID}  2        2         0         yes\n"
        f"{kit.V_OLD}  3        3         0\n"
        "\n"
        "Time                  Approved  Devices\n"
        f"{now}  2         5\n")


def test_cli_refuses_malformed_arguments_with_the_reason(install):
    install.cli("db", "upgrade")
    hint = " (see 'devupdate devices activity --help')"
    for value, reason in (("0", "0 is not in the range 1<=x<=3650"), ("3651", "3651 is not in the range 1<=x<=3650"),
                          ("ten", "'ten' is not a valid integer range")):
        proc = install.cli("devices", "activity", "--days", value, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2, "", f"devupdate: error: invalid value for '--days': {reason}{hint}\n"), value
    proc = install.cli("devices", "adoption", "no-such-rule", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", "devupdate: error: 'no-such-rule' is not a rule GUID, GUID prefix or Identity\n")
