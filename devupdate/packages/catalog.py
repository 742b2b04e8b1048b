"""Security catalogs (.cat): is the image listed, and who signed the list?

A catalog is a PKCS#7 SignedData whose content is a Microsoft certificate trust list (CTL) of
member hashes: each member's tag is the hex of its SHA-1 (or SHA-256) hash in UTF-16, and its
SpcIndirectDataContent carries the raw digest. The check here, in pure Python over our DER
reader and ``cryptography``:

- hash listed: the image's SHA-1 or SHA-256 appears in the *signed* content octets, as raw
  digest bytes or as hex text (UTF-16 member tags, or ASCII for plain signed hash lists);
- signature: for every SignerInfo, the signed ``messageDigest`` matches the content and the
  signature over the signed attributes verifies with the signer certificate's key (RSA
  PKCS#1 v1.5 or ECDSA; SHA-1/256/384/512);
- chain: the signer certificate is, or is issued (signature checked) by, a trust anchor,
  directly or through CA certificates carried in the catalog or given as anchors.

Not checked, deliberately: certificate validity dates (vendor catalogs outlive their signing
certificates, and timestamp countersignatures are not evaluated), revocation, extended key
usage and name constraints. Microsoft catalogs put the CTL directly in the content (PKCS#7
v1.5, digest over its contents octets, as Authenticode does), which ``openssl cms`` cannot
parse and ``openssl smime`` digests wrongly; so no openssl fallback. The tests cross-check this
verifier against catalogs signed by ``openssl cms -sign`` (RSA and EC, with and without
signed attributes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from devupdate.packages import der

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
DIGESTS: dict[str, hashes.HashAlgorithm] = {
    "1.3.14.3.2.26": hashes.SHA1(),
    "2.16.840.1.101.3.4.2.1": hashes.SHA256(),
    "2.16.840.1.101.3.4.2.2": hashes.SHA384(),
    "2.16.840.1.101.3.4.2.3": hashes.SHA512(),
}
MAX_CHAIN = 8


@dataclass(frozen=True)
class CatalogFinding:
    """One problem with a catalog; ``str()`` is the message shown to admins."""

    code: str  # not-signed-data | hash-not-listed | bad-signature | untrusted | no-trust-anchors
    message: str

    def __str__(self) -> str:
        return self.message


class TrustAnchorError(ValueError):
    """A trust-anchor blob is neither PEM certificates nor one DER certificate."""


def load_trust_anchors(pem_or_der: bytes | list[bytes]) -> list[x509.Certificate]:
    """Certificates from PEM bundles (or DER); TrustAnchorError if a blob holds none."""
    blobs = [pem_or_der] if isinstance(pem_or_der, bytes | bytearray) else list(pem_or_der)
    anchors: list[x509.Certificate] = []
    for blob in blobs:
        try:
            anchors += (x509.load_pem_x509_certificates(bytes(blob)) if b"-----BEGIN" in blob
                        else [x509.load_der_x509_certificate(bytes(blob))])
        except ValueError as exc:
            raise TrustAnchorError(f"not a PEM or DER certificate ({exc})") from None
    return anchors


def check_catalog(cat_bytes: bytes, image_sha1: bytes | str, image_sha256: bytes | str,
                  trust_anchors: list[bytes] | list[x509.Certificate] | None) -> list[CatalogFinding]:
    """Findings about ``cat_bytes`` for one image (digests as bytes or hex); [] means all good.

    ``trust_anchors`` None or empty: the signature is still verified, and a ``no-trust-anchors``
    finding says the chain was not checked (so ``enforce`` without anchors refuses).
    """
    digests = [bytes.fromhex(d) if isinstance(d, str) else bytes(d) for d in (image_sha1, image_sha256)]
    try:
        signed = _parse_signed_data(cat_bytes)
    except (ValueError, IndexError) as exc:  # DerError is a ValueError
        return [CatalogFinding("not-signed-data", f"catalog is not a PKCS#7 SignedData ({exc})")]
    findings = []
    if not _lists(signed.digested, digests):
        findings.append(CatalogFinding("hash-not-listed", "image hash not listed in catalog"))
    signers, problem = _verify_signers(signed)
    if problem:
        findings.append(CatalogFinding("bad-signature", f"catalog signature does not verify: {problem}"))
    elif not trust_anchors:
        findings.append(CatalogFinding("no-trust-anchors", "no trust anchors configured: the catalog signer "
                                       "was not checked against any"))
    else:
        anchors = [a for a in trust_anchors if isinstance(a, x509.Certificate)]
        anchors += load_trust_anchors([a for a in trust_anchors if not isinstance(a, x509.Certificate)])
        if not all(_chains(signer, signed.certificates, anchors) for signer in signers):
            findings.append(CatalogFinding("untrusted", "catalog signature does not chain to a trust anchor"))
    return findings


@dataclass
class _SignedData:
    content_type: str
    digested: bytes  # the octets the messageDigest covers
    certificates: list[x509.Certificate]
    signer_infos: list[der.Node]


def _parse_signed_data(data: bytes) -> _SignedData:
    outer = der.read(data)
    if outer.tag != der.SEQUENCE or any(data[outer.after:]):  # zero padding after it is common
        raise der.DerError("not a single DER structure")
    info = outer.children()
    if len(info) != 2 or info[0].oid() != OID_SIGNED_DATA or not info[1].is_context(0):
        raise der.DerError("content type is not signedData")
    signed = info[1].children()[0].children()
    if len(signed) < 4 or signed[1].tag != der.SET or signed[-1].tag != der.SET:
        raise der.DerError("malformed SignedData")
    encap = signed[2].children()
    if len(encap) != 2 or not encap[1].is_context(0):
        raise der.DerError("SignedData carries no content")
    content = encap[1].children()[0]
    digested = content.octets() if content.tag in (der.OCTET_STRING, der.OCTET_STRING | 0x20) else content.value
    certificates = []
    for node in signed[3:-1]:
        if node.is_context(0):
            for cert in node.children():
                if cert.tag == der.SEQUENCE:
                    try:
                        certificates.append(x509.load_der_x509_certificate(cert.raw))
                    except ValueError:
                        continue
    return _SignedData(encap[0].oid(), digested, certificates, signed[-1].children())


def _lists(signed_octets: bytes, digests: list[bytes]) -> bool:
    """Is a digest in the signed content: raw (SpcIndirectDataContent), or as hex text — UTF-16
    (Microsoft member tags) or ASCII (plain hash lists), either case?"""
    needles = []
    for digest in digests:
        needles.append(digest)
        for text in (digest.hex().upper(), digest.hex()):
            needles += [text.encode("ascii"), text.encode("utf-16-le")]
    return any(needle in signed_octets for needle in needles)


def _verify_signers(signed: _SignedData) -> tuple[list[x509.Certificate], str | None]:
    if not signed.signer_infos:
        return [], "it has no signer"
    signers = []
    for node in signed.signer_infos:
        try:
            signer, problem = _verify_signer(signed, node)
        except (der.DerError, IndexError, ValueError, UnsupportedAlgorithm) as exc:
            return [], f"malformed SignerInfo ({exc})"
        if problem or signer is None:
            return [], problem or "no signer certificate"
        signers.append(signer)
    return signers, None


def _verify_signer(signed: _SignedData, node: der.Node) -> tuple[x509.Certificate | None, str | None]:
    fields = node.children()
    sid, digest_oid = fields[1], fields[2].children()[0].oid()
    rest = fields[3:]
    attributes = rest.pop(0) if rest and rest[0].is_context(0) else None
    signature = rest[1].octets() if len(rest) >= 2 else b""
    signer = _find_signer(sid, signed.certificates)
    if signer is None:
        return None, "the signer's certificate is not in the catalog"
    algorithm = DIGESTS.get(digest_oid)
    if algorithm is None:
        return signer, f"unsupported digest algorithm {digest_oid}"
    if attributes is not None:
        values = {}
        for attribute in attributes.children():
            oid_node, value_set = attribute.children()
            values[oid_node.oid()] = value_set.children()[0]
        digest = hashlib.new(algorithm.name, signed.digested).digest()
        if OID_MESSAGE_DIGEST not in values or values[OID_MESSAGE_DIGEST].octets() != digest:
            return signer, "the content does not match its signed digest (altered after signing)"
        if OID_CONTENT_TYPE in values and values[OID_CONTENT_TYPE].oid() != signed.content_type:
            return signer, "the signed content type does not match the content"
        message = b"\x31" + attributes.raw[1:]  # signed over as a SET OF, not [0] IMPLICIT
    else:
        message = signed.digested
    key = signer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(algorithm))
        else:
            return signer, f"unsupported signer key type {type(key).__name__}"
    except InvalidSignature:
        return signer, "the signature does not match the signer's key"
    except (UnsupportedAlgorithm, ValueError) as exc:
        return signer, f"cannot verify the signature ({exc})"
    return signer, None


def _find_signer(sid: der.Node, certificates: list[x509.Certificate]) -> x509.Certificate | None:
    if sid.tag == der.SEQUENCE:  # issuerAndSerialNumber
        issuer, serial = sid.children()
        serial_number = serial.integer()
        matches = [c for c in certificates if c.serial_number == serial_number]
        exact = [c for c in matches if c.issuer.public_bytes() == issuer.raw]
        if exact:
            return exact[0]
        return matches[0] if len(matches) == 1 else None
    if sid.is_context(0):  # subjectKeyIdentifier
        for cert in certificates:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except (x509.ExtensionNotFound, ValueError):  # none, or extensions that do not parse
                continue
            if ski == sid.value:
                return cert
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    # cryptography parses extensions when first asked: a carried certificate can load and still
    # have extensions that do not parse (ValueError) — such a certificate is no CA of ours
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        if cert.issuer != issuer.subject:
            return False
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _chains(signer: x509.Certificate, carried: list[x509.Certificate], anchors: list[x509.Certificate]) -> bool:
    """Walk issuer links from the signer to an anchor; intermediates must be CA certificates."""
    anchor_prints = {a.fingerprint(hashes.SHA256()) for a in anchors}
    pool = [c for c in carried + anchors if _is_ca(c)]
    current, seen = signer, set()
    for _ in range(MAX_CHAIN):
        fingerprint = current.fingerprint(hashes.SHA256())
        if fingerprint in anchor_prints or any(_issued_by(current, a) for a in anchors):
            return True
        seen.add(fingerprint)
        parent = next((c for c in pool if c.fingerprint(hashes.SHA256()) not in seen and _issued_by(current, c)),
                      None)
        if parent is None:
            return False
        current = parent
    return False
