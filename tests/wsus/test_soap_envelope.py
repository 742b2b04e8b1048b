"""The pure SOAP core: lenient reading (spec/wsus.md §2.3), response and fault shapes (§2.2, §4.1)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers.cabs import SHARED

from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap.services import CLIENT_NS, SERVICES, resolve, service_for

CAPTURES = SHARED / "wsus" / "captures"
WSDL = Path(__file__).resolve().parents[2] / "devupdate" / "wsus" / "soap" / "wsdl"
LIMITS = {"max_depth": 64, "max_elements": 200_000}


def envelope(inner: str, version: str = "1.1") -> bytes:
    ns = soap.SOAP12 if version == "1.2" else soap.SOAP11
    return f'<e:Envelope xmlns:e="{ns}"><e:Header><x/></e:Header><e:Body>{inner}</e:Body></e:Envelope>'.encode()


def test_captured_native_request_parses():
    body = (CAPTURES / "wsus-m0-native" / "scan" / "000001" / "request.body").read_bytes()
    parsed = soap.parse_envelope(body, **LIMITS)
    assert (parsed.version, parsed.name, parsed.namespace) == ("1.1", "GetConfig", CLIENT_NS)
    assert soap.text(parsed.operation, "protocolVersion") == "2.90"


def test_lenient_children_unknown_empty_nil_and_no_namespace():
    parsed = soap.parse_envelope(envelope(
        f'<SyncUpdates xmlns="{CLIENT_NS}" xmlns:i="{soap.XSI}"><Unknown><deep/></Unknown>'
        '<parameters><ComputerSpec/><Products i:nil="1"/><Other i:nil="true">x</Other>'
        '<InstalledNonLeafUpdateIDs><int>1</int><int> 2 </int></InstalledNonLeafUpdateIDs>'
        '<ExpressQuery xmlns="">true</ExpressQuery></parameters></SyncUpdates>'), **LIMITS)
    parameters = soap.child(parsed.operation, "parameters")
    assert soap.child(parameters, "ComputerSpec") is None and soap.child(parameters, "Products") is None
    assert soap.child(parameters, "Other") is None and soap.child(parameters, "Missing") is None
    assert soap.text(parameters, "ExpressQuery") == "true"
    assert soap.array(parameters, "InstalledNonLeafUpdateIDs", "int", limit=2) == ["1", "2"]
    assert soap.array(parameters, "OtherCachedUpdateIDs", "int", limit=2) == []
    with pytest.raises(soap.SoapFault) as over:
        soap.array(parameters, "InstalledNonLeafUpdateIDs", "int", limit=1)
    assert (over.value.error_code, over.value.message) == ("InvalidParameters", "parameters.InstalledNonLeafUpdateIDs")


@pytest.mark.parametrize("body", [
    b"", b"not xml", b"<a>", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
    envelope("").replace(b"<e:Body></e:Body>", b""),  # no Body
    b'<Envelope xmlns="urn:other"><Body><GetConfig/></Body></Envelope>',  # no SOAP namespace
    envelope(""),  # an empty Body
    envelope("<a>" * 65 + "</a>" * 65),  # deeper than 64
])
def test_refused_bodies_are_invalid_parameters_body(body):
    with pytest.raises(soap.SoapFault) as refused:
        soap.parse_envelope(body, **LIMITS)
    assert (refused.value.error_code, refused.value.message) == ("InvalidParameters", "body")


def test_element_cap():
    body = envelope("<a>" + "<b/>" * 1000 + "</a>")
    assert soap.parse_envelope(body, max_depth=64, max_elements=1005).name == "a"
    with pytest.raises(soap.SoapFault):
        soap.parse_envelope(body, max_depth=64, max_elements=1004)


def test_utf16_and_comments_take_the_defused_path():
    body = ('<?xml version="1.0" encoding="utf-16"?>' + envelope("<!-- c --><Ping/>").decode()).encode("utf-16")
    assert soap.parse_envelope(body, **LIMITS).name == "Ping"


def test_normalisation():
    assert soap.parse_guid("{81418B4E-82C1-48D0-9504-DA01DB6148AE}") == "81418b4e-82c1-48d0-9504-da01db6148ae"
    assert soap.parse_guid("81418b4e82c148d09504da01db6148ae") == "81418b4e-82c1-48d0-9504-da01db6148ae"
    for bad in ("{81418b4e-82c1-48d0-9504-da01db6148ae", "zz", ""):
        with pytest.raises(ValueError):
            soap.parse_guid(bad)
    assert [soap.parse_bool(v) for v in ("true", "1", " FALSE ", "0")] == [True, True, False, False]
    with pytest.raises(ValueError):
        soap.parse_bool("yes")
    assert soap.parse_datetime("2026-10-04T16:03:35.9967236Z") == datetime(2026, 10, 4, 16, 3, 35, 996723, UTC)
    assert soap.parse_datetime("2026-10-04T16:03:35") == datetime(2026, 10, 4, 16, 3, 35, tzinfo=UTC)
    assert soap.parse_datetime("2026-10-04T18:03:35+02:00") == datetime(2026, 10, 4, 16, 3, 35, tzinfo=UTC)
    assert soap.parse_datetime("9999-12-31T23:59:59.9999999").year == 9999
    for bad in ("2026-13-01T00:00:00", "2026-10-04", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError):
            soap.parse_datetime(bad)
    assert soap.format_datetime(datetime(2026, 10, 4, 13, 17, 7, 590000, UTC)) == "2026-10-04T13:17:07.59Z"
    assert soap.format_datetime(datetime(2026, 10, 4, 13, 17, 7)) == "2026-10-04T13:17:07Z"
    assert soap.format_date(datetime(2026, 10, 4, 23, 0, tzinfo=UTC)) == "2026-10-04"


def test_response_shape():
    payload = soap.render_response("1.1", soap.el(
        "XResponse", soap.el("Flag", False), soap.optional("Empty", []), None, soap.el("T", "a<&>"),
        soap.el("Array", [soap.el("int", n) for n in (1, 2)])), CLIENT_NS)
    assert payload.decode() == (
        f'<s:Envelope xmlns:s="{soap.SOAP11}"><s:Body xmlns:xsi="{soap.XSI}" xmlns:xsd="{soap.XSD}">'
        f'<XResponse xmlns="{CLIENT_NS}"><Flag>false</Flag><T>a&lt;&amp;&gt;</T>'
        "<Array><int>1</int><int>2</int></Array></XResponse></s:Body></s:Envelope>")
    root = ET.fromstring(soap.render_response("1.2", soap.el("XResponse", soap.el("A", "\x01")), CLIENT_NS))
    assert root.tag == f"{{{soap.SOAP12}}}Envelope"
    assert root.find(f"*/{{{CLIENT_NS}}}XResponse/{{{CLIENT_NS}}}A").text == "\ufffd"


def test_fault_11_exactly_as_real_wsus():
    recorded = (CAPTURES / "wsus-m0" / "000141" / "response.body").read_bytes()
    fault = soap.invalid("parameters.InstalledNonLeafUpdateIDs")
    ours = soap.render_fault("1.1", fault, "81418b4e-82c1-48d0-9504-da01db6148ae",
                             "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService/SyncUpdates")
    assert ours == recorded


def test_fault_12_and_server_side_codes():
    payload = soap.render_fault("1.2", soap.SoapFault("ServerBusy"), "id-1")
    root = ET.fromstring(payload)
    fault = root.find(f"{{{soap.SOAP12}}}Body/{{{soap.SOAP12}}}Fault")
    assert fault.find(f"{{{soap.SOAP12}}}Code/{{{soap.SOAP12}}}Value").text == "soap:Receiver"
    assert fault.find(f"{{{soap.SOAP12}}}Reason/{{{soap.SOAP12}}}Text").text == "Fault occurred"
    assert [(c.tag, c.text) for c in fault.find("Detail")] == [("ErrorCode", "ServerBusy"), ("Message", None),
                                                               ("ID", "id-1")]
    assert b"<faultcode>s:Server</faultcode>" in soap.render_fault("1.1", soap.SoapFault("InternalServerError"), "x")
    assert b"soap:Sender" in soap.render_fault("1.2", soap.invalid("body"), "x")
    with pytest.raises(ValueError):
        soap.SoapFault("NoSuchCode")


def test_operations_equal_the_shipped_wsdls():
    for service in SERVICES:
        document = ET.parse(WSDL / service.wsdl).getroot()
        names = {op.get("name") for op in document.iter("{http://schemas.xmlsoap.org/wsdl/}operation")}
        assert set(service.operations) - {"Ping"} <= names and names - {"Ping"} <= set(service.operations), service.key


def _env(name: str, ns: str) -> soap.Envelope:
    return soap.parse_envelope(envelope(f'<{name} xmlns="{ns}"/>'), **LIMITS)


def test_dispatch_rules():
    client = service_for("/clientwebservice/CLIENT.asmx")
    assert client is not None and service_for("/ReportingWebService/WebService.asmx").key == "reporting"
    assert service_for("/ClientWebService/Client.asmx/") is None
    act = f"{CLIENT_NS}/"
    assert resolve(client, "", _env("GetConfig", CLIENT_NS)) == "GetConfig"
    assert resolve(client, act + "GetConfig", _env("GetConfig", CLIENT_NS)) == "GetConfig"
    assert resolve(client, act + "SyncUpdates", _env("SyncPrinterCatalog", CLIENT_NS)) == "SyncPrinterCatalog"
    ping_ns = "http://www.microsoft.com/SoftwareDistribution/Server/IMonitorable"
    assert resolve(client, ping_ns + "/Ping", _env("Ping", ping_ns)) == "Ping"
    for action, body in ((act + "GetCookie", _env("GetConfig", CLIENT_NS)),  # mismatch
                         ("", _env("GetConfig", "urn:wrong")),  # wrong namespace
                         ("", _env("Nothing", CLIENT_NS)),  # unknown operation
                         (act + "Nothing", _env("GetConfig", CLIENT_NS)),
                         ("http://www.microsoft.com/SoftwareDistribution/GetConfig", _env("GetConfig", CLIENT_NS)),
                         (act + "SyncPrinterCatalog", _env("SyncUpdates", CLIENT_NS))):
        with pytest.raises(soap.SoapFault) as refused:
            resolve(client, action, body)
        assert refused.value.message == "SOAPAction", (action, body.name)


def _ordinary(body: bytes, **limits: int) -> soap.Envelope:
    """``parse_envelope`` without the int-run reader: every item an element."""
    return soap._envelope_of(soap._parsed(body, limits["max_depth"], limits["max_elements"]))


def _int_arrays(parsed: soap.Envelope) -> dict[str, list[int]]:
    from devupdate.wsus.client.sync_ops import int_array

    parameters = soap.child(parsed.operation, "parameters")
    return {name: int_array(parameters, name, limit=10_000, where="parameters", runs=parsed.int_runs)
            for name in ("InstalledNonLeafUpdateIDs", "OtherCachedUpdateIDs", "CachedDriverIDs")}


def scan_body(installed: str, other: str, extra: str = "") -> bytes:
    return envelope(f'<SyncUpdates xmlns="{CLIENT_NS}"><cookie><EncryptedData>x</EncryptedData></cookie><parameters>'
                    f"<InstalledNonLeafUpdateIDs>{installed}</InstalledNonLeafUpdateIDs>"
                    f"<OtherCachedUpdateIDs>{other}</OtherCachedUpdateIDs>{extra}</parameters></SyncUpdates>")


def test_int_runs_read_apart_give_what_the_elements_give():
    """A scan's long int arrays are cut out and read by a regular expression; the values, the caps on
    elements and depth, and every refusal are those of the ordinary parse."""
    installed = "".join(f"<int>{rid}</int>" for rid in range(200, 290))
    other = "".join(f"<int>{rid}</int>" for rid in range(10_000, 11_400))
    body = scan_body(installed, other)
    parsed = soap.parse_envelope(body, **LIMITS)
    assert len(parsed.int_runs) == 2 and not _ordinary(body, **LIMITS).int_runs
    assert _int_arrays(parsed) == _int_arrays(_ordinary(body, **LIMITS)) == {
        "InstalledNonLeafUpdateIDs": list(range(200, 290)), "OtherCachedUpdateIDs": list(range(10_000, 11_400)),
        "CachedDriverIDs": []}
    assert all(not element.attrib for element in parsed.operation.iter())  # the marker is gone
    total = sum(1 for _ in ET.fromstring(body).iter())  # the int items are at depth 6
    for depth, cap, refused in ((6, total, False), (5, total, True), (6, total - 1, True)):
        limits = {"max_depth": depth, "max_elements": cap}
        if refused:
            for parse in (soap.parse_envelope, _ordinary):
                with pytest.raises(soap.SoapFault) as fault:
                    parse(body, **limits)
                assert (fault.value.error_code, fault.value.message) == ("InvalidParameters", "body")
        else:
            assert _int_arrays(soap.parse_envelope(body, **limits)) == _int_arrays(_ordinary(body, **limits))


@pytest.mark.parametrize("installed", [
    "<int> 5</int>" + "<int>6</int>" * 10,  # a blank: the ordinary reader strips it
    "<int>-5</int>" + "<int>6</int>" * 10,  # negative
    "<x:int xmlns:x='urn:x'>5</x:int>" + "<int>6</int>" * 10,  # a prefix
    "<int>99999999999</int>" + "<int>6</int>" * 10,  # above 2^31 - 1: refused by the range check
])
def test_int_runs_other_shapes_take_the_ordinary_reader(installed):
    body = scan_body(installed, "<int>1</int>" * 20)
    try:
        expected: object = _int_arrays(_ordinary(body, **LIMITS))
    except soap.SoapFault as fault:
        expected = (fault.error_code, fault.message)
    try:
        found: object = _int_arrays(soap.parse_envelope(body, **LIMITS))
    except soap.SoapFault as fault:
        found = (fault.error_code, fault.message)
    assert found == expected


def test_an_int_run_that_is_no_element_is_parsed_the_ordinary_way():
    """Inside a processing instruction the run is text: the whole body is parsed as it is."""
    run = "<OtherCachedUpdateIDs>" + "<int>7</int>" * 20 + "</OtherCachedUpdateIDs>"
    body = scan_body("<int>1</int>" * 10, "<int>2</int>" * 10, f"<?note {run}?>")
    parsed = soap.parse_envelope(body, **LIMITS)
    assert _int_arrays(parsed)["OtherCachedUpdateIDs"] == [2] * 10
    assert not parsed.int_runs
