"""Writing cabs (`devupdate pack`): standard tools read what we write, and we read what gcab writes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cabarchive import CabArchive
from helpers.cabs import (
    FIXED_TIME,
    cabextract_tree,
    gcab_create,
    make_package,
    make_update,
    package_files,
    realistic_updates,
    run_tool,
)

from devupdate.packages import (
    FileRef,
    PackageError,
    build_package,
    describe_updates,
    open_package,
    parse_descriptions,
    read_cab,
    write_cab,
)
from devupdate.packages.pack import pack_files

MEMBERS = {
    "CPE.nbt": random.Random(1).randbytes(150_000),  # several blocks, incompressible
    "CPE.cat": b"catalog" * 300,
    "notes/readme.txt": b"".join(b"release note line %d\n" % i for i in range(4000)),
    "empty.txt": b"",
    "UCUpdates.xml": describe_updates([make_update(files=[FileRef("CPE.nbt", "CPE.cat")])]),
}


def gcab_names(gcab: str, cab: Path) -> list[str]:
    """``gcab -t`` lists names (gcab 1.5: -t list, -l list with details; it has no separate test)."""
    proc = run_tool(gcab, "-t", str(cab))
    assert proc.returncode == 0, proc.stderr
    return sorted(line.strip().replace("\\", "/") for line in proc.stdout.splitlines() if line.strip())


def gcab_tree(gcab: str, cab: Path, into: Path) -> dict[str, bytes]:
    into.mkdir()
    proc = run_tool(gcab, "-x", "-C", str(into), str(cab))
    assert proc.returncode == 0, proc.stderr
    return {p.relative_to(into).as_posix(): p.read_bytes() for p in into.rglob("*") if p.is_file()}


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_through_cabextract_gcab_and_read_cab(tmp_path, cabextract, gcab, compress):
    cab = tmp_path / "out.cab"
    size = write_cab(cab, MEMBERS, compress=compress, mtime=FIXED_TIME)
    assert size == cab.stat().st_size
    assert run_tool(cabextract, "-t", str(cab)).returncode == 0
    assert gcab_names(gcab, cab) == sorted(MEMBERS)
    assert run_tool(gcab, "-l", str(cab)).stdout.count("2026-07-21 12:00:00") == len(MEMBERS)
    assert gcab_tree(gcab, cab, tmp_path / "g") == MEMBERS
    assert cabextract_tree(cab, tmp_path / "x") == MEMBERS
    assert {m.name: m.read_bytes() for m in read_cab(cab)} == MEMBERS
    assert {n.replace("\\", "/"): f.buf or b"" for n, f in CabArchive(cab.read_bytes()).items()} == MEMBERS


def test_compression_actually_compresses(tmp_path):
    text = {"log.txt": b"the same line again\n" * 50_000}
    assert write_cab(tmp_path / "z.cab", text) < write_cab(tmp_path / "s.cab", text, compress=False) / 20


def test_gcab_made_cabs_read_back(tmp_path, gcab):
    for compress in (True, False):
        cab = gcab_create(tmp_path / f"g{compress}.cab", MEMBERS, compress=compress)
        assert {m.name: m.read_bytes() for m in read_cab(cab)} == MEMBERS


def test_gcab_made_package_imports(tmp_path, gcab):
    cab = make_package(tmp_path, realistic_updates()[:3], tool="gcab", image_sizes=70_000)
    with open_package(cab) as package:
        assert [u.model for u in package.updates] == ["CX500", "CX600", "CX3000"]
        assert package.member("CX600_A_ENU_CPE.nbt").size == 70_000


def test_existing_output_is_replaced_atomically(tmp_path):
    cab = tmp_path / "out.cab"
    cab.write_bytes(b"old")
    write_cab(cab, {"a.txt": b"new"})
    assert [m.read_bytes() for m in read_cab(cab)] == [b"new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.cab"]


def test_written_times_are_the_given_time(tmp_path):
    write_cab(tmp_path / "t.cab", {"a.txt": b"x"}, mtime=FIXED_TIME)
    assert "21.07.2026 12:00:00" in run_tool("cabextract", "-l", str(tmp_path / "t.cab")).stdout


@pytest.mark.parametrize(("members", "code"), [({"../x": b""}, "unsafe-name"), ({"C:\\x": b""}, "unsafe-name"),
                                                ({"a": b"", "A": b""}, "duplicate-name")])
def test_write_cab_refuses_what_the_reader_would(tmp_path, members, code):
    with pytest.raises(PackageError) as refused:
        write_cab(tmp_path / "x.cab", members)
    assert refused.value.code == code and not (tmp_path / "x.cab").exists()


def test_build_package_requires_catalogs(tmp_path):
    update = make_update()
    images, _ = package_files([update])
    with pytest.raises(PackageError) as refused:
        build_package(tmp_path / "x.cab", [update], images)
    assert refused.value.code == "missing-catalog"


def test_build_package_requires_the_images(tmp_path):
    with pytest.raises(PackageError) as refused:
        build_package(tmp_path / "x.cab", [make_update()], {}, {})
    assert refused.value.code == "missing-file"


def test_build_package_resolves_catalogs_by_stem(tmp_path):
    update = make_update(files=[FileRef("CPE.nbt")])
    written = build_package(tmp_path / "x.cab", [update], {"CPE.nbt": b"img"}, {"CPE.cat": b"cat"})
    assert written[0].files == (FileRef("CPE.nbt", "CPE.cat"),)
    with open_package(tmp_path / "x.cab") as package:
        assert package.updates == written


# --- pack_files (the `devupdate pack` command) -------------------------------------------------------

def _files(tmp_path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        (tmp_path / name).write_bytes(f"content of {name}".encode())
        paths.append(tmp_path / name)
    return paths


def test_pack_from_fields(tmp_path, cabextract):
    out = tmp_path / "UCUpdates.cab"
    result = pack_files(out, _files(tmp_path, "CPE.nbt", "CPE.cat"), brand="Polycom", model="CX600",
                        version="4.0.7577.4372", rule_id="{5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D11}")
    assert result["Members"] == ["CPE.cat", "CPE.nbt", "UCUpdates.xml"] and result["Size"] == out.stat().st_size
    assert run_tool(cabextract, "-t", str(out)).returncode == 0
    with open_package(out) as package:
        (update,) = package.updates
    assert (update.id, update.update_type, update.files) == ("5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11", "CPE",
                                                             (FileRef("CPE.nbt", "CPE.cat"),))


def test_pack_one_update_per_image_or_one_for_all(tmp_path):
    files = _files(tmp_path, "CPE.nbt", "CPE.cat", "UCA.nbt", "UCA.cat")
    result = pack_files(tmp_path / "a.cab", files, brand="HP", model="4120", version="4.0.7577.4372")
    assert sorted(u["UpdateType"] for u in result["Updates"]) == ["CPE", "UCA"]
    result = pack_files(tmp_path / "b.cab", files, brand="HP", model="4120", version="4.0.7577.4372",
                        update_type="Firmware")
    assert [u["Files"] for u in result["Updates"]] == [["CPE.nbt", "UCA.nbt"]]


def test_pack_with_a_description_file(tmp_path):
    description = tmp_path / "updates.xml"
    description.write_bytes(describe_updates([make_update(files=[FileRef("CPE.nbt", "CPE.cat")])]))
    result = pack_files(tmp_path / "x.cab", _files(tmp_path, "CPE.nbt", "CPE.cat"), description=description)
    assert result["Members"] == ["CPE.cat", "CPE.nbt", "updates.xml"]
    with open_package(tmp_path / "x.cab") as package:
        assert package.member("updates.xml").read_bytes() == description.read_bytes()


@pytest.mark.parametrize(("kwargs", "code", "text"), [
    ({"brand": "HP", "model": "4120"}, "bad-description", "--version"),
    ({"brand": "HP", "model": "4120", "version": "4.0"}, "bad-description", "version"),
    ({"brand": "HP", "model": "4120", "version": "4.0.7577.1", "rule_id": "{5A1D2C3E-0B7F-4F0E-9C39-2C1B7E0E5D11}"},
     "bad-description", "--update-type"),
])
def test_pack_refusals(tmp_path, kwargs, code, text):
    with pytest.raises(PackageError) as refused:
        pack_files(tmp_path / "x.cab", _files(tmp_path, "CPE.nbt", "CPE.cat", "UCA.nbt", "UCA.cat"), **kwargs)
    assert refused.value.code == code and text in refused.value.message


def test_pack_refuses_an_image_without_catalog(tmp_path):
    with pytest.raises(PackageError) as refused:
        pack_files(tmp_path / "x.cab", _files(tmp_path, "CPE.nbt"), brand="HP", model="4120", version="4.0.7577.1")
    assert refused.value.code == "missing-catalog" and not (tmp_path / "x.cab").exists()


def test_pack_output_is_a_description_round_trip(tmp_path):
    result = pack_files(tmp_path / "x.cab", _files(tmp_path, "CPE.nbt", "CPE.cat"), brand="Aastra", model="6725ip",
                        version="4.0.7577.4366", locale="deu")
    with open_package(tmp_path / "x.cab") as package:
        xml = package.member("UCUpdates.xml").read_bytes()
    assert parse_descriptions({"x": xml})[0].locale == "DEU" and result["Updates"][0]["Locale"] == "DEU"
