"""The libmspack/cabextract sample cabinets: we extract exactly what cabextract extracts, or refuse.

Every refusal is a PackageError with the code listed here (never another exception, never a
hang). Where cabextract accepts a sample and we do not, the reason is deliberate and named.
"""

from __future__ import annotations

import pytest
from helpers.cabs import SAMPLE_CABS, cabextract_tree, run_tool

from devupdate.packages import CODES, Cabinet, Limits, PackageError, open_package, read_cab

SAMPLES = sorted(p.name for p in SAMPLE_CABS.glob("*.cab")) if SAMPLE_CABS.is_dir() else []

#: Samples cabextract accepts that we refuse, and why.
REFUSED_ON_PURPOSE = {
    "dirwalk-vulns.cab": "unsafe-name",  # absolute paths, '..', overlong UTF-8 slashes
    "hidden-files.cab": "corrupt",  # coffFiles disagrees with the folder table: tools see different files
    "search_basic.cab": "not-a-cabinet",  # junk before an embedded cabinet; we do not search
    "search_tricky1.cab": "multi-cabinet",  # decoy header at offset 0 claims a previous cabinet
    **{f"split-{i}.cab": "multi-cabinet" for i in range(1, 6)},
}

#: The code each broken sample gets (regression table).
BROKEN = {
    "bad_folderindex.cab": "corrupt", "bad_nofiles.cab": "corrupt", "bad_nofolders.cab": "corrupt",
    "bad_signature.cab": "not-a-cabinet", "cve-2010-2800-mszip-infinite-loop.cab": "corrupt",
    "cve-2014-9556-qtm-infinite-loop.cab": "corrupt", "cve-2014-9732-folders-segfault.cab": "corrupt",
    "cve-2015-4470-mszip-over-read.cab": "corrupt", "cve-2015-4471-lzx-under-read.cab": "corrupt",
    "cve-2017-11423-fname-overread.cab": "corrupt", "cve-2018-18584-qtm-max-size-block.cab": "corrupt",
    "filename-read-violation-1.cab": "unsafe-name", "filename-read-violation-2.cab": "multi-cabinet",
    "filename-read-violation-3.cab": "multi-cabinet", "filename-read-violation-4.cab": "corrupt",
    "hidden-file-bad-folderid.cab": "corrupt", "hidden-file-beyond-eof.cab": "corrupt",
    "lzx-main-tree-no-lengths.cab": "corrupt", "lzx-premature-matches.cab": "corrupt",
    **{f"multi_basic_pt{i}.cab": "multi-cabinet" for i in range(1, 6)},
    **{f"partial_{n}.cab": "corrupt" for n in ("nodata", "nofiles", "nofolder", "shortextheader", "shortfile1",
                                                 "shortfile2", "shortfolder", "shortheader")},
    **{f"partial_str_{n}.cab": "multi-cabinet" for n in ("nofname", "noninfo", "nonname", "nopinfo", "nopname",
                                                           "shortfname", "shortninfo", "shortnname", "shortpinfo",
                                                           "shortpname")},
}

LZX_OR_QUANTUM = {  # valid samples needing cabextract, and the compression the error must name
    "normal_2files_2folders.cab": "LZX", "mszip_lzx_qtm.cab": "LZX and Quantum",
    "cve-2010-2801-qtm-flush.cab": "Quantum", "large-files-cab.cab": "LZX",
    "wsus-xmlblob-a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe-r200.cab": "LZX",
}
ROOMY = Limits(max_ratio=1000)  # large-files-cab.cab expands 553:1 (see test_default_limits_…)


def read_all(path, limits=ROOMY) -> dict[str, bytes]:
    return {member.name: member.read_bytes() for member in read_cab(path, limits)}


#: Samples we read, byte for byte what cabextract extracts.
ACCEPTED = {
    "cve-2010-2801-qtm-flush.cab", "large-files-cab.cab", "mszip_lzx_qtm.cab", "normal_255c_filename.cab",
    "normal_2files_1folder.cab", "normal_2files_2folders.cab", *(f"reserve_{r}.cab" for r in (
        "---", "--D", "-F-", "-FD", "H--", "H-D", "HF-", "HFD")),
    "wsus-xmlblob-266f6222-c89d-43f2-9f8a-69340271e677-r200.cab",
    "wsus-xmlblob-56309036-4c77-4dd9-951a-99ee9c246a94-r101.cab",
    "wsus-xmlblob-a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe-r200.cab",
}


def test_every_sample_is_classified(samples):
    tables = (ACCEPTED, set(REFUSED_ON_PURPOSE), set(BROKEN))
    assert sorted(set().union(*tables)) == SAMPLES and sum(map(len, tables)) == len(SAMPLES)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", SAMPLES)
