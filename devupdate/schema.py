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
from devupdate.db import BaseModel, database, is_sqlite, utcnow
from devupdate.devices.inventory import Device
from devupdate.devices.users import ExternalUser
from devupdate.imports.models import ImportJournal, ImportRecord
from devupdate.rules.models import Generation, Rule, RuleVersion, TestDevice, VersionFile


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DateTimeField(default=utcnow)


MODELS: list[type[BaseModel]] = [Rule, Generation, StoredObject, RuleVersion, VersionFile, TestDevice, ConfigSetting,
                                 AuditEvent, ImportRecord, ImportJournal, Device, ApiToken,
                                 AdminUser, SignInFailure, ExternalUser]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[peewee.Database], None]


def _baseline(db: peewee.Database) -> None:
    db.create_tables(MODELS)


def _index_object_sha1(db: peewee.Database) -> None:
    from playhouse.migrate import SchemaMigrator, migrate

    migrate(SchemaMigrator.from_database(db).add_index(StoredObject._meta.table_name, ("sha1",), False))


MIGRATIONS: list[Migration] = [
    Migration(1, "baseline: rules, images, test devices, configuration, audit trail, imports", _baseline),
    Migration(2, "stored objects indexed by SHA-1", _index_object_sha1),
    Migration(3, "external users in the database", lambda db: db.create_tables([ExternalUser])),
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
