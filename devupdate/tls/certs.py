"""Certificates for the HTTPS side, and the check that catches the classic deployment failure.

A phone that found the service as ``ucupdates-r2.<domain>`` only accepts a certificate that
carries that name; the certificate admins usually have names just the pool or web server, and
phones then silently never update. So every certificate made here lists the internal and external
host names *and* both discovery names of every domain, and ``check_certificate`` says which are
missing, whether the chain is complete (phones cannot fetch intermediates) and when it expires.

pyOpenSSL verifies chains against a given CA (``X509Store``/``X509StoreContext``: OpenSSL's own
path building, as a TLS client does it). Keys, certificates and CSRs are built with
``cryptography``, on which pyOpenSSL is built: pyOpenSSL 24.3+ removed ``X509Extension``/``X509Req``
and deprecated its key generation, so it can no longer add SANs or make a CSR.

Files (``tls_paths``): ``<home>/tls/server.crt`` and ``server.key`` are what ``serve`` uses;
``ca.crt``/``ca.key`` are the private CA ``cert create`` makes once and then reuses, so
re-issuing the server certificate after adding a domain does not mean redistributing a CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from devupdate.dns.records import RecordSet, discovery_names
from devupdate.errors import DevupdateError

EXPIRY_WARNING_DAYS = 30
DEFAULT_SERVER_DAYS = 825  # the longest validity Apple/Google clients accept for private CAs
DEFAULT_CA_DAYS = 3650
KEY_BITS = 2048  # RSA: the one key type every phone firmware supports


class CertificateError(DevupdateError):
    code = "bad-certificate"


@dataclass(frozen=True)
class TlsPaths:
    directory: Path
    cert: Path
    key: Path
    ca_cert: Path
    ca_key: Path
    csr: Path


def tls_paths(settings, directory: Path | None = None) -> TlsPaths:
    """Where ``cert create`` writes and ``serve --tls`` reads: ``<home>/tls`` unless told otherwise."""
    base = Path(directory) if directory else Path(settings.home) / "tls"
    return TlsPaths(base, base / "server.crt", base / "server.key", base / "ca.crt", base / "ca.key",
                    base / "server.csr")


@dataclass(frozen=True)
class Issued:
    """A private key with its certificate (or CSR), as cryptography objects."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate | None = None
    csr: x509.CertificateSigningRequest | None = None

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate, for a key that has one (a CSR's key has none yet)."""
        if self.cert is None:
            raise ValueError("a key issued with a CSR has no certificate")
        return self.cert

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def csr_pem(self) -> bytes:
        if self.csr is None:
            raise ValueError("a key issued with a certificate has no CSR")
        return self.csr.public_bytes(serialization.Encoding.PEM)


@dataclass
class CertReport:
    subject: str
    sans: list[str]
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    chain_length: int = 1
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"subject": self.subject, "sans": self.sans, "issuer": self.issuer,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "chain_length": self.chain_length, "warnings": self.warnings}


# --- names --------------------------------------------------------------------------------------

def required_names(settings) -> list[str]:
    """Internal and external host names, then both discovery names of every DNS domain."""
    names: list[str] = []
    for url in (settings.public_internal_url, settings.public_external_url):
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if host and host not in names:
            names.append(host)
    for domain in RecordSet.from_settings(settings).domains:
        names += [n.rstrip(".") for n in discovery_names(domain) if n.rstrip(".") not in names]
    return names


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


# --- creation -----------------------------------------------------------------------------------

def generate_key(bits: int = KEY_BITS) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def create_ca(common_name: str = "devupdate private CA", days: int = DEFAULT_CA_DAYS) -> Issued:
    """A CA that may sign server certificates only (path length 0)."""
    key = generate_key()
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name, "devupdate")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def create_server_cert(ca: Issued, names: list[str], days: int = DEFAULT_SERVER_DAYS,
                       not_before: dt.datetime | None = None) -> Issued:
    """A server certificate for ``names`` (first one is the CN) signed by ``ca``."""
    names = _check_names(names)
    key = generate_key()
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(key, cert)


def create_csr(names: list[str], key=None) -> Issued:
    """A CSR carrying every name as a SAN, for organisations whose own CA must sign."""
    names = _check_names(names)
    key = key or generate_key()
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(names[0]))
           .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(key, hashes.SHA256()))
    return Issued(key, csr=csr)


