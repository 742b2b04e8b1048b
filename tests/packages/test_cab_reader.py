"""Our streaming cab reader on cabs built for it: layouts, names, streams, memory."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from cabarchive.utils import _checksum_compute
from helpers.cabs import cabextract_tree, raw_cab

from devupdate.packages import Cabinet, PackageError, read_cab, write_cab
from devupdate.packages.cab import checksum

NOISE = random.Random(5).randbytes(200_000)
TEXT = b"".join(b"line %06d of a log that compresses well\n" % i for i in range(5000))
FILES = [("a.txt", TEXT), ("empty.bin", b""), ("noise.bin", NOISE), ("tiny.txt", b"x"), ("z.txt", TEXT[:70_000])]


def write(tmp_path, blob: bytes, name: str = "t.cab"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("compression", [0, 1])
@pytest.mark.parametrize("options", [{}, {"header_reserve": bytes(20), "folder_reserve": 4, "data_reserve": 8},
                                     {"block_size": 1000, "mszip_without_dictionary": True},
                                     {"mszip_without_dictionary": True}, {"checksums": False}])
def test_layouts_read_back_exactly(tmp_path, cabextract, compression, options):
    path = write(tmp_path, raw_cab(FILES, compression=compression, **options))
    expected = dict(FILES)
    assert {m.name: m.read_bytes() for m in read_cab(path)} == expected
    assert cabextract_tree(path, tmp_path / "out") == {k: v for k, v in expected.items()}


def test_mszip_referring_back_across_a_short_block_is_refused(tmp_path, cabextract):
    """Short middle blocks make libmspack (positional window) and zlib readers (linear history)
    disagree; cabextract really does produce different bytes here, so we refuse."""
    path = write(tmp_path, raw_cab([("a.txt", TEXT)], compression=1, block_size=1000))
    with pytest.raises(PackageError) as refused:
        [m.read_bytes() for m in read_cab(path)]
    assert refused.value.code == "corrupt" and "decode it differently" in refused.value.message
    assert cabextract_tree(path, tmp_path / "out")["a.txt"] != TEXT


def test_signed_cab_with_authenticode_reserve_and_trailing_signature_parses(tmp_path, cabextract):
    # Signed cabs reserve 20 header bytes (signature offset/size) and append the PKCS#7 after cbCabinet.
    blob = raw_cab(FILES, compression=1, header_reserve=b"\x00\x00\x10\x00" + bytes(16))
    path = write(tmp_path, blob + b"0\x82\x10\x00" + random.Random(1).randbytes(4096))
    with Cabinet(path) as cabinet:
        assert cabinet.cab_size == len(blob) and cabinet.file_size == len(blob) + 4100
        assert {m.name: m.read_bytes() for m in cabinet.members} == dict(FILES)


def test_members_can_be_read_in_any_order_and_partially(tmp_path):
    path = write(tmp_path, raw_cab(FILES, compression=1))
    with Cabinet(path) as cabinet:
        by_name = {m.name: m for m in cabinet.members}
        assert by_name["z.txt"].read_bytes() == TEXT[:70_000]
        assert by_name["a.txt"].read_bytes() == TEXT  # restarts the folder
        with by_name["noise.bin"].open() as stream:
            assert stream.read(10) == NOISE[:10]
            assert stream.read(5) == NOISE[10:15]
        assert by_name["tiny.txt"].read_bytes() == b"x"  # continues after a partial read
        with by_name["noise.bin"].open() as one, by_name["a.txt"].open() as two:  # two streams at once
            assert one.read() == NOISE and two.read() == TEXT
        assert by_name["empty.bin"].read_bytes() == b""


def test_streams_honour_read_sizes(tmp_path):
    path = write(tmp_path, raw_cab(FILES, compression=1))
    with Cabinet(path) as cabinet:
        noise = next(m for m in cabinet.members if m.name == "noise.bin")
        with noise.open() as stream:
            chunks = iter(lambda: stream.read(65_536), b"")
            sizes = [len(c) for c in chunks]
        assert sizes[:-1] == [65_536] * (len(sizes) - 1) and sum(sizes) == len(NOISE)
        buffer = bytearray(1 << 20)
        with noise.open() as stream:
            assert stream.readinto(buffer) == len(NOISE) and bytes(buffer[:len(NOISE)]) == NOISE


def test_stored_cab_seeks_straight_to_a_member(tmp_path):
    path = write(tmp_path, raw_cab(FILES, compression=0, block_size=1000))
    with Cabinet(path) as cabinet:
        last = cabinet.members[-1]
        assert last.read_bytes() == TEXT[:70_000]


def test_names_backslashes_and_utf8(tmp_path, cabextract):
    path = write(tmp_path, raw_cab([("fw\\CPE.nbt", b"1"), ("Größe.txt", b"2")]))
    names = {m.name: m.read_bytes() for m in read_cab(path)}
    assert names == {"fw/CPE.nbt": b"1", "Größe.txt": b"2"}
    assert cabextract_tree(path, tmp_path / "out") == names


def test_non_ascii_name_without_utf8_flag_is_refused(tmp_path):
    # Its code page is unknown (cabextract writes the raw byte, others guess cp1252 or cp437).
    with pytest.raises(PackageError) as refused:
        next(read_cab(write(tmp_path, raw_cab([(b"caf\xe9.txt", b"3")]))))
    assert refused.value.code == "unsafe-name"


def test_closed_cabinet_refuses_to_open_members(tmp_path):
    path = write(tmp_path, raw_cab(FILES))
    with Cabinet(path) as cabinet:
        member = cabinet.members[0]
    with pytest.raises(ValueError, match="closed"):
        member.open()


def test_read_cab_checks_the_header_at_first_next(tmp_path):
    members = read_cab(write(tmp_path, b"not a cab"))
    with pytest.raises(PackageError):
        next(members)


def test_read_cab_removes_cabextract_output_when_done(samples, cabextract, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    used = []
    for member in read_cab(samples / "normal_2files_2folders.cab", workdir=work):
        member.read_bytes()
        used += list(work.iterdir())
    assert used and list(work.iterdir()) == []


def test_checksum_matches_cabarchive():
    rng = random.Random(3)
    for length in [0, 1, 2, 3, 4, 5, 7, 8, 1000, 32768, 32771]:
        data = rng.randbytes(length)
        assert checksum(data) == _checksum_compute(data), length
        assert checksum(data, 0xDEADBEEF) == _checksum_compute(data, 0xDEADBEEF)


def test_streaming_memory_does_not_grow_with_the_cab(tmp_path):
    """A 16 MiB package streams with ~2 MiB of Python allocations (group buffer + read buffer)."""
    path = tmp_path / "big.cab"
    write_cab(path, {"CPE.nbt": random.Random(9).randbytes(8 * 1024**2), "log.txt": TEXT * 42})
    tracemalloc.start()
    try:
        for member in read_cab(path):
            with member.open() as stream:
                while stream.read(1 << 20):
                    pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024**2, peak
