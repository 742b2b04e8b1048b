"""A second test device for the same phone, through every door of a real ``devupdate serve``: the
JSON API and the console answer 409 with the reason, the CLI one line — and nothing is stored."""

from __future__ import annotations

import json

import pytest
from consolekit import Browserless, add_admin, setup_install
from test_api_values_live import Api

pytestmark = pytest.mark.timeout(120)

TAKEN = "MACAddress 0004F2AABBCC is already test device 'lab-1' in global; use that one, or remove it first"


@pytest.fixture
def server(install, live_server):
    setup_install(install)
    install.cli("db", "upgrade")
    add_admin(install, "alice", "admin")
    install.cli("test-devices", "add", "lab-1", "--mac", "00-04-F2-AA-BB-CC")
    return live_server(workers=1)


def stored(install) -> list[dict]:
    return json.loads(install.cli("test-devices", "list", "--json").stdout)


def test_same_mac_under_another_name_is_refused_everywhere(install, server):
    before = stored(install)
    cli = install.cli("test-devices", "add", "lab-2", "--mac", "0004f2aabbcc", check=False)
    assert (cli.returncode, cli.stderr) == (1, f"devupdate: error: {TAKEN}\n")

    token = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    api = Api(server.url, token)
    status, body = api.call("POST", "/test-devices", {"Name": "lab-2", "MACAddress": "00:04:f2:aa:bb:cc"})
    assert (status, body["error"]) == (409, {"code": "duplicate-test-device-identifier", "message": TAKEN})
    status, _ = api.call("POST", "/test-devices", {"Name": "lab-3", "MACAddress": "00:04:f2:aa:bb:cd"})
    assert status == 201
    status, body = api.call("PUT", "/test-devices/lab-3", {"MACAddress": "00-04-F2-AA-BB-CC"})
    assert (status, body["error"]["code"]) == (409, "duplicate-test-device-identifier")

    browser = Browserless(server)
    browser.sign_in("alice")
    token = browser.csrf("/test-devices")
    page = browser.post("/test-devices", data={"csrf_token": token, "name": "lab-4", "kind": "mac",
                                               "identifier": "00-04-F2-AA-BB-CC", "site": ""})
    assert page.status_code == 409
    assert TAKEN.replace("'", "&#39;") in page.text
    assert stored(install) == before + [{"Name": "lab-3", "Scope": "global", "IdentifierType": "MACAddress",
                                         "Identifier": "0004F2AABBCD"}]
