"""The targeting tables ([wsus] §1d W6–W8, §6.4).

- ``TargetGroup``: the tree rooted at the built-in ``All Computers``; ``Unassigned Computers`` and
  ``Test`` are its built-in children. Names are unique case-insensitively (client-side targeting
  matches them that way).
- ``Computer``: one registered client; its ``id`` is the TargetID, ``computer_id`` the client's
  ComputerID (``clientId`` of GetAuthorizationCookie). ``membership_seq`` is stamped with the
  catalog's ``change_seq`` whenever its groups change, so a scan knows its effective deployments may
  have changed.
- ``ComputerGroup``: the groups a computer is assigned to, server-side (``source='server'``, by the
  API/CLI) or client-side (``source='client'``, from ``targetGroupName`` at each cookie issue). Which
  set counts follows the targeting mode (``TargetingConfig``); an empty set means ``Unassigned
  Computers``. Ancestors are implied, never stored.
- ``Deployment``: an approval of one UpdateID for one group. Its ``id`` is the Deployment ``ID`` sent
  to clients. An unapproval keeps the row with ``revoked=True`` (and a new ``change_seq``), so a scan
  can tell cached clients that the deployment changed.
- ``DerivedDeployment``: the stable ids of derived actions (``Evaluate``, ``Bundle``, implicit
  ``PreDeploymentCheck``), one per (RevisionID, action), sent as ``DERIVED_ID_BASE + id``.
- ``EulaAcceptance``, ``AutoApprovalRule`` and ``AutoApprovalDecision`` (what a rule did with an
  update, once: approved, or skipped with the reason, e.g. an EULA awaiting acceptance).
"""

from __future__ import annotations

import peewee

from devupdate.db import BaseModel, utcnow

ALL_COMPUTERS_ID = "a0a08746-4dbe-4a37-9adf-9e7652c0b421"
UNASSIGNED_ID = "b73ca6ed-5727-47f3-84de-015e03f6a88a"
#: created on first start; a fixed id so every server (and the phone-image deployments) name the same group
TEST_ID = "327ccb77-70e9-5cb0-baf0-0bfdf832c7b8"  # uuid5(devupdate namespace, "group/Test")
ALL_COMPUTERS = "All Computers"
UNASSIGNED = "Unassigned Computers"
TEST = "Test"
BUILTIN_GROUPS = ((ALL_COMPUTERS_ID, ALL_COMPUTERS, None), (UNASSIGNED_ID, UNASSIGNED, ALL_COMPUTERS_ID),
                  (TEST_ID, TEST, ALL_COMPUTERS_ID))

#: derived deployment ids (§6.4) are sent above every explicit deployment's id
DERIVED_ID_BASE = 1_000_000_000

ACTIONS = ("Install", "Uninstall", "OptionalInstall", "Block")
SERVER, CLIENT = "server", "client"
MODES = (SERVER, CLIENT)


class TargetGroup(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=36)  # a GUID, lower case
    name = peewee.CharField(max_length=256)
    name_key = peewee.CharField(max_length=1024, unique=True)  # name.casefold() (up to 3 characters each)
    parent = peewee.ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT",
                                    column_name="parent_id")
    builtin = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
    created_by = peewee.CharField(max_length=200, default="")
    change_seq = peewee.BigIntegerField(index=True)
    parent_id: str | None

    class Meta:
        table_name = "wsus_target_group"


class Computer(BaseModel):
    id = peewee.AutoField()  # the TargetID
    computer_id = peewee.CharField(max_length=256, unique=True)  # the client's ComputerID
    dns_name = peewee.CharField(max_length=256, default="", index=True)
    # RegisterComputer's computerInfo (§3.4), every string cut to 256 characters
    os_major = peewee.IntegerField(null=True)
    os_minor = peewee.IntegerField(null=True)
    os_build = peewee.IntegerField(null=True)
    os_revision = peewee.IntegerField(null=True)
    os_sp_major = peewee.IntegerField(null=True)
    os_sp_minor = peewee.IntegerField(null=True)
    os_locale = peewee.CharField(max_length=256, null=True)
    os_description = peewee.CharField(max_length=256, null=True)
    manufacturer = peewee.CharField(max_length=256, null=True)
    model = peewee.CharField(max_length=256, null=True)
    bios_name = peewee.CharField(max_length=256, null=True)
    bios_version = peewee.CharField(max_length=256, null=True)
    bios_release_date = peewee.CharField(max_length=256, null=True)
    processor_architecture = peewee.CharField(max_length=256, null=True)
    suite_mask = peewee.IntegerField(null=True)
    old_product_type = peewee.IntegerField(null=True)
    new_product_type = peewee.IntegerField(null=True)
    system_metrics = peewee.IntegerField(null=True)
    client_version = peewee.CharField(max_length=256, null=True)
    oem = peewee.CharField(max_length=256, null=True)
    device_type = peewee.CharField(max_length=256, null=True)
    firmware_version = peewee.CharField(max_length=256, null=True)
    mobile_operator = peewee.CharField(max_length=256, null=True)
    protocol_version = peewee.CharField(max_length=32, null=True)
    registered = peewee.BooleanField(default=False)
    registered_at = peewee.DateTimeField(null=True)
    #: the ``targetGroupName`` of the last GetAuthorizationCookie, as sent (client-side targeting)
    client_group_names = peewee.CharField(max_length=1024, default="")
    last_sync_at = peewee.DateTimeField(null=True, index=True)
    last_status_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    membership_seq = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "wsus_computer"


