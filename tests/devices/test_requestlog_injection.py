"""The request audit log cannot be turned against whoever opens it: formula-like cells are
neutralised (a spreadsheet would run them), and a module field cannot forge a second module in
the Modules cell (``#`` and ``;`` are its separators). Over real HTTP, read back from the file."""

from __future__ import annotations

import http.client
from urllib.parse import quote, urlsplit

import pytest
from fleet import CX600, V1, audit_files, audit_rows, import_release, server_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]

CHECK = "/RequestHandler/ucdevice.upx"


def body(modules: str = "", **fields: str) -> bytes:
    values = {"DeviceType": "UCPhone", "MACAddress": "00-04-F2-AA-BB-CC", "SerialNumber": "CX600-0042",
              "Vendor": "Polycom", "Model": "CX600", "Revision": "A", "Locale": "ENU", **fields}
    xml = "".join(f"<{k}>{v}</{k}>" for k, v in values.items())
    return f'<?xml version="1.0" encoding="utf-8"?><Request>{xml}<Modules>{modules}</Modules></Request>'.encode()


def module(name: str, version: str = "4.0.7577.4363", timestamp: str = "2026-01-01T00:00:00Z") -> str:
    return (f"<Module><FileName>{name}</FileName><Version>{version}</Version>"
            f"<TimeStamp>{timestamp}</TimeStamp></Module>")


def send(server, method: str, target: str, data: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    try:
        conn.request(method, target, body=data, headers={"Content-Type": "text/xml"} if data else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def server(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    return live_server(workers=1, **server_env())


def test_formula_cells_are_neutralised(install, server):
    hyperlink = '=HYPERLINK("evil.example","open me")'
    checks = [
        body(Model='=HYPERLINK("x")'),
        body(Vendor="+SUM(1,2)", Revision="-2+3", UserID="@SUM(A1)"),
        body(DeviceType=hyperlink),
        body(module("=cmd.nbt")),
        body(SerialNumber="=cmd|' /C calc'!A0", MACAddress=""),  # refused, but logged as sent
    ]
    statuses = [send(server, "POST", CHECK, data)[0] for data in checks]
    assert statuses == [200, 200, 200, 200, 400]
    rows = audit_rows(install)
    assert rows[0]["Model"] == "'=HYPERLINK(\"x\")"
    assert (rows[1]["Vendor"], rows[1]["Revision"], rows[1]["User ID"]) == ("'+SUM(1,2)", "'-2+3", "'@SUM(A1)")
    assert rows[2]["Device Type"] == "'" + hyperlink
    assert rows[3]["Request Modules"] == "'=cmd.nbt;4.0.7577.4363;2026-01-01T00:00:00Z"
    assert (rows[4]["Serial Number"], rows[4]["Result"]) == ("'=cmd|' /C calc'!A0", "400 BadSerialNumber")
    # the bytes on disk: the quote is inside the CSV cell, before anything a spreadsheet would evaluate
    [path] = audit_files(install)
    text = path.read_text("utf-8")
    assert ',"\'=HYPERLINK(""x"")",' in text
    assert ",'=cmd|' /C calc'!A0," in text
    for row in rows:
        for value in row.values():
            assert value[:1] not in ("=", "+", "-", "@", "\t", "\r"), row


def test_module_fields_cannot_forge_a_second_module(install, server):
    refused = [
        body(module("CPE#x;y.nbt")),
        body(module("CPE;4.0.7577.4366.nbt")),
        body(module("CPE.nbt", timestamp="2026-01-01#SIP.ld;9.9.9.9;x")),
        body(module("CPE.nbt", timestamp="2026;01")),
    ]
    for data in refused:
        status, answer = send(server, "POST", CHECK, data)
        assert status == 400, answer
        assert b"<Code>BadModule</Code>" in answer
        assert b"'#' and ';'" in answer
    # the GET form: FileName and TimeStamp come from Module=FileName;Version;TimeStamp
    query = ("DeviceType=UCPhone&MACAddress=0004F2AABBCC&Vendor=Polycom&Model=CX600&Revision=A&Locale=ENU"
             "&Module=" + quote("CPE#SIP.ld;4.0.7577.4363"))
    status, answer = send(server, "GET", f"{CHECK}?{query}")
    assert (status, b"<Code>BadModule</Code>" in answer) == (400, True)
    rows = audit_rows(install)
    assert [row["Result"] for row in rows] == ["400 BadModule"] * 5
    assert all(row["Request Modules"] == "" for row in rows)
    # an honest check still logs its one module as one module
    status, _ = send(server, "POST", CHECK, body(module("CPE.nbt")))
    assert status == 200
    assert audit_rows(install)[-1]["Request Modules"] == "CPE.nbt;4.0.7577.4363;2026-01-01T00:00:00Z"
