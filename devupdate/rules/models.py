"""Tables of the rules feature. A rule's state lives only in ``Rule``; everything else derives."""

from __future__ import annotations

import peewee
from prometheus_client.core import GaugeMetricFamily

from devupdate import metrics
from devupdate.content import registry
from devupdate.content.models import StoredObject
from devupdate.db import BaseModel, utcnow


class Rule(BaseModel):
    """One update line for one device family (management.md §1)."""

    id = peewee.CharField(primary_key=True, max_length=36)  # lower-case GUID, no braces
    key = peewee.CharField(unique=True, max_length=600)  # lower-cased family key, see rule_key()
    device_type = peewee.CharField(max_length=100)
    brand = peewee.CharField(max_length=100)
    model = peewee.CharField(max_length=100)
    revision = peewee.CharField(max_length=100)
    locale = peewee.CharField(max_length=10)
    update_type = peewee.CharField(max_length=100)
    approved_version = peewee.CharField(null=True, max_length=64)
    pending_version = peewee.CharField(null=True, max_length=64)
    restore_version = peewee.CharField(null=True, max_length=64)
    approved_at = peewee.DateTimeField(null=True)
    approved_by = peewee.CharField(null=True, max_length=200)
    pending_at = peewee.DateTimeField(null=True)
    pending_by = peewee.CharField(null=True, max_length=200)
    restore_at = peewee.DateTimeField(null=True)
    restore_by = peewee.CharField(null=True, max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class RuleVersion(BaseModel):
    """An imported version of a rule. Kept without a foreign key so a removed rule's images
    stay downloadable for the cleanup grace period."""

    rule_id = peewee.CharField(max_length=36, index=True)
    version = peewee.CharField(max_length=64)
    path_prefix = peewee.CharField(max_length=700, index=True)  # DeviceType/Brand/Model/Revision/Locale/Version
    imported_at = peewee.DateTimeField(default=utcnow)
    import_id = peewee.IntegerField(null=True)
    unreferenced_since = peewee.DateTimeField(null=True, index=True)

    class Meta:
        indexes = ((("rule_id", "version"), True),)


class VersionFile(BaseModel):
    """One file of a rule version: an image with its catalog, or a catalog."""

    rule_version = peewee.ForeignKeyField(RuleVersion, backref="files", on_delete="CASCADE")
    file_name = peewee.CharField(max_length=255)
    signature_file_name = peewee.CharField(null=True, max_length=255)
    role = peewee.CharField(max_length=10)  # image | catalog | file
    blob = peewee.ForeignKeyField(StoredObject, backref="uses", on_delete="RESTRICT", column_name="sha256",
                                  object_id_name="blob_id")

    class Meta:
        indexes = ((("rule_version", "file_name"), True),)


class TestDevice(BaseModel):
    """A device that receives pending versions before the fleet (management.md §2)."""

    __test__ = False  # not a pytest class
    name = peewee.CharField(max_length=200)
    scope = peewee.CharField(max_length=200, default="global")  # global | site:<name>
    identifier_type = peewee.CharField(max_length=20)  # MACAddress | SerialNumber
    identifier = peewee.CharField(max_length=100, index=True)  # normalized
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("scope", "name"), True),)


class Generation(BaseModel):
    """A counter bumped in every transaction that changes what devices are offered, so serving
    processes can tell with one cheap read whether their selection snapshot is stale."""

    id = peewee.IntegerField(primary_key=True)
    value = peewee.BigIntegerField(default=0)


# Rule versions own their files' objects until cleanup removes the version (files cleanup).
registry.register_references("rule versions", lambda: VersionFile.select(VersionFile.blob))


def _metrics() -> list[GaugeMetricFamily]:
    pending = GaugeMetricFamily("devupdate_rules_pending", "Rules with a version waiting for approval")
    pending.add_metric([], Rule.select().where(Rule.pending_version.is_null(False)).count())
    return [pending]


metrics.register_state("rules", _metrics)
