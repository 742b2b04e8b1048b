"""Realistic vendor packages for tests: updates, images, signed .cat catalogs, cabs (good and bad).

Used by the packages, importer and CLI tests::

    from helpers.cabs import make_package, make_update, trust_anchor_pem
    cab = make_package(tmp_path, updates=[make_update(brand="Aastra", model="6725ip")])

Catalogs are real PKCS#7 SignedData over a Microsoft-style certificate trust list (the .cat
layout: member tags are the hex hash in UTF-16, with SpcIndirectDataContent digests), signed
by a throw-away test PKI (root CA → intermediate CA → code-signing leaf).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import random
import shutil
import struct
import subprocess
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devupdate.packages import FileRef, UpdateDescription, build_package, describe_updates
from devupdate.packages.cab import checksum as cab_checksum

#: The project's shared/ (specs, sample cabs): beside the repository, or where DEVUPDATE_SHARED_DIR
#: says (a clone made elsewhere; .ci/run sets it from the clone's origin).
SHARED = Path(os.environ.get("DEVUPDATE_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared")
SAMPLE_CABS = SHARED / "testdata" / "cab"
FIXED_TIME = datetime.datetime(2026, 7, 21, 12, 0, 0)

#: (brand, model) pairs and versions from update-packages.md, for realistic fixtures.
MODELS = [("Polycom", "CX500"), ("Polycom", "CX600"), ("Polycom", "CX3000"), ("Polycom", "CX700"),
          ("Aastra", "6721ip"), ("Aastra", "6725ip"), ("HP", "4110"), ("HP", "4120"), ("LG-Nortel", "IP8540")]
VERSIONS = ["3.5.6907.187", "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372", "4.0.7577.4387"]


# --- updates and images ------------------------------------------------------------------------

def rule_guid(device_type: str, brand: str, model: str, revision: str, locale: str, update_type: str) -> str:
    """A stable GUID per rule, as a vendor pre-assigns one (re-imports keep it)."""
    key = "/".join((device_type, brand, model, revision, locale, update_type)).lower()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://devupdate.test/rules/{key}"))


def make_update(brand: str = "Polycom", model: str = "CX600", version: str = "4.0.7577.4372", *,
                locale: str = "ENU", revision: str = "A", update_type: str = "CPE", device_type: str = "UCPhone",
                id: str | None = None, files: Sequence[FileRef] | None = None) -> UpdateDescription:
    """An update with vendor-like values; one image + catalog named after the rule by default."""
    if files is None:
        stem = f"{model}_{revision}_{'ALL' if locale == '*' else locale}_{update_type}"
        files = (FileRef(f"{stem}.nbt", f"{stem}.cat"),)
    return UpdateDescription(id=id or rule_guid(device_type, brand, model, revision, locale, update_type),
                             device_type=device_type, brand=brand, model=model, revision=revision, locale=locale,
                             update_type=update_type, version=version, files=tuple(files))


def realistic_updates(version: str = "4.0.7577.4372") -> list[UpdateDescription]:
    """One CPE update per known phone model (Polycom, Aastra, HP, LG-Nortel)."""
    return [make_update(brand, model, version) for brand, model in MODELS]


def make_image(name: str, size: int, version: str = "") -> bytes:
    """Deterministic firmware-like bytes: a small header, then incompressible noise."""
    header = f"NBT1 {name} {version}\n".encode()[:size]
    return header + random.Random(f"{name}/{version}").randbytes(size - len(header))


# --- a test PKI and catalogs -------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    intermediate: x509.Certificate
    signer: x509.Certificate
    signer_key: rsa.RSAPrivateKey
    intermediate_key: rsa.RSAPrivateKey  # to issue more signers (e.g. EC) under the same root

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


def _certificate(subject: str, key, issuer_cert, issuer_key, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devupdate tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2045, 1, 1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_pki(name: str = "Test Vendor") -> Pki:
    """Root CA → intermediate CA → code-signing leaf (RSA 2048), cached per name."""
    return _make_pki(name)


@functools.lru_cache(maxsize=8)
def _make_pki(name: str) -> Pki:
    root_key, mid_key, leaf_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3))
    root = _certificate(f"{name} Root CA", root_key, None, None, ca=True)
    intermediate = _certificate(f"{name} Code Signing CA", mid_key, root, root_key, ca=True)
    signer = _certificate(f"{name} Firmware Signing", leaf_key, intermediate, mid_key, ca=False)
    return Pki(root, intermediate, signer, leaf_key, mid_key)


def trust_anchor_pem(name: str = "Test Vendor") -> bytes:
    return make_pki(name).root_pem


# Minimal DER encoding (SET OF sorted, as DER requires).
def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(items)))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _contents(tlv: bytes) -> bytes:
    return tlv[2:] if tlv[1] < 0x80 else tlv[2 + (tlv[1] & 0x7F):]


def _explicit(number: int, body: bytes) -> bytes:
    return _tlv(0xA0 | number, body)


NULL = b"\x05\x00"
DIGEST_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1"}


def catalog_content(files: Mapping[str, bytes], hash_name: str = "sha1") -> bytes:
    """The CTL (certificate trust list) a .cat signs: one member per file, tagged by its hash."""
    members = []
    for name, data in sorted(files.items()):
        digest = hashlib.new(hash_name, data).digest()
        tag = digest.hex().upper().encode("utf-16-le")
        name_value = _seq(_tlv(0x1E, "File".encode("utf-16-be")), _int(0x10010001),
                          _octets(name.encode("utf-16-le") + b"\0\0"))
        indirect = _seq(_seq(_oid("1.3.6.1.4.1.311.2.1.25"), _seq()),  # SPC_CAB_DATA_OBJID (flat file)
                        _seq(_seq(_oid(DIGEST_OIDS[hash_name]), NULL), _octets(digest)))
        attributes = _set(_seq(_oid("1.3.6.1.4.1.311.12.2.1"), _set(name_value)),  # CAT_NAMEVALUE
                          _seq(_oid("1.3.6.1.4.1.311.2.1.4"), _set(indirect)))  # SPC_INDIRECT_DATA
        members.append(_seq(_octets(tag), attributes))
    list_id = hashlib.md5("|".join(sorted(files)).encode()).digest()  # noqa: S324 - an identifier, not security
    return _seq(_seq(_oid("1.3.6.1.4.1.311.12.1.1")),  # subjectUsage: catalog list
                _octets(list_id), _tlv(0x17, b"260721120000Z"),
                _seq(_oid("1.3.6.1.4.1.311.12.1.2"), NULL),  # subjectAlgorithm: catalog member hash
                _seq(*members))


def make_catalog(files: Mapping[str, bytes], *, pki: Pki | None = None, hash_name: str = "sha1",
                 digest_name: str = "sha256") -> bytes:
    """A signed .cat listing ``files`` (name → content), shaped like makecat + signtool output."""
    pki = pki or make_pki()
    content = catalog_content(files, hash_name)
    body = _contents(content)  # the signature covers the CTL's contents octets (PKCS#7 v1.5)
    digest_oid = _seq(_oid(DIGEST_OIDS[digest_name]), NULL)
    signed_attributes = [
        _seq(_oid("1.2.840.113549.1.9.3"), _set(_oid("1.3.6.1.4.1.311.10.1"))),  # contentType: CTL
        _seq(_oid("1.2.840.113549.1.9.4"), _set(_octets(hashlib.new(digest_name, body).digest()))),
    ]
    to_sign = _set(*signed_attributes)
    algorithm = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}[digest_name]  # noqa: S303
    signature = pki.signer_key.sign(to_sign, padding.PKCS1v15(), algorithm)
    signer_info = _seq(_int(1),
                       _seq(pki.signer.issuer.public_bytes(), _int(pki.signer.serial_number)),
                       digest_oid, b"\xa0" + to_sign[1:],
                       _seq(_oid("1.2.840.113549.1.1.1"), NULL), _octets(signature))
    certificates = b"".join(c.public_bytes(serialization.Encoding.DER) for c in (pki.signer, pki.intermediate))
    signed_data = _seq(_int(1), _set(digest_oid), _seq(_oid("1.3.6.1.4.1.311.10.1"), _explicit(0, content)),
                       _tlv(0xA0, certificates), _set(signer_info))
    return _seq(_oid("1.2.840.113549.1.7.2"), _explicit(0, signed_data))


# --- packages ----------------------------------------------------------------------------------

def package_files(updates: Sequence[UpdateDescription], image_sizes: int | Mapping[str, int] = 4096, *,
                  pki: Pki | None = None) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(images, catalogs) for ``updates``: every image gets content, every catalog lists its images."""
    images: dict[str, bytes] = {}
    listed: dict[str, dict[str, bytes]] = {}
    for update in updates:
        for ref in update.files:
            size = image_sizes if isinstance(image_sizes, int) else image_sizes.get(ref.name, 4096)
            images[ref.name] = make_image(ref.name, size, update.version)
            if ref.catalog:
                listed.setdefault(ref.catalog, {})[ref.name] = images[ref.name]
    return images, {name: make_catalog(files, pki=pki) for name, files in listed.items()}


