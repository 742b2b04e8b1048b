"""Device-update configuration (management.md §3): a global value per key plus per-site overrides.

Stored in the database so every worker and node sees one truth; validated here once for the
CLI, the API and the console.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from devupdate.content import areas
from devupdate.db import BaseModel, utcnow, write_transaction
from devupdate.errors import DevupdateError, NotFound
from devupdate.ranges import Range, size_text

log = logging.getLogger("devupdate.configuration")


class ConfigSetting(BaseModel):
    id = peewee.AutoField()
    scope = peewee.CharField(max_length=200)  # global | site:<name>
    key = peewee.CharField(max_length=100)
    value = peewee.TextField()
    updated_at = peewee.DateTimeField(default=utcnow)
    updated_by = peewee.CharField(max_length=200, default="")

    class Meta:
        indexes = ((("scope", "key"), True),)


MAX_LIST_ITEMS = 100


@dataclass(frozen=True)
class Parser:
    """A setting's text parser (CLI, console, API) and the JSON schema of the typed value the API
    takes for it (the OpenAPI document states it; the API checks it before parsing)."""

    parse: Callable[[object], object]  # raises ValueError that states the range
    schema: dict[str, Any]

    def __call__(self, text: object) -> object:
        return self.parse(text)


@dataclass(frozen=True)
class Option:
    default: object
    parse: Parser
    describe: str  # the documented range (docs/settings.md shows the same words)

    @property
    def value_schema(self) -> dict[str, Any]:
        return {**self.parse.schema, "description": self.describe}


def _size(default: int, low: int, high: int) -> Option:
    """Bytes: '1024000', '1,024,000', '1000KiB', '2MB' (the API takes the integer)."""
    bounds = Range(low, high, "size")
    return Option(default, Parser(bounds.parse, {"type": "integer", "minimum": low, "maximum": high}),
                  bounds.describe())


def _duration(default: int, low: int, high: int, unit_seconds: int, unit: str) -> Option:
    """Accepts '5', '5min', '1h', '10d' (whole ``unit``s); returns whole units of ``unit``."""
    factors = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "day": 86400, "days": 86400}
    bounds = Range(low, high, unit=unit)

    def parse(text: object) -> int:
        match = re.fullmatch(r"\s*([0-9]{1,12})\s*([a-z]*)\s*", str(text).lower())
        if not match or (match.group(2) and match.group(2) not in factors):
            raise ValueError(f"expected a number of {unit} (e.g. {low}); the range is {bounds.describe()}")
        seconds = int(match.group(1)) * (factors[match.group(2)] if match.group(2) else unit_seconds)
        if seconds % unit_seconds:
            raise ValueError(f"expected whole {unit}; the range is {bounds.describe()}")
        return int(bounds.parse(seconds // unit_seconds))
    return Option(default, Parser(parse, {"type": "integer", "minimum": low, "maximum": high}), bounds.describe())


TIME_OF_DAY = "hh:mm (00:00–23:59) or none (every hour)"


def _parse_time_of_day(text: object) -> str | None:
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return None
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", text)
    if not match:
        raise ValueError(f"expected {TIME_OF_DAY}")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


# JSON null is "none" (every hour) in the API
_time_of_day = Parser(_parse_time_of_day, {"type": ["string", "null"], "maxLength": 5,
                                           "pattern": r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"})


def _word_list(default: list[str], pattern: str, example: str, what: str) -> Option:
    describe = f"1–{MAX_LIST_ITEMS} {what}"

    def parse(text: object) -> list[str]:
        items = [item for item in re.split(r"[\s,]+", str(text).strip()) if item]
        if not items or len(items) > MAX_LIST_ITEMS or any(not re.fullmatch(pattern, item) for item in items):
            raise ValueError(f"expected a list like {example!r}: {describe}")
        return items
    schema = {"type": "array", "items": {"type": "string", "maxLength": 100, "pattern": f"^(?:{pattern})$"},
              "minItems": 1, "maxItems": MAX_LIST_ITEMS}
    return Option(default, Parser(parse, schema), describe)


#: bytes a log file (upload or audit log) may reach; also bounded by the logs quotas at set time
MAX_LOG_FILE_SIZE = 1024**3

OPTIONS: dict[str, Option] = {
    "MaxLogFileSize": _size(1_024_000, 1024, MAX_LOG_FILE_SIZE),
    "MaxLogCacheLimit": _size(512_000, 1024, 1024**3),
    "LogFlushInterval": _duration(5, 1, 60, 60, "minutes"),
    "LogCleanUpInterval": _duration(10, 1, 365, 86400, "days"),
    "LogCleanUpTimeOfDay": Option(None, _time_of_day, TIME_OF_DAY),
    "ValidLogFileTypes": _word_list(["Watson", "Config", "DiagLog", "CELog"], r"[A-Za-z0-9_-]{1,40}",
                                    "Watson, Config", "names of 1–40 letters, digits, '_' or '-'"),
    "ValidLogFileExtensions": _word_list(
        [".dmp", ".clg", ".clg2", ".bak", ".kdmp", ".dat", ".bin", ".cat", ".xml", ".txt", ".hex"],
        r"\.[A-Za-z0-9]{1,10}", ".dmp .txt", "extensions: '.' and 1–10 letters or digits"),
}


def canonical_key(key: str) -> str:
    """The setting's name as documented, from any capitalisation; unknown → DevupdateError."""
    for name in OPTIONS:
        if name.lower() == key.lower():
            return name
    raise DevupdateError(f"unknown setting {key!r}; known: {', '.join(OPTIONS)}", code="unknown-setting")


