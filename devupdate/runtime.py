"""Opening an installation: settings → database + filestore, shared by CLI, server and tests."""

from __future__ import annotations

from dataclasses import dataclass

from devupdate import db, schema
from devupdate.settings import Settings
from filestore import AreaConfig, FileStore


@dataclass
class Runtime:
    settings: Settings
    store: FileStore


def open_store(settings: Settings) -> FileStore:
    areas = {name: AreaConfig(quota_bytes=quota, warn_fraction=settings.quota_warn_fraction)
             for name, quota in settings.quotas.items()}
    return FileStore(settings.filestore_root, areas)


def open_runtime(settings: Settings, *, upgrade: bool = False) -> Runtime:
    """Connect the database and the filestore; finish any import a crashed process left behind;
    move a users file of an earlier version into the database.

    ``upgrade`` migrates the schema (``serve`` and ``db upgrade``); otherwise an empty database
    is created and an outdated one is an error that names ``devupdate db upgrade``.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    database = db.open_database(settings.effective_database_url)
    database.connect(reuse_if_open=True)
    if upgrade or schema.current_version() is None:  # a fresh data directory needs no setup step
        schema.upgrade()
    else:
        schema.require_current()
    store = open_store(settings)
    from devupdate.imports.service import recover_crashed_imports

    recover_crashed_imports(store)
    from devupdate.devices.users import import_user_file

    import_user_file(settings.home / "users")
    return Runtime(settings=settings, store=store)