def test_sample_matches_cabextract_or_is_refused(name, samples, cabextract, tmp_path):
    path = samples / name
    accepted_by_cabextract = run_tool(cabextract, "-t", str(path)).returncode == 0
    try:
        ours = read_all(path)
    except PackageError as exc:
        expected = REFUSED_ON_PURPOSE.get(name) if accepted_by_cabextract else BROKEN.get(name)
        assert (exc.code, name) == (expected, name), exc.message
        assert exc.code in CODES and exc.message
        return
    assert accepted_by_cabextract, f"we accepted {name}, which cabextract refuses"
    assert name in ACCEPTED
    assert ours == cabextract_tree(path, tmp_path / "out")


@pytest.mark.timeout(60)
def test_materialized_members_equal_streamed_members(samples, cabextract, tmp_path):
    """open_package's path (decode everything to a work dir once) gives the same bytes."""
    for name in ("mszip_lzx_qtm.cab", "normal_2files_1folder.cab", "reserve_HFD.cab", "large-files-cab.cab"):
        with Cabinet(samples / name, ROOMY, workdir=tmp_path) as cabinet:
            cabinet.materialize()
            got = {m.name: m.read_bytes() for m in reversed(cabinet.members)}  # any order works now
        assert got == read_all(samples / name), name
    assert list(tmp_path.iterdir()) == [], "the work directory was not cleaned up"


def test_our_reader_agrees_with_cabarchive(samples):
    from cabarchive import CabArchive

    # Not normal_255c_filename.cab: cabarchive 0.2.5 reads a 255-byte name as "" (its loop stops at 254).
    for name in ("normal_2files_1folder.cab", "reserve_---.cab", "reserve_HFD.cab", "reserve_-FD.cab"):
        archive = CabArchive((samples / name).read_bytes())
        assert {n: bytes(f.buf or b"") for n, f in archive.items()} == read_all(samples / name), name


@pytest.mark.parametrize("name", sorted(LZX_OR_QUANTUM))
def test_lzx_and_quantum_without_cabextract_name_the_compression_and_the_fix(name, samples, no_cabextract):
    with pytest.raises(PackageError) as refused:
        read_all(samples / name)
    assert refused.value.code == "unsupported-compression"
    assert f"uses {LZX_OR_QUANTUM[name]} compression" in refused.value.message
    assert "install cabextract (Debian/Ubuntu: apt-get install cabextract)" in refused.value.message


def test_mszip_folder_of_a_mixed_cab_reads_without_cabextract(samples, no_cabextract):
    members = iter(read_cab(samples / "mszip_lzx_qtm.cab"))
    first = next(members)
    assert first.name == "mszip.txt" and b"MSZIP decompressor is working" in first.read_bytes()
    with pytest.raises(PackageError, match="LZX and Quantum"):
        next(members).read_bytes()


def test_open_package_without_cabextract_refuses_lzx(samples, no_cabextract):
    with pytest.raises(PackageError) as refused:
        open_package(samples / "wsus-xmlblob-56309036-4c77-4dd9-951a-99ee9c246a94-r101.cab")
    assert refused.value.code == "unsupported-compression"


def test_default_limits_call_large_files_cab_a_bomb_before_decompressing(samples, no_cabextract):
    # 26,554 bytes declaring a 14,689,228-byte member: refused from the header, so no cabextract needed.
    with pytest.raises(PackageError) as refused:
        read_all(samples / "large-files-cab.cab", Limits())
    assert refused.value.code == "decompression-bomb" and "553 times" in refused.value.message


def test_corrupt_lzx_reports_cabextracts_message(samples, cabextract):
    with pytest.raises(PackageError) as refused:
        read_all(samples / "lzx-premature-matches.cab")
    assert refused.value.code == "corrupt"
    assert "cabextract failed: file.txt: decompression error" in refused.value.message


def test_cabinet_hidden_after_an_lzx_cabinet_is_not_extracted(samples, cabextract, tmp_path):
    """cabextract extracts every cabinet it finds in a file; we give it only the one we checked."""
    original = samples / "wsus-xmlblob-266f6222-c89d-43f2-9f8a-69340271e677-r200.cab"
    smuggled = tmp_path / "smuggled.cab"
    smuggled.write_bytes(original.read_bytes() + (samples / "normal_2files_1folder.cab").read_bytes())
    assert "hello.c" in cabextract_tree(smuggled, tmp_path / "naive")
    assert read_all(smuggled) == cabextract_tree(original, tmp_path / "expected") and len(read_all(smuggled)) == 1


def test_real_wsus_blob_is_utf16_xml(samples, cabextract):
    (blob,) = read_all(samples / "wsus-xmlblob-a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe-r200.cab").items()
    assert blob[0] == "blob" and len(blob[1]) == 69570 and blob[1].decode("utf-16-le").lstrip("\ufeff")[:1] == "<"
