"""``devupdate serve --tls``: real clients (curl, openssl s_client) trust the certificate from
``devupdate cert create`` for every discovery name; plain HTTP stays for internal downloads."""

from __future__ import annotations

import subprocess
import time

from helpers.tools import free_port, require_tool, wait_port

DOMAINS = "contoso.com,fabrikam.local"


def test_serve_tls_is_trusted_for_every_discovery_name(install, live_server):
    curl, openssl = require_tool("curl"), require_tool("openssl")
    env = {"DEVUPDATE_DNS_DOMAINS": DOMAINS, "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://pool.contoso.com",
           "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://updates.contoso.com", "DEVUPDATE_TLS_PORT": str(free_port())}
    install.cli("cert", "create", **env)
    server = live_server(args=("--tls",), **env)
    tls_port = int(env["DEVUPDATE_TLS_PORT"])
    wait_port(tls_port)
    ca = install.home / "tls" / "ca.crt"
    for name in ("ucupdates-r2.contoso.com", "ucupdates.contoso.com", "ucupdates-r2.fabrikam.local",
                 "pool.contoso.com", "updates.contoso.com"):
        out = subprocess.run([curl, "-sS", "--cacert", str(ca), "--resolve", f"{name}:{tls_port}:127.0.0.1",
                              f"https://{name}:{tls_port}/healthz"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert '"status":"ok"' in out.stdout.replace(" ", "")
    handshake = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername", "ucupdates-r2.contoso.com",
         "-verify_hostname", "ucupdates-r2.contoso.com", "-verify_return_error", "-CAfile", str(ca)],
        input="", capture_output=True, text=True, timeout=30)
    assert handshake.returncode == 0, handshake.stdout + handshake.stderr
    assert "Verify return code: 0 (ok)" in handshake.stdout
    wrong = subprocess.run([curl, "-sS", "--cacert", str(ca), "--resolve", f"evil.example:{tls_port}:127.0.0.1",
                            f"https://evil.example:{tls_port}/healthz"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 60  # hostname mismatch: the certificate names only ours
    plain = subprocess.run([curl, "-sS", f"{server.url}/healthz"], capture_output=True, text=True, timeout=30)
    assert plain.returncode == 0 and '"status"' in plain.stdout  # internal side stays on plain HTTP
    check = ('<Request><DeviceType>UCPhone</DeviceType><MACAddress>00-04-F2-AA-BB-CC</MACAddress>'
             '<Vendor>Polycom</Vendor><Model>CX600</Model><Revision>A</Revision><Locale>ENU</Locale></Request>')

    def post(url: str, *extra: str) -> tuple[str, str]:
        out = subprocess.run([curl, "-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert", str(ca), "-H",
                              "Content-Type: text/xml", "--data-binary", check, *extra, url],
                             capture_output=True, text=True, timeout=30)
        body, _, status = out.stdout.rpartition("\n")
        return status, body

    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    status, body = post(f"{server.url}/RequestHandler/ucdevice.upx")
    assert status == "200" and "<NumOfFiles>0</NumOfFiles>" in body  # internal checks stay on plain HTTP
    status, body = post(f"{server.url}/RequestHandlerExt/ucdevice.upx", "-u", "phones:s3cret-pass",
                        "-H", "X-Forwarded-Proto: https")
    assert status == "403" and "HttpsRequired" in body  # external side over plain HTTP: refused
    status, body = post(f"https://updates.contoso.com:{tls_port}/RequestHandlerExt/ucdevice.upx",
                        "--resolve", f"updates.contoso.com:{tls_port}:127.0.0.1", "-u", "phones:s3cret-pass")
    assert status == "200" and "<NumOfFiles>0</NumOfFiles>" in body
    assert server.stop() == 0
    time.sleep(0.5)
    gone = subprocess.run([curl, "-sS", "--cacert", str(ca), f"https://127.0.0.1:{tls_port}/healthz"],
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 7  # the HTTPS arbiter stopped with the service


def test_serve_tls_without_certificate_names_the_fix(install):
    proc = install.cli("serve", "--tls", check=False, DEVUPDATE_PORT=str(free_port()))
    assert proc.returncode == 1
    assert proc.stderr.startswith("devupdate: error: no certificate at ")
    assert "run 'devupdate cert create'" in proc.stderr


def test_serve_warns_about_a_certificate_missing_a_discovery_name(install, live_server):
    install.cli("cert", "create", DEVUPDATE_DNS_DOMAINS="contoso.com")
    server = live_server(DEVUPDATE_DNS_DOMAINS="contoso.com,fabrikam.local")
    assert "ucupdates-r2.fabrikam.local" in server.output()
    assert "certificate:" in server.output()
