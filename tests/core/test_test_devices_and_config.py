"""Test devices (management.md §2) and configuration (§3): validation, uniqueness, audit."""

from __future__ import annotations

import json

import pytest

from devupdate import configuration
from devupdate.audit.models import AuditEvent
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.rules import test_devices


@pytest.mark.parametrize("text, normalized", [
    ("00-04-f2-aa-bb-cc", "0004F2AABBCC"), ("00:04:F2:AA:BB:CC", "0004F2AABBCC"),
    ("0004f2aabbcc", "0004F2AABBCC"), ("0004.f2aa.bbcc", "0004F2AABBCC"),
    ("00-04-f2-aa-bb-cc-dd-ee", "0004F2AABBCCDDEE")])
def test_mac_forms_normalize(text, normalized):
    assert test_devices.normalize_mac(text) == normalized


@pytest.mark.parametrize("text", ["", "00-04-f2-aa-bb", "00-04-f2-aa-bb-cg", "0004f2aabbc", "zz" * 6,
                                  "00-04-f2-aa-bb-cc\n"[:-1] + "\x00"])
def test_bad_macs_refused(text):
    with pytest.raises(DevupdateError, match="not a MAC address"):
        test_devices.normalize_mac(text)


@pytest.mark.parametrize("text", ["CX600 0042", "a/b", "x;y", "", "é"])
def test_bad_serials_refused(text):
    with pytest.raises(DevupdateError, match="not a serial number"):
        test_devices.normalize_serial(text)


def test_add_list_set_remove_with_scopes(database):
    test_devices.add("lab-1", mac="00-04-f2-aa-bb-cc", actor="alice")
    test_devices.add("lab-1", serial="cx600-0042", site="Berlin", actor="alice")
    with pytest.raises(Conflict, match="already exists in global"):
        test_devices.add("lab-1", serial="other", actor="alice")
    rows = [test_devices.device_dict(d) for d in test_devices.list_devices()]
    assert rows == [
        {"Name": "lab-1", "Scope": "global", "IdentifierType": "MACAddress", "Identifier": "0004F2AABBCC"},
        {"Name": "lab-1", "Scope": "site:Berlin", "IdentifierType": "SerialNumber", "Identifier": "CX600-0042"},
    ]
    test_devices.set_identifier("lab-1", serial="SN_1", actor="bob")
    assert test_devices.list_devices(None)[0].identifier == "SN_1"
    test_devices.remove("lab-1", site="Berlin", actor="bob")
    with pytest.raises(NotFound, match="no test device named 'lab-1' in site:Berlin"):
        test_devices.remove("lab-1", site="Berlin", actor="bob")
    actions = [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert actions == ["test-device.add", "test-device.add", "test-device.set", "test-device.remove"]


def test_exactly_one_identifier(database):
    with pytest.raises(DevupdateError, match="exactly one of --mac or --serial"):
        test_devices.add("x", mac="00-04-f2-aa-bb-cc", serial="a", actor="a")
    with pytest.raises(DevupdateError, match="exactly one"):
        test_devices.add("x", actor="a")


def test_config_defaults_match_the_spec(database):
    values = configuration.effective()
    assert values == {
        "MaxLogFileSize": 1_024_000, "MaxLogCacheLimit": 512_000, "LogFlushInterval": 5, "LogCleanUpInterval": 10,
        "LogCleanUpTimeOfDay": None, "ValidLogFileTypes": ["Watson", "Config", "DiagLog", "CELog"],
        "ValidLogFileExtensions": [".dmp", ".clg", ".clg2", ".bak", ".kdmp", ".dat", ".bin", ".cat", ".xml",
                                   ".txt", ".hex"]}


def test_config_set_site_override_and_audit(database):
    change = configuration.set_value("maxlogfilesize", "2048000", site=None, actor="alice")
    assert change == {"Scope": "global", "Key": "MaxLogFileSize", "Before": 1_024_000, "After": 2_048_000}
    configuration.set_value("LogFlushInterval", "10min", site="Berlin", actor="alice")
    configuration.set_value("LogCleanUpTimeOfDay", "3:30", site=None, actor="alice")
    assert configuration.effective()["LogFlushInterval"] == 5
    assert configuration.effective("Berlin")["LogFlushInterval"] == 10
    assert configuration.effective("Berlin")["MaxLogFileSize"] == 2_048_000
    assert configuration.effective()["LogCleanUpTimeOfDay"] == "03:30"
    event = AuditEvent.select().order_by(AuditEvent.id).first()
    assert (event.action, event.target, json.loads(event.before), json.loads(event.after)) == (
        "config.set", "global/MaxLogFileSize", {"MaxLogFileSize": 1_024_000}, {"MaxLogFileSize": 2_048_000})


@pytest.mark.parametrize("key, value, message", [
    ("MaxLogFileSize", "100", "out of range 1 KiB–1 GiB"),
    ("MaxLogFileSize", "lots", "'lots' is not a size .*; the range is 1 KiB–1 GiB"),
    ("MaxLogFileSize", "99999999999999999999999999999", "out of range 1 KiB–1 GiB"),
    ("LogFlushInterval", "0", "out of range 1–60 minutes"),
    ("LogFlushInterval", "2h", "out of range 1–60 minutes"),
    ("LogCleanUpInterval", "366", "out of range 1–365 days"),
    ("LogCleanUpTimeOfDay", "25:00", "expected hh:mm"),
    ("ValidLogFileExtensions", "dmp", "expected a list like"),
    ("NoSuchThing", "1", "unknown setting 'NoSuchThing'"),
])
def test_config_refuses_invalid_values_with_the_range(database, key, value, message):
    with pytest.raises(DevupdateError, match=message):
        configuration.set_value(key, value, site=None, actor="a")
    assert not configuration.ConfigSetting.select().exists()


def test_one_device_is_one_test_device_per_scope(database):
    """A second name for the same MAC (however it is spelled) or serial in one scope is refused."""
    test_devices.add("lab-1", mac="00-04-f2-aa-bb-cc", actor="alice")
    test_devices.add("lab-s", serial="cx600-0042", actor="alice")
    with pytest.raises(Conflict, match="^MACAddress 0004F2AABBCC is already test device 'lab-1' in global; "
                                       "use that one, or remove it first$") as refused:
        test_devices.add("lab-2", mac="0004F2AABBCC", actor="alice")
    assert (refused.value.status, refused.value.code) == (409, "duplicate-test-device-identifier")
    with pytest.raises(Conflict, match="SerialNumber CX600-0042 is already test device 'lab-s' in global"):
        test_devices.add("lab-3", serial="CX600-0042", actor="alice")
    test_devices.add("lab-2", mac="00:04:F2:AA:BB:CC", site="Berlin", actor="alice")  # another scope: fine
    test_devices.add("lab-4", mac="00-04-f2-aa-bb-cd", actor="alice")
    with pytest.raises(Conflict, match="already test device 'lab-1'"):
        test_devices.set_identifier("lab-4", mac="00-04-f2-aa-bb-cc", actor="alice")
    test_devices.set_identifier("lab-1", mac="00-04-F2-AA-BB-CC", actor="alice")  # its own identifier again
    assert sorted((d.scope, d.name, d.identifier) for d in test_devices.list_devices()) == [
        ("global", "lab-1", "0004F2AABBCC"), ("global", "lab-4", "0004F2AABBCD"), ("global", "lab-s", "CX600-0042"),
        ("site:Berlin", "lab-2", "0004F2AABBCC")]
