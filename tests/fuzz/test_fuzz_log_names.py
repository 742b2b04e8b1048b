"""Properties of the names a device log upload is stored under (devupdate/devices/logs.py)."""

from __future__ import annotations

import re
import string

from fuzzkit import FUZZ, mac_digits, mac_spellings, macs, mixed_text, nasty_text, serials
from hypothesis import given
from hypothesis import strategies as st

from devupdate.devices.logs import canonical_type, check_extension, device_id, extension, safe_name
from devupdate.errors import DevupdateError
from filestore.paths import split_relpath

TYPES = ["Watson", "Dump", "Log"]
EXTENSIONS = [".clg2", ".dmp", ".txt", ".log", ".zip"]
client_names = st.one_of(
    mixed_text, nasty_text,
    st.builds(lambda d, n, e: f"{d}{n}{e}", st.sampled_from(["", "../../", "C:\\", "x/..\\", "/etc/", "\\\\srv\\s\\"]),
              st.text(string.printable, max_size=300), st.sampled_from(["", ".txt", ".TXT", ".dmp", ".", ".." * 5])),
    st.text(st.sampled_from("./\\_-"), max_size=10))


@FUZZ
@given(client_names)
def test_a_client_file_name_becomes_a_safe_base_name_or_is_refused(raw):
    try:
        name = safe_name(raw)
    except DevupdateError as error:
        assert error.code == "BadFileName" and "name=" in error.message
        return
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,200}", name), name
    assert not name.startswith(".") and name.strip("._-")
    assert safe_name(name) == name  # stored names are stable: a re-upload lands beside, not elsewhere
    assert split_relpath(f"Watson/0004F2AABBCC/{name}") == ("Watson", "0004F2AABBCC", name)
    assert split_relpath(f"Watson/0004F2AABBCC/{name.rsplit('.', 1)[0]}_99.{name.rsplit('.', 1)[-1]}")


@FUZZ
@given(st.one_of(st.none(), macs), st.one_of(st.none(), serials))
def test_the_device_id_is_a_mac_or_a_serial_or_refused(mac, serial):
    try:
        device = device_id(mac, serial)
    except DevupdateError as error:
        assert error.code in ("BadMacAddress", "BadSerialNumber", "MissingIdentity")
        return
    assert re.fullmatch(r"[0-9A-F]{12}|SN-[A-Z0-9_-]{1,64}", device), device
    assert split_relpath(f"Watson/{device}/x.txt")


@FUZZ
@given(mac_digits, st.lists(mac_spellings(), min_size=1, max_size=3))
def test_every_spelling_of_a_mac_is_the_same_device(digits, _spellings):
    spellings = [digits, digits.lower(), "-".join(digits[i:i + 2] for i in range(0, 12, 2)),
                 ":".join(digits[i:i + 2] for i in range(0, 12, 2)).lower(),
                 ".".join(digits[i:i + 4] for i in range(0, 12, 4)), f"  {digits} "]
    assert {device_id(spelling, "ignored-serial") for spelling in spellings} == {digits.upper()}


@FUZZ
@given(st.one_of(st.none(), mixed_text, st.sampled_from(TYPES).map(str.upper)), client_names)
def test_type_and_extension_checks_answer_or_refuse(log_type, name):
    try:
        assert canonical_type(log_type, TYPES) in TYPES
    except DevupdateError as error:
        assert error.code in ("MissingLogType", "BadLogType")
    ext = extension(name)
    assert ext == "" or (ext.startswith(".") and ext == ext.lower() and "." not in ext[1:])
    try:
        check_extension(name, EXTENSIONS)
        assert ext in EXTENSIONS
    except DevupdateError as error:
        assert error.code == "BadExtension" and ext not in EXTENSIONS
