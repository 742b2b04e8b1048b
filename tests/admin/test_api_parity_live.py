"""What the CLI can do, the JSON API of a real ``devupdate serve`` can do, through the same service
functions: tokens, console admins, external users, removing a site's configuration
(Remove-CsDeviceUpdateConfiguration, also in the CLI and the console), files cleanup, log cleanup,
filestore verify — the same answers, the same audit rows."""

from __future__ import annotations

import json

import pytest
import requests
from consolekit import Browserless, add_admin
from test_api_paging_live import Http

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(install, live_server):
    install.cli("db", "upgrade")
    add_admin(install, "alice", "admin")
    return live_server(workers=1)


@pytest.fixture
def http(install, server) -> Http:
    token = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    return Http(server.url, token)


def cli_json(install, *args: str):
    return json.loads(install.cli(*args, "--json").stdout)


def test_tokens_admins_and_users(install, http):
    status, _, made = http.call("POST", "/tokens", {"Name": "reader", "Role": "operator"})
    assert status == 201 and made["Secret"].startswith("dut_") and made["Name"] == "reader"
    reader = Http(http.url, made["Secret"])
    assert reader.call("GET", "/rules")[0] == 200
    assert reader.call("GET", "/tokens")[:3:2] == (403, {"error": {
        "code": "forbidden", "message": "token 'reader' has the operator role, which may only read; changes need "
                                        "an admin token"}})
    listed = http.get("/api/v1/tokens")
    assert [t["Name"] for t in listed["Items"]] == ["ci-admin", "reader"] and listed["Total"] == 2
    assert listed["Items"] == cli_json(install, "tokens", "list")
    assert http.call("POST", "/tokens", {"Name": "reader", "Role": "admin"})[0] == 409
    status, _, revoked = http.call("DELETE", "/tokens/reader")
    assert status == 200 and revoked["RevokedBy"] == "token:ci-admin"
    assert reader.call("GET", "/rules")[0] == 401
    assert http.call("DELETE", "/tokens/reader")[2] == {"error": {"code": "token-revoked",
                                                                  "message": "token 'reader' was revoked already"}}

    status, _, bob = http.call("POST", "/admins", {"Name": "bob", "Role": "operator", "Password": "bob-secret-1"})
    assert (status, bob["Name"], bob["Role"], bob["LastSignIn"]) == (201, "bob", "operator", None)
    browser = Browserless(http)
    assert browser.sign_in("bob", "bob-secret-1").status_code in (200, 303)
    assert '<span class="name">bob</span>' in browser.get("/").text
    status, _, replaced = http.call("POST", "/admins", {"Name": "bob", "Role": "admin", "Password": "bob-secret-2",
                                                        "Replace": True})
    assert (status, replaced) == (200, {**bob, "Role": "admin", "LastSignIn": replaced["LastSignIn"]})
    assert replaced["LastSignIn"] is not None
    assert http.get("/api/v1/admins")["Items"] == cli_json(install, "admins", "list")
    assert http.call("POST", "/admins", {"Name": "carl", "Role": "admin", "Password": "short"})[0] == 400
    assert http.call("DELETE", "/admins/bob")[:3:2] == (200, {"Name": "bob", "Role": "admin"})
    assert http.call("DELETE", "/admins/bob")[0] == 404

    assert http.call("POST", "/users", {"Name": "ext1", "Password": "phone-pass"})[:3:2] == (
        201, {"Name": "ext1", "Replaced": False})
    assert http.call("POST", "/users", {"Name": "ext1", "Password": "phone-pass2", "Replace": True})[:3:2] == (
        200, {"Name": "ext1", "Replaced": True})
    assert http.get("/api/v1/users") == {"Items": [{"Name": "ext1", "NTLM": True}], "Limit": 50, "Total": 1,
                                         "Next": None}
    assert http.get("/api/v1/users")["Items"] == cli_json(install, "users", "list")
    assert http.call("DELETE", "/users/ext1")[:3:2] == (200, {"Name": "ext1"})
    assert http.call("DELETE", "/users/ext1")[2]["error"]["code"] == "no-such-user"
    trail = [(e["Action"], e["Target"]) for e in http.get("/api/v1/audit?actor=token:ci-admin&limit=500")["Items"]]
    assert trail[::-1] == [("token.create", "reader"), ("token.revoke", "reader"), ("admin.add", "admin:bob"),
                           ("admin.replace", "admin:bob"), ("admin.remove", "admin:bob"), ("user.add", "user:ext1"),
                           ("user.add", "user:ext1"), ("user.remove", "user:ext1")]


