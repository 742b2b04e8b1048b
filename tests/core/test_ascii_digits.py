"""Numbers are ASCII digits everywhere: Python's int(), float(), str.isdigit() and \\d also take
other scripts' digits ('٤' is 4), blanks and '_' separators — so each reader of a number is checked
with them here (the update check and the API over HTTP in their own test folders)."""

from __future__ import annotations

import pytest

from devupdate import numbers
from devupdate.errors import SettingsError
from devupdate.settings import Settings

ARABIC_8080 = "\u0668\u0660\u0668\u0660"  # ٨٠٨٠
FULLWIDTH_2048 = "\uff12\uff10\uff14\uff18"  # ２０４８


def test_the_shared_readers():
    assert numbers.whole("8080") == 8080 and numbers.whole("-3") == -3
    assert numbers.decimal("0.5") == 0.5 and numbers.decimal("200") == 200.0
    for text in (ARABIC_8080, FULLWIDTH_2048, " 1", "1_0", "+1", "", "1e3", "0x10", "1" * 101):
        with pytest.raises(ValueError):
            numbers.whole(text)
    for text in ("\u0664.5", "nan", "inf", "-inf", "1e3", "1.", "", "1_0.5"):
        if text == "1.":
            assert numbers.decimal(text) == 1.0
            continue
        with pytest.raises(ValueError):
            numbers.decimal(text)
    assert numbers.is_digits("0123") and not numbers.is_digits(ARABIC_8080) and not numbers.is_digits("")


@pytest.mark.parametrize("env", [
    {"DEVUPDATE_PORT": ARABIC_8080},
    {"DEVUPDATE_WORKERS": "\u0664"},
    {"DEVUPDATE_QUOTA_IMAGES": "\u0661GiB"},
    {"DEVUPDATE_MAX_CAB_SIZE": FULLWIDTH_2048 + "MiB"},
    {"DEVUPDATE_MAX_EXPANSION_RATIO": "\u0662\u0660\u0660"},
    {"DEVUPDATE_QUOTA_WARN_FRACTION": "\u0660.\u0668"},
])
def test_settings_refuse_other_digits(tmp_path, env):
    [(name, value)] = env.items()
    with pytest.raises(SettingsError, match=f"^{name}="):
        Settings.load({"DEVUPDATE_HOME": str(tmp_path), **env})


@pytest.mark.parametrize("key, value", [
    ("MaxLogFileSize", FULLWIDTH_2048),
    ("MaxLogCacheLimit", "\u0661\u0660\u0662\u0664"),
    ("LogFlushInterval", "\u0665min"),
    ("LogCleanUpInterval", "\u0663d"),
    ("LogCleanUpTimeOfDay", "\u0663:30"),
])
def test_config_set_refuses_other_digits(install, key, value):
    install.cli("db", "upgrade")
    proc = install.cli("config", "set", key, value, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"devupdate: error: {key}={value!r} refused: ")
    assert proc.stderr.count("\n") == 1
    shown = install.cli("config", "show", "--json").stdout
    assert value not in shown


@pytest.mark.parametrize("args", [
    ["audit", "list", "--limit", "\u0665"],
    ["audit", "list", "--offset", "\uff11"],
    ["logs", "cleanup", "--days-back", "\u0663"],
    ["dns", "serve", "--port", "\u0665\u0663"],
    ["dns", "serve", "--rate-limit", "nan"],
    ["cert", "create", "--days", "\u0663\u0660"],
])
def test_command_line_numbers_refuse_other_digits(install, args):
    proc = install.cli(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "is not a whole number (digits 0-9)" in proc.stderr or "is not a number (digits 0-9" in proc.stderr


def test_dns_publish_server_port():
    from devupdate.dns.publisher import PublishError, parse_server

    assert parse_server("127.0.0.1:5353")[1] == 5353
    for text in ("127.0.0.1:\u0665\u0663", "[::1]:\u0665\u0663"):
        with pytest.raises(PublishError):
            parse_server(text)


def test_check_content_length_other_digits():
    """A Content-Length of other digits is not a length (the body is then read as if none was given)."""
    from devupdate.web.bodies import declared_length

    assert declared_length({"CONTENT_LENGTH": "\u0663"}) is None
    assert declared_length({"CONTENT_LENGTH": "\uff13\uff10"}) is None
    assert declared_length({"CONTENT_LENGTH": "30"}) == 30