def _check_names(names: list[str]) -> list[str]:
    names = list(dict.fromkeys(n.strip().rstrip(".").lower() for n in names if n.strip()))
    if not names:
        raise CertificateError("no name to put in the certificate: set DEVUPDATE_PUBLIC_INTERNAL_URL and "
                               "DEVUPDATE_DNS_DOMAINS")
    return names


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    """Temp file → fsync → rename: a crash never leaves half a key where the server reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_ca(paths: TlsPaths) -> Issued | None:
    """The CA made by an earlier ``cert create``, if both halves are there."""
    if not (paths.ca_cert.is_file() and paths.ca_key.is_file()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{paths.ca_cert} / {paths.ca_key}: unreadable CA ({exc}); "
                               "move them away to create a new CA") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CertificateError(f"{paths.ca_key}: not an RSA or EC key, which the CA signs with; "
                               "move the CA files away to create a new CA")
    return Issued(key, cert)


class Created(TypedDict):
    """What ``cert create`` did: the names certified, the files written, notes for the admin."""

    names: list[str]
    written: list[str]
    notes: list[str]
    csr: bool


def create_files(settings, directory: Path | None = None, days: int = DEFAULT_SERVER_DAYS,
                 csr: bool = False) -> Created:
    """What ``cert create`` does: reuse or make the CA, then issue (or request) the server cert."""
    paths = tls_paths(settings, directory)
    names = required_names(settings)
    written: list[str] = []
    notes: list[str] = []
    if not RecordSet.from_settings(settings).domains:
        notes.append("no DNS domain configured: the certificate has no ucupdates-r2.<domain> name, so phones "
                     "that discover the service by DNS will refuse it (set DEVUPDATE_DNS_DOMAINS)")
    if csr:
        request = create_csr(names)
        write_file(paths.key, request.key_pem(), private=True)
        write_file(paths.csr, request.csr_pem())
        written += [str(paths.key), str(paths.csr)]
        notes.append(f"send {paths.csr} to your CA; save what it issues, followed by its intermediate "
                     f"certificates, as {paths.cert}")
    else:
        ca = load_ca(paths)
        if ca is None:
            ca = create_ca(days=max(DEFAULT_CA_DAYS, days))
            write_file(paths.ca_key, ca.key_pem(), private=True)
            write_file(paths.ca_cert, ca.cert_pem())
            written += [str(paths.ca_key), str(paths.ca_cert)]
            notes.append(f"new CA: install {paths.ca_cert} as a trusted root on the phones and clients")
        else:
            notes.append(f"reused the CA in {paths.ca_cert} (phones that trust it accept the new certificate)")
        server = create_server_cert(ca, names, days=days)
        write_file(paths.key, server.key_pem(), private=True)
        write_file(paths.cert, server.cert_pem() + ca.cert_pem())  # full chain: phones cannot fetch the CA
        written += [str(paths.key), str(paths.cert)]
    return {"names": names, "written": written, "notes": notes, "csr": csr}


# --- checking -----------------------------------------------------------------------------------

def load_certificates(path: Path | str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (or one DER certificate), leaf first."""
    path = Path(path)
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        if b"PRIVATE KEY-----" in data or b"CERTIFICATE REQUEST-----" in data:
            what = "a private key" if b"PRIVATE KEY-----" in data else "a certificate request (CSR)"
            raise CertificateError(f"{path}: holds {what}, not a certificate; give the .crt file") from exc
        raise CertificateError(f"{path}: not a PEM or DER certificate (expected -----BEGIN CERTIFICATE----- "
                               "blocks; the file is damaged or of another kind)") from exc


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*ext.get_values_for_type(x509.DNSName), *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]


def _covers(san: str, name: str) -> bool:
    san, name = san.lower().rstrip("."), name.lower().rstrip(".")
    if san == name:
        return True
    if san.startswith("*."):  # a wildcard covers exactly one label
        head, _, rest = name.partition(".")
        return bool(head) and rest == san[2:]
    return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _to_openssl(cert: x509.Certificate) -> crypto.X509:
    return crypto.X509.from_cryptography(cert)