class ComputerGroup(BaseModel):
    computer = peewee.ForeignKeyField(Computer, on_delete="CASCADE", column_name="computer_id")
    group = peewee.ForeignKeyField(TargetGroup, on_delete="CASCADE", column_name="group_id")
    source = peewee.CharField(max_length=8)  # server | client
    assigned_at = peewee.DateTimeField(default=utcnow)
    computer_id: int
    group_id: str

    class Meta:
        table_name = "wsus_computer_group"
        primary_key = peewee.CompositeKey("computer", "group", "source")
        indexes = ((("group", "source"), False),)


class Deployment(BaseModel):
    id = peewee.AutoField()  # the Deployment ID sent to clients
    update_id = peewee.CharField(max_length=36)
    group = peewee.ForeignKeyField(TargetGroup, on_delete="CASCADE", column_name="group_id")
    action = peewee.CharField(max_length=16)  # Install | Uninstall | OptionalInstall | Block
    deadline = peewee.DateTimeField(null=True)  # naive UTC
    download_priority = peewee.IntegerField(default=2)  # 1 low, 2 normal, 3 high
    is_assigned = peewee.BooleanField(default=True)  # False for OptionalInstall
    revoked = peewee.BooleanField(default=False)  # unapproved: kept so scans see the change
    source = peewee.CharField(max_length=16, default="admin")  # admin | rule | image
    actor = peewee.CharField(max_length=200)  # the person, 'rule:<name>' or 'image:<rule id>'
    created_at = peewee.DateTimeField(default=utcnow)
    changed_at = peewee.DateTimeField(default=utcnow)  # LastChangeTime (date part)
    change_seq = peewee.BigIntegerField(index=True)
    group_id: str

    class Meta:
        table_name = "wsus_deployment"
        indexes = ((("update_id", "group"), True), (("group", "revoked"), False))


class DerivedDeployment(BaseModel):
    id = peewee.AutoField()
    revision_id = peewee.IntegerField()
    action = peewee.CharField(max_length=24)  # Evaluate | Bundle | PreDeploymentCheck

    class Meta:
        table_name = "wsus_derived_deployment"
        indexes = ((("revision_id", "action"), True),)


class EulaAcceptance(BaseModel):
    eula_id = peewee.CharField(primary_key=True, max_length=36)
    accepted_by = peewee.CharField(max_length=200)
    accepted_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_eula_acceptance"


class AutoApprovalRule(BaseModel):
    name = peewee.CharField(primary_key=True, max_length=64)  # Test | All Computers | Definition Updates
    group = peewee.ForeignKeyField(TargetGroup, on_delete="CASCADE", column_name="group_id")
    action = peewee.CharField(max_length=16, default="Install")
    #: days since the Test approval (the All Computers rule; None: on arrival)
    defer_days = peewee.IntegerField(null=True)
    #: only updates of this classification (the Definition Updates rule); None: every classification
    classification_id = peewee.CharField(max_length=36, null=True)
    enabled = peewee.BooleanField(default=True)
    paused = peewee.BooleanField(default=False)
    accept_eulas = peewee.BooleanField(default=False)
    #: updates stamped after this change_seq are "new" to the rule (nothing older is approved by it)
    since_seq = peewee.BigIntegerField(default=0)
    changed_at = peewee.DateTimeField(default=utcnow)
    changed_by = peewee.CharField(max_length=200, default="")
    group_id: str

    class Meta:
        table_name = "wsus_auto_approval_rule"


class AutoApprovalDecision(BaseModel):
    """What a rule did with an update, once: ``approved`` or ``skipped:<reason>`` (eula-needed is
    retried once the EULA is accepted)."""

    rule = peewee.CharField(max_length=64)
    update_id = peewee.CharField(max_length=36)
    outcome = peewee.CharField(max_length=32)
    detail = peewee.CharField(max_length=200, default="")
    at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_auto_approval_decision"
        primary_key = peewee.CompositeKey("rule", "update_id")
        indexes = ((("outcome",), False),)


class TargetingConfig(BaseModel):
    """One row: the targeting mode (server | client), a global setting."""

    id = peewee.IntegerField(primary_key=True)
    mode = peewee.CharField(max_length=8, default=SERVER)
    changed_at = peewee.DateTimeField(default=utcnow)
    changed_by = peewee.CharField(max_length=200, default="")

    class Meta:
        table_name = "wsus_targeting_config"


MODELS: list[type[BaseModel]] = [TargetGroup, Computer, ComputerGroup, Deployment, DerivedDeployment,
                                 EulaAcceptance, AutoApprovalRule, AutoApprovalDecision, TargetingConfig]
