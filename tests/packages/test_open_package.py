"""open_package: what the importer gets — updates, members to stage, catalogs to check."""

from __future__ import annotations

import hashlib
import random
import tracemalloc

import pytest
from helpers.cabs import make_package, make_update, realistic_updates, trust_anchor_pem

from devupdate.packages import FileRef, PackageError, check_catalog, describe_updates, open_package, write_cab


def test_realistic_multi_vendor_package(tmp_path):
    updates = realistic_updates() + [make_update("Polycom", "CX600", "4.0.7577.4372", locale="DEU")]
    cab = make_package(tmp_path, updates, image_sizes=20_000)
    with open_package(cab) as package:
        assert package.updates == updates
        assert {u.brand for u in package.updates} == {"Polycom", "Aastra", "HP", "LG-Nortel"}
        assert package.cab_size == cab.stat().st_size
        assert package.cab_sha256 == hashlib.sha256(cab.read_bytes()).hexdigest()
        assert len(package.members) == 2 * len(updates) + 1
        for update in package.updates:
            (ref,) = update.files
            image = package.member(ref.name)
            with image.open() as stream:
                data = stream.read()
            assert len(data) == image.size == 20_000
            catalog = package.members[ref.catalog.lower()].read_bytes()
            assert check_catalog(catalog, hashlib.sha1(data).digest(), hashlib.sha256(data).digest(),  # noqa: S324
                                 [trust_anchor_pem()]) == []


def test_members_stream_in_any_order_any_number_of_times(tmp_path):
    cab = make_package(tmp_path, realistic_updates()[:3], image_sizes=100_000)
    with open_package(cab) as package:
        first = {name: m.read_bytes() for name, m in reversed(package.members.items())}
        again = {name: m.read_bytes() for name, m in package.members.items()}
        assert first == again and package.member("CX500_A_ENU_CPE.NBT").size == 100_000


def test_temporary_files_live_in_workdir_until_closed(tmp_path):
    cab = make_package(tmp_path, image_sizes=50_000)
    work = tmp_path / "work"
    work.mkdir()
    package = open_package(cab, workdir=work)
    assert len(list(work.iterdir())) == 1
    package.close()
    assert list(work.iterdir()) == []
    with pytest.raises(ValueError):
        next(iter(package.members.values())).open()


def test_refusal_leaves_no_temporary_files(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cab = tmp_path / "x.cab"
    write_cab(cab, {"CPE.nbt": b"x" * 5000, "CPE.cat": b"y", "notes.txt": b"no description here"})
    with pytest.raises(PackageError):
        open_package(cab, workdir=work)
    assert list(work.iterdir()) == []


def test_descriptions_may_use_any_member_name_case(tmp_path):
    cab = tmp_path / "x.cab"
    update = make_update(files=[FileRef("cpe.NBT", "CPE.CAT")])
    write_cab(cab, {"CPE.nbt": b"img", "cpe.cat": b"cat", "Desc.XML": describe_updates([update])})
    with open_package(cab) as package:
        (ref,) = package.updates[0].files
        assert package.members[ref.name.lower()].read_bytes() == b"img"
        assert package.members[ref.catalog.lower()].read_bytes() == b"cat"


def test_open_package_memory_stays_flat(tmp_path):
    """Python allocations while opening and streaming a 24 MiB package stay around the 1 MiB buffers."""
    update = make_update()
    (ref,) = update.files
    cab = tmp_path / "big.cab"
    write_cab(cab, {ref.name: random.Random(2).randbytes(16 * 1024**2), ref.catalog: b"c",
                    "notes.txt": b"a compressible note\n" * 400_000, "UCUpdates.xml": describe_updates([update])})
    tracemalloc.start()
    try:
        with open_package(cab) as package:
            for member in package.members.values():
                with member.open() as stream:
                    while stream.read(1 << 20):
                        pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024**2, peak
