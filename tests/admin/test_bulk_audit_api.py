"""Bulk rule actions and the readable audit trail over the JSON API of a real ``devupdate serve``:
one call, one audit entry per rule, the dry run's confirmation text, a stale ``Expect`` refused;
audit targets by name, date / actor / action filters, the CSV export, hostile filters → 400 with
the reason. Answers are checked against the OpenAPI document."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from apikit import conforms
from helpers.cabs import make_package, make_update

pytestmark = pytest.mark.timeout(120)

OLD, NEW = "4.0.7577.4366", "4.0.7577.4372"
CX600, CX700, VVX = (make_update("Polycom", "CX600", NEW), make_update("Polycom", "CX700", NEW),
                     make_update("Polycom", "VVX400", NEW))


class Api:
    def __init__(self, url: str, token: str):
        self.url, self.token = url + "/api/v1", token

    def raw(self, method: str, path: str, body: object = None) -> tuple[int, str, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read()

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        status, media, data = self.raw(method, path, body)
        value = json.loads(data)

        class Answer:  # what apikit.conforms reads
            status_code, mimetype, json = status, media.split(";")[0], value
        conforms(Answer, method, self.url + path.split("?")[0])
        return status, value


@pytest.fixture
def api(install, live_server, tmp_path) -> Api:
    from devupdate import db
    from devupdate.imports.service import import_cab
    from devupdate.rules import lifecycle

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    runtime = install.runtime()
    try:
        import_cab(runtime.store, runtime.settings,
                   make_package(tmp_path / "old", [make_update("Polycom", "CX600", OLD)]), actor="test:setup")
        lifecycle.approve(CX600.id, "test:setup")
        import_cab(runtime.store, runtime.settings, make_package(tmp_path / "new", [CX600, CX700, VVX]),
                   actor="test:setup")
    finally:
        db.database.close()
    token = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    return Api(live_server(workers=1).url, token)


def test_bulk_approve_dry_run_expect_and_one_entry_per_rule(api):
    status, listed = api.call("GET", "/rules?brand=polycom&model=CX*&state=pending")
    assert status == 200 and [r["Model"] for r in listed["Items"]] == ["CX600", "CX700"]
    status, dry = api.call("POST", "/bulk/rules/approve", {"Brand": "Polycom", "Model": "CX*", "DryRun": True})
    assert status == 200 and dry["DryRun"] is True and dry["Count"] == 2
    assert dry["Confirmation"][0] == "Approve 2 pending rules matching brand=Polycom model=CX*:"
    assert dry["Confirmation"][1] == (f"  Polycom CX600 ENU · CPE: All Polycom CX600 ENU phones will be offered CPE "
                                      f"{NEW} (upgrade from {OLD}).")
    assert [(r["Id"], r["Outcome"]) for r in dry["Rules"]] == [(CX600.id, "would-approve"), (CX700.id, "would-approve")]
    assert api.call("GET", "/rules?state=pending")[1]["Total"] == 3  # the dry run changed nothing

    # another admin resets CX700 in between: the confirmed selection is stale → 409, nothing done
    assert api.call("POST", f"/rules/{CX700.id}/reset")[0] == 200
    cx = {"Brand": "Polycom", "Model": "CX*"}
    status, stale = api.call("POST", "/bulk/rules/approve", {**cx, "Expect": dry["Expect"]})
    assert (status, stale["error"]["code"]) == (409, "selection-changed")
    assert api.call("GET", f"/rules/{CX600.id}")[1]["PendingVersion"] == NEW

    status, again = api.call("POST", "/bulk/rules/approve", {"Brand": "Polycom", "Model": "CX*", "DryRun": True})
    status, done = api.call("POST", "/bulk/rules/approve", {**cx, "Expect": again["Expect"]})
    assert status == 200 and done["DryRun"] is False and done["Count"] == 1
    assert [(r["Id"], r["Outcome"], r["ApprovedVersion"], r["RestoreVersion"]) for r in done["Rules"]] == [
        (CX600.id, "approved", NEW, OLD)]
    status, page = api.call("GET", "/audit?action=rule.approve&actor=token:ci-admin")
    assert [(e["Target"], e["TargetName"], e["Outcome"]) for e in page["Items"]] == [
        (CX600.id, "Polycom CX600 ENU", "ok")]

    status, by_ids = api.call("POST", "/bulk/rules/reset", {"Rules": [VVX.id[:8]], "DryRun": True})
    assert by_ids["Confirmation"] == [
        "Reset (reject) 1 pending rule matching 1 chosen rule:",
        f"  Polycom VVX400 ENU · CPE: Pending {NEW} is rejected. Nobody will be offered anything for this rule: "
        "it has no approved version."]


HOSTILE_BODIES = [
    ({}, "bad-body", "request body: which rules: at least one pattern or rule"),
    ({"Brand": ""}, "bad-body", "request body: which rules: at least one pattern or rule"),
    ({"Model": "*" * 9}, "bad-body", ""),
    ({"Model": "x" * 101}, "bad-body", ""),
    ({"Brand": 5}, "bad-body", ""),
    ({"Brand": "Polycom", "Extra": 1}, "bad-body", ""),
    ({"Rules": ["ffffffff"]}, "no-such-rule", "no rule matches 'ffffffff'"),
]
HOSTILE_QUERIES = [
    ("since=yesterday", "query parameter 'since' 'yesterday' refused: UTC: YYYY-MM-DD (2000–2099), "
                        "YYYY-MM-DDTHH:MM[:SS]Z, or an age: 7d, 12h"),
    ("since=2026-02-30", "query parameter 'since' '2026-02-30' refused: UTC: YYYY-MM-DD"),
    ("until=2026-13-01T00:00Z", "query parameter 'until' '2026-13-01T00:00Z' refused"),
    ("since=99999999d", "query parameter 'since' '99999999d' refused"),
    ("since=1999-12-31", "query parameter 'since' '1999-12-31' refused"),
    ("target=" + "x" * 101, "query parameter 'target'"),
    ("actor=a%01b", "query parameter 'actor'"),
]


def test_hostile_bodies_and_filters_are_refused_with_a_reason(api):
    """One server for every case (starting one costs seconds)."""
    for body, code, message in HOSTILE_BODIES:
        status, answer = api.call("POST", "/bulk/rules/approve", body)
        assert status in (400, 404) and answer["error"]["code"] == code, (body, answer)
        assert answer["error"]["message"].startswith(message), (body, answer)
    for query, message in HOSTILE_QUERIES:
        for path in ("/audit?", "/audit/export?"):
            status, media, data = api.raw("GET", path + query)
            answer = json.loads(data)
            assert status == 400 and answer["error"]["message"].startswith(message), (path, query, answer)
    status, listed = api.call("GET", "/rules?model=" + urllib.parse.quote("*" * 9))
    assert (status, listed["error"]["code"]) == (400, "bad-parameter") and "wildcards" in listed["error"]["message"]
    assert api.call("GET", "/rules?state=pending")[1]["Total"] == 3


def test_audit_filters_names_and_csv(api):
    api.call("POST", "/bulk/rules/approve", {"Model": "CX700"})
    status, page = api.call("GET", "/audit?target=cx700")  # by the rule's name, not its GUID
    assert [(e["Action"], e["TargetName"]) for e in page["Items"]] == [
        ("rule.approve", "Polycom CX700 ENU"), ("rule.pending", "Polycom CX700 ENU")]
    assert api.call("GET", "/audit?since=2000-01-01&until=2000-01-02")[1]["Items"] == []
    status, recent = api.call("GET", "/audit?since=1h&action=rule.approve&actor=token:ci-admin")
    assert [e["Target"] for e in recent["Items"]] == [CX700.id]

    status, media, data = api.raw("GET", "/audit/export?action=rule.&target=CX700")
    assert status == 200 and media.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(r["Action"], r["Target"], r["TargetName"], r["Actor"]) for r in rows] == [
        ("rule.approve", CX700.id, "Polycom CX700 ENU", "token:ci-admin"),
        ("rule.pending", CX700.id, "Polycom CX700 ENU", "test:setup")]
    assert json.loads(rows[0]["After"]) == {"ApprovedVersion": NEW, "PendingVersion": None, "RestoreVersion": None}
