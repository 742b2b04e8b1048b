"""The event table of [wsus] §3.9, pure: a reported event in, its effect on the compliance state out.
No database, web framework or settings; the store (``store.py``) applies the effects.

| EventID | effect on (computer, update) |
|---|---|
| 156 AGENT_STATUS_30, MiscData ``U=``/``V=``/``W=``/``g=``/``h=`` | needed / installed /    |
|                                                                   | installed-pending-reboot /  |
|                                                                   | failed / downloaded; every  |
|                                                                   | other root → not applicable |
| 183, 190, 197 | installed |
| 184, 191 | installed-pending-reboot |
| 182, 195, 198, 161 | failed (with ``Win32HResult``) |
| 147 / 148 | the computer's last scan time / last scan error |
| others | the event log only |

Events of a ``NamespaceID`` other than 1 are dropped before they reach this table. For one (computer,
update) the event with the newest ``TimeAtTarget`` wins (:func:`newer`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# --- the compliance states (W9) -------------------------------------------------------------------------
NEEDED = "needed"
DOWNLOADED = "downloaded"
INSTALLED = "installed"
PENDING_REBOOT = "installed-pending-reboot"
FAILED = "failed"
NOT_APPLICABLE = "not-applicable"
UNKNOWN = "unknown"
STATES = (NEEDED, DOWNLOADED, INSTALLED, PENDING_REBOOT, FAILED, NOT_APPLICABLE, UNKNOWN)

#: the only namespace whose events count (§3.9)
NAMESPACE = 1
ZERO_GUID = "00000000-0000-0000-0000-000000000000"

# --- the event ids of the table ------------------------------------------------------------------------
AGENT_DETECTION_FINISHED = 147
AGENT_DETECTION_FAILED = 148
AGENT_STATUS_30 = 156
AGENT_DOWNLOAD_FAILED = 161
AGENT_INSTALLING_FAILED = 182
AGENT_INSTALLING_SUCCEEDED = 183
AGENT_INSTALL_COMPLETE_WITH_REBOOT = 184
AU_SCHEDULED_INSTALL_SUCCESS = 190
AU_SCHEDULED_INSTALL_COMPLETE_WITH_REBOOT = 191
AU_SCHEDULED_INSTALL_FAILED = 195
AU_SHUTDOWN_INSTALL_SUCCESS = 197
AU_SHUTDOWN_INSTALL_FAILED = 198

#: the name of each event id of the table, as WUA's event catalog names it (for people reading a state)
EVENT_NAMES: Mapping[int, str] = {
    AGENT_DETECTION_FINISHED: "AGENT_DETECTION_FINISHED", AGENT_DETECTION_FAILED: "AGENT_DETECTION_FAILED",
    AGENT_STATUS_30: "AGENT_STATUS_30", AGENT_DOWNLOAD_FAILED: "AGENT_DOWNLOAD_FAILED",
    AGENT_INSTALLING_FAILED: "AGENT_INSTALLING_FAILED", AGENT_INSTALLING_SUCCEEDED: "AGENT_INSTALLING_SUCCEEDED",
    AGENT_INSTALL_COMPLETE_WITH_REBOOT: "AGENT_INSTALL_COMPLETE_WITH_REBOOT",
    AU_SCHEDULED_INSTALL_SUCCESS: "AU_SCHEDULED_INSTALL_SUCCESS",
    AU_SCHEDULED_INSTALL_COMPLETE_WITH_REBOOT: "AU_SCHEDULED_INSTALL_COMPLETE_WITH_REBOOT",
    AU_SCHEDULED_INSTALL_FAILED: "AU_SCHEDULED_INSTALL_FAILED",
    AU_SHUTDOWN_INSTALL_SUCCESS: "AU_SHUTDOWN_INSTALL_SUCCESS",
    AU_SHUTDOWN_INSTALL_FAILED: "AU_SHUTDOWN_INSTALL_FAILED",
}

#: events that set the state of the event's own update
UPDATE_EVENTS: Mapping[int, str] = {
    AGENT_INSTALLING_SUCCEEDED: INSTALLED, AU_SCHEDULED_INSTALL_SUCCESS: INSTALLED,
    AU_SHUTDOWN_INSTALL_SUCCESS: INSTALLED,
    AGENT_INSTALL_COMPLETE_WITH_REBOOT: PENDING_REBOOT, AU_SCHEDULED_INSTALL_COMPLETE_WITH_REBOOT: PENDING_REBOOT,
    AGENT_INSTALLING_FAILED: FAILED, AU_SCHEDULED_INSTALL_FAILED: FAILED, AU_SHUTDOWN_INSTALL_FAILED: FAILED,
    AGENT_DOWNLOAD_FAILED: FAILED,
}

#: AGENT_STATUS_30's MiscData keys, in the order that decides when one UpdateID is listed under several
#: (the most telling state first: a failure is never hidden by an older "needed")
STATUS_KEYS: tuple[tuple[str, str], ...] = (("g", FAILED), ("W", PENDING_REBOOT), ("V", INSTALLED),
                                            ("h", DOWNLOADED), ("U", NEEDED))

_GUID = re.compile(r"\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?")


@dataclass(frozen=True)
class Event:
    """The parts of one ``ReportingEvent`` the table reads (already validated by the operation)."""

    event_id: int
    time_at_target: datetime
    update_id: str | None = None  # lower-case GUID; None for the zero GUID or none sent
    win32_hresult: int = 0
    misc_data: tuple[str, ...] = ()  # the ``K=V`` strings as sent
    namespace_id: int = NAMESPACE


@dataclass(frozen=True)
class Effect:
    """What one event does: the new state of some updates (``states``: UpdateID → state, with the
    event's HRESULT for ``failed``), and for the computer a finished or failed scan."""

    states: Mapping[str, str] = field(default_factory=dict)
    hresult: int | None = None  # recorded with the states it sets to failed
    scan_finished: bool = False
    scan_failed: bool = False
    scan_error: int | None = None

    @property
    def changes_state(self) -> bool:
        return bool(self.states)


NOTHING = Effect()


def guid(value: str) -> str | None:
    """A GUID with or without braces, any case → lower case with dashes; ``None`` when it is none."""
    text = value.strip()
    if not _GUID.fullmatch(text) or text.startswith("{") != text.endswith("}"):
        return None
    return str(uuid.UUID(text.strip("{}")))


def misc_values(misc_data: Iterable[str], key: str) -> list[str]:
    """The values of every ``key=…`` MiscData entry (case-sensitive keys: ``g`` and ``G`` differ)."""
    prefix = key + "="
    return [entry[len(prefix):] for entry in misc_data if entry.startswith(prefix)]


def status_states(misc_data: Iterable[str]) -> dict[str, str]:
    """AGENT_STATUS_30's lists: UpdateID → state from ``U=``/``V=``/``W=``/``g=``/``h=`` (``;``-separated
    UpdateIDs; anything that is not a GUID is skipped)."""
    entries = tuple(misc_data)
    states: dict[str, str] = {}
    for key, state in STATUS_KEYS:
        for value in misc_values(entries, key):
            for item in value.split(";"):
                update = guid(item)
                if update is not None and update != ZERO_GUID:
                    states.setdefault(update, state)
    return states


def effect(event: Event, roots: Iterable[str] = ()) -> Effect:
    """The effect of ``event`` per the §3.9 table. ``roots``: the UpdateIDs that are roots (§3.5) of the
    reporting computer; AGENT_STATUS_30 makes every one it does not list ``not-applicable``."""
    if event.namespace_id != NAMESPACE:
        return NOTHING
    if event.event_id == AGENT_STATUS_30:
        listed = status_states(event.misc_data)
        states = {root: NOT_APPLICABLE for root in roots if root not in listed}
        states.update(listed)
        return Effect(states=states)
    if event.event_id in UPDATE_EVENTS:
        if event.update_id is None or event.update_id == ZERO_GUID:
            return NOTHING
        state = UPDATE_EVENTS[event.event_id]
        return Effect(states={event.update_id: state}, hresult=event.win32_hresult if state == FAILED else None)
    if event.event_id == AGENT_DETECTION_FINISHED:
        return Effect(scan_finished=True)
    if event.event_id == AGENT_DETECTION_FAILED:
        return Effect(scan_failed=True, scan_error=event.win32_hresult)
    return NOTHING


def newer(candidate: datetime, current: datetime | None) -> bool:
    """Does an event at ``candidate`` replace a state set at ``current``? The newest ``TimeAtTarget``
    wins; on a tie the later report does (events of one batch share their time)."""
    return current is None or candidate >= current


__all__ = ["AGENT_STATUS_30", "DOWNLOADED", "EVENT_NAMES", "FAILED", "INSTALLED", "NEEDED", "NOT_APPLICABLE",
           "PENDING_REBOOT", "STATES", "UNKNOWN", "UPDATE_EVENTS", "Effect", "Event", "effect", "guid", "misc_values",
           "newer", "status_states"]
