"""Created certificates in front of real TLS clients: ``curl --cacert`` and ``openssl s_client``.

The server is Python's http.server wrapped in ``ssl`` with the files ``cert create`` wrote, the
same certificate + key pair ``serve --tls`` loads.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.tools import require_tool  # noqa: E402,F401

from devupdate.settings import Settings
from devupdate.tls.certs import create_ca, create_server_cert, tls_paths
from devupdate.tls.cli import group as cert_group

DISCOVERY = ["ucupdates-r2.contoso.com", "ucupdates.contoso.com", "ucupdates-r2.fabrikam.local"]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"devupdate over TLS\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def https_server(cert: Path, key: Path) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def created(tmp_path_factory) -> Settings:
    """``devupdate cert create`` for contoso.com and fabrikam.local, default paths."""
    home = tmp_path_factory.mktemp("home")
    env = {"DEVUPDATE_HOME": str(home), "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://pool.contoso.com",
           "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://updates.contoso.com",
           "DEVUPDATE_DNS_DOMAINS": "contoso.com,fabrikam.local"}
    unset = {k: None for k in os.environ if k.startswith("DEVUPDATE_")}  # None: removed while invoking
    result = CliRunner().invoke(cert_group, ["create"], env={**unset, **env})
    assert result.exit_code == 0, result.output
    return Settings.load(env)


def curl(port: int, name: str, ca: Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("curl"), "--silent", "--show-error", "--max-time", "10", "--cacert", str(ca),
                           "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def s_client(port: int, name: str, ca: Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
                           "-verify_hostname", name, "-verify_return_error", "-CAfile", str(ca), "-brief"],
                          input="", capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("name", [*DISCOVERY, "pool.contoso.com", "updates.contoso.com"])
def test_curl_and_openssl_accept_the_created_certificate_for_every_name(created, name):
    paths = tls_paths(created)
    with https_server(paths.cert, paths.key) as port:
        fetched = curl(port, name, paths.ca_cert)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout == "devupdate over TLS\n"
        handshake = s_client(port, name, paths.ca_cert)
        assert handshake.returncode == 0, handshake.stdout + handshake.stderr
        assert "Verification: OK" in handshake.stdout + handshake.stderr
        assert f"Verified peername: {name}" in handshake.stdout + handshake.stderr


def test_clients_refuse_a_certificate_without_the_discovery_name(created, tmp_path):
    ca = create_ca("another CA")
    server = create_server_cert(ca, ["pool.contoso.com"])
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "server.crt").write_bytes(server.cert_pem() + ca.cert_pem())
    (tmp_path / "server.key").write_bytes(server.key_pem())
    with https_server(tmp_path / "server.crt", tmp_path / "server.key") as port:
        assert curl(port, "pool.contoso.com", tmp_path / "ca.crt").returncode == 0
        refused = curl(port, "ucupdates-r2.contoso.com", tmp_path / "ca.crt")
        assert refused.returncode == 60 and "ucupdates-r2.contoso.com" in refused.stderr  # name mismatch
        handshake = s_client(port, "ucupdates-r2.contoso.com", tmp_path / "ca.crt")
        assert handshake.returncode != 0 and "hostname mismatch" in handshake.stdout + handshake.stderr
    env = {**{k: None for k in os.environ if k.startswith("DEVUPDATE_")}, "DEVUPDATE_HOME": str(created.home),
           "DEVUPDATE_DNS_DOMAINS": "contoso.com", "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://pool.contoso.com",
           "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://pool.contoso.com"}
    check = CliRunner().invoke(cert_group, ["check", str(tmp_path / "server.crt")], env=env)
    assert "warning: missing discovery name(s) ucupdates-r2.contoso.com, ucupdates.contoso.com" in check.output


def test_clients_refuse_it_without_the_ca(created):
    paths = tls_paths(created)
    with https_server(paths.cert, paths.key) as port:
        system = subprocess.run([require_tool("curl"), "--silent", "--max-time", "10", "--resolve",
                                 f"ucupdates-r2.contoso.com:{port}:127.0.0.1", f"https://ucupdates-r2.contoso.com:{port}/"],
                                capture_output=True, text=True, timeout=20)
        assert system.returncode == 60  # not trusted until the CA is installed: what the note in create says
