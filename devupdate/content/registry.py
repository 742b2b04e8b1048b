"""Who still needs which stored object.

An owner registers, where its tables are defined, a query selecting the SHA-256 of every object it
references, and (if it writes objects before their rows commit) a check that such a write is in
flight. Every owner's models are imported by the schema module, which every process that opens the
database imports, so the registry is complete wherever cleanup can run.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

_references: dict[str, Callable[[], peewee.SelectQuery]] = {}
_in_flight: dict[str, Callable[[], bool]] = {}


def register_references(owner: str, referenced: Callable[[], peewee.SelectQuery]) -> None:
    """``referenced()`` returns a one-column query of the SHA-256 values ``owner`` still needs."""
    _references[owner] = referenced


def register_in_flight(owner: str, busy: Callable[[], bool]) -> None:
    """``busy()`` is true while ``owner`` may have stored objects whose rows are not committed yet."""
    _in_flight[owner] = busy


def owners() -> list[str]:
    return sorted(_references)


def reference_queries() -> list[peewee.SelectQuery]:
    return [referenced() for referenced in _references.values()]


def busy_owners() -> list[str]:
    return sorted(owner for owner, busy in _in_flight.items() if busy())