def _scope(site: str | None) -> str:
    if site is None:
        return "global"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", site):
        raise DevupdateError(f"site name {site!r}: use letters, digits, '.', '_' or '-'", code="bad-site")
    return f"site:{site}"


def _encode(value: object) -> str:
    if isinstance(value, list):
        return " ".join(value)
    return "none" if value is None else str(value)


def effective(site: str | None = None) -> dict[str, object]:
    """The configuration in force for ``site`` (global values overridden by the site's)."""
    values = {name: option.default for name, option in OPTIONS.items()}
    scopes = ["global"] + ([_scope(site)] if site else [])
    rows = {(row.scope, row.key): row.value for row in ConfigSetting.select().where(ConfigSetting.scope.in_(scopes))}
    for scope in scopes:
        for name, option in OPTIONS.items():
            if (scope, name) in rows:
                try:
                    values[name] = option.parse(rows[(scope, name)])
                except ValueError as exc:  # stored before today's range: keep serving with the value below
                    log.warning("configuration %s/%s=%r ignored (%s); using %r — set it again with "
                                "'devupdate config set'", scope, name, rows[(scope, name)][:40], exc, values[name])
    return values


# --- typed reads of effective values: each key's parser (or default) makes its type -----------------

def whole(values: Mapping[str, object], key: str) -> int:
    """A size or duration setting, e.g. ``whole(effective(), "LogCleanUpInterval")``."""
    value = values[key]
    if not isinstance(value, int):
        raise TypeError(f"configuration {key}={value!r}: expected a whole number")
    return value


def words(values: Mapping[str, object], key: str) -> list[str]:
    """A list setting (``ValidLogFileTypes``, ``ValidLogFileExtensions``)."""
    value = values[key]
    if not isinstance(value, list):
        raise TypeError(f"configuration {key}={value!r}: expected a list of words")
    return value


def optional_text(values: Mapping[str, object], key: str) -> str | None:
    """A text setting whose absence means something (``LogCleanUpTimeOfDay``: none is every hour)."""
    value = values.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"configuration {key}={value!r}: expected text or none")
    return value


def show(site: str | None = None) -> dict[str, object]:
    """What ``config show`` prints: the effective values plus where each came from."""
    return {"Scope": _scope(site), **effective(site)}


