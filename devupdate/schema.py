"""Schema creation and versioned migrations.

A new database gets every table from the current models and is stamped with the latest version.
An existing one gets each migration newer than its stamp, in order, each in its own transaction.
To change the schema: change the model, then append ``Migration(N+1, "why", apply)`` where
``apply`` uses ``playhouse.migrate`` (it runs only on databases created before version N+1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee

from devupdate.admin.console.auth import AdminUser, SignInFailure
from devupdate.admin.tokens import ApiToken
from devupdate.audit.models import AuditEvent
from devupdate.configuration import ConfigSetting
from devupdate.content.models import StoredObject
from devupdate.db import BaseModel, database, is_sqlite, tuples, utcnow
from devupdate.devices.activity import ActivityHour
from devupdate.devices.groups import DeviceGroup
from devupdate.devices.inventory import Device
from devupdate.devices.reports import DeviceReport
from devupdate.devices.users import ExternalUser
from devupdate.imports.models import ImportJournal, ImportRecord
from devupdate.rules.models import (
    Generation,
    RolloutDevice,
    RolloutDownload,
    Rule,
    RuleRollout,
    RuleVersion,
    TestDevice,
    VersionFile,
)
from devupdate.wsus.catalog.models import MODELS as WSUS_CATALOG
from devupdate.wsus.client.models import MODELS as WSUS_COOKIES
from devupdate.wsus.compliance.models import MODELS as WSUS_COMPLIANCE
from devupdate.wsus.downstream.models import MODELS as WSUS_DOWNSTREAM
from devupdate.wsus.targeting.models import MODELS as WSUS_TARGETING
from devupdate.wsus.upstream.models import MODELS as WSUS_UPSTREAM
from devupdate.wsus.upstream.models import ROLLUP_MODELS as WSUS_ROLLUP


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DateTimeField(default=utcnow)


MODELS: list[type[BaseModel]] = [Rule, Generation, StoredObject, RuleVersion, VersionFile, TestDevice, ConfigSetting,
                                 AuditEvent, ImportRecord, ImportJournal, Device, ApiToken,
                                 AdminUser, SignInFailure, ExternalUser, DeviceReport, RuleRollout, RolloutDevice,
                                 RolloutDownload,
                                 *WSUS_CATALOG, *WSUS_COMPLIANCE, *WSUS_TARGETING, *WSUS_COOKIES, *WSUS_UPSTREAM,
                                 *WSUS_DOWNSTREAM, ActivityHour, DeviceGroup]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[peewee.Database], None]


def _baseline(db: peewee.Database) -> None:
    db.create_tables(MODELS)


def _index_object_sha1(db: peewee.Database) -> None:
    # peewee ships stubs for peewee itself, not for its playhouse extensions
    from playhouse.migrate import SchemaMigrator, migrate  # type: ignore[import-untyped]

    migrate(SchemaMigrator.from_database(db).add_index(StoredObject._meta.table_name, ("sha1",), False))


def _wsus_deleted_flag(db: peewee.Database) -> None:
    from playhouse.migrate import SchemaMigrator, migrate

    from devupdate.wsus.catalog.models import Update

    table = Update._meta.table_name
    if "deleted" not in {column.name for column in db.get_columns(table)}:  # created by migration 4 of this code
        migrate(SchemaMigrator.from_database(db).add_column(table, "deleted", Update.deleted))


def _external_user_nt_hash(db: peewee.Database) -> None:
    """NT hashes beside the scrypt hashes, so NTLM can verify; users from before get theirs when
    their password is next set (a hash cannot be derived from another hash)."""
    from playhouse.migrate import SchemaMigrator, migrate

    table = ExternalUser._meta.table_name
    if "nt_hash" not in {column.name for column in db.get_columns(table)}:  # created by migration 3 of this code
        migrate(SchemaMigrator.from_database(db).add_column(table, "nt_hash", ExternalUser.nt_hash))


def _rollout_downloads(db: peewee.Database) -> None:
    """Downloads of a rollout's image per client, and when each device offered it fetched it: the
    "downloaded but still runs the old version" signal for phones that do not report (Lync)."""
    from playhouse.migrate import SchemaMigrator, migrate

    table = RolloutDevice._meta.table_name
    have = {column.name for column in db.get_columns(table)}
    migrator = SchemaMigrator.from_database(db)
    for name in ("downloaded_at", "checks_at_download"):
        if name not in have:  # created by migration 15 of this code
            migrate(migrator.add_column(table, name, RolloutDevice._meta.fields[name]))
    db.create_tables([RolloutDownload])


def _compliance_counters(db: peewee.Database) -> None:
    """Each computer's counts per report column, kept on its status row from now on, filled once from
    the state rows reported so far."""
    from playhouse.migrate import SchemaMigrator, migrate

    from devupdate.wsus.compliance.models import COUNTERS, ComplianceState, ComputerStatus, counters_of

    table = ComputerStatus._meta.table_name
    have = {column.name for column in db.get_columns(table)}
    migrator = SchemaMigrator.from_database(db)
    migrate(*(migrator.add_column(table, name, getattr(ComputerStatus, name)) for name in COUNTERS
              if name not in have))
    totals: dict[str, dict[str, int]] = {}
    query = ComplianceState.select(ComplianceState.client_id, ComplianceState.state,
                                   peewee.fn.COUNT(ComplianceState.id)).group_by(ComplianceState.client_id,
                                                                                ComplianceState.state)
    for client_id, state, count in tuples(query):
        for column in counters_of(state):
            row = totals.setdefault(client_id, dict.fromkeys(COUNTERS, 0))
            row[column] += count
    for client_id, row in totals.items():
        ComputerStatus.update(**row).where(ComputerStatus.client_id == client_id).execute()


def _agent_status_time(db: peewee.Database) -> None:
    """The newest AGENT_STATUS_30 per computer, from now on (empty: the rows' own times count)."""
    from playhouse.migrate import SchemaMigrator, migrate

    from devupdate.wsus.compliance.models import ComputerStatus

    table = ComputerStatus._meta.table_name
    if "agent_status_at" not in {column.name for column in db.get_columns(table)}:
        migrate(SchemaMigrator.from_database(db).add_column(table, "agent_status_at", ComputerStatus.agent_status_at))


def _publish_phone_images(db: peewee.Database) -> None:
    """Versions imported before the catalog existed become its updates too (C10), as an import would
    have published them; removed rules' versions (awaiting cleanup) are not published."""
    from devupdate.rules.catalog import publish_rules

    publish_rules((rule, False) for rule in Rule.select().order_by(Rule.id))


def _wsus_targeting(db: peewee.Database) -> None:
    from devupdate.rules.catalog import sync_deployments
    from devupdate.wsus.targeting.service import seed

    db.create_tables(WSUS_TARGETING)
    seed()
    for rule in Rule.select().order_by(Rule.id):  # phone images imported before: deployments from their rules
        sync_deployments(rule, rule.id, "devupdate")


def _rollup_mark(db: peewee.Database) -> None:
    """The rollup's high-water mark per upstream, and the computers an upstream took away: a rollup
    sends only the computers changed since the last one the upstream accepted."""
    from playhouse.migrate import SchemaMigrator, migrate

    from devupdate.wsus.downstream.models import RolledAway, UpstreamState

    table = UpstreamState._meta.table_name
    have = {column.name for column in db.get_columns(table)}
    migrator = SchemaMigrator.from_database(db)
    migrate(*(migrator.add_column(table, name, UpstreamState._meta.fields[name])
              for name in ("rollup_mark", "rollup_edge", "rollup_reset") if name not in have))
    db.create_tables([RolledAway])


def _device_groups(db: peewee.Database) -> None:
    """The counters of devices per (family, versions), from the inventory rows already there."""
    from devupdate.devices import groups

    db.create_tables([DeviceGroup])
    columns = [getattr(Device, name) for name in groups.COLUMNS]
    groups.fill(tuples(Device.select(*columns, peewee.fn.COUNT(Device.id)).group_by(*columns)))


def _sync_retry(db: peewee.Database) -> None:
    """The revisions a run could not fetch, per upstream: the next runs fetch them again."""
    from playhouse.migrate import SchemaMigrator, migrate

    from devupdate.wsus.downstream.models import UpstreamState

    table = UpstreamState._meta.table_name
    if "retry" not in {column.name for column in db.get_columns(table)}:
        migrate(SchemaMigrator.from_database(db).add_column(table, "retry", UpstreamState._meta.fields["retry"]))


def _rollout_times_double(db: peewee.Database) -> None:
    """Rollout times stored as REAL on PostgreSQL (before they were declared double) kept POSIX seconds
    to about two minutes, so a download never came after its offer: widen them. SQLite's REAL is a
    double already."""
    if is_sqlite():
        return
    for model, names in ((RolloutDevice, ("offered_at", "downloaded_at")), (RolloutDownload, ("first_at", "last_at"))):
        table = model._meta.table_name
        for name in names:
            column = model._meta.fields[name].column_name
            db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE double precision')


def _seed() -> None:
    """Rows a new database starts with (the migrations that add their tables write them too)."""
    from devupdate.wsus.targeting.service import seed

    seed()


MIGRATIONS: list[Migration] = [
    Migration(1, "baseline: rules, images, test devices, configuration, audit trail, imports", _baseline),
    Migration(2, "stored objects indexed by SHA-1", _index_object_sha1),
    Migration(3, "external users in the database", lambda db: db.create_tables([ExternalUser])),
    Migration(4, "the WSUS update catalog: revisions, fragments, files, relationships, categories",
              lambda db: db.create_tables(WSUS_CATALOG)),
    Migration(5, "WSUS catalog updates can be deleted (hidden, revisions kept) and restored", _wsus_deleted_flag),
    Migration(6, "phone images imported before the catalog published as its updates", _publish_phone_images),
    Migration(7, "WSUS compliance: reported events, the state per computer and update, computer status",
              lambda db: db.create_tables(WSUS_COMPLIANCE)),
    Migration(8, "WSUS targeting: target groups (the built-in ones), computers, deployments, EULA acceptance, "
                 "auto-approval rules", _wsus_targeting),
    Migration(9, "WSUS cookies: the server's identity and the cookie keys", lambda db: db.create_tables(WSUS_COOKIES)),
    Migration(10, "WSUS compliance: each computer's counts per report column on its status row",
              _compliance_counters),
    Migration(11, "WSUS upstream role: the downstream servers that sync from this one",
              lambda db: db.create_tables(WSUS_UPSTREAM[:1])),
    Migration(12, "device API status reports", lambda db: db.create_tables([DeviceReport])),
    Migration(13, "WSUS downstream sync: anchors per upstream, held revisions, marked files, the needed list, "
                  "the run history", lambda db: db.create_tables(WSUS_DOWNSTREAM)),
    Migration(14, "WSUS upstream role: the servers and computers downstream servers roll up",
              lambda db: db.create_tables(WSUS_ROLLUP)),
    Migration(15, "staged rollouts: their state per rule and the devices offered",
              lambda db: db.create_tables([RuleRollout, RolloutDevice])),
    Migration(16, "WSUS compliance: the time of each computer's newest status report (AGENT_STATUS_30)",
              _agent_status_time),
    Migration(17, "external users: the NT hash beside the scrypt hash (NTLM)", _external_user_nt_hash),
    Migration(18, "check-ins, downloads and version changes per hour, rule, version and side",
              lambda db: db.create_tables([ActivityHour])),
    Migration(19, "staged rollouts: downloads of the image per client, when each device offered fetched it",
              _rollout_downloads),
    Migration(20, "WSUS downstream rollup: a high-water mark per upstream, the computers it took away",
              _rollup_mark),
    Migration(21, "known devices counted per family and reported versions, kept by the inventory writer",
              _device_groups),
    Migration(22, "WSUS downstream sync: the revisions that failed, fetched again by the next runs",
              _sync_retry),
    Migration(23, "staged rollouts: offer and download times in double precision on PostgreSQL",
              _rollout_times_double),
]


def current_version() -> int | None:
    if not database.table_exists(SchemaVersion._meta.table_name):
        return None
    latest = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return latest


def _lock() -> None:
    """Serialize concurrent upgrades (several workers start at once)."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_advisory_xact_lock(727274)")


def upgrade(migrations: list[Migration] | None = None) -> list[str]:
    """Bring the schema to the latest version; returns what was done (empty when up to date)."""
    migrations = MIGRATIONS if migrations is None else migrations
    latest = migrations[-1].version
    done: list[str] = []
    with database.atomic("IMMEDIATE") if is_sqlite() else database.atomic():
        _lock()
        version = current_version()
        if version is None:
            database.create_tables([SchemaVersion])
            database.create_tables(MODELS)
            _seed()
            SchemaVersion.create(version=latest, name=migrations[-1].name)
            return [f"created schema version {latest}"]
    for migration in migrations:
        if migration.version <= (version or 0):
            continue
        with database.atomic("IMMEDIATE") if is_sqlite() else database.atomic():
            _lock()
            if (current_version() or 0) >= migration.version:
                continue
            migration.apply(database.obj)
            SchemaVersion.create(version=migration.version, name=migration.name)
            done.append(f"applied migration {migration.version}: {migration.name}")
    return done


def require_current() -> None:
    """Fail with the fix when the database is older than this code."""
    from devupdate.errors import SettingsError

    version = current_version()
    if version is None or version < MIGRATIONS[-1].version:
        raise SettingsError(f"database schema is at version {version or 'none'}, this devupdate needs "
                            f"{MIGRATIONS[-1].version}: run 'devupdate db upgrade'")
