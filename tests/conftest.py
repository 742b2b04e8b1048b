"""Shared fixtures: an installation (data dir + database) per test, on SQLite or PostgreSQL.

``DEVUPDATE_TEST_DATABASE=postgresql://postgres@127.0.0.1:5432/test`` runs the suite on
PostgreSQL: a private database is created for the session and emptied between tests.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

PG_URL = os.environ.get("DEVUPDATE_TEST_DATABASE", "")


from helpers import tree  # noqa: E402
from helpers.installation import Installation, LiveServer  # noqa: E402
from helpers.tools import free_port, require_tool  # noqa: E402,F401 - re-exported for older imports

_TREE = pytest.StashKey["tree.State | None"]()


def pytest_sessionstart(session):
    # tools/screenshots.py writes into docs/screenshots/ on purpose
    session.config.stash[_TREE] = None if os.environ.get("DEVUPDATE_SCREENSHOTS_DIR") else tree.state(REPO)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a test wrote into the repository's tree (a temp folder is the place)."""
    changed = tree.written(REPO, session.config.stash.get(_TREE, None))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "tests wrote into the repository's tree (use tmp_path): " + ", ".join(changed[:10])
        if reporter is not None:
            reporter.write("\n" + message + "\n", red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def samples() -> Path:
    """The sample cabinets of shared/testdata/cab (real LZX, Quantum, corrupt and hostile cabs)."""
    from helpers.cabs import SAMPLE_CABS

    if not SAMPLE_CABS.is_dir():
        pytest.skip(f"shared test data not found at {SAMPLE_CABS} (clone shared/ beside the repository, "
                    "or set DEVUPDATE_SHARED_DIR)")
    return SAMPLE_CABS


@pytest.fixture(scope="session")
def pg_database_url():
    """A private PostgreSQL database for this test session, dropped at the end."""
    if not PG_URL:
        yield ""
        return
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    name = f"devupdate_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(PG_URL)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin.cursor().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,))
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def _empty_postgres(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    tables = [row[0] for row in cur.fetchall()]
    if tables:
        cur.execute("DROP TABLE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    conn.close()


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium through Playwright, one per test module; skips without either."""
    from admin import consolekit as kit

    sync_playwright = kit.require_browser()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=kit.CHROMIUM, headless=True, args=kit.CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def install(tmp_path, pg_database_url) -> Installation:
    if pg_database_url:
        _empty_postgres(pg_database_url)
    home = tmp_path / "home"
    home.mkdir()
    installation = Installation(home, pg_database_url)
    yield installation
    from devupdate import db

    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()


@pytest.fixture
def database(install):
    """Only the database, schema created, bound in this process (pure service tests)."""
    from devupdate import db, schema

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    schema.upgrade()
    return db.database


@pytest.fixture
def rt(install):
    """An opened runtime (database bound in this process) for service-level tests."""
    return install.runtime()


@pytest.fixture
def live_server(install):
    """Factory: ``live_server(workers=2, DEVUPDATE_X="…")`` → a started LiveServer, stopped at teardown."""
    servers: list[LiveServer] = []

    def start(workers: int = 2, args: tuple[str, ...] = (), **env: str) -> LiveServer:
        server = LiveServer(install, workers=workers, args=args, **env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