def make_package(directory: Path, updates: Sequence[UpdateDescription] | None = None, *,
                 image_sizes: int | Mapping[str, int] = 4096, name: str = "UCUpdates.cab", tool: str = "pack",
                 compress: bool = True, pki: Pki | None = None, extra: Mapping[str, bytes] | None = None,
                 description_name: str = "UCUpdates.xml") -> Path:
    """Write a vendor-style cab (images, signed catalogs, description) and return its path.

    ``tool="gcab"`` builds it with the real ``gcab -c`` (``-z`` when compressing) instead of
    ``devupdate.packages.build_package``; ``extra`` adds members as they are.
    """
    updates = list(updates) if updates is not None else [make_update()]
    images, catalogs = package_files(updates, image_sizes, pki=pki)
    out = Path(directory) / name
    if tool == "pack":
        build_package(out, updates, {**images, **(extra or {})}, catalogs, description_name=description_name,
                      compress=compress, mtime=FIXED_TIME)
    elif tool == "gcab":
        gcab_create(out, {**images, **catalogs, **(extra or {}), description_name: describe_updates(updates)},
                    compress=compress)
    else:
        raise ValueError(tool)
    return out


def gcab_create(out: Path, members: Mapping[str, bytes], *, compress: bool = True) -> Path:
    """Build a cab with the real gcab (members written to a scratch folder first)."""
    gcab = shutil.which("gcab")
    if gcab is None:
        raise RuntimeError("gcab is not installed")
    scratch = out.parent / f".{out.name}.src"
    scratch.mkdir()
    try:
        for member, data in members.items():
            (scratch / member).parent.mkdir(parents=True, exist_ok=True)
            (scratch / member).write_bytes(data)
        args = [gcab, "-c", *(["-z"] if compress else []), str(out.resolve()), *members]
        subprocess.run(args, cwd=scratch, check=True, capture_output=True, timeout=60)
    finally:
        shutil.rmtree(scratch)
    return out