def overrides() -> dict[str, dict[str, object]]:
    """Every scope's own values (``global``, then ``site:<name>`` by name): what each has set itself."""
    found: dict[str, dict[str, object]] = {}
    for row in ConfigSetting.select().order_by(ConfigSetting.scope, ConfigSetting.key):
        option = OPTIONS.get(row.key)
        try:
            found.setdefault(row.scope, {})[row.key] = option.parse(row.value) if option else row.value
        except ValueError:  # stored before today's range: shown as stored
            found.setdefault(row.scope, {})[row.key] = row.value
    return found


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def value_schema(name: str, quotas: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The JSON schema of setting ``name``'s API value; with this installation's ``quotas`` the
    bound :func:`check_value` adds (``MaxLogFileSize`` at most the smaller logs quota) is in it."""
    schema = OPTIONS[name].value_schema
    if name == "MaxLogFileSize" and quotas:
        limit = min(quotas[areas.LOGS_CLIENT], quotas[areas.LOGS_AUDIT])
        schema = {**schema, "maximum": min(schema["maximum"], limit)}
    return schema


def check_value(name: str, value: object, quotas: Mapping[str, int] | None = None) -> object:
    """``value`` parsed for setting ``name`` and inside its range — the one check behind the CLI,
    the API and the console. With this installation's ``quotas``, ``MaxLogFileSize`` must also
    fit the logs areas (one upload or audit log file larger than its area could never be stored)."""
    option = OPTIONS[name]
    try:
        parsed = option.parse(value)
    except ValueError as exc:
        raise DevupdateError(f"{name}={_shown(value)} refused: {exc}", code="bad-value") from None
    if name == "MaxLogFileSize" and quotas:
        area = min((areas.LOGS_CLIENT, areas.LOGS_AUDIT), key=lambda a: quotas[a])
        if parsed > quotas[area]:  # type: ignore[operator]
            variable = "DEVUPDATE_QUOTA_" + area.replace("/", "_").upper()
            raise DevupdateError(f"{name}={_shown(value)} refused: above the {area} quota of this installation "
                                 f"({size_text(quotas[area])}); choose at most {quotas[area]} or raise {variable}",
                                 code="bad-value")
    return parsed


def set_value(key: str, value: str, *, site: str | None, actor: str,
              quotas: Mapping[str, int] | None = None) -> dict[str, object]:
    """Validate (:func:`check_value`) and store one setting; the audit trail gets before and after."""
    from devupdate.audit.trail import record

    name = canonical_key(key)
    parsed = check_value(name, value, quotas)
    scope = _scope(site)
    with write_transaction():
        before = effective(site)[name]
        ConfigSetting.insert(scope=scope, key=name, value=_encode(parsed), updated_at=utcnow(), updated_by=actor
                             ).on_conflict(conflict_target=[ConfigSetting.scope, ConfigSetting.key],
                                           update={ConfigSetting.value: _encode(parsed),
                                                   ConfigSetting.updated_at: utcnow(),
                                                   ConfigSetting.updated_by: actor}).execute()
        record(actor, "config.set", f"{scope}/{name}", before={name: before}, after={name: parsed})
    return {"Scope": scope, "Key": name, "Before": before, "After": parsed}


def remove(*, site: str | None, actor: str) -> dict[str, object]:
    """Remove a site's own configuration (Lync's ``Remove-CsDeviceUpdateConfiguration``): the site then
    follows the global values. For the global scope (``site`` None) every setting returns to its
    default, as Lync resets rather than deletes the global collection. Nothing stored: a clear 404."""
    from devupdate.audit.trail import record

    scope = _scope(site)
    with write_transaction():
        rows = list(ConfigSetting.select().where(ConfigSetting.scope == scope).order_by(ConfigSetting.key))
        if not rows:
            raise NotFound(f"{scope} has no configuration of its own to remove" if site else
                           "the global configuration is at its defaults already", code="no-configuration")
        removed = overrides().get(scope, {})
        ConfigSetting.delete().where(ConfigSetting.scope == scope).execute()
        record(actor, "config.remove", scope, before=removed, after=None)
    return {"Scope": scope, "Removed": removed}


__all__ = ["ConfigSetting", "OPTIONS", "canonical_key", "check_value", "effective", "overrides", "remove", "show",
           "set_value"]
