"""The pure parts of log upload: safe names, device ids, types and extensions; range parsing."""

from __future__ import annotations

import pytest

from devupdate.devices.logs import canonical_type, check_extension, device_id, extension, safe_name
from devupdate.errors import DevupdateError
from devupdate.web.byteranges import parse_ranges
from filestore.paths import split_relpath


@pytest.mark.parametrize(("raw", "safe"), [
    ("crash.dmp", "crash.dmp"),
    ("../../x.txt", "x.txt"),
    ("C:\\x.txt", "x.txt"),
    ("C:x.txt", "x.txt"),
    ("x/..\\y.txt", "y.txt"),
    ("\\\\server\\share\\z.bin", "z.bin"),
    ("/etc/passwd", "passwd"),
    (".bashrc.txt", "bashrc.txt"),
    ("...dmp", "dmp"),
    (".tmp-1-abc.txt", "tmp-1-abc.txt"),  # the filestore's reserved temp prefix cannot be reached
    ("a b\tc\x00d.txt", "a_b_c_d.txt"),
    ("naïve.txt", "na_ve.txt"),
    ("ＣＲＡＳＨ.dmp", "CRASH.dmp"),  # NFKC first
    ("x" * 300 + ".clg2", "x" * 195 + ".clg2"),
])
def test_safe_name(raw, safe):
    assert safe_name(raw) == safe
    assert split_relpath(f"Watson/0004F2AABBCC/{safe}")  # always a valid filestore name


@pytest.mark.parametrize("raw", ["", "..", "/", "\\", "C:", "...", "._-", None])
def test_names_with_nothing_usable_are_refused(raw):
    with pytest.raises(DevupdateError) as refused:
        safe_name(raw)
    assert refused.value.code == "BadFileName"


def test_device_ids():
    assert device_id("00-04-f2-aa-bb-cc", None) == "0004F2AABBCC"
    assert device_id("0004.F2AA.BBCC", "ignored") == "0004F2AABBCC"
    assert device_id("", " cx600-0042 ") == "SN-CX600-0042"
    for mac, serial, code in (("00-04-F2", None, "BadMacAddress"), ("", "a/b", "BadSerialNumber"),
                              (None, None, "MissingIdentity"), ("zz04f2aabbcc", None, "BadMacAddress")):
        with pytest.raises(DevupdateError) as refused:
            device_id(mac, serial)
        assert refused.value.code == code


def test_types_and_extensions():
    valid = ["Watson", "Config", "DiagLog", "CELog"]
    assert canonical_type("celog", valid) == "CELog"
    with pytest.raises(DevupdateError):
        canonical_type("Other", valid)
    assert extension("a.CLG2") == ".clg2" and extension("noext") == "" and extension("a.b.TXT") == ".txt"
    check_extension("A.DMP", [".dmp"])
    with pytest.raises(DevupdateError):
        check_extension("a.dmp.exe", [".dmp"])


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-99", 1000, [(0, 99)]),
    ("bytes=900-", 1000, [(900, 999)]),
    ("bytes=-100", 1000, [(900, 999)]),
    ("bytes=-5000", 1000, [(0, 999)]),
    ("bytes=990-2000", 1000, [(990, 999)]),
    ("BYTES = 0-0 , 5-9", 1000, [(0, 0), (5, 9)]),
    ("bytes=0-1,,3-4", 1000, [(0, 1), (3, 4)]),
    ("bytes=1000-", 1000, []),
    ("bytes=-0", 1000, []),
    ("bytes=0-0", 0, []),
    ("bytes=5-4", 1000, None),
    ("bytes=a-b", 1000, None),
    ("bytes=1", 1000, None),
    ("bytes=", 1000, None),
    ("chars=0-1", 1000, None),
    ("bytes=" + "9" * 30 + "-", 1000, None),
    ("bytes=" + ",".join(["0-0"] * 33), 1000, None),
    ("bytes=0-,0-", 1000, None),  # overlapping, more than the file: the whole file once
    ("bytes=0-499,500-999", 1000, [(0, 499), (500, 999)]),
])
def test_parse_ranges(header, size, expected):
    assert parse_ranges(header, size) == expected
