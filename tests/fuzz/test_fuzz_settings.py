"""Properties of settings and configuration values (devupdate/ranges.py, settings.py,
configuration.py): whatever text or TOML value arrives, it is either accepted inside its
documented range or refused with an error naming the setting and the range — never another
exception (OverflowError, TypeError …), never a value outside the range."""

from __future__ import annotations

import math
import string
import tomllib

import pytest
from fuzzkit import FUZZ, mixed_text, nasty_text
from hypothesis import given
from hypothesis import strategies as st

from devupdate import configuration
from devupdate.errors import DevupdateError, SettingsError
from devupdate.ranges import parse_size
from devupdate.settings import RANGES, Settings

OTHER_DIGITS = "\u0660\u0664\u06f4\u0966\uff11\u00b2\u2155"
units = st.sampled_from(["", "B", "K", "KB", "KiB", "kib", "M", "MB", "MiB", "G", "GiB", "T", "TiB", "P", "PiB",
                         "X", "e3"])
number_text = st.one_of(
    st.integers(-10**40, 10**40).map(str),
    st.integers(0, 10**6).map(lambda n: f"{n:,}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.text("0123456789", min_size=1, max_size=400),
    st.text("0123456789" + OTHER_DIGITS, min_size=1, max_size=12),
    st.sampled_from(["nan", "inf", "-inf", "Infinity", "1e400", "0x10", "1_000", " 12 ", "+5", "-0", "", "."]),
)
size_text = st.builds(lambda n, u, space: f"{n}{' ' if space else ''}{u}", number_text, units, st.booleans())
any_text = st.one_of(number_text, size_text, mixed_text, nasty_text, st.text(string.printable, max_size=30))
toml_value = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                       st.booleans(), any_text)


#: settings also bounded by another one (the message names that one instead of the range)
CROSS_CHECKS = {"password_check_slots": "must stay below DEVUPDATE_THREADS"}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _accepted_or_named(name: str, load) -> None:
    bounds = RANGES[name]
    try:
        got = getattr(load(), name)
    except SettingsError as refused:
        message = str(refused)
        assert message.startswith(f"DEVUPDATE_{name.upper()}="), message
        assert bounds.describe() in message or CROSS_CHECKS.get(name, "?") in message, message
        assert "\n" not in message
        return
    assert isinstance(got, int if bounds.kind != "decimal" else float) and not isinstance(got, bool)
    assert math.isfinite(got) and bounds.low <= got <= bounds.high
    if bounds.low_open:
        assert got > bounds.low


@FUZZ
@given(name=st.sampled_from(sorted(RANGES)), text=any_text)
def test_environment_numbers(tmp_path_factory, name, text):
    if "\x00" in text:
        text = text.replace("\x00", "")  # an environment cannot hold NUL
    home = tmp_path_factory.mktemp("home")
    _accepted_or_named(name, lambda: Settings.load({"DEVUPDATE_HOME": str(home), f"DEVUPDATE_{name.upper()}": text}))


@FUZZ
@given(name=st.sampled_from(sorted(RANGES)), value=toml_value)
def test_config_file_numbers(tmp_path_factory, name, value):
    home = tmp_path_factory.mktemp("home")
    line = f"{name} = {_toml(value)}\n"
    try:
        tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return  # not TOML at all: refused earlier, as 'not valid TOML' (tested elsewhere)
    (home / "devupdate.toml").write_text(line, "utf-8")
    _accepted_or_named(name, lambda: Settings.load({"DEVUPDATE_HOME": str(home)}))


@FUZZ
@given(text=any_text)
def test_sizes_are_integers_or_value_errors(text):
    try:
        size = parse_size(text)
    except ValueError:
        return
    assert isinstance(size, int) and size >= 0


@FUZZ
@given(key=st.sampled_from(sorted(configuration.OPTIONS)),
       value=st.one_of(any_text, st.integers(-10**40, 10**40), st.floats(allow_nan=True, allow_infinity=True),
                       st.lists(st.sampled_from(["Watson", ".dmp", "x y", "", "\u0664", "a" * 41]), max_size=40)
                       .map(" ".join)),
       quota=st.one_of(st.none(), st.integers(1024, 10 * 1024**3)))
def test_configuration_values(key, value, quota):
    """The one check behind the CLI, the API and the console."""
    quotas = None if quota is None else {"logs/client": quota, "logs/audit": 5 * 1024**3}
    option = configuration.OPTIONS[key]
    try:
        parsed = configuration.check_value(key, value, quotas)
    except DevupdateError as refused:
        assert refused.code == "bad-value" and refused.status == 400
        assert refused.message.startswith(f"{key}=") and "refused: " in refused.message
        assert (option.describe.split(" (")[0] in refused.message or "quota of this installation" in refused.message
                or "hh:mm" in refused.message), refused.message
        return
    again = option.parse(configuration._encode(parsed))  # what is stored reads back the same
    assert again == parsed
    if isinstance(parsed, int):
        bounds = {"MaxLogFileSize": (1024, 1024**3), "MaxLogCacheLimit": (1024, 1024**3),
                  "LogFlushInterval": (1, 60), "LogCleanUpInterval": (1, 365)}[key]
        assert bounds[0] <= parsed <= bounds[1]
        if key == "MaxLogFileSize" and quota is not None:
            assert parsed <= quota


@pytest.mark.parametrize("name", sorted(RANGES))
def test_each_range_accepts_its_ends_and_refuses_past_them(tmp_path, name):
    bounds = RANGES[name]
    for value, ok in ((bounds.low, not bounds.low_open), (bounds.high, True)):
        text = str(int(value)) if bounds.kind != "decimal" else repr(float(value))
        environ = {"DEVUPDATE_HOME": str(tmp_path), f"DEVUPDATE_{name.upper()}": text}
        if name == "password_check_slots":
            environ["DEVUPDATE_THREADS"] = "1"  # no cross-check with the thread count
        if ok:
            assert getattr(Settings.load(environ), name) == value
    past = int(bounds.high) + 1 if bounds.kind != "decimal" else bounds.high * 1.5
    with pytest.raises(SettingsError, match="out of range"):
        Settings.load({"DEVUPDATE_HOME": str(tmp_path), f"DEVUPDATE_{name.upper()}": str(past)})
