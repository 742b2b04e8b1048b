"""Every refusal code, each triggered by a cab built for it (by hand, with write_cab or with gcab)."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import zipfile

import pytest
from helpers.cabs import make_package, make_update, package_files, raw_cab

from devupdate.packages import (
    CODES,
    Cabinet,
    FileRef,
    Limits,
    PackageError,
    describe_updates,
    open_package,
    read_cab,
    write_cab,
)
from devupdate.packages.cab import checksum as cab_checksum
from devupdate.packages.package import scan_package

HELLO = [("hello.txt", b"hello, world\n" * 100), ("data.bin", bytes(range(256)) * 40)]


def refusal(tmp_path, blob: bytes, limits: Limits = Limits(), name: str = "test.cab") -> PackageError:
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(PackageError) as refused:
        for member in read_cab(path, limits):
            member.read_bytes()
    assert refused.value.code in CODES and refused.value.message
    return refused.value


def write(tmp_path, blob: bytes, name: str = "good.cab"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def package_refusal(path) -> PackageError:
    with pytest.raises(PackageError) as refused:
        open_package(path)
    return refused.value


# --- not-a-cabinet / corrupt -----------------------------------------------------------------------

@pytest.mark.parametrize("blob", [b"", b"MSC", b"PK\x03\x04" + bytes(60), b"<DeviceUpdate/>", bytes(1000)])
def test_not_a_cabinet(tmp_path, blob):
    assert refusal(tmp_path, blob).code == "not-a-cabinet"


def test_a_zip_is_not_a_cabinet(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as archive:
        archive.writestr("CPE.nbt", b"x")
    error = refusal(tmp_path, (tmp_path / "x.zip").read_bytes())
    assert error.code == "not-a-cabinet" and "MSCF" in error.message


@pytest.mark.parametrize("cut", [1, 10, 100, 20_000, 39_900])
def test_truncated_cab_is_corrupt(tmp_path, cut):
    blob = raw_cab([*HELLO, ("noise.bin", random.Random(1).randbytes(40_000))], compression=1)
    assert refusal(tmp_path, blob[:-cut]).code == "corrupt"


@pytest.mark.parametrize("cut", [20, 36, 44, 60])
def test_cab_cut_inside_its_tables_is_corrupt(tmp_path, cut):
    assert refusal(tmp_path, raw_cab(HELLO)[:cut]).code == "corrupt"


@pytest.mark.parametrize("compression", [0, 1])
def test_checksum_mismatch_is_corrupt(tmp_path, compression):
    error = refusal(tmp_path, raw_cab([("big.bin", bytes(100_000))], compression=compression, bad_checksum_block=2,
                                      block_size=32768))
    assert error.code == "corrupt" and "block 2 of folder 0 fails its checksum" in error.message


def test_flipped_bit_in_data_is_caught_by_the_checksum(tmp_path):
    blob = bytearray(raw_cab(HELLO, compression=1))
    blob[-5] ^= 0x10
    assert "checksum" in refusal(tmp_path, bytes(blob)).message


def test_damaged_mszip_without_checksums_is_corrupt(tmp_path):
    blob = bytearray(raw_cab(HELLO, compression=1, checksums=False))
    blob[-40:-20] = bytes(20)
    assert refusal(tmp_path, bytes(blob)).code == "corrupt"


def test_mszip_block_without_ck_signature_is_corrupt(tmp_path):
    blob = raw_cab(HELLO, compression=1, checksums=False)
    at = blob.index(b"CK")
    error = refusal(tmp_path, blob[:at] + b"ck" + blob[at + 2:])
    assert error.code == "corrupt" and "'CK'" in error.message


def test_member_beyond_its_folder_is_corrupt(tmp_path):
    error = refusal(tmp_path, raw_cab(HELLO, sizes={1: 1_000_000}))
    assert error.code == "corrupt" and "extends past" in error.message


def test_member_in_a_missing_folder_is_corrupt(tmp_path):
    assert refusal(tmp_path, raw_cab(HELLO, folder_of={1: 3})).code == "corrupt"


def test_file_table_not_after_the_folders_is_corrupt(tmp_path):
    error = refusal(tmp_path, raw_cab(HELLO, files_offset_delta=16))
    assert error.code == "corrupt" and "disagree" in error.message


def test_header_larger_than_the_file_is_corrupt(tmp_path):
    assert "the header says" in refusal(tmp_path, raw_cab(HELLO, declared_size_delta=1)).message


def test_unknown_format_version_is_corrupt(tmp_path):
    assert refusal(tmp_path, raw_cab(HELLO, version=(3, 2))).code == "corrupt"


def test_unknown_compression_type_is_corrupt(tmp_path):
    blob = bytearray(raw_cab(HELLO))
    blob[36 + 6] = 0x0F  # CFFOLDER.typeCompress
    assert "unknown compression type 15" in refusal(tmp_path, bytes(blob)).message


# --- multi-cabinet ----------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"flags": 1}, {"flags": 2}, {"flags": 3}, {"index": 1}, {"folder_of": {0: 0xFFFD}},
                                     {"folder_of": {1: 0xFFFE}}, {"folder_of": {0: 0xFFFF}}])
def test_multi_cabinet_sets_are_refused(tmp_path, options):
    assert refusal(tmp_path, raw_cab(HELLO, **options)).code == "multi-cabinet"


# --- names --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "/etc/passwd", "\\windows\\system32\\x.dll", "../CPE.nbt", "a/../../b", "..\\..\\x", "C:\\CPE.nbt", "c:CPE.nbt",
    "CPE.nbt:hidden", "CPE\x01.nbt", "CPE\n.nbt", "CPE\x7f.nbt", "CPE.nbt\u202egpj", "", "a//b", "./CPE.nbt", "dir/",
])
def test_unsafe_member_names_are_refused(tmp_path, name):
    assert refusal(tmp_path, raw_cab([(name, b"x"), ("ok.txt", b"y")])).code == "unsafe-name"


def test_name_flagged_utf8_that_is_not_is_refused(tmp_path):
    assert refusal(tmp_path, raw_cab([(b"\xc0\xafetc", b"x")], attributes=0x80)).code == "unsafe-name"


def test_member_that_is_also_a_folder_is_refused(tmp_path):
    assert refusal(tmp_path, raw_cab([("fw", b"x"), ("FW\\CPE.nbt", b"y")])).code == "unsafe-name"


def test_duplicate_names_ignoring_case_are_refused(tmp_path):
    error = refusal(tmp_path, raw_cab([("CPE.nbt", b"x"), ("cpe.NBT", b"y")]))
    assert error.code == "duplicate-name" and "'CPE.nbt'" in error.message and "'cpe.NBT'" in error.message


def test_duplicate_names_via_backslash_and_slash_are_refused(tmp_path):
    assert refusal(tmp_path, raw_cab([("fw\\CPE.nbt", b"x"), ("FW/cpe.nbt", b"y")])).code == "duplicate-name"


# --- limits ---------------------------------------------------------------------------------------------

def test_too_many_members(tmp_path):
    blob = raw_cab([(f"f{i}.txt", b"x") for i in range(6)])
    assert refusal(tmp_path, blob, Limits(max_members=5)).code == "too-many-members"


def test_too_large_is_decided_from_the_header(tmp_path):
    error = refusal(tmp_path, raw_cab(HELLO), Limits(max_total_size=1000))
    assert error.code == "too-large" and "above the limit of 1000" in error.message


def test_decompression_bomb_by_ratio(tmp_path):
    # 8 MiB of zeros in MSZIP is ~10 KB: 800:1.
    blob = raw_cab([("zeros.nbt", bytes(8 * 1024**2))], compression=1)
    error = refusal(tmp_path, blob)
    assert error.code == "decompression-bomb" and len(blob) < 20_000


def test_decompression_bomb_by_overlapping_members(tmp_path):
    # One real 1 MiB region, claimed by 40 members: 40 MiB declared from a small cab.
    data = bytes(1024**2)
    blob = raw_cab([("base.bin", data)] + [(f"copy{i}.bin", b"") for i in range(40)], compression=1,
                   sizes={i: len(data) for i in range(1, 41)}, offsets={i: 0 for i in range(1, 41)})
    assert refusal(tmp_path, blob).code == "decompression-bomb"


def shared_blocks_cab(folders: int, blocks: int) -> bytes:
    """``folders`` stored folders that all point at the same ``blocks`` one-byte CFDATA blocks."""
    table = struct.pack("<IIHHHH", 1, 0, 0, 0x5AF5, 0x6000, 0x20) + b"a.txt\0"
    files_offset = 36 + 8 * folders
    data_offset = files_offset + len(table)
    block = struct.pack("<HH", 1, 1) + b"x"
    data = (struct.pack("<I", cab_checksum(block[:4], cab_checksum(b"x"))) + block) * blocks
    header = struct.pack("<4sIIIIIBBHHHHH", b"MSCF", 0, data_offset + len(data), 0, files_offset, 0, 3, 1,
                         folders, 1, 0, 1, 0)
    return header + struct.pack("<IHH", data_offset, blocks, 0) * folders + table + data


def test_folders_sharing_data_blocks_are_refused_before_reading_them(tmp_path):
    # 300 folders x 300 blocks over one 2.7 KB data area: 90,000 block records from 6 KB (65,535 x
    # 65,535 would be billions). Each block needs its own 8-byte header, so at most size/8 exist.
    error = refusal(tmp_path, shared_blocks_cab(300, 300))
    assert error.code == "corrupt"
    assert re.search(r"declare 90000 data blocks, more than the \d+ that fit in \d+ bytes", error.message)
    assert [m.read_bytes() for m in read_cab(write(tmp_path, shared_blocks_cab(1, 300)))] == [b"x"]


def test_too_many_data_blocks(tmp_path):
    blob = raw_cab([("a.bin", bytes(100)), ("b.bin", bytes(100))], block_size=10)  # 20 stored blocks
    error = refusal(tmp_path, blob, Limits(max_blocks=19))
    assert error.code == "too-large" and "has 20 data blocks, above the limit of 19" in error.message
    assert [m.read_bytes() for m in read_cab(write(tmp_path, blob), Limits(max_blocks=20))] == [bytes(100)] * 2


def test_overlapping_members_are_refused(tmp_path):
    blob = raw_cab([("a.bin", b"a" * 100), ("b.bin", b"b" * 100)], offsets={1: 99})
    error = refusal(tmp_path, blob)
    assert error.code == "corrupt" and "members 'a.bin' and 'b.bin' overlap in folder 0" in error.message
    touching = raw_cab([("a.bin", b"a" * 100), ("empty.bin", b""), ("b.bin", b"b" * 100)], offsets={1: 50})
    assert {m.name: m.read_bytes() for m in read_cab(write(tmp_path, touching))} == {
        "a.bin": b"a" * 100, "empty.bin": b"", "b.bin": b"b" * 100}


@pytest.mark.parametrize("reader", ["read_cab", "open_package", "scan_package"])
def test_a_file_table_in_reverse_order_decodes_each_block_once(tmp_path, monkeypatch, reader):
    # Members listed last-first: reading them in table order re-decoded the folder from its start
    # for every member (40 members of 1 MB: 40 x 20 MB of inflate from a 300 KB cab).
    contents = {f"m{i:02d}.bin": random.Random(i).randbytes(20_000) for i in range(20)}
    updates = [make_update()]
    images, catalogs = package_files(updates, 1000)
    contents.update(images)
    contents.update(catalogs)
    contents["UCUpdates.xml"] = describe_updates(updates)
    blob = raw_cab(list(contents.items()), compression=1)
    entries, at = [], 36 + 8
    for _ in contents:  # reverse the file table in place; the data stays in order
        end = blob.index(b"\0", at + 16) + 1
        entries.append(blob[at:end])
        at = end
    path = write(tmp_path, blob[:44] + b"".join(reversed(entries)) + blob[at:])
    assert [m.name for m in Cabinet(path).members] == list(contents)
    blocks = -(-sum(map(len, contents.values())) // 32768)
    decoded = []
    inflate = Cabinet._inflate

    def counting(self, folder, i, *args, **kwargs):
        if not kwargs.get("quiet"):
            decoded.append(i)
        return inflate(self, folder, i, *args, **kwargs)

    monkeypatch.setattr(Cabinet, "_inflate", counting)
    if reader == "read_cab":
        got = {m.name: m.read_bytes() for m in read_cab(path)}
    elif reader == "open_package":
        with open_package(path) as package:
            got = {m.name: m.read_bytes() for m in package.members.values()}
    else:
        got = {}
        scan_package(path, stage=lambda member, stream: got.__setitem__(member.name, stream.read()))
        del contents["UCUpdates.xml"]
    assert got == contents
    assert sorted(decoded) == list(range(blocks))


def test_small_compressible_files_are_not_bombs(tmp_path):
    # 600 KB of text in a ~2 KB cab is 300:1 but below ratio_floor: harmless, accepted.
    path = tmp_path / "small.cab"
    path.write_bytes(raw_cab([("readme.txt", b"a" * 600_000)], compression=1))
    assert [m.read_bytes() for m in read_cab(path)] == [b"a" * 600_000]


def test_block_inflating_past_its_declared_size_is_stopped(tmp_path):
    # Header says 100 bytes; the deflate data holds 32 KiB. Decoding stops at 101 bytes.
    blob = raw_cab([("x.nbt", bytes(32768))], compression=1, sizes={0: 100}, declared_block_sizes={0: 100})
    error = refusal(tmp_path, blob)
    assert error.code == "decompression-bomb" and "stopped decompressing" in error.message


def test_block_inflating_short_of_its_declared_size_is_corrupt(tmp_path):
    blob = raw_cab([("x.nbt", bytes(1000))], compression=1, declared_block_sizes={0: 2000}, sizes={0: 2000})
    assert refusal(tmp_path, blob).code == "corrupt"


# --- compression ------------------------------------------------------------------------------------------

def test_lzx_without_cabextract_is_unsupported(tmp_path, no_cabextract):
    error = refusal(tmp_path, raw_cab(HELLO, compression=3))
    assert error.code == "unsupported-compression" and "apt-get install cabextract" in error.message


def test_garbage_lzx_with_cabextract_is_corrupt_with_its_message(tmp_path, cabextract):
    error = refusal(tmp_path, raw_cab(HELLO, compression=3))
    assert error.code == "corrupt" and "cabextract failed" in error.message


def test_cabextract_writing_past_the_declared_sizes_is_stopped(tmp_path, monkeypatch):
    """Defence in depth for the fallback: prlimit caps every output file at the largest declared size."""
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) is not installed")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "cabextract").write_text('#!/bin/sh\nexec head -c 200000 /dev/zero > "$3/hello.txt"\n')
    (fake / "cabextract").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    error = refusal(tmp_path, raw_cab(HELLO, compression=3))
    assert error.code == "decompression-bomb" and "cabextract wrote more" in error.message


# --- package level: descriptions against members ---------------------------------------------------------

def test_no_description(tmp_path):
    path = tmp_path / "x.cab"
    write_cab(path, {"CPE.nbt": b"x", "CPE.cat": b"y", "notes.xml": b"<Notes/>"})
    error = package_refusal(path)
    assert error.code == "no-description" and "DeviceUpdate" in error.message


def test_description_naming_a_file_the_cab_lacks(tmp_path):
    path = make_package(tmp_path, extra={"Other.xml": b'<DeviceUpdate><Update Id="6f1b2c3e-0b7f-4f0e-9c39-2c1b7e'
                                                     b'0e5d11" DeviceType="UCPhone" Brand="HP" Model="4120" '
                                                     b'Revision="A" Locale="ENU" UpdateType="CPE" '
                                                     b'Version="4.0.7577.4372"><Files><File Name="HP.nbt" '
                                                     b'Catalog="HP.cat"/></Files></Update></DeviceUpdate>'})
    error = package_refusal(path)
    assert error.code == "missing-file" and "HP.nbt" in error.message


def test_image_without_its_catalog(tmp_path):
    path = tmp_path / "x.cab"
    update = make_update(files=[FileRef("CPE.nbt")])
    write_cab(path, {"CPE.nbt": b"image", "UCUpdates.xml": describe_updates([update])})
    error = package_refusal(path)
    assert error.code == "missing-catalog" and "CPE.cat" in error.message


def test_named_catalog_missing(tmp_path):
    path = tmp_path / "x.cab"
    update = make_update(files=[FileRef("CPE.nbt", "Signed.cat")])
    write_cab(path, {"CPE.nbt": b"image", "CPE.cat": b"c", "UCUpdates.xml": describe_updates([update])})
    assert package_refusal(path).code == "missing-catalog"


def test_stray_image_without_catalog(tmp_path):
    update = make_update()
    images, catalogs = package_files([update])
    path = tmp_path / "x.cab"
    write_cab(path, {**images, **catalogs, "Spare.nbt": b"unreferenced", "UCUpdates.xml": describe_updates([update])})
    error = package_refusal(path)
    assert error.code == "missing-catalog" and "Spare.nbt" in error.message


def test_bad_description_in_a_package(tmp_path):
    path = tmp_path / "x.cab"
    write_cab(path, {"CPE.nbt": b"x", "CPE.cat": b"y", "UCUpdates.xml": b"<DeviceUpdate><Update Id='nope'/>"
                                                                         b"</DeviceUpdate>"})
    assert package_refusal(path).code == "bad-description"


def test_every_code_is_exercised():
    """Keep this file honest: a new code needs a test above."""
    source = open(__file__, encoding="utf-8").read()
    missing = [code for code in CODES if f'"{code}"' not in source]
    assert missing == []


@pytest.mark.timeout(60)
def test_mutated_cabs_are_read_or_refused_cleanly(tmp_path):
    """600 random corruptions of good cabs: each either reads or raises PackageError, nothing else."""
    rng = random.Random(2026)
    seeds = [raw_cab([*HELLO, ("noise.bin", rng.randbytes(40_000))], compression=c, **options)
             for c in (0, 1) for options in ({}, {"header_reserve": bytes(20), "data_reserve": 4})]
    seeds.append(make_package(tmp_path, image_sizes=3000).read_bytes())
    path = tmp_path / "mutant.cab"
    outcomes = set()
    for n in range(600):
        blob = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(blob)) if rng.random() < 0.6 else rng.randrange(min(len(blob), 120))
            blob[where] = rng.randrange(256)
        path.write_bytes(bytes(blob[:rng.randrange(len(blob) + 1)] if n % 5 == 0 else blob))
        try:
            if n % 2:
                open_package(path).close()
            else:
                for member in read_cab(path, Limits(max_ratio=1e6)):
                    member.read_bytes()
            outcomes.add("ok")
        except PackageError as exc:
            outcomes.add(exc.code)
    assert {"ok", "corrupt", "not-a-cabinet"} <= outcomes
