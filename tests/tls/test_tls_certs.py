"""Certificates: what ``cert create`` makes, and what ``cert check`` / the startup check flag."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest
from click.testing import CliRunner
from cryptography import x509

from devupdate.settings import Settings
from devupdate.tls.certs import (
    CertificateError,
    check_certificate,
    create_ca,
    create_csr,
    create_server_cert,
    load_certificates,
    required_names,
    startup_check,
    tls_paths,
)
from devupdate.tls.cli import group as cert_group

NAMES = ["pool.contoso.com", "updates.contoso.com", "ucupdates-r2.contoso.com", "ucupdates.contoso.com"]
ENV = {"DEVUPDATE_PUBLIC_INTERNAL_URL": "http://pool.contoso.com", "DEVUPDATE_PUBLIC_EXTERNAL_URL":
       "https://updates.contoso.com", "DEVUPDATE_DNS_DOMAINS": "contoso.com"}


@pytest.fixture(scope="module")
def ca():
    return create_ca()


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("DEVUPDATE_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DEVUPDATE_HOME", str(home))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return home


def cli(*args: str):
    return CliRunner().invoke(cert_group, list(args), catch_exceptions=False)


def write(path, *pems: bytes):
    path.write_bytes(b"".join(pems))
    return path


def test_required_names_cover_service_hosts_and_every_discovery_name():
    settings = Settings(public_internal_url="http://pool.contoso.com:8080", public_external_url="https://10.0.0.5",
                        dns_domains=("contoso.com", "fabrikam.local"))
    assert required_names(settings) == ["pool.contoso.com", "10.0.0.5", "ucupdates-r2.contoso.com",
                                        "ucupdates.contoso.com", "ucupdates-r2.fabrikam.local",
                                        "ucupdates.fabrikam.local"]


def test_a_certificate_with_every_name_and_its_chain_passes(ca, tmp_path):
    server = create_server_cert(ca, [*NAMES, "10.0.0.5"])
    path = write(tmp_path / "server.crt", server.cert_pem(), ca.cert_pem())
    report = check_certificate(path, [*NAMES, "10.0.0.5"])
    assert report.warnings == []
    assert report.sans == [*NAMES, "10.0.0.5"] and report.subject == "CN=pool.contoso.com"
    assert "devupdate private CA" in report.issuer and report.chain_length == 2
    leaf = load_certificates(path)[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert check_certificate(write(tmp_path / "leaf.crt", server.cert_pem()), NAMES,
                             ca_path=write(tmp_path / "ca.crt", ca.cert_pem())).warnings == []


def test_missing_discovery_name_is_flagged(ca, tmp_path):
    path = write(tmp_path / "pool.crt", create_server_cert(ca, NAMES[:2]).cert_pem(), ca.cert_pem())
    (warning,) = check_certificate(path, NAMES).warnings
    assert warning.startswith("missing discovery name(s) ucupdates-r2.contoso.com, ucupdates.contoso.com: ")
    wildcard = write(tmp_path / "wild.crt", create_server_cert(ca, ["*.contoso.com"]).cert_pem(), ca.cert_pem())
    assert check_certificate(wildcard, NAMES).warnings == []  # one label under the wildcard: covered
    assert check_certificate(wildcard, ["a.b.contoso.com"]).warnings[0].startswith("missing name(s) a.b.contoso.com")


def test_near_expiry_and_expired_are_flagged(ca, tmp_path):
    soon = write(tmp_path / "soon.crt", create_server_cert(ca, NAMES, days=10).cert_pem(), ca.cert_pem())
    (warning,) = check_certificate(soon, NAMES).warnings
    assert warning.startswith("expires on ") and "(in 9 day(s))" in warning
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    old = write(tmp_path / "old.crt", create_server_cert(ca, NAMES, days=30, not_before=past).cert_pem(), ca.cert_pem())
    assert check_certificate(old, NAMES).warnings[0].startswith("expired on ")


def test_incomplete_chain_is_flagged(ca, tmp_path):
    leaf = write(tmp_path / "leaf.crt", create_server_cert(ca, NAMES).cert_pem())
    (warning,) = check_certificate(leaf, NAMES).warnings
    assert warning.startswith("incomplete chain: the issuer (O=devupdate,CN=devupdate private CA) is not in leaf.crt")
    other_ca = write(tmp_path / "other-ca.crt", create_ca("someone else").cert_pem())
    (warning,) = check_certificate(leaf, NAMES, ca_path=other_ca).warnings
    assert warning.startswith(f"does not chain to the CA in {other_ca}: unable to get local issuer certificate")
    unrelated = write(tmp_path / "mixed.crt", create_server_cert(ca, NAMES).cert_pem(), create_ca("x").cert_pem())
    assert check_certificate(unrelated, NAMES).warnings[0].startswith("incomplete chain")
    self_signed = write(tmp_path / "self.crt", ca.cert_pem())
    assert not any("chain" in w for w in check_certificate(self_signed, []).warnings)


def test_unreadable_inputs_are_clear_errors(ca, tmp_path):
    pem = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    garbage = write(tmp_path / "garbage.pem", pem)
    with pytest.raises(CertificateError, match="garbage.pem: not a PEM or DER certificate"):
        check_certificate(garbage, NAMES)
    with pytest.raises(CertificateError, match="not a PEM or DER certificate"):
        check_certificate(write(tmp_path / "random.bin", os.urandom(300)), NAMES)
    with pytest.raises(CertificateError, match="holds a private key, not a certificate"):
        check_certificate(write(tmp_path / "server.key", ca.key_pem()), NAMES)


def test_csr_carries_every_name():
    request = create_csr(NAMES)
    csr = x509.load_pem_x509_csr(request.csr_pem())
    assert csr.is_signature_valid
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == NAMES
    with pytest.raises(CertificateError, match="no name to put in the certificate"):
        create_csr([" "])


def test_cert_create_writes_the_default_paths_and_reuses_the_ca(home):
    paths = tls_paths(Settings.load())
    first = cli("create")
    assert first.exit_code == 0, first.output
    assert f"wrote {paths.cert}" in first.output and "new CA" in first.output
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600 and stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    ca_before = paths.ca_cert.read_bytes()
    report = check_certificate(paths.cert, required_names(Settings.load()), ca_path=paths.ca_cert)
    assert report.warnings == [] and report.sans == NAMES
    second = cli("create", "--days", "20")
    assert "reused the CA" in second.output and paths.ca_cert.read_bytes() == ca_before
    assert startup_check(Settings.load(), paths.cert)[0].endswith("renew it (devupdate cert create)")

    out = home / "elsewhere"
    csr = cli("create", "--csr", "--out", str(out))
    assert csr.exit_code == 0 and (out / "server.csr").is_file() and (out / "server.key").is_file()
    assert not (out / "ca.key").exists() and "send " in csr.output


def test_cert_check_command(home, ca, tmp_path):
    good = write(tmp_path / "good.crt", create_server_cert(ca, NAMES).cert_pem(), ca.cert_pem())
    result = cli("check", str(good))
    assert result.exit_code == 0 and "ok: every required name is present" in result.output
    assert "names     : pool.contoso.com, updates.contoso.com, ucupdates-r2.contoso.com" in result.output
    bad = write(tmp_path / "bad.crt", create_server_cert(ca, NAMES[:1], days=5).cert_pem())
    result = cli("check", str(bad))
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3  # missing names, expiry, chain
    assert "missing name(s) updates.contoso.com, ucupdates-r2.contoso.com, ucupdates.contoso.com" in warnings[0]
    assert cli("check", str(bad), "--strict").exit_code == 2
    data = json.loads(cli("check", str(bad), "--json", "--ca", str(write(tmp_path / "ca.crt", ca.cert_pem()))).output)
    assert data["sans"] == ["pool.contoso.com"] and len(data["warnings"]) == 2 and data["not_after"]
    garbage = cli("check", str(write(tmp_path / "junk.pem", b"hello\n")))
    assert garbage.exit_code == 1 and garbage.output.count("\n") == 1
    assert garbage.output.startswith(f"devupdate: error: {tmp_path / 'junk.pem'}: not a PEM or DER certificate")
    missing = cli("check", str(tmp_path / "nope.crt"))
    assert missing.exit_code == 1 and missing.output.endswith("nope.crt: No such file or directory\n")


def test_startup_check(home, ca, tmp_path):
    settings = Settings.load()
    paths = tls_paths(settings)
    assert startup_check(settings) == [f"no TLS certificate at {paths.cert}: run devupdate cert create "
                                       "(or --csr for your CA)"]
    assert cli("create").exit_code == 0
    assert startup_check(settings) == []
    assert startup_check(settings, paths.cert) == []
    paths.key.write_bytes(create_csr(["x"]).key_pem())  # a key from elsewhere
    assert "does not belong to certificate" in startup_check(settings)[0]
    write(paths.cert, b"garbage")
    assert "not a PEM or DER certificate" in startup_check(settings)[0]
    narrow = write(tmp_path / "narrow.crt", create_server_cert(ca, ["pool.contoso.com"]).cert_pem(), ca.cert_pem())
    (warning,) = startup_check(settings, narrow)  # another CA's chain, complete in the file
    assert "missing name(s)" in warning and "ucupdates-r2.contoso.com" in warning
