"""Catalog checks: hash listed, signature valid, chain to an anchor — cross-checked with openssl and osslsigncode."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers.cabs import make_catalog, make_pki, run_tool, trust_anchor_pem
from helpers.tools import require_tool

from devupdate.packages import TrustAnchorError, check_catalog, load_trust_anchors

IMAGE = b"NBT1 CPE.nbt 4.0.7577.4372\n" + bytes(range(256)) * 64
SHA1, SHA256 = hashlib.sha1(IMAGE).digest(), hashlib.sha256(IMAGE).digest()  # noqa: S324


def codes(findings) -> list[str]:
    return [f.code for f in findings]


@pytest.fixture(scope="module")
def catalog() -> bytes:
    return make_catalog({"CPE.nbt": IMAGE, "CPE.cat.readme": b"other member"})


def test_listed_signed_and_trusted(catalog):
    assert check_catalog(catalog, SHA1, SHA256, [trust_anchor_pem()]) == []


def test_hex_digests_are_accepted(catalog):
    assert check_catalog(catalog, SHA1.hex(), SHA256.hex(), [trust_anchor_pem()]) == []


def test_sha256_member_hashes():
    cat = make_catalog({"CPE.nbt": IMAGE}, hash_name="sha256", digest_name="sha1")
    assert check_catalog(cat, b"\0" * 20, SHA256, [trust_anchor_pem()]) == []


def test_image_not_listed(catalog):
    other = b"another image"
    findings = check_catalog(catalog, hashlib.sha1(other).digest(), hashlib.sha256(other).digest(),  # noqa: S324
                             [trust_anchor_pem()])
    assert codes(findings) == ["hash-not-listed"] and str(findings[0]) == "image hash not listed in catalog"


def test_other_vendors_root_does_not_trust_it(catalog):
    findings = check_catalog(catalog, SHA1, SHA256, [trust_anchor_pem("Other Vendor")])
    assert codes(findings) == ["untrusted"]
    assert str(findings[0]) == "catalog signature does not chain to a trust anchor"


def test_without_anchors_the_signature_is_checked_and_the_chain_reported_unchecked(catalog):
    assert codes(check_catalog(catalog, SHA1, SHA256, None)) == ["no-trust-anchors"]
    assert codes(check_catalog(catalog, SHA1, SHA256, [])) == ["no-trust-anchors"]


def test_intermediate_or_pinned_signer_as_anchor(catalog):
    pki = make_pki()
    for anchor in (pki.intermediate, pki.signer):
        assert check_catalog(catalog, SHA1, SHA256, [anchor.public_bytes(serialization.Encoding.PEM)]) == []
    assert check_catalog(catalog, SHA1, SHA256, [pki.root.public_bytes(serialization.Encoding.DER)]) == []
    assert check_catalog(catalog, SHA1, SHA256, [pki.root]) == []


def test_bundle_with_several_anchors(catalog):
    bundle = trust_anchor_pem("Other Vendor") + trust_anchor_pem()
    assert check_catalog(catalog, SHA1, SHA256, [bundle]) == []


def test_altered_content_breaks_the_signature(catalog):
    tag = SHA1.hex().upper().encode("utf-16-le")
    forged = catalog.replace(tag, hashlib.sha1(b"evil").hexdigest().upper().encode("utf-16-le"))  # noqa: S324
    evil = b"evil"
    findings = check_catalog(forged, hashlib.sha1(evil).digest(), hashlib.sha256(evil).digest(),  # noqa: S324
                             [trust_anchor_pem()])
    assert codes(findings) == ["bad-signature"] and "altered after signing" in str(findings[0])


def test_altered_signature(catalog):
    at = len(catalog) - 10
    forged = catalog[:at] + bytes([catalog[at] ^ 1]) + catalog[at + 1:]
    assert codes(check_catalog(forged, SHA1, SHA256, [trust_anchor_pem()])) == ["bad-signature"]


@pytest.mark.parametrize("blob", [b"", b"CPE.nbt  1234", bytes(100), b"\x30\x82\xff\xff" + bytes(10),
                                  b"\x30\x03\x06\x01\x00"])
def test_not_signed_data(blob):
    assert codes(check_catalog(blob, SHA1, SHA256, [trust_anchor_pem()])) == ["not-signed-data"]


def test_certificate_bundle_is_not_a_catalog(tmp_path):
    """A .p7b of certificates is SignedData with no content and no signer."""
    (tmp_path / "c.pem").write_bytes(make_pki().signer.public_bytes(serialization.Encoding.PEM))
    proc = run_tool(require_tool("openssl"), "crl2pkcs7", "-nocrl", "-certfile", str(tmp_path / "c.pem"),
                    "-outform", "DER", "-out", str(tmp_path / "c.p7b"))
    assert proc.returncode == 0, proc.stderr
    assert codes(check_catalog((tmp_path / "c.p7b").read_bytes(), SHA1, SHA256, None)) == ["not-signed-data"]


def test_a_carried_certificate_whose_extensions_do_not_parse_is_a_finding(catalog):
    # cryptography loads the certificate and parses its extensions only when asked: the chain walk
    # raised ValueError out of the import (found by tests/fuzz). It is no CA, so nothing chains.
    intermediate = make_pki().intermediate.public_bytes(serialization.Encoding.DER)
    at = catalog.index(intermediate) + intermediate.index(bytes.fromhex("0603551d13"))  # basicConstraints
    damaged = catalog[:at + 10] + b"\x00" + catalog[at + 11:]
    carried = x509.load_der_x509_certificate(damaged[catalog.index(intermediate):][:len(intermediate)])
    with pytest.raises(ValueError):
        carried.extensions  # noqa: B018 - loads, but its extensions do not parse
    findings = check_catalog(damaged, SHA1, SHA256, [trust_anchor_pem()])
    assert codes(findings) == ["untrusted"]
    assert codes(check_catalog(damaged, SHA1, SHA256, [make_pki().intermediate.public_bytes(
        serialization.Encoding.PEM)])) == []  # anchored at the damaged certificate's own key: still fine


def test_catalog_padded_with_zeros_still_parses(catalog):
    assert check_catalog(catalog + bytes(7), SHA1, SHA256, [trust_anchor_pem()]) == []


def test_unreadable_trust_anchor_is_refused_as_such():
    with pytest.raises(TrustAnchorError, match="not a PEM or DER certificate"):
        load_trust_anchors(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


# --- cross-checks with openssl, an independent PKCS#7 implementation --------------------------------

@pytest.fixture
def openssl_signer(tmp_path):
    openssl = require_tool("openssl")  # skips only when it is not installed; a failing run fails the test
    pki = make_pki()
    paths = {"signer": pki.signer.public_bytes(serialization.Encoding.PEM),
             "chain": pki.intermediate.public_bytes(serialization.Encoding.PEM),
             "key": pki.signer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())}
    for name, data in paths.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    (tmp_path / "list.txt").write_bytes(f"{SHA256.hex().upper()}  CPE.nbt\r\n".encode())

    def sign(*options: str, key: str = "key", signer: str = "signer") -> bytes:
        out = tmp_path / "o.p7"
        proc = run_tool(openssl, "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-in",
                        str(tmp_path / "list.txt"), "-signer", str(tmp_path / f"{signer}.pem"), "-inkey",
                        str(tmp_path / f"{key}.pem"), "-out", str(out), *options)
        assert proc.returncode == 0, proc.stderr
        return out.read_bytes()

    sign.dir = tmp_path  # type: ignore[attr-defined]
    return sign


def test_openssl_signed_hash_list_is_accepted(openssl_signer, tmp_path):
    cat = openssl_signer("-certfile", str(tmp_path / "chain.pem"))
    assert check_catalog(cat, SHA1, SHA256, [trust_anchor_pem()]) == []
    assert codes(check_catalog(cat, SHA1, SHA256, [trust_anchor_pem("Other Vendor")])) == ["untrusted"]


def test_openssl_signed_without_attributes_and_without_the_intermediate(openssl_signer):
    cat = openssl_signer("-noattr")
    assert codes(check_catalog(cat, SHA1, SHA256, [trust_anchor_pem()])) == ["untrusted"]  # no path to the root
    assert check_catalog(cat, SHA1, SHA256, [make_pki().intermediate.public_bytes(serialization.Encoding.PEM)]) == []


def test_openssl_signed_with_an_ec_key(openssl_signer, tmp_path):
    pki = make_pki()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EC Firmware Signing")]))
            .issuer_name(pki.intermediate.subject).public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2045, 1, 1))
            .sign(pki.intermediate_key, hashes.SHA256()))
    (tmp_path / "ec.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "eckey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    cat = openssl_signer("-certfile", str(tmp_path / "chain.pem"), key="eckey", signer="ec")
    assert check_catalog(cat, SHA1, SHA256, [trust_anchor_pem()]) == []


def test_our_catalog_carries_the_microsoft_layout(catalog, tmp_path):
    """openssl reads our .cat as PKCS#7 SignedData with a CTL (szOID_CTL) content and both certificates."""
    (tmp_path / "x.cat").write_bytes(catalog)
    proc = run_tool(require_tool("openssl"), "pkcs7", "-inform", "DER", "-in", str(tmp_path / "x.cat"), "-print",
                    "-noout")
    assert proc.returncode == 0, proc.stderr
    assert "1.3.6.1.4.1.311.10.1" in proc.stdout and "Firmware Signing" in proc.stdout
    assert "Code Signing CA" in proc.stdout


