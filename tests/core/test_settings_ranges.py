"""Every setting and configuration value has a documented range, checked by one implementation:
what the environment, the config file and 'devupdate config set' refuse, and how (one line
naming the value and its range, never a traceback); docs/settings.md states the same ranges."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from devupdate import configuration
from devupdate.errors import SettingsError
from devupdate.settings import RANGES, Settings, parse_size

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
HUGE = "99999999999999999999999999999"


@pytest.mark.parametrize("env, message", [
    ({"DEVUPDATE_QUOTA_IMAGES": "9" * 400}, "DEVUPDATE_QUOTA_IMAGES='" + "9" * 56 + "…: out of range 1 KiB–1 PiB"),
    ({"DEVUPDATE_QUOTA_IMAGES": "2PiB"}, "DEVUPDATE_QUOTA_IMAGES='2PiB': out of range 1 KiB–1 PiB"),
    ({"DEVUPDATE_QUOTA_LOGS_CLIENT": HUGE}, f"DEVUPDATE_QUOTA_LOGS_CLIENT='{HUGE}': out of range 1 KiB–1 PiB"),
    ({"DEVUPDATE_MAX_CAB_SIZE": "100"}, "DEVUPDATE_MAX_CAB_SIZE='100': out of range 1 KiB–1 TiB"),
    ({"DEVUPDATE_WORKERS": "100000"}, "DEVUPDATE_WORKERS='100000': out of range 1–256"),
    ({"DEVUPDATE_GRACEFUL_TIMEOUT": HUGE}, f"DEVUPDATE_GRACEFUL_TIMEOUT='{HUGE}': out of range 1–3600 seconds"),
    ({"DEVUPDATE_FILE_CLEANUP_GRACE": "-1"}, "DEVUPDATE_FILE_CLEANUP_GRACE='-1': out of range 0–315,360,000 seconds"),
    ({"DEVUPDATE_DNS_RATE_LIMIT": "-5"}, "DEVUPDATE_DNS_RATE_LIMIT='-5': out of range 0–1,000,000 queries/s"),
    ({"DEVUPDATE_DNS_RATE_LIMIT": "inf"}, "DEVUPDATE_DNS_RATE_LIMIT='inf': expected a number (digits 0-9, "
                                          "optionally with a '.'); the range is 0–1,000,000 queries/s"),
    ({"DEVUPDATE_MAX_EXPANSION_RATIO": "nan"}, "DEVUPDATE_MAX_EXPANSION_RATIO='nan': expected a number"),
    ({"DEVUPDATE_MAX_EXPANSION_RATIO": "0.5"}, "DEVUPDATE_MAX_EXPANSION_RATIO='0.5': out of range 1–100,000"),
    ({"DEVUPDATE_QUOTA_WARN_FRACTION": "0"}, "DEVUPDATE_QUOTA_WARN_FRACTION='0': out of range more than 0, at most 1"),
    ({"DEVUPDATE_PORT": "0"}, "DEVUPDATE_PORT='0': out of range 1–65535"),
    ({"DEVUPDATE_THREADS": "1e3"},
     "DEVUPDATE_THREADS='1e3': expected a whole number (digits 0-9); the range is 1–1024"),
])
def test_environment_values_out_of_range_are_refused_by_name_and_range(tmp_path, env, message):
    with pytest.raises(SettingsError) as refused:
        Settings.load({"DEVUPDATE_HOME": str(tmp_path), **env})
    assert str(refused.value).startswith(message), str(refused.value)


@pytest.mark.parametrize("line, message", [
    ("max_expansion_ratio = nan", "DEVUPDATE_MAX_EXPANSION_RATIO=nan: expected a number (digits 0-9, optionally "
                                  "with a '.'), not nan; the range is 1–100,000"),
    ("max_expansion_ratio = inf", "DEVUPDATE_MAX_EXPANSION_RATIO=inf: expected a number"),
    ("workers = 2.5", "DEVUPDATE_WORKERS=2.5: expected a whole number (digits 0-9); the range is 1–256"),
    ("workers = true", "DEVUPDATE_WORKERS=True: expected a whole number (digits 0-9), not true/false"),
    ("quota_images = 1e300", "DEVUPDATE_QUOTA_IMAGES=1e+300: '1e+300' is not a size"),
    ("quota_images = -5", "DEVUPDATE_QUOTA_IMAGES=-5: out of range 1 KiB–1 PiB"),
    (f"quota_images = {'9' * 30}", f"DEVUPDATE_QUOTA_IMAGES={'9' * 30}: out of range 1 KiB–1 PiB"),
])
def test_config_file_values_out_of_range_are_refused(tmp_path, line, message):
    (tmp_path / "devupdate.toml").write_text(line + "\n")
    with pytest.raises(SettingsError) as refused:
        Settings.load({"DEVUPDATE_HOME": str(tmp_path)})
    assert str(refused.value).startswith(message), str(refused.value)


def test_sizes_without_floating_point():
    assert [parse_size(s) for s in ("512000", "1,024,000", "100MiB", "2GB", "1.5KiB", " 3 kb ")] == [
        512000, 1024000, 100 * 1024**2, 2 * 10**9, 1536, 3000]
    assert parse_size("9" * 100) == int("9" * 100)  # no OverflowError: integers all the way
    assert parse_size("0.1B") == 0 and parse_size("1.0000001GiB") == 1024**3 + 107


def test_a_bad_setting_is_one_line_on_the_command_line(install):
    proc = install.cli("rules", "list", check=False, DEVUPDATE_QUOTA_IMAGES="9" * 400)
    assert proc.returncode == 1
    assert proc.stderr.startswith("devupdate: error: DEVUPDATE_QUOTA_IMAGES='999") and proc.stderr.count("\n") == 1
    assert proc.stderr.endswith("…: out of range 1 KiB–1 PiB\n")


def test_config_set_refuses_huge_and_above_the_logs_quota(install):
    install.cli("db", "upgrade")
    huge = install.cli("config", "set", "MaxLogFileSize", HUGE, check=False)
    assert (huge.returncode, huge.stderr) == (
        1, f"devupdate: error: MaxLogFileSize='{HUGE}' refused: out of range 1 KiB–1 GiB\n")
    above = install.cli("config", "set", "MaxLogFileSize", "2MiB", check=False, DEVUPDATE_QUOTA_LOGS_AUDIT="1MiB")
    assert (above.returncode, above.stderr) == (
        1, "devupdate: error: MaxLogFileSize='2MiB' refused: above the logs/audit quota of this installation "
           "(1 MiB); choose at most 1048576 or raise DEVUPDATE_QUOTA_LOGS_AUDIT\n")
    fits = install.cli("config", "set", "MaxLogFileSize", "512KiB", DEVUPDATE_QUOTA_LOGS_AUDIT="1MiB")
    assert fits.stdout == "global: MaxLogFileSize = 524288 (was 1024000)\n"
    for key, value, message in (("LogFlushInterval", "61", "out of range 1–60 minutes"),
                                ("ValidLogFileTypes", " ".join(f"T{n}" for n in range(101)),
                                 "expected a list like 'Watson, Config': 1–100 names"),
                                ("MaxLogCacheLimit", "1e3", "'1e3' is not a size")):
        proc = install.cli("config", "set", key, value, check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_a_stored_value_outside_todays_range_is_ignored_not_fatal(database, caplog):
    """A value an older version accepted (the 29-digit MaxLogFileSize) must not break every reader."""
    configuration.ConfigSetting.create(scope="global", key="MaxLogFileSize", value=HUGE)
    configuration.ConfigSetting.create(scope="site:Berlin", key="MaxLogFileSize", value="2048")
    assert configuration.effective()["MaxLogFileSize"] == 1_024_000
    assert configuration.effective("Berlin")["MaxLogFileSize"] == 2048
    assert "configuration global/MaxLogFileSize='9999999999" in caplog.text


def _doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `([A-Za-z_]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_every_value_has_its_documented_range():
    rows = _doc_rows()
    fields = [f for f in dataclasses.fields(Settings) if f.name != "extra"]
    for field in fields:
        variable = f"DEVUPDATE_{field.name.upper()}"
        assert variable in rows, f"{variable} is missing from docs/settings.md"
        if field.type in ("int", "float"):
            assert field.name in RANGES, f"{field.name} needs a range in devupdate.settings.RANGES"
            assert rows[variable][1] == RANGES[field.name].describe(), variable
    assert set(RANGES) <= {f.name for f in fields}
    for key, option in configuration.OPTIONS.items():
        assert key in rows, f"{key} is missing from docs/settings.md"
        assert rows[key][1].startswith(option.describe), (key, option.describe)
