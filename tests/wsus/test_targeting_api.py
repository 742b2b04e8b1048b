"""Target groups, computers, approvals, EULAs, auto-approval and the targeting mode over the JSON API
of a real ``devupdate serve`` ([wsus] §1d W6–W8): every answer checked against the OpenAPI document,
refusals 4xx with a reason (never 500), every approval audited as ``token:<name>``."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import jsonschema
import pytest
from catalogkit import software

from devupdate.admin.openapi import document

pytestmark = pytest.mark.timeout(300)

A = "aaaaaaaa-0000-4000-8000-000000000001"
E = "eeeeeeee-0000-4000-8000-00000000000e"
EULA = "e0e0e0e0-1111-4222-8333-444444444444"
ALL_ID = "a0a08746-4dbe-4a37-9adf-9e7652c0b421"


class Api:
    def __init__(self, url: str, token: str, operator: str):
        self.url, self.token, self.operator = url + "/api/v1", token, operator
        self.doc = document()

    def _schema(self, method: str, path: str, status: int) -> dict | None:
        bare = path.split("?", 1)[0]
        for template, methods in self.doc["paths"].items():
            parts, given = template[len("/api/v1"):].split("/"), bare.split("/")
            if len(parts) == len(given) and all(p.startswith("{") or p == g for p, g in zip(parts, given, strict=True)):
                if method.lower() in methods:
                    documented = methods[method.lower()]["responses"].get(str(status))
                    assert documented is not None, f"{method} {template} answered {status}, not documented"
                    return documented["content"]["application/json"]["schema"]
        raise AssertionError(f"{method} {path} is not in the document")

    def call(self, method: str, path: str, body: object = None, *, raw: bytes | None = None,
             operator: bool = False) -> tuple[int, dict]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.operator if operator else self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            status, payload = error.code, json.loads(error.read())
        assert status < 500, (method, path, status, payload)
        schema = self._schema(method, path, status)
        jsonschema.Draft202012Validator({**schema, "components": self.doc["components"]}).validate(payload)
        return status, payload

    def ok(self, method: str, path: str, body: object = None, status: int = 200) -> dict:
        got, payload = self.call(method, path, body)
        assert got == status, (method, path, got, payload)
        return payload

    def refused(self, method: str, path: str, body: object = None, *, status: int, code: str | None = None,
                **kwargs) -> str:
        got, payload = self.call(method, path, body, **kwargs)
        assert got == status, (method, path, got, payload)
        if code is not None:
            assert payload["error"]["code"] == code, payload
        return payload["error"]["message"]


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@pytest.fixture
def api(install, live_server, database, tmp_path) -> Api:
    from devupdate.wsus.targeting import service

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.xml").write_text(software(A))
    (folder / "e.xml").write_text(software(E).replace('PublicationState="Published"',
                                                      f'PublicationState="Published" EulaID="{EULA}"'))
    install.cli("wsus", "auto-approval", "set", "Test", "--disable")
    install.cli("wsus", "import", str(folder))
    service.register_computer("6f3c0000-0000-4000-8000-000000000001",
                              {"DnsName": "pc1.corp.example", "OSBuildNumber": "22631"})
    database.close()
    admin = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    operator = install.cli("tokens", "create", "ci-reader", "--role", "operator").stdout.strip().splitlines()[-1]
    return Api(live_server(workers=1).url, admin, operator)


def test_groups_and_computers(api):
    assert [g["Path"] for g in api.ok("GET", "/wsus/groups")] == [
        "All Computers", "All Computers / Test", "All Computers / Unassigned Computers"]
    site = api.ok("POST", "/wsus/groups", {"Name": "Site"}, status=201)
    floor = api.ok("POST", "/wsus/groups", {"Name": "Floor", "Parent": "site"}, status=201)
    assert (floor["ParentId"], floor["CreatedBy"]) == (site["Id"], "token:ci-admin")
    assert api.ok("POST", f"/wsus/groups/{floor['Id']}/rename", {"Name": "Floor 1"})["Name"] == "Floor 1"
    assert "exists already" in api.refused("POST", "/wsus/groups", {"Name": "FLOOR 1"}, status=409,
                                           code="group-exists")
    assert "built in" in api.refused("DELETE", f"/wsus/groups/{q('Unassigned Computers')}", status=409)
    assert "'devupdate wsus groups list'" in api.refused("DELETE", "/wsus/groups/nowhere", status=404)

    page = api.ok("GET", "/wsus/computers")
    [pc] = page["Items"]
    assert (pc["DnsName"], pc["Groups"][0]["Name"], page["Limit"], page["Total"], page["Next"]) == (
        "pc1.corp.example", "Unassigned Computers", 50, None, None)
    assigned = api.ok("PUT", f"/wsus/computers/{pc['TargetId']}/groups", {"Groups": ["Floor 1"]})
    assert [(m["Name"], m["Distance"]) for m in assigned["MemberOf"]] == [
        ("Floor 1", 0), ("Site", 1), ("All Computers", 2)]
    assert api.ok("GET", "/wsus/computers/pc1.corp.example")["OS"]["Build"] == 22631
    assert [c["DnsName"] for c in api.ok("GET", "/wsus/computers?group=Site")["Items"]] == ["pc1.corp.example"]
    assert api.ok("GET", f"/wsus/computers?group={q('Unassigned Computers')}")["Items"] == []
    assert "'devupdate wsus computers list'" in api.refused("GET", "/wsus/computers/ghost", status=404)
    assert "has subgroups" in api.refused("DELETE", "/wsus/groups/Site", status=409)
    api.ok("DELETE", f"/wsus/groups/{q('Floor 1')}")
    shown = api.ok("GET", f"/wsus/computers/{pc['TargetId']}")
    assert shown["Groups"] == [{"Id": "b73ca6ed-5727-47f3-84de-015e03f6a88a", "Name": "Unassigned Computers"}]


def test_approvals_need_the_eula_and_are_audited(api):
    message = api.refused("PUT", f"/wsus/updates/{E}/approvals/Test", {"Action": "install"}, status=409,
                          code="eula-not-accepted")
    assert message.endswith(f"'devupdate wsus eula accept {E}'")
    assert api.ok("POST", f"/wsus/eulas/{E}/accept")["EulaID"] == EULA
    approved = api.ok("PUT", f"/wsus/updates/{E}/approvals/Test",
                      {"Action": "optional", "Deadline": "2026-12-24T18:00:00Z", "DownloadPriority": 1})
    assert (approved["Action"], approved["Deadline"], approved["DownloadPriority"], approved["Actor"]) == (
        "OptionalInstall", "2026-12-24T18:00:00Z", 1, "token:ci-admin")
    assert [d["Id"] for d in api.ok("GET", f"/wsus/updates/{E}/approvals")] == [approved["Id"]]
    listed = api.ok("GET", "/wsus/approvals?group=Test")
    assert ([d["UpdateID"] for d in listed["Items"]], listed["Next"]) == ([E], None)
    assert "Block is not allowed" in api.refused("PUT", f"/wsus/updates/{A}/approvals/{ALL_ID}",
                                                 {"Action": "block"}, status=409, code="block-all-computers")
    withdrawn = api.ok("DELETE", f"/wsus/updates/{E}/approvals/test")
    assert (withdrawn["Id"], withdrawn["Revoked"]) == (approved["Id"], True)
    assert api.ok("GET", f"/wsus/updates/{E}/approvals") == []
    assert len(api.ok("GET", f"/wsus/updates/{E}/approvals?all=true")) == 1
    api.refused("DELETE", f"/wsus/updates/{E}/approvals/test", status=404, code="not-approved")
    events = api.ok("GET", f"/audit?action=wsus.&actor={q('token:ci-admin')}&limit=50")["Items"]
    assert [(e["Actor"], e["Action"], e["Target"], e["Outcome"]) for e in reversed(events)] == [
        ("token:ci-admin", "wsus.approve", f"{E} @ Test", "refused"),
        ("token:ci-admin", "wsus.eula.accept", EULA, "ok"),
        ("token:ci-admin", "wsus.approve", f"{E} @ Test", "ok"),
        ("token:ci-admin", "wsus.approve", f"{A} @ All Computers", "refused"),
        ("token:ci-admin", "wsus.unapprove", f"{E} @ Test", "ok"),
        ("token:ci-admin", "wsus.unapprove", f"{E} @ Test", "refused")]


def test_auto_approval_and_targeting_mode(api):
    rules = {r["Name"]: r for r in api.ok("GET", "/wsus/auto-approval")}
    assert (rules["All Computers"]["DeferDays"], rules["Test"]["Enabled"]) == (7, False)
    changed = api.ok("PUT", f"/wsus/auto-approval/{q('All Computers')}", {"DeferDays": 3, "AcceptEulas": True})
    assert (changed["DeferDays"], changed["AcceptEulas"], changed["Changed"]) == (3, True, True)
    assert api.ok("POST", f"/wsus/auto-approval/{q('all computers')}/pause")["Paused"] is True
    assert api.ok("POST", f"/wsus/auto-approval/{q('All Computers')}/resume")["Paused"] is False
    api.refused("PUT", f"/wsus/auto-approval/{q('All Computers')}", {"DeferDays": 31}, status=400)
    api.refused("PUT", "/wsus/auto-approval/Test", {"DeferDays": 2}, status=409, code="no-deferral")
    assert "the rules are" in api.refused("POST", "/wsus/auto-approval/Nightly/pause", status=404)
    assert api.ok("GET", "/wsus/targeting") == {"Mode": "server"}
    assert api.ok("PUT", "/wsus/targeting", {"Mode": "client"}) == {"Mode": "client", "Changed": True}
    assert api.ok("GET", "/wsus/eulas") == {"Accepted": [], "AwaitingAcceptance": []}


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/wsus/groups", {"Name": ""}),
    ("POST", "/wsus/groups", {"Name": "a;b"}),
    ("POST", "/wsus/groups", {"Name": "x" * 257}),
    ("POST", "/wsus/groups", {"Name": "bell\u0007"}),
    ("POST", "/wsus/groups", {"Name": 5}),
    ("POST", "/wsus/groups", {"Name": "ok", "Owner": "me"}),
    ("POST", "/wsus/groups", ["Site"]),
    ("PUT", f"/wsus/updates/{A}/approvals/Test", {"Action": "reboot"}),
    ("PUT", f"/wsus/updates/{A}/approvals/Test", {"Action": "install", "Deadline": "tomorrow"}),
    ("PUT", f"/wsus/updates/{A}/approvals/Test", {"Action": "install", "Deadline": "2026-13-45T99:00:00Z"}),
    ("PUT", f"/wsus/updates/{A}/approvals/Test", {"Action": "install", "DownloadPriority": 7}),
    ("PUT", f"/wsus/updates/{A}/approvals/Test", {"Action": "install", "DownloadPriority": True}),
    ("PUT", f"/wsus/updates/{A}/approvals/Test", {}),
    ("PUT", "/wsus/updates/KB123/approvals/Test", {"Action": "install"}),
    ("PUT", f"/wsus/updates/{A}/approvals/a%00b", {"Action": "install"}),
    ("PUT", "/wsus/computers/1/groups", {"Groups": "Test"}),
    ("PUT", "/wsus/computers/1/groups", {"Groups": ["Test"] * 65}),
    ("PUT", "/wsus/targeting", {"Mode": "both"}),
    ("PUT", "/wsus/auto-approval/Test", {"Paused": "yes"}),
    ("GET", "/wsus/computers?limit=0", None),
    ("GET", "/wsus/approvals?all=maybe", None),
])
def test_hostile_input_is_a_400_with_a_reason(api, method, path, body):
    message = api.refused(method, path, body, status=400)
    assert message


def test_operators_read_but_do_not_change_and_bad_json_is_refused(api):
    assert api.call("GET", "/wsus/groups", operator=True)[0] == 200
    status, payload = api.call("POST", "/wsus/groups", {"Name": "Ops"}, operator=True)
    assert status == 403
    assert api.refused("POST", "/wsus/groups", raw=b'{"Name": ', status=400, code="malformed-json")
    assert api.refused("PUT", f"/wsus/updates/{A}/approvals/{q('no such group')}", {"Action": "install"},
                       status=404, code="no-such-group")
    assert [g["Name"] for g in api.ok("GET", "/wsus/groups")] == ["All Computers", "Test", "Unassigned Computers"]
