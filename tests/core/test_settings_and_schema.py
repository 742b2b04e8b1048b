"""Settings precedence and validation; schema creation and versioned migrations."""

from __future__ import annotations

import pytest

from devupdate import db, schema
from devupdate.errors import SettingsError
from devupdate.settings import Settings, parse_size


def test_defaults_then_file_then_environment(tmp_path):
    (tmp_path / "devupdate.toml").write_text('port = 9000\nworkers = 3\nquota_images = "1GiB"\n')
    settings = Settings.load({"DEVUPDATE_HOME": str(tmp_path), "DEVUPDATE_WORKERS": "5"})
    assert (settings.port, settings.workers, settings.quota_images) == (9000, 5, 1024**3)
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/devupdate.db"


@pytest.mark.parametrize("env, message", [
    ({"DEVUPDATE_WORKERS": "0"}, "DEVUPDATE_WORKERS='0': out of range"),
    ({"DEVUPDATE_THREADS": "0"}, "DEVUPDATE_THREADS='0': out of range"),
    ({"DEVUPDATE_EXTERNAL_HTTPS_ONLY": "sometimes"}, "expected true or false"),
    ({"DEVUPDATE_PORT": "http"}, "DEVUPDATE_PORT='http'"),
    ({"DEVUPDATE_QUOTA_IMAGES": "lots"}, "is not a size"),
    ({"DEVUPDATE_CATALOG_POLICY": "maybe"}, "expected off, warn or enforce"),
    ({"DEVUPDATE_PUBLIC_INTERNAL_URL": "ftp://x"}, "expected an http:// or https:// URL"),
    ({"DEVUPDATE_JSON_LOGS": "perhaps"}, "expected true or false"),
])
def test_bad_environment_values_are_refused_by_name(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.load({"DEVUPDATE_HOME": str(tmp_path), **env})


def test_bad_config_file_is_refused(tmp_path):
    (tmp_path / "devupdate.toml").write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load({"DEVUPDATE_HOME": str(tmp_path)})
    (tmp_path / "devupdate.toml").write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load({"DEVUPDATE_HOME": str(tmp_path)})


def test_sizes():
    assert [parse_size(s) for s in ("512000", "100MiB", "2GB", "1.5KiB")] == [512000, 100 * 1024**2, 2 * 10**9, 1536]


def test_bad_database_url(tmp_path):
    with pytest.raises(SettingsError, match="use sqlite:///PATH or postgresql://"):
        db.open_database("mysql://x/y")


def test_upgrade_creates_then_applies_later_migrations_once(database):
    assert schema.current_version() == schema.MIGRATIONS[-1].version
    assert schema.upgrade() == []

    def add_column(_db):
        import peewee
        from playhouse.migrate import SchemaMigrator, migrate

        migrate(SchemaMigrator.from_database(db.database.obj).add_column(
            "rule", "notes", peewee.TextField(null=True)))

    later = [*schema.MIGRATIONS, schema.Migration(schema.MIGRATIONS[-1].version + 1, "rule notes", add_column)]
    assert schema.upgrade(later) == [f"applied migration {later[-1].version}: rule notes"]
    assert schema.upgrade(later) == []
    assert "notes" in [c.name for c in db.database.get_columns("rule")]
    with pytest.raises(SettingsError, match="run 'devupdate db upgrade'"):
        schema.MIGRATIONS.append(schema.Migration(later[-1].version + 1, "future", add_column))
        try:
            schema.require_current()
        finally:
            schema.MIGRATIONS.pop()


def test_a_version_1_database_gets_the_object_sha1_index(database):
    """Migration 2 on a database created before it: the SHA-1 lookup WSUS content needs is indexed."""
    from devupdate import schema
    from devupdate.content.models import StoredObject

    table = StoredObject._meta.table_name
    database.execute_sql(f"DROP INDEX {table}_sha1")
    schema.SchemaVersion.delete().execute()  # as a database created before migration 2 was stamped
    schema.SchemaVersion.create(version=1, name=schema.MIGRATIONS[0].name)
    assert not any(index.columns == ["sha1"] for index in database.get_indexes(table))
    assert schema.upgrade()[0] == "applied migration 2: stored objects indexed by SHA-1"
    assert [index.columns for index in database.get_indexes(table) if index.columns == ["sha1"]] == [["sha1"]]


def test_rollout_times_created_as_real_are_widened_to_double(database):
    """Migration 23: a PostgreSQL database whose rollout times were created as REAL (four bytes: POSIX
    seconds to about two minutes) gets them in double precision; SQLite's REAL is one already."""
    from devupdate import schema
    from devupdate.rules.models import RolloutDevice, RolloutDownload

    columns = [(RolloutDevice._meta.table_name, c) for c in ("offered_at", "downloaded_at")] + [
        (RolloutDownload._meta.table_name, c) for c in ("first_at", "last_at")]
    if not db.is_sqlite():
        for table, column in columns:
            database.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE real')
    schema.SchemaVersion.delete().execute()  # as a database last upgraded before migration 23
    schema.SchemaVersion.create(version=22, name=schema.MIGRATIONS[21].name)
    assert schema.upgrade() == ["applied migration 23: staged rollouts: offer and download times in double "
                                "precision on PostgreSQL"]
    if db.is_sqlite():
        return
    found = {(table, column): kind for table, column, kind in database.execute_sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE column_name IN "
        "('offered_at', 'downloaded_at', 'first_at', 'last_at')").fetchall()}
    assert found == {key: "double precision" for key in columns}
