"""S8: overload is ``ServerBusy``, a defect ``InternalServerError`` — each a §4.1 fault envelope,
never a bare 500. Driven in-process with a stand-in operation that blocks or fails on purpose."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import peewee
import prometheus_client
import pytest

from devupdate.wsus.soap import registry

CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
BODY = (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><GetCookie xmlns="{CLIENT_NS}"/></s:Body></s:Envelope>').encode()


@pytest.fixture
def stand_in():
    """Stands in for GetCookie during the test, counted as a heavy operation; the real one (light)
    is put back afterwards."""
    behaviour: dict = {}

    def handler(call):
        return behaviour["run"](call)

    key = ("client", "GetCookie")
    saved = registry._HANDLERS.get(key), registry._WEIGHTS.get(key)
    registry._HANDLERS[key], registry._WEIGHTS[key] = handler, registry.HEAVY
    yield behaviour
    for table, value in zip((registry._HANDLERS, registry._WEIGHTS), saved, strict=True):
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


@pytest.fixture
def client(rt):
    import dataclasses

    from devupdate.app import create_app

    rt.settings = dataclasses.replace(rt.settings, wsus_allow_http_soap=True, wsus_heavy_in_flight=1,
                                      wsus_heavy_wait=0.2)
    return create_app(rt, background=False).test_client()


def detail(response) -> dict[str, str | None]:
    assert response.status_code == 500 and response.content_type == "text/xml; charset=utf-8"
    root = ET.fromstring(response.data)
    fault = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    return {"faultcode": fault.findtext("faultcode"), **{c.tag: c.text for c in fault.find("detail")}}


def post(client):
    return client.post("/ClientWebService/Client.asmx", data=BODY, content_type="text/xml; charset=utf-8")


def test_a_full_operation_answers_server_busy(client, stand_in):
    entered, release = threading.Event(), threading.Event()

    def slow(call):
        entered.set()
        release.wait(10)
        from devupdate.wsus.soap.envelope import el
        return el("GetCookieResponse")

    stand_in["run"] = slow
    first: list = []
    holder = threading.Thread(target=lambda: first.append(post(client)))
    holder.start()
    assert entered.wait(10)
    busy = detail(post(client))
    release.set()
    holder.join(10)
    assert (busy["faultcode"], busy["ErrorCode"]) == ("s:Server", "ServerBusy")
    assert busy["Method"] == f'"{CLIENT_NS}/GetCookie"'
    assert first[0].status_code == 200


def test_a_defect_is_an_internal_server_error_fault_with_its_id_logged(client, stand_in, caplog):
    stand_in["run"] = lambda call: 1 / 0
    fault = detail(post(client))
    assert (fault["faultcode"], fault["ErrorCode"], fault["Message"]) == ("s:Server", "InternalServerError", None)
    assert fault["ID"] in caplog.text and "ZeroDivisionError" in caplog.text
    assert "ZeroDivisionError" not in str(fault)  # no stack trace or path in the fault


def test_the_database_away_is_server_busy(client, stand_in):
    def away(call):
        raise peewee.OperationalError("could not connect to server")

    stand_in["run"] = away
    def count() -> float:
        return prometheus_client.REGISTRY.get_sample_value(
            "devupdate_wsus_soap_requests_total", {"service": "client", "operation": "GetCookie",
                                                   "outcome": "ServerBusy"}) or 0.0

    before = count()
    fault = detail(post(client))
    assert (fault["ErrorCode"], fault["Message"]) == ("ServerBusy", None)
    assert count() == before + 1  # counted by service, operation and outcome
