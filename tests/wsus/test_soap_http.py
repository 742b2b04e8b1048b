"""The SOAP endpoints over real HTTP on a running ``devupdate serve``: paths in any case, the
HTTPS rule (S5), ``?wsdl``, dispatch faults and body limits (spec/wsus.md §1f, §2.1, §2.2)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import requests

CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
GET_CONFIG = (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><GetConfig xmlns="{CLIENT_NS}">'
              "<protocolVersion>2.90</protocolVersion></GetConfig></s:Body></s:Envelope>").encode()


def fault_of(response: requests.Response) -> dict[str, str | None]:
    detail = ET.fromstring(response.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/detail")
    assert detail is not None, response.text
    return {child.tag: child.text for child in detail}


def test_plain_http_is_refused_unless_allowed(live_server):
    server = live_server(workers=1)
    response = requests.post(server.url + "/ClientWebService/Client.asmx", data=GET_CONFIG,
                             headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
    assert response.status_code == 403
    assert "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP=true" in response.text and "--tls" in response.text
    assert requests.get(server.url + "/ClientWebService/Client.asmx?wsdl", timeout=10).status_code == 403


def test_dispatch_over_http(live_server):
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true",
                         DEVUPDATE_PUBLIC_INTERNAL_URL="http://wsus.example.test:8530")
    url = server.url + "/clientwebservice/client.ASMX"
    ok = requests.post(url, data=GET_CONFIG, timeout=10, headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{CLIENT_NS}/GetConfig"'})
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert ok.headers["Cache-Control"] == "private"
    assert b"<IsRegistrationRequired>true</IsRegistrationRequired>" in ok.content

    mismatch = requests.post(url, data=GET_CONFIG, timeout=10, headers={
        "Content-Type": "text/xml", "SOAPAction": f"{CLIENT_NS}/GetCookie"})
    assert mismatch.status_code == 500 and mismatch.headers["Content-Type"] == "text/xml; charset=utf-8"
    fault = fault_of(mismatch)
    assert (fault["ErrorCode"], fault["Message"], fault["Method"]) == (
        "InvalidParameters", "SOAPAction", f'"{CLIENT_NS}/GetCookie"')

    body_decides = requests.post(url, timeout=10, headers={"Content-Type": "text/xml"},
                                 data=GET_CONFIG.replace(b"GetConfig", b"GetCookie"))
    assert fault_of(body_decides)["ErrorCode"] == "InvalidAuthorizationCookie"  # no action: the body's GetCookie

    wsdl = requests.get(server.url + "/ClientWebService/Client.asmx?WSDL", timeout=10)
    assert wsdl.status_code == 200 and wsdl.headers["Content-Type"] == "text/xml; charset=utf-8"
    addresses = [e.get("location") for e in ET.fromstring(wsdl.content).iter()
                 if e.tag.endswith("}address")]
    assert addresses == ["http://wsus.example.test:8530/ClientWebService/Client.asmx"] * 2

    big = requests.post(url, data=b"x" * (64 * 1024 + 1), timeout=10, headers={
        "Content-Type": "text/xml", "SOAPAction": f'"{CLIENT_NS}/GetConfig"'})
    assert big.status_code == 413
    encoded = requests.post(url, data=GET_CONFIG, timeout=10, headers={
        "Content-Type": "text/xml", "Content-Encoding": "gzip"})
    assert encoded.status_code == 415
    assert requests.get(url, timeout=10).status_code == 405


def test_the_fast_path_answers_as_flask_does(live_server):
    """The client services' POSTs skip Flask's request machinery unless JSON request logs need every
    request to pass its hooks: both servers give the same status, headers and body (fault IDs aside)
    for an answer, a fault, a body refused after parsing and an unknown operation; WSDLs stay Flask's."""
    import re

    def answers(server) -> list[tuple[int, dict[str, str], bytes]]:
        url = server.url + "/ClientWebService/Client.asmx"
        posts = [
            (GET_CONFIG, {"SOAPAction": f'"{CLIENT_NS}/GetConfig"'}),
            (GET_CONFIG, {"SOAPAction": f"{CLIENT_NS}/GetCookie"}),
            (GET_CONFIG.replace(b"GetConfig", b"Nothing"), {}),
            (b"<not xml", {"SOAPAction": f'"{CLIENT_NS}/SyncUpdates"'}),
        ]
        found = []
        for data, headers in posts:
            answer = requests.post(url, data=data, timeout=10, headers={"Content-Type": "text/xml; charset=utf-8",
                                                                          **headers})
            kept = {name: answer.headers.get(name) for name in ("Content-Type", "Content-Length", "Cache-Control")}
            found.append((answer.status_code, kept, re.sub(rb"<ID>[0-9a-f-]{36}</ID>", b"<ID/>", answer.content)))
        wsdl = requests.get(url + "?wsdl", timeout=10)
        found.append((wsdl.status_code, {"Content-Type": wsdl.headers["Content-Type"]}, wsdl.content))
        return found

    fast = answers(live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true"))
    flask = answers(live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_JSON_LOGS="true"))
    assert fast == flask
    assert [status for status, _, _ in fast] == [200, 500, 500, 500, 200]
    headers = fast[1][1]
    assert (headers["Content-Type"], headers["Cache-Control"]) == ("text/xml; charset=utf-8", "private")
    assert int(headers["Content-Length"] or 0) == len(fast[1][2]) + 36 - len("<ID/>") + len("<ID></ID>")
