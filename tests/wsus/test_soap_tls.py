"""S5 end to end: with ``serve --tls`` and nothing else set, SOAP answers on the HTTPS listener
(zeep, trusting the installation's CA) and plain HTTP gets ``403`` naming the switch."""

from __future__ import annotations

import pytest
import requests
from helpers.tools import free_port, wait_port

zeep = pytest.importorskip("zeep")
from zeep.transports import Transport  # noqa: E402

from devupdate.wsus.soap.services import CLIENT_NS, SD  # noqa: E402


def test_soap_is_served_on_https_and_refused_on_plain_http(install, live_server):
    from pathlib import Path

    tls_port = free_port()
    env = {"DEVUPDATE_TLS_PORT": str(tls_port), "DEVUPDATE_PUBLIC_EXTERNAL_URL": f"https://localhost:{tls_port}",
           "DEVUPDATE_DNS_DOMAINS": "example.test"}
    install.cli("cert", "create", **env)
    server = live_server(args=("--tls",), **env)
    wait_port(tls_port)
    base = f"https://localhost:{tls_port}"
    session = requests.Session()
    session.verify = str(install.home / "tls" / "ca.crt")
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    wsdl_dir = Path(__file__).resolve().parents[2] / "devupdate" / "wsus" / "soap" / "wsdl"

    client = zeep.Client(str(wsdl_dir / "ClientWebService.fixed.wsdl"), transport=Transport(session=session))
    config = client.create_service(f"{{{CLIENT_NS}}}ClientSoap", base + "/ClientWebService/Client.asmx").GetConfig(
        protocolVersion="2.90")
    assert config.IsRegistrationRequired is True
    sync = zeep.Client(str(wsdl_dir / "ServerSyncWebService.wsdl"), transport=Transport(session=session))
    pong = sync.create_service(f"{{{SD}}}ServerSyncProxySoap12",
                               base + "/ServerSyncWebService/ServerSyncWebService.asmx").Ping(pingLevel=0)
    assert pong.IsHttps is True and pong.SuccessFlag is True and pong.DatabaseInfo is None

    wsdl = session.get(base + "/ClientWebService/Client.asmx?wsdl", timeout=10)
    assert f'location="{base}/ClientWebService/Client.asmx"' in wsdl.text

    plain = requests.post(server.url + "/ClientWebService/Client.asmx", data=b"<x/>", timeout=10,
                          headers={"Content-Type": "text/xml"})
    assert plain.status_code == 403 and "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP=true" in plain.text
    assert server.stop() == 0