def check_certificate(path: Path | str, required_names: list[str], ca_path: Path | str | None = None,
                      now: dt.datetime | None = None) -> CertReport:
    """Describe the certificate in ``path`` and warn about what would make phones refuse it."""
    certs = load_certificates(path)
    leaf, extra = certs[0], certs[1:]
    now = now or dt.datetime.now(dt.UTC)
    report = CertReport(leaf.subject.rfc4514_string(), _sans(leaf), leaf.issuer.rfc4514_string(),
                        leaf.not_valid_before_utc, leaf.not_valid_after_utc, len(certs))
    warn = report.warnings.append

    if not report.sans:
        warn("no subjectAltName: phones and browsers ignore the CN, so no name matches; re-create it with "
             "devupdate cert create (or request one with SANs)")
    missing = [n for n in required_names if not any(_covers(s, n) for s in report.sans)]
    if missing and report.sans:
        discovery = [n for n in missing if n.startswith(("ucupdates-r2.", "ucupdates."))]
        what = "discovery name(s)" if discovery == missing else "name(s)"
        warn(f"missing {what} {', '.join(missing)}: phones that reach the service by that name refuse the "
             "certificate; re-create it with devupdate cert create (or devupdate cert create --csr for your CA)")

    if report.not_after <= now:
        warn(f"expired on {report.not_after:%Y-%m-%d}: renew it now (devupdate cert create)")
    elif report.not_after - now <= dt.timedelta(days=EXPIRY_WARNING_DAYS):
        days = (report.not_after - now).days
        warn(f"expires on {report.not_after:%Y-%m-%d} (in {days} day(s)): renew it (devupdate cert create)")
    if report.not_before > now:
        warn(f"not valid before {report.not_before:%Y-%m-%d %H:%M} UTC: check this machine's clock")

    self_signed = leaf.issuer == leaf.subject and _issued_by(leaf, leaf)
    if ca_path:
        problem = _verify_with_ca(leaf, extra, load_certificates(ca_path), now)
        if problem:
            warn(f"does not chain to the CA in {ca_path}: {problem}")
    elif not self_signed and not any(c.subject == leaf.issuer and _issued_by(leaf, c) for c in extra):
        warn(f"incomplete chain: the issuer ({report.issuer}) is not in {Path(path).name}; append the "
             "intermediate and CA certificates after the server certificate (phones cannot fetch them) "
             "or pass --ca")
    return report


def _verify_with_ca(leaf: x509.Certificate, extra: list[x509.Certificate], anchors: list[x509.Certificate],
                    now: dt.datetime) -> str | None:
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(_to_openssl(anchor))
    store.set_time(now.replace(tzinfo=None))
    chain = [_to_openssl(c) for c in extra]
    try:
        crypto.X509StoreContext(store, _to_openssl(leaf), chain=chain).verify_certificate()
    except crypto.X509StoreContextError as exc:
        return str(exc.args[0] if exc.args else exc)
    return None


def _public_der(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    """A public key as its SubjectPublicKeyInfo, equal for equal keys of any type."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def startup_check(settings, cert_path: Path | str | None = None) -> list[str]:
    """Warnings for ``serve`` to log at start; never raises (a bad certificate is for TLS to refuse)."""
    paths = tls_paths(settings)
    cert_path = Path(cert_path) if cert_path else paths.cert
    if not cert_path.is_file():
        return [f"no TLS certificate at {cert_path}: run devupdate cert create (or --csr for your CA)"]
    try:
        report = check_certificate(cert_path, required_names(settings))  # the chain must be in the file
    except (DevupdateError, OSError) as exc:
        return [f"TLS certificate {cert_path}: {getattr(exc, 'message', None) or exc}"]
    warnings = [f"TLS certificate {cert_path}: {w}" for w in report.warnings]
    key_path = cert_path.with_suffix(".key") if cert_path != paths.cert else paths.key
    if key_path.is_file():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            leaf = load_certificates(cert_path)[0]
            if _public_der(key.public_key()) != _public_der(leaf.public_key()):
                warnings.append(f"TLS key {key_path} does not belong to certificate {cert_path}: "
                                "re-create both with devupdate cert create")
        except (ValueError, TypeError, AttributeError) as exc:
            warnings.append(f"TLS key {key_path}: unreadable ({exc})")
    return warnings
