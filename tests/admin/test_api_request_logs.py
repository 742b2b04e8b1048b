"""The request audit log viewer over the API, against ``devupdate serve``: the files, a file's rows
paged by cursor and searched — the same reader as the console — and hostile names and cursors
refused with a reason."""

from __future__ import annotations

import base64
import json

import consolekit as kit
import pytest
import requests
from helpers.cabs import make_update
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(180)


def _cursor(parts: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).rstrip(b"=").decode()


def test_files_rows_search_and_refusals(install, live_server, tmp_path):
    kit.setup_install(install)
    kit.import_in_process(install, kit.cab_in(tmp_path / "cab", [make_update("Polycom", "CX600", kit.V_NEW)]))
    token = install.cli("tokens", "create", "ci-operator", "--role", "operator").stdout.strip().splitlines()[-1]
    server = live_server(workers=1)
    fleet = kit.phones(3, kit.CX600, kit.V_MID, seed=7, prefix="00-04-F2")
    kit.check_in(server, fleet)
    base, auth = server.url + "/api/v1", {"Authorization": f"Bearer {token}"}

    def get(path: str) -> requests.Response:
        return requests.get(base + path.removeprefix("/api/v1"), headers=auth, timeout=30)

    def rows_written() -> bool:
        files = get("/request-logs").json()["Items"]
        return bool(files) and len(get(f"/request-logs/{files[0]['Name']}").json()["Items"]) >= len(fleet)

    assert wait_for(rows_written)
    listing = get("/request-logs").json()
    [entry] = listing["Items"]
    assert (listing["Limit"], listing["Total"], listing["Next"]) == (50, 1, None)
    name = entry["Name"]
    assert name.startswith("RequestHandlerAuditLog_") and name.endswith(".log") and entry["Size"] > 0
    whole = get(f"/request-logs/{name}").json()
    assert (whole["Limit"], whole["Total"], whole["Next"]) == (50, None, None)
    macs = [row["Mac Address"] for row in whole["Items"]]
    assert len(macs) == len(fleet) and all(whole["Items"][0][c] is not None for c in ("Model", "Result"))

    first = get(f"/request-logs/{name}?limit=2")
    assert first.json()["Next"].startswith(f"/api/v1/request-logs/{name}?limit=2&cursor=")
    assert first.headers["Link"] == f'<{first.json()["Next"]}>; rel="next"'
    seen, link = [], f"/request-logs/{name}?limit=2"
    while link:
        page = get(link).json()
        seen += [row["Mac Address"] for row in page["Items"]]
        link = page["Next"]
    assert seen == macs

    found = get(f"/request-logs/{name}?q={macs[1].lower()}").json()
    assert [row["Mac Address"] for row in found["Items"]] == [macs[1]]

    for path, status, needle in (
            ("/request-logs/..%2F..%2Fetc%2Fpasswd", 404, ""),
            ("/request-logs/notalog.txt", 404, "'notalog.txt' is not a request audit log file name"),
            ("/request-logs/RequestHandlerAuditLog_x_20260101.log", 404,
             "there is no request audit log 'RequestHandlerAuditLog_x_20260101.log'"),
            (f"/request-logs/{name}?q=" + "x" * 201, 400, "'q'"),
            (f"/request-logs/{name}?cursor=" + _cursor(["request-log", "other.log", 10]), 400,
             "was made for sort='other.log'"),
            (f"/request-logs/{name}?cursor=" + _cursor(["request-log", name, -5]), 400, "negative offset"),
            (f"/request-logs/{name}?cursor=" + _cursor(["request-logs", "", 1]), 400, "belongs to another listing"),
            (f"/request-logs/{name}?cursor=%%%", 400, "cursor")):
        answer = get(path)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:300])
        if needle:
            assert needle in answer.json()["error"]["message"], (path, answer.json())

    # a hand-made offset past the end of the file (or of any file) is an empty last page, never a crash
    for offset in (entry["Size"], 4611686018427387904):
        past = get(f"/request-logs/{name}?cursor=" + _cursor(["request-log", name, offset]))
        assert past.status_code == 200, past.text[:300]
        assert (past.json()["Items"], past.json()["Next"]) == ([], None)
    assert json.loads(install.cli("audit", "requests", "show", name, "--start", str(2**62), "--json").stdout) == {
        "Items": [], "Next": None}
    for argv in (("audit", "requests", "show", name, "--start", "1" + "0" * 30),
                 ("audit", "list", "--offset", "1" + "0" * 25)):
        refused = install.invoke(*argv)
        assert refused.exit_code == 2 and "is not in the range" in refused.output, (argv, refused.output)

    # the CLI reads through the same reader
    assert json.loads(install.cli("audit", "requests", "list", "--json").stdout) == listing["Items"]
    shown = json.loads(install.cli("audit", "requests", "show", name, "--json").stdout)
    assert shown == {"Items": whole["Items"], "Next": None}
    searched = json.loads(install.cli("audit", "requests", "show", name, "--search", macs[1].lower(), "--json").stdout)
    assert searched["Items"] == found["Items"]
    refused = install.invoke("audit", "requests", "show", "../etc/passwd")
    assert refused.exit_code == 1 and "is not a request audit log file name" in refused.output
