"""The CVE-2025-59287 sequence (spec/wsus.md §8.6): GetRollupConfiguration → GetAuthorizationCookie →
GetCookie → ReportEventBatch, each carrying a forged .NET BinaryFormatter stream where WSUS
deserialized one. Every step is a documented SOAP fault, and no table of the database changes."""

from __future__ import annotations

import base64

import pytest
import requests
from wsus import wuskit
from wsus.wuskit import CLIENT, fault_code, found

SD = "http://www.microsoft.com/SoftwareDistribution"
REPORTING = "/ReportingWebService/ReportingWebService.asmx"
#: the header of a BinaryFormatter stream (SerializationHeaderRecord, BinaryLibrary) and the gadget
#: type name the published exploits use, as base64 like the cookie data WSUS decrypted and deserialized
PAYLOAD = base64.b64encode(bytes.fromhex("0001000000ffffffff01000000000000000c02000000")
                           + b"System.Windows.Data.ObjectDataProvider, PresentationFramework" * 16).decode()
FORGED_COOKIE = (f"<cookie><Expiration>2030-01-01T00:00:00Z</Expiration>"
                 f"<EncryptedData>{PAYLOAD}</EncryptedData></cookie>")
EVENT = (f"<eventBatch><ReportingEvent><BasicData><TargetID><Sid>{CLIENT}</Sid></TargetID>"
         "<SequenceNumber>1</SequenceNumber><TimeAtTarget>2026-12-03T00:00:00Z</TimeAtTarget>"
         "<EventInstanceID>0f0e0d0c-0b0a-4908-8706-050403020100</EventInstanceID><NamespaceID>1</NamespaceID>"
         "<EventID>161</EventID><SourceID>1</SourceID><UpdateID><UpdateID>0f0e0d0c-0b0a-4908-8706-050403020101"
         "</UpdateID><RevisionNumber>1</RevisionNumber></UpdateID><Win32HResult>0</Win32HResult><AppName>x</AppName>"
         f"</BasicData><ExtendedData><ReplacementStrings/><MiscData><string>{PAYLOAD}</string></MiscData>"
         "</ExtendedData><PrivateData><ComputerDnsName/><UserAccountName/></PrivateData></ReportingEvent></eventBatch>")


@pytest.fixture
def server(database, live_server):
    from devupdate.wsus.client import keys

    keys.forget_cache()
    yield live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    keys.forget_cache()


def rows(database) -> dict[str, int]:
    """Row count of every table: what a request could have left behind."""
    return {table: database.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            for table in sorted(database.get_tables())}


def reporting(server, operation: str, inner: str) -> requests.Response:
    body = wuskit.envelope(f'<{operation} xmlns="{SD}">{inner}</{operation}>')
    return requests.post(server.url + REPORTING, data=body, timeout=30,
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SD}/{operation}"'})


def test_the_sequence_gets_its_faults_and_leaves_no_state(server, database):
    stamp = wuskit.get_config(server)
    wuskit.authorization_cookie(server)  # a real client first: the server's identity and keys exist before the count
    database.connect(reuse_if_open=True)
    before = rows(database)
    assert "wsus_computer" in " ".join(before), before

    rollup = reporting(server, "GetRollupConfiguration", FORGED_COOKIE)
    # the rollup operations take the dummy cookie (empty EncryptedData) or a DSS cookie of this server
    assert (fault_code(rollup), found(rollup, "Message")) == ("InvalidCookie", "")
    authorization = wuskit.call(server, "GetAuthorizationCookie",
                                f"<clientId>{PAYLOAD[:200]}</clientId><dnsName>x</dnsName>")
    assert (fault_code(authorization), found(authorization, "Message")) == ("InvalidParameters", "clientId")
    cookie = wuskit.call(server, "GetCookie", wuskit.get_cookie_body(PAYLOAD, stamp))
    assert (fault_code(cookie), found(cookie, "Message")) == ("InvalidAuthorizationCookie", "authCookies")
    report = reporting(server, "ReportEventBatch",
                       FORGED_COOKIE + "<clientTime>2026-12-03T00:00:00Z</clientTime>" + EVENT)
    assert (fault_code(report), found(report, "Message")) == ("InvalidCookie", "cookie")
    for response in (rollup, authorization, cookie, report):
        assert response.status_code == 500 and response.content.startswith(b"<s:Envelope"), response.text[:300]

    assert rows(database) == before
