"""The compliance tables ([wsus] §1d W9, §3.9).

Computers are named by their client id (``TargetID/Sid``: the ``SusClientId`` the cookie carries,
lower case), the same value as the targeting tables' ``computer_id``; the reports join the two.

- ``ReportedEvent``: the event log. ``event_instance_id`` is unique, so a batch sent again (WUA
  retries after a lost answer) stores nothing twice and changes no state twice.
- ``ComplianceState``: the latest state per (computer, update), with the ``TimeAtTarget`` and the
  event that set it; only an event at least as new replaces it.
- ``ComputerStatus``: per computer, the last scan (147) and scan error (148), the last status time,
  the time of the newest AGENT_STATUS_30 (156), and the counts of events taken, ignored as
  duplicates and dropped (another computer's TargetID, or another namespace).

Strings from events are bounded (§7: 4 KiB each, 64 MiscData items); ``reported_by`` is empty for
this server's own clients and names the downstream server for rolled-up data (§5.1).
"""

from __future__ import annotations

import peewee

from devupdate.db import BaseModel, utcnow

#: §7's defaults: the longest string of an event, and its MiscData items ([wsus] max_event_string_length,
#: max_misc_data_items); whatever the settings, the store keeps at most MAX_STORED_* of them
MAX_STRING = 4096
MAX_MISC_ITEMS = 64
MAX_REPLACEMENT_STRINGS = 64
MAX_STORED_STRING = 1_048_576
MAX_STORED_ITEMS = 10_000


class ReportedEvent(BaseModel):
    id = peewee.AutoField()
    event_instance_id = peewee.CharField(max_length=36, unique=True)
    client_id = peewee.CharField(max_length=256, index=True)
    event_id = peewee.IntegerField()
    namespace_id = peewee.IntegerField(default=1)
    source_id = peewee.IntegerField(default=0)
    sequence_number = peewee.IntegerField(default=0)
    update_id = peewee.CharField(max_length=36, null=True, index=True)
    revision_number = peewee.IntegerField(null=True)
    time_at_target = peewee.DateTimeField()  # naive UTC
    received_at = peewee.DateTimeField(default=utcnow, index=True)
    win32_hresult = peewee.IntegerField(default=0)
    app_name = peewee.TextField(default="")
    #: JSON arrays of plain strings (each bounded): read back only as lists of text
    replacement_strings = peewee.TextField(default="[]")
    misc_data = peewee.TextField(default="[]")
    reported_by = peewee.CharField(max_length=256, default="")

    class Meta:
        table_name = "wsus_reported_event"
        indexes = ((("client_id", "time_at_target"), False),)


class ComplianceState(BaseModel):
    id = peewee.AutoField()
    client_id = peewee.CharField(max_length=256)
    update_id = peewee.CharField(max_length=36, index=True)
    state = peewee.CharField(max_length=32)
    time_at_target = peewee.DateTimeField()  # of the event that set the state (naive UTC)
    event_id = peewee.IntegerField()  # its EventID
    event_instance_id = peewee.CharField(max_length=36)
    revision_number = peewee.IntegerField(null=True)
    win32_hresult = peewee.IntegerField(null=True)  # for failed
    changed_at = peewee.DateTimeField(default=utcnow)
    reported_by = peewee.CharField(max_length=256, default="")

    class Meta:
        table_name = "wsus_compliance_state"
        indexes = ((("client_id", "update_id"), True), (("update_id", "state"), False))


class ComputerStatus(BaseModel):
    client_id = peewee.CharField(primary_key=True, max_length=256)
    last_scan_at = peewee.DateTimeField(null=True)  # AGENT_DETECTION_FINISHED (147)
    last_scan_error_at = peewee.DateTimeField(null=True)  # AGENT_DETECTION_FAILED (148)
    last_scan_error = peewee.IntegerField(null=True)  # its Win32HResult
    last_status_at = peewee.DateTimeField(null=True)  # the newest TimeAtTarget reported
    last_report_at = peewee.DateTimeField(null=True)  # when the last batch arrived
    #: the TimeAtTarget of the newest AGENT_STATUS_30 (156): it covers every update the computer has a
    #: state for, so a not-applicable row counts as that new (the status re-asserting not applicable
    #: rewrites no row)
    agent_status_at = peewee.DateTimeField(null=True)
    events_taken = peewee.BigIntegerField(default=0)
    events_duplicate = peewee.BigIntegerField(default=0)
    events_dropped = peewee.BigIntegerField(default=0)
    reported_by = peewee.CharField(max_length=256, default="")
    #: the computer's updates per report column, kept with every state change (the reports read these
    #: instead of counting the state rows): needed (+ downloaded), installed (+ pending reboot), …
    needed = peewee.IntegerField(default=0)
    installed = peewee.IntegerField(default=0)
    pending_reboot = peewee.IntegerField(default=0)
    failed = peewee.IntegerField(default=0)
    not_applicable = peewee.IntegerField(default=0)

    class Meta:
        table_name = "wsus_computer_status"


#: ComputerStatus's counter column of each state (pending reboot also counts as installed)
COUNTER_OF = {"needed": "needed", "downloaded": "needed", "installed": "installed",
              "installed-pending-reboot": "installed", "failed": "failed", "not-applicable": "not_applicable"}
COUNTERS = ("needed", "installed", "pending_reboot", "failed", "not_applicable")


def counters_of(state: str) -> tuple[str, ...]:
    column = COUNTER_OF.get(state)
    if column is None:
        return ()
    return (column, "pending_reboot") if state == "installed-pending-reboot" else (column,)


MODELS: list[type[BaseModel]] = [ReportedEvent, ComplianceState, ComputerStatus]
