"""Properties of the catalog check (devupdate/packages/catalog.py, der.py): whatever a vendor's .cat
holds, the import gets findings, never an exception."""

from __future__ import annotations

import functools
import hashlib

from cryptography.hazmat.primitives import serialization
from fuzzkit import FUZZ, mutate
from helpers.cabs import make_catalog, make_pki
from hypothesis import event, given
from hypothesis import strategies as st

from devupdate.packages import CatalogFinding, check_catalog

IMAGE = b"NBT1 CPE.nbt 4.0.7577.4372\n" + bytes(range(256)) * 8
CODES = {"not-signed-data", "hash-not-listed", "bad-signature", "untrusted", "no-trust-anchors"}


@functools.cache
def genuine() -> bytes:
    return make_catalog({"CPE.nbt": IMAGE})


def check(data: bytes, anchors, record: bool = True) -> list[CatalogFinding]:
    findings = check_catalog(data, hashlib.sha1(IMAGE).digest(), hashlib.sha256(IMAGE).digest(), anchors)  # noqa: S324
    assert all(isinstance(f, CatalogFinding) and f.code in CODES and f.message for f in findings)
    if record:
        event("findings: " + (",".join(sorted(f.code for f in findings)) or "none"))
    return findings


anchors = st.sampled_from(["none", "ours", "other"]).map(
    lambda which: None if which == "none" else [make_pki("Test Vendor" if which == "ours" else "Other").root_pem])


def test_the_genuine_catalog_has_no_findings():
    assert check(genuine(), [make_pki().root_pem], record=False) == []


@functools.cache
def certificate_spans() -> list[tuple[int, int]]:
    """Where the carried certificates (signer, intermediate) lie in the genuine catalog: the
    signature does not cover them, so damage there reaches the chain walk."""
    pki = make_pki()
    spans = []
    for cert in (pki.signer, pki.intermediate):
        der = cert.public_bytes(serialization.Encoding.DER)
        spans.append((genuine().index(der), len(der)))
    return spans


@FUZZ
@given(st.data(), anchors)
def test_damaged_catalogs_give_findings_never_an_exception(data, trust):
    damaged = genuine()
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.sampled_from(["certificate", "anywhere", "head"]))
        if where == "certificate":
            start, length = data.draw(st.sampled_from(certificate_spans()))
            at = start + data.draw(st.integers(0, length - 1))
        elif where == "head":  # where the DER lengths and tags of the outer structures are
            at = data.draw(st.integers(0, 400))
        else:
            damaged = mutate(data.draw, damaged)
            continue
        if at < len(damaged):
            damaged = damaged[:at] + bytes([data.draw(st.integers(0, 255))]) + damaged[at + 1:]
    check(damaged, trust)


@FUZZ
@given(st.binary(max_size=600), anchors)
def test_any_bytes_give_findings_never_an_exception(blob, trust):
    check(b"\x30" + blob if blob[:1] != b"\x30" else blob, trust)
