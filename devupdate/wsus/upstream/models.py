"""The upstream role's tables ([wsus] §1b U1, S6).

``DownstreamServer``: each server that asked for a DSS authorization cookie, by its account GUID
(its ServerId), with the name and address it came from; its rollups name it in the compliance report.
``RolledUpServer`` and ``RolledUpComputer``: what the rollup operations said about the servers and
computers below this one (their states go to the compliance tables, marked with the reporting server).
"""

from __future__ import annotations

import peewee

from devupdate.db import BaseModel, utcnow


class DownstreamServer(BaseModel):
    account_guid = peewee.CharField(primary_key=True, max_length=36)  # the DSS ServerId, lower case
    account_name = peewee.CharField(max_length=256)  # its FQDN, as sent
    address = peewee.CharField(max_length=64, default="")
    protocol_version = peewee.CharField(max_length=16, default="")
    first_seen = peewee.DateTimeField(default=utcnow)
    last_seen = peewee.DateTimeField(default=utcnow)
    last_rollup_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "wsus_downstream_server"




class RolledUpServer(BaseModel):
    """A server below this one as a rollup described it (``RollupDownstreamServers``; its own
    downstreams too, parents before children): times corrected for the reporting server's clock."""

    server_id = peewee.CharField(primary_key=True, max_length=36)
    parent_server_id = peewee.CharField(max_length=36)
    full_domain_name = peewee.CharField(max_length=256, default="")
    version = peewee.CharField(max_length=64, default="")
    is_replica = peewee.BooleanField(default=False)
    last_sync_time = peewee.DateTimeField(null=True)
    last_rollup_time = peewee.DateTimeField(null=True)
    computers = peewee.IntegerField(default=0)  # ServerSummary.ComputerTargetCount
    summary = peewee.TextField(default="{}")  # ServerSummary's counts, JSON of integers
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_rolled_up_server"


class RolledUpComputer(BaseModel):
    """A computer of a downstream server (``RollupComputers``, ``RollupComputerStatus``)."""

    computer_id = peewee.CharField(primary_key=True, max_length=256)  # lower case
    parent_server_id = peewee.CharField(max_length=36, index=True)
    full_domain_name = peewee.CharField(max_length=256, default="")
    ip_address = peewee.CharField(max_length=64, default="")
    os_description = peewee.CharField(max_length=256, default="")
    last_sync_time = peewee.DateTimeField(null=True)
    last_status_time = peewee.DateTimeField(null=True)
    rollup_number = peewee.IntegerField(null=True)  # of the last status taken
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_rolled_up_computer"


ROLLUP_MODELS: list[type[BaseModel]] = [RolledUpServer, RolledUpComputer]
MODELS: list[type[BaseModel]] = [DownstreamServer, *ROLLUP_MODELS]
