"""The downstream role's tables (spec/wsus.md §1c D3–D8).

- ``UpstreamState``: per upstream URL, the three anchors, the upstream's ServerId, the last cookie
  and the last ``ServerSyncConfigData``. An anchor is written only in the transaction that
  completes its phase, so a crash repeats the phase from the old one (D3).
- ``HeldRevision``: a synced revision that names a revision not present yet (a prerequisite
  UpdateID, a bundle member): kept here, out of the catalog and so invisible to clients and
  downstreams, until everything it names is present; then it moves into the catalog (D4).
- ``SyncedFile``: content the sync could not bring: ``corrupt-upstream`` after 3 mismatches, or
  ``unavailable`` (D5, ``FileDigestsMissing``).
- ``NeededUpdate``: the fault-in list (D8).
- ``RolledAway``: computers an upstream answered ``NewParent``/``Deleted`` for: their status is
  not this server's to send there until a rollup of them is taken again.
- ``SyncRun``: one row per run, its summary as JSON, kept 30 days (the history).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import peewee

from devupdate import metrics
from devupdate.db import BaseModel, tuples, utcnow
from devupdate.wsus.mode import UPSTREAM_TABLE


class UpstreamState(BaseModel):
    url = peewee.CharField(primary_key=True, max_length=512)
    server_id = peewee.CharField(max_length=36, null=True)  # from GetRollupConfiguration (D7)
    mode = peewee.CharField(max_length=16, default="autonomous")  # of the last run: replica refuses local approvals
    config_anchor = peewee.CharField(max_length=128, null=True)
    sync_anchor = peewee.CharField(max_length=128, null=True)
    deployment_anchor = peewee.CharField(max_length=128, null=True)
    cookie_expiration = peewee.CharField(max_length=40, null=True)
    cookie_data = peewee.TextField(null=True)
    config = peewee.TextField(default="{}")  # the last ServerSyncConfigData, as JSON
    selection = peewee.TextField(default="[]")  # the product/classification ids the last run asked for
    # the rollup's high-water mark: computers changed after it are sent (a batch the upstream took
    # moves it); ``rollup_edge`` holds the [id, change time] already sent within the overlap before it
    rollup_mark = peewee.DateTimeField(null=True)
    rollup_edge = peewee.TextField(default="[]")
    rollup_reset = peewee.CharField(max_length=80, null=True)  # "<ServerId>/<RollupResetGuid>" the mark is for
    # JSON [[UpdateID, RevisionNumber, failed runs], …]: revisions that failed, fetched again by the next runs
    retry = peewee.TextField(default="[]")
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = UPSTREAM_TABLE


class HeldRevision(BaseModel):
    id = peewee.AutoField()
    update_id = peewee.CharField(max_length=36)
    revision_number = peewee.IntegerField()
    document = peewee.BlobField()  # zlib of the UTF-8 text, exactly as received
    missing = peewee.TextField()  # JSON: what it names that is not present
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_dss_held"
        indexes = ((("update_id", "revision_number"), True),)


class SyncedFile(BaseModel):
    sha1 = peewee.CharField(primary_key=True, max_length=40)
    state = peewee.CharField(max_length=24)  # corrupt-upstream | unavailable
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.TextField(default="")
    changed_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_dss_file"


class NeededUpdate(BaseModel):
    update_id = peewee.CharField(primary_key=True, max_length=36)
    revision_number = peewee.IntegerField(null=True)
    source = peewee.CharField(max_length=200, default="")
    added_at = peewee.DateTimeField(default=utcnow)
    attempts = peewee.IntegerField(default=0)  # failed runs
    last_error = peewee.TextField(default="")
    state = peewee.CharField(max_length=16, default="needed")  # needed | unavailable

    class Meta:
        table_name = "wsus_dss_needed"


class RolledAway(BaseModel):
    upstream = peewee.CharField(max_length=512)
    computer_id = peewee.CharField(max_length=256)  # lower case

    class Meta:
        table_name = "wsus_dss_rolled_away"
        primary_key = peewee.CompositeKey("upstream", "computer_id")


class SyncedDeployment(BaseModel):
    """The upstream's ``DeploymentGuid`` of a mirrored deployment (replica mode), for ``DeadDeployments``."""

    guid = peewee.CharField(primary_key=True, max_length=80)
    update_id = peewee.CharField(max_length=36)
    group_id = peewee.CharField(max_length=36)

    class Meta:
        table_name = "wsus_dss_deployment"


class SyncRun(BaseModel):
    id = peewee.AutoField()
    upstream = peewee.CharField(max_length=512)
    mode = peewee.CharField(max_length=16)
    trigger = peewee.CharField(max_length=16)  # cli | api | schedule
    host = peewee.CharField(max_length=255, default="")
    pid = peewee.IntegerField(default=0)
    started_at = peewee.DateTimeField(default=utcnow, index=True)
    finished_at = peewee.DateTimeField(null=True)
    outcome = peewee.CharField(max_length=16, default="running")  # running | ok | failed | interrupted
    summary = peewee.TextField(default="{}")
    error = peewee.TextField(default="")

    class Meta:
        table_name = "wsus_dss_run"


MODELS: list[type[BaseModel]] = [UpstreamState, HeldRevision, SyncedFile, NeededUpdate, SyncedDeployment, SyncRun,
                                 RolledAway]


def _metrics() -> list[Any]:
    """When each upstream's sync last finished, per outcome: an alert compares failed with ok (the
    scheduled job itself never fails, a failed run is in the history)."""
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily("devupdate_wsus_sync_last_finished_timestamp_seconds", "Unix time the last sync "
                               "from each upstream finished, by outcome (ok, failed, interrupted)",
                               labels=["upstream", "outcome"])
    query = (SyncRun.select(SyncRun.upstream, SyncRun.outcome, peewee.fn.MAX(SyncRun.finished_at).alias("last"))
             .where(SyncRun.finished_at.is_null(False)).group_by(SyncRun.upstream, SyncRun.outcome))
    for upstream, outcome, last in tuples(query):
        when = last if isinstance(last, datetime) else datetime.fromisoformat(str(last))
        family.add_metric([upstream, outcome], when.replace(tzinfo=UTC).timestamp())
    return [family]


metrics.register_state("wsus-sync", _metrics)