def test_catalogs_agree_with_osslsigncode_both_ways(catalog, tmp_path):
    """osslsigncode (a real Authenticode signer and verifier, with the .cat format) verifies our
    catalogs against our root; a catalog it re-signs verifies here against its certificate only."""
    osslsigncode, openssl = require_tool("osslsigncode"), require_tool("openssl")
    ours, root = tmp_path / "ours.cat", tmp_path / "root.pem"
    ours.write_bytes(catalog)
    root.write_bytes(trust_anchor_pem())
    verified = run_tool(osslsigncode, "verify", "-CAfile", str(root), "-in", str(ours))
    assert "Signature verification: ok" in verified.stdout, verified.stdout + verified.stderr
    other = run_tool(osslsigncode, "verify", "-CAfile", str(tmp_path / "none.pem"), "-in", str(ours))
    assert "Signature verification: ok" not in other.stdout

    key, cert, resigned = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "resigned.cat"
    made = run_tool(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=Contoso Catalog Signing")
    assert made.returncode == 0, made.stderr
    signed = run_tool(osslsigncode, "sign", "-certs", str(cert), "-key", str(key), "-in", str(ours),
                      "-out", str(resigned))
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert check_catalog(resigned.read_bytes(), SHA1, SHA256, [cert.read_bytes()]) == []
    assert codes(check_catalog(resigned.read_bytes(), SHA1, SHA256, [trust_anchor_pem()])) == ["untrusted"]
    assert codes(check_catalog(resigned.read_bytes(), hashlib.sha1(b"x").digest(), hashlib.sha256(b"x").digest(),
                               [cert.read_bytes()])) == ["hash-not-listed"]