# --- hand-made cabs, good or deliberately broken -----------------------------------------------

def raw_cab(files: Iterable[tuple[str | bytes, bytes]], *, compression: int = 0, flags: int = 0, index: int = 0,
            set_id: int = 1234, version: tuple[int, int] = (3, 1), header_reserve: bytes | None = None,
            folder_reserve: int = 0, data_reserve: int = 0, attributes: int = 0x20,
            folder_of: Mapping[int, int] | None = None, sizes: Mapping[int, int] | None = None,
            checksums: bool = True, bad_checksum_block: int | None = None, declared_size_delta: int = 0,
            files_offset_delta: int = 0, trailing: bytes = b"", block_size: int = 32768,
            mszip_without_dictionary: bool = False, declared_block_sizes: Mapping[int, int] | None = None,
            offsets: Mapping[int, int] | None = None) -> bytes:
    """Assemble a one-folder cab byte by byte, with every field open to abuse.

    ``compression`` 0 stores, 1 MSZIP (each block deflated with the previous 32 KiB as its
    dictionary, like Microsoft's encoder), 3 claims LZX (the data is then garbage). ``sizes``
    overrides a file's declared size, ``offsets`` its offset in the folder, ``folder_of`` its
    folder index, ``declared_block_sizes``
    a CFDATA block's declared uncompressed size; ``header_reserve`` sets
    the reserve flag (an Authenticode signature lives there in signed cabs); ``trailing`` is
    appended after the cabinet (where the signature blob sits).
    """
    # str names are stored UTF-8 (flagged when not ASCII); bytes names raw and unflagged (Latin-1).
    files = [(n.encode("utf-8") if isinstance(n, str) else n, d, isinstance(n, str) and not n.isascii())
             for n, d in files]
    stream = b"".join(d for _, d, _ in files)
    chunks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)] or []
    blocks, previous = [], b""
    for chunk in chunks:
        if compression == 1:
            encoder = (zlib.compressobj(9, zlib.DEFLATED, -15) if mszip_without_dictionary or not previous
                       else zlib.compressobj(9, zlib.DEFLATED, -15, zdict=previous))
            packed = b"CK" + encoder.compress(chunk) + encoder.flush()
            previous = chunk
        elif compression == 3:
            packed = random.Random(len(chunk)).randbytes(max(len(chunk) // 3, 1))
        else:
            packed = chunk
        blocks.append((packed, (declared_block_sizes or {}).get(len(blocks), len(chunk))))
    reserve = b""
    if header_reserve is not None or folder_reserve or data_reserve:
        flags |= 0x0004
        reserve = struct.pack("<HBB", len(header_reserve or b""), folder_reserve, data_reserve)
        reserve += header_reserve or b""
    head_size = 36 + len(reserve)
    folder_size = 8 + folder_reserve
    table = b""
    offset = 0
    for i, (name, data, utf8) in enumerate(files):
        size = (sizes or {}).get(i, len(data))
        table += struct.pack("<IIHHHH", size, (offsets or {}).get(i, offset), (folder_of or {}).get(i, 0), 0x5AF5,
                             0x6000,
                             attributes | (0x80 if utf8 else 0)) + name + b"\0"
        offset += len(data)
    data_start = head_size + folder_size + len(table)
    data = b""
    for i, (packed, size) in enumerate(blocks):
        header_tail = struct.pack("<HH", len(packed), size)
        checksum = 0
        if checksums:
            checksum = cab_checksum(header_tail, cab_checksum(packed))
            if i == bad_checksum_block:
                checksum ^= 0x1
        data += struct.pack("<I", checksum) + header_tail + bytes(data_reserve) + packed
    total = data_start + len(data)
    header = struct.pack("<4sIIIIIBBHHHHH", b"MSCF", 0, total + declared_size_delta, 0,
                         head_size + folder_size + files_offset_delta, 0, version[0], version[1], 1, len(files),
                         flags, set_id, index)
    folder = struct.pack("<IHH", data_start, len(blocks), compression) + bytes(folder_reserve)
    return header + reserve + folder + table + data + trailing


# --- the real tools ----------------------------------------------------------------------------

def run_tool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command line tool (text output, 60 s timeout, no check)."""
    return subprocess.run(list(args), capture_output=True, text=True, errors="replace", timeout=60, cwd=cwd,
                          check=False)


def cabextract_tree(cab: Path, into: Path) -> dict[str, bytes]:
    """What ``cabextract -d`` extracts from ``cab``: relative path → bytes."""
    proc = run_tool("cabextract", "-q", "-d", str(into), str(cab))
    if proc.returncode != 0:
        raise AssertionError(f"cabextract failed on {cab.name}: {proc.stderr}")
    return {p.relative_to(into).as_posix(): p.read_bytes() for p in sorted(into.rglob("*")) if p.is_file()}
