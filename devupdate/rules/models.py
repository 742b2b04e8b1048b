"""Tables of the rules feature. A rule's state lives only in ``Rule``; everything else derives."""

from __future__ import annotations

import peewee
from prometheus_client.core import GaugeMetricFamily

from devupdate import metrics
from devupdate.content import names, registry
from devupdate.content.models import StoredObject
from devupdate.db import BaseModel, tuples, utcnow


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

    id = peewee.AutoField()
    rule_id = peewee.CharField(max_length=36, index=True)
    version = peewee.CharField(max_length=64)
    path_prefix = peewee.CharField(max_length=700, index=True)  # DeviceType/Brand/Model/Revision/Locale/Version
    imported_at = peewee.DateTimeField(default=utcnow)
    import_id = peewee.IntegerField(null=True)
    unreferenced_since = peewee.DateTimeField(null=True, index=True)

    files: peewee.ModelSelect[VersionFile]  # the backref VersionFile.rule_version makes

    class Meta:
        indexes = ((("rule_id", "version"), True),)


class VersionFile(BaseModel):
    """One file of a rule version: an image with its catalog, or a catalog."""

    id = peewee.AutoField()
    rule_version = peewee.ForeignKeyField(RuleVersion, backref="files", on_delete="CASCADE")
    file_name = peewee.CharField(max_length=255)
    signature_file_name = peewee.CharField(null=True, max_length=255)
    role = peewee.CharField(max_length=10)  # image | catalog | file
    blob = peewee.ForeignKeyField(StoredObject, backref="uses", on_delete="RESTRICT", column_name="sha256",
                                  object_id_name="blob_id")
    # the keys behind the two references, read without loading the rows (peewee's id accessors)
    rule_version_id: int
    blob_id: str

    class Meta:
        indexes = ((("rule_version", "file_name"), True),)


class TestDevice(BaseModel):
    """A device that receives pending versions before the fleet (management.md §2)."""

    __test__ = False  # not a pytest class
    id = peewee.AutoField()
    name = peewee.CharField(max_length=200)
    scope = peewee.CharField(max_length=200, default="global")  # global | site:<name>
    identifier_type = peewee.CharField(max_length=20)  # MACAddress | SerialNumber
    identifier = peewee.CharField(max_length=100, index=True)  # normalized
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("scope", "name"), True),)


class RuleRollout(BaseModel):
    """A staged rollout of a rule's approved version (``rules approve --rollout``): one row per rule,
    ended (deleted) by reset, restore and remove, replaced by the next approve. ``stage_times`` holds
    when each stage started (JSON list of POSIX seconds), so a device's offer time is known."""

    rule_id = peewee.CharField(primary_key=True, max_length=36)
    version = peewee.CharField(max_length=64)  # the approved version being rolled out
    previous = peewee.CharField(null=True, max_length=64)  # what the rest of the fleet keeps
    stages = peewee.CharField(max_length=200)  # basis points, comma-separated, e.g. 500,2500,10000
    stage = peewee.IntegerField(default=0)
    stage_times = peewee.TextField(default="[]")
    every = peewee.IntegerField()  # seconds
    halt_at = peewee.IntegerField()  # basis points
    fail_after_checks = peewee.IntegerField(default=3)
    fail_after = peewee.IntegerField(default=48 * 3600)  # seconds
    state = peewee.CharField(max_length=12, default="running")  # running | halted | completed
    started_at = peewee.DateTimeField(default=utcnow)
    started_by = peewee.CharField(max_length=200, default="")
    halted_at = peewee.DateTimeField(null=True)
    reason = peewee.TextField(default="")
    acknowledged = peewee.IntegerField(default=0)  # failures a resume accepted
    offered = peewee.IntegerField(default=0)  # as last evaluated
    updated = peewee.IntegerField(default=0)
    failed = peewee.IntegerField(default=0)
    evaluated_at = peewee.DateTimeField(null=True)


class RolloutDevice(BaseModel):
    """A device a rollout has offered the new version to, as the watch saw it."""

    id = peewee.AutoField()
    rule_id = peewee.CharField(max_length=36)
    device_id = peewee.CharField(max_length=80)
    offered_at = peewee.DoubleField()  # POSIX seconds (double: REAL would round them to minutes)
    checks_at_offer = peewee.BigIntegerField()  # the inventory's check count then
    seen_new = peewee.BooleanField(default=False)
    outcome = peewee.CharField(max_length=10, default="waiting")  # waiting | updated | failed
    reason = peewee.CharField(max_length=10, default="")  # reported | fallback | stuck
    downloaded_at = peewee.DoubleField(null=True)  # when it fetched the new image (POSIX seconds), as attributed
    checks_at_download = peewee.BigIntegerField(null=True)  # the inventory's check count then

    class Meta:
        indexes = ((("rule_id", "device_id"), True),)


class RolloutDownload(BaseModel):
    """Downloads of the image a rollout rolls out, per client address (and external user): the watch
    attributes them to devices through the inventory (``devices/rollout_watch``). Only images of an
    active rollout's version are counted; the rows end with the rollout."""

    id = peewee.AutoField()
    rule_id = peewee.CharField(max_length=36)
    version = peewee.CharField(max_length=64)
    address = peewee.CharField(max_length=64)
    user_id = peewee.CharField(max_length=256, default="")
    first_at = peewee.DoubleField()  # POSIX seconds
    last_at = peewee.DoubleField()
    count = peewee.BigIntegerField(default=1)

    class Meta:
        indexes = ((("rule_id", "version", "address", "user_id"), True),)


class Generation(BaseModel):
    """A counter bumped in every transaction that changes what devices are offered, so serving
    processes can tell with one cheap read whether their selection snapshot is stale."""

    id = peewee.IntegerField(primary_key=True)
    value = peewee.BigIntegerField(default=0)


# Rule versions own their files' objects until cleanup removes the version (files cleanup).
registry.register_references("rule versions", lambda: VersionFile.select(VersionFile.blob))
# ... and name them for /Content: a phone image and its catalog are reachable by SHA-1 as .nbt / .cat.
names.register_names("rule versions", lambda sha1: tuples(VersionFile.select(VersionFile.blob, VersionFile.file_name)
                                                          .join(StoredObject).where(StoredObject.sha1 == sha1)))


def _metrics() -> list[GaugeMetricFamily]:
    pending = GaugeMetricFamily("devupdate_rules_pending", "Rules with a version waiting for approval")
    pending.add_metric([], Rule.select().where(Rule.pending_version.is_null(False)).count())
    return [pending]


metrics.register_state("rules", _metrics)