def test_removing_a_site_configuration_everywhere(install, http):
    assert http.call("PUT", "/configuration/LogCleanUpInterval?site=berlin", {"Value": 3})[0] == 200
    assert http.call("PUT", "/configuration/ValidLogFileTypes?site=berlin", {"Value": ["Watson"]})[0] == 200
    assert http.call("PUT", "/configuration/LogFlushInterval", {"Value": 7})[0] == 200
    assert http.get("/api/v1/configurations") == {"Items": [
        {"Scope": "global", "Values": {"LogFlushInterval": 7}},
        {"Scope": "site:berlin", "Values": {"LogCleanUpInterval": 3, "ValidLogFileTypes": ["Watson"]}}],
        "Limit": 50, "Total": 2, "Next": None}
    status, _, removed = http.call("DELETE", "/configuration?site=berlin")
    assert (status, removed) == (200, {"Scope": "site:berlin",
                                       "Removed": {"LogCleanUpInterval": 3, "ValidLogFileTypes": ["Watson"]}})
    assert http.get("/api/v1/configuration?site=berlin")["LogCleanUpInterval"] == 10
    assert http.call("DELETE", "/configuration?site=berlin")[:3:2] == (404, {"error": {
        "code": "no-configuration", "message": "site:berlin has no configuration of its own to remove"}})
    assert http.call("DELETE", "/configuration?site=a/b")[0] == 400

    # the CLI: the same function, one line
    install.cli("config", "set", "MaxLogFileSize", "2048", "--site", "paris")
    done = install.cli("config", "remove", "--site", "paris")
    assert done.stdout == "site:paris: removed MaxLogFileSize=2048; the site follows the global values\n"
    again = install.cli("config", "remove", "--site", "paris", check=False)
    assert (again.returncode, again.stderr) == (1, "devupdate: error: site:paris has no configuration of its own "
                                                   "to remove\n")
    assert install.cli("config", "remove").stdout == ("global: removed LogFlushInterval=7; the global values are "
                                                      "the defaults again\n")

    # the console: the page lists the site's own values and removes them
    install.cli("config", "set", "LogCleanUpInterval", "5", "--site", "rome")
    browser = Browserless(http)
    browser.sign_in("alice")
    listed = browser.get("/configuration")
    assert listed.status_code == 200 and "site:rome" in listed.text and "Remove site:rome" in listed.text
    token = browser.csrf("/configuration")
    assert browser.post("/configuration/remove", data={"csrf_token": token, "site": "rome"}).status_code == 303
    gone = browser.get("/configuration")
    assert ("Removed the configuration of site:rome (LogCleanUpInterval=5): it follows "
                                        "the global values now.") in gone.text
    assert "site:rome" not in browser.get("/configuration").text.split("</p>", 3)[-1]
    actions = [(e["Action"], e["Target"], e["Actor"]) for e in http.get("/api/v1/audit?action=config.remove")["Items"]]
    cli = install.env["DEVUPDATE_ACTOR"]
    assert actions == [("config.remove", "site:rome", "console:alice"), ("config.remove", "global", cli),
                       ("config.remove", "site:paris", cli), ("config.remove", "site:berlin", "token:ci-admin")]


def test_cleanup_and_verify(install, http):
    status, _, files = http.call("POST", "/files/cleanup")
    assert (status, files) == (200, {"VersionsRemoved": [], "ObjectsRemoved": 0, "BytesFreed": 0,
                                     "GraceSeconds": files["GraceSeconds"], "OrphansRemoved": 0})
    assert cli_json(install, "files", "cleanup") == files
    status, _, logs = http.call("POST", "/logs/cleanup", {"DaysBack": 0})
    assert (status, logs["DaysBack"], logs["FilesRemoved"], logs["BytesFreed"]) == (200, 0, len(logs["Removed"]),
                                                                                    sum(r["Size"] for r in
                                                                                        logs["Removed"]))
    assert http.call("POST", "/logs/cleanup", {})[2]["DaysBack"] == 10  # LogCleanUpInterval
    assert http.call("POST", "/logs/cleanup")[:3:2] == (200, http.call("POST", "/logs/cleanup", {})[2])  # no body
    null = requests.post(http.url + "/api/v1/logs/cleanup", data="null", timeout=30,
                         headers={"Authorization": f"Bearer {http.token}", "Content-Type": "application/json"})
    assert null.status_code == 400 and null.json()["error"]["code"] == "bad-body"  # a JSON null is a body
    assert http.call("POST", "/logs/cleanup", {"DaysBack": -1})[0] == 400
    assert http.call("POST", "/filestore/verify")[:3:2] == (200, {"Ok": True, "Problems": []})
