"""A body sent with a ``Content-Encoding`` is refused 415 with a reason in each endpoint's own
vocabulary (nothing decompresses it, and stored gzip bytes would be a wrong cab or a wrong log);
the JSON API counts a chunked body against its limit like a declared one."""

from __future__ import annotations

import gzip
import json

import requests
from helpers.cabs import make_package, make_update

CHECK = (b'<?xml version="1.0" encoding="utf-8"?><Request><DeviceType>UCPhone</DeviceType>'
         b"<MacAddress>00-04-F2-AA-BB-CC</MacAddress><Vendor>Polycom</Vendor><Model>CX600</Model>"
         b"<Revision>A</Revision><Locale>ENU</Locale></Request>")


def token(install) -> dict[str, str]:
    secret = json.loads(install.cli("tokens", "create", "ci", "--role", "admin", "--json").stdout)["Secret"]
    return {"Authorization": f"Bearer {secret}"}


def test_encoded_bodies_are_refused_in_each_vocabulary(install, live_server, tmp_path):
    install.cli("db", "upgrade")
    auth = token(install)
    server = live_server(workers=1)

    check = requests.post(server.url + "/RequestHandler/ucdevice.upx", data=gzip.compress(CHECK),
                          headers={"Content-Encoding": "gzip", "Content-Type": "text/xml"}, timeout=10)
    assert check.status_code == 415
    assert check.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert check.text == ('<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>UnsupportedEncoding</Code>'
                          "<Message>Content-Encoding 'gzip' is not accepted; send the body unencoded</Message>"
                          "</Error>\n")
    # identity is no encoding at all
    plain = requests.post(server.url + "/RequestHandler/ucdevice.upx", data=CHECK,
                          headers={"Content-Encoding": "identity"}, timeout=10)
    assert plain.status_code == 200 and "<NumOfFiles>0</NumOfFiles>" in plain.text

    api = requests.post(server.url + "/api/v1/test-devices", data=gzip.compress(b'{"Name": "lab"}'),
                        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}, timeout=10)
    assert (api.status_code, api.json()["error"]["code"]) == (415, "unsupported-encoding"), api.text

    cab = make_package(tmp_path, [make_update()]).read_bytes()
    upload = requests.post(server.url + "/api/v1/imports?filename=UCUpdates.cab", data=gzip.compress(cab),
                           headers={**auth, "Content-Type": "application/octet-stream", "Content-Encoding": "gzip"},
                           timeout=30)
    assert (upload.status_code, upload.json()["error"]["code"]) == (415, "unsupported-encoding"), upload.text
    assert json.loads(install.cli("rules", "list", "--json").stdout) == []  # nothing imported

    log = requests.post(server.url + "/RequestHandler/Files?type=DiagLog&mac=00-04-F2-AA-BB-CC&name=boot.txt",
                        data=gzip.compress(b"boot log\n"), headers={"Content-Encoding": "gzip"}, timeout=10)
    assert log.status_code == 415 and "<Code>UnsupportedEncoding</Code>" in log.text, log.text
    assert json.loads(install.cli("logs", "list", "--json").stdout) == []  # nothing stored


def test_a_chunked_json_body_is_counted_against_the_limit(install, live_server):
    install.cli("db", "upgrade")
    auth = token(install)
    server = live_server(workers=1)

    def chunks():
        yield b'{"Name": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    refused = requests.post(server.url + "/api/v1/test-devices", data=chunks(),
                            headers={**auth, "Content-Type": "application/json"}, timeout=30)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "body-too-large", refused.text
