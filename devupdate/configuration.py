"""Device-update configuration (management.md §3): a global value per key plus per-site overrides.

Stored in the database so every worker and node sees one truth; validated here once for the
CLI, the API and the console.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from devupdate import numbers
from devupdate.db import BaseModel, utcnow, write_transaction
from devupdate.errors import DevupdateError


class ConfigSetting(BaseModel):
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

    parse: Callable[[str], object]
    schema: dict[str, Any]

    def __call__(self, text: str) -> object:
        return self.parse(text)


@dataclass(frozen=True)
class Option:
    default: object
    parse: Parser
    describe: str

    @property
    def value_schema(self) -> dict[str, Any]:
        return {**self.parse.schema, "description": self.describe}


def _int_range(low: int, high: int | None, unit: str = "") -> Parser:
    def parse(text: str) -> int:
        try:
            value = numbers.whole(str(text).strip().replace(",", "").replace("_", ""))
        except ValueError:
            raise ValueError(f"expected a whole number{unit}") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"out of range {low}{'' if high is None else f'–{high}'}{unit}")
        return value
    return Parser(parse, {"type": "integer", "minimum": low, **({} if high is None else {"maximum": high})})


def _duration(low: int, high: int, unit_seconds: int, unit: str) -> Parser:
    """Accepts '5', '5min', '1h', '10d'; returns whole units of ``unit``."""
    factors = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "day": 86400, "days": 86400}

    def parse(text: str) -> int:
        match = re.fullmatch(r"\s*([0-9]{1,12})\s*([a-z]*)\s*", str(text).lower())
        if not match or (match.group(2) and match.group(2) not in factors):
            raise ValueError(f"expected a number of {unit} (e.g. {low})")
        seconds = int(match.group(1)) * (factors[match.group(2)] if match.group(2) else unit_seconds)
        if seconds % unit_seconds:
            raise ValueError(f"expected whole {unit}")
        value = seconds // unit_seconds
        if not low <= value <= high:
            raise ValueError(f"out of range {low}–{high} {unit}")
        return value
    return Parser(parse, {"type": "integer", "minimum": low, "maximum": high})


def _parse_time_of_day(text: str) -> str | None:
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return None
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", text)
    if not match:
        raise ValueError("expected hh:mm (00:00–23:59) or none")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


# JSON null is "none" (every hour) in the API
_time_of_day = Parser(_parse_time_of_day, {"type": ["string", "null"], "maxLength": 5,
                                           "pattern": r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"})


def _word_list(pattern: str, example: str) -> Parser:
    def parse(text: str) -> list[str]:
        items = [item for item in re.split(r"[\s,]+", str(text).strip()) if item]
        if not items or any(not re.fullmatch(pattern, item) for item in items):
            raise ValueError(f"expected a list like {example!r}")
        if len(items) > MAX_LIST_ITEMS:
            raise ValueError(f"at most {MAX_LIST_ITEMS} items")
        return items
    return Parser(parse, {"type": "array", "items": {"type": "string", "maxLength": 100, "pattern": f"^(?:{pattern})$"},
                          "minItems": 1, "maxItems": MAX_LIST_ITEMS})


OPTIONS: dict[str, Option] = {
    "MaxLogFileSize": Option(1_024_000, _int_range(1024, None, " bytes"), "bytes, ≥ 1024"),
    "MaxLogCacheLimit": Option(512_000, _int_range(1024, None, " bytes"), "bytes, ≥ 1024"),
    "LogFlushInterval": Option(5, _duration(1, 60, 60, "minutes"), "minutes, 1–60"),
    "LogCleanUpInterval": Option(10, _duration(1, 365, 86400, "days"), "days, 1–365"),
    "LogCleanUpTimeOfDay": Option(None, _time_of_day, "hh:mm or none (every hour)"),
    "ValidLogFileTypes": Option(["Watson", "Config", "DiagLog", "CELog"],
                                _word_list(r"[A-Za-z0-9_-]{1,40}", "Watson, Config"), "list of names"),
    "ValidLogFileExtensions": Option(
        [".dmp", ".clg", ".clg2", ".bak", ".kdmp", ".dat", ".bin", ".cat", ".xml", ".txt", ".hex"],
        _word_list(r"\.[A-Za-z0-9]{1,10}", ".dmp .txt"), "list of .ext"),
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
                values[name] = option.parse(rows[(scope, name)])
    return values


def show(site: str | None = None) -> dict[str, object]:
    """What ``config show`` prints: the effective values plus where each came from."""
    return {"Scope": _scope(site), **effective(site)}


def set_value(key: str, value: str, *, site: str | None, actor: str) -> dict[str, object]:
    """Validate and store one setting; the audit trail gets before and after."""
    from devupdate.audit.trail import record

    name = canonical_key(key)
    try:
        parsed = OPTIONS[name].parse(value)
    except ValueError as exc:
        raise DevupdateError(f"{name}={value!r} refused: {exc} ({OPTIONS[name].describe})",
                             code="bad-value") from None
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


__all__ = ["ConfigSetting", "OPTIONS", "canonical_key", "effective", "show", "set_value"]
