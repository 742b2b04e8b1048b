"""Requests checked against the API's own OpenAPI document before a view runs, so the API refuses
exactly what the document refuses — with a 400 that names the parameter or field and what it
takes — and a client generated from the document never meets an undocumented refusal.

Patterns are read as the document's readers (ECMA-262) read them: ``$`` is the end of the text, not
"before a final newline" as in Python; the schemas use no ``\\s``/``\\d``/``\\w`` (whose meaning
differs between the two).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from devupdate import numbers
from devupdate.admin.schemas import SCHEMAS
from devupdate.errors import DevupdateError

_BOOLEANS = {"true": True, "false": False}
# Structural faults are reported before the value faults they cause.
_FIRST = {"additionalProperties": 0, "required": 1, "oneOf": 2, "anyOf": 2, "type": 3}


@functools.lru_cache(maxsize=512)
def _end_anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


def _pattern(validator, pattern: str, instance: Any, schema: dict[str, Any]):
    if validator.is_type(instance, "string") and not _end_anchored(pattern).search(instance):
        yield ValidationError(f"{_shown(instance)} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _pattern})


_COMPONENTS = {"components": {"schemas": SCHEMAS}}  # what the schemas' $refs point into


def _validator(schema: dict[str, Any]) -> Any:
    return _Validator({**schema, **_COMPONENTS})


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _reason(error: ValidationError) -> str:
    """What the value must be, in words, from the failing keyword (and the schema's description)."""
    # Every error a validator reports carries its keyword's value and the failing instance, both any
    # JSON value; only a hand-made ValidationError leaves them unset.
    keyword, expected, instance = error.validator, cast(Any, error.validator_value), cast(Any, error.instance)
    schema = error.schema if isinstance(error.schema, dict) else {}
    described = schema.get("description")
    if keyword == "maxLength":
        return f"is longer than {expected} characters"
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if keyword in ("oneOf", "anyOf") and described and isinstance(instance, dict | list):
        return described
    if keyword in ("pattern", "enum", "oneOf", "anyOf") and described:
        return f"{_shown(instance)} refused: {described}"
    if keyword == "pattern":
        return f"{_shown(instance)} does not match {expected}"
    if keyword == "enum":
        return f"must be one of {', '.join(map(str, expected))}"
    if keyword == "type":
        kinds: list[str] = expected if isinstance(expected, list) else [expected]
        names = {"string": "a string", "integer": "a whole number (digits 0-9)", "number": "a number",
                 "boolean": "true or false", "array": "a list", "object": "an object", "null": "null"}
        wanted = "must be " + " or ".join(names.get(kind, kind) for kind in kinds)
        return f"{wanted} — {described}" if described else wanted
    if keyword in ("minimum", "maximum"):
        bound = f"must be at {'least' if keyword == 'minimum' else 'most'} {expected}"
        return f"{bound} — {described}" if described else bound
    if keyword == "minItems":
        return f"must list at least {expected} item{'s' if expected != 1 else ''}"
    if keyword == "maxItems":
        return f"must list at most {expected} items"
    if keyword == "required":
        return error.message.replace(" is a required property", " is required")
    if keyword == "additionalProperties":
        known = ", ".join(schema.get("properties", {})) or "none"
        unexpected = sorted(set(instance) - set(schema.get("properties", {})))
        return f"unknown field {_shown(unexpected[0], 40) if unexpected else ''}; expected {known}"
    return error.message[:200]


def _where(error: ValidationError, what: str) -> str:
    """``what`` for the value itself, ``what: Field[2]`` for a part of it."""
    path = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in error.absolute_path)
    return f"{what}: {path.lstrip('.')}" if path else what


def _first(errors: Iterable[ValidationError]) -> ValidationError | None:
    ordered = sorted(errors, key=lambda e: (_FIRST.get(str(e.validator), 9), len(e.absolute_path)))
    return ordered[0] if ordered else None


def check(schema: dict[str, Any], value: Any, what: str, *, code: str,
          codes: Mapping[str, str] | None = None) -> None:
    """Refuse ``value`` unless ``schema`` admits it: DevupdateError(``code``) naming ``what``.

    ``codes`` maps a field name to the code of a value fault in that field (``MACAddress`` →
    ``bad-mac``), and ``oneOf`` to the code of a fault of the one-of choice."""
    error = _first(_validator(schema).iter_errors(value))
    if error is None:
        return
    field = next((str(step) for step in reversed(error.absolute_path) if isinstance(step, str)), "")
    chosen = code
    if codes and error.validator == "oneOf" and "oneOf" in codes:
        chosen = codes["oneOf"]
    elif codes and field in codes and error.validator not in _FIRST:
        chosen = codes[field]
    reason = _reason(error)
    if error.validator in ("required", "additionalProperties", "oneOf", "anyOf") and not error.absolute_path:
        raise DevupdateError(f"{what}: {reason}", code=chosen)
    raise DevupdateError(f"{_where(error, what)} {reason}", code=chosen)


def from_text(schema: dict[str, Any], text: str) -> Any:
    """A query or path value as the JSON value its schema describes ('5' → 5, 'true' → True);
    text that is not of the type stays text, for :func:`check` to refuse with the reason."""
    kind = schema.get("type")
    if kind == "integer":
        try:
            return numbers.whole(text)
        except ValueError:
            return text
    if kind == "boolean" and text in _BOOLEANS:
        return _BOOLEANS[text]
    return text
