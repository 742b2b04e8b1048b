"""The restore drill of docs/operations.md, on SQLite and on PostgreSQL (the suite's own private
database): back up while serving, wipe, restore, ``filestore verify``, and phones checking over real
HTTP get the same answers and the same bytes. Damaged backups and non-empty targets are refused
before anything changes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers.cabs import make_package, make_update

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

V0, V1, V2 = "4.0.7577.4363", "4.0.7577.4372", "4.0.7577.4380"
FAMILY = ("UCPhone", "Polycom", "CX600", "A", "ENU")
PUBLIC = "http://updates.test"
LAB_MAC = "00-04-F2-AA-BB-CC"


def _run(install, *args: str, input: str | None = None) -> str:
    """The CLI in-process (the setup steps; backup, restore and verify run as real processes)."""
    from click.testing import CliRunner

    from devupdate import db
    from devupdate.cli import main

    result = CliRunner().invoke(main, list(args), env=install.environ(), input=input, catch_exceptions=False)
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    assert result.exit_code == 0, result.output
    return result.stdout


def _cab(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return make_package(directory, [make_update("Polycom", "CX600", version)], image_sizes=20_000)


def _wipe(install) -> None:
    """What a lost server looks like: no data directory, and an empty database."""
    if install.database_url:
        import psycopg2

        conn = psycopg2.connect(install.database_url)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            cur.execute("DROP TABLE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        conn.close()
    shutil.rmtree(install.home)
    install.home.mkdir()


def _phones() -> list[phonesim.Phone]:
    fleet = phonesim.make_fleet(2, families=[FAMILY], installed={"CX600_A_ENU_CPE.nbt": V0}, seed=11)
    fleet[1].mac = LAB_MAC  # a test device: offered the pending version
    return fleet


def _answers(server) -> tuple[list[bytes], dict[str, bytes]]:
    client = phonesim.Client(server.url, url_map={PUBLIC: server.url})
    bodies, downloads = [], {}
    for phone in _phones():
        result = client.check(phone)
        assert result.status == 200 and result.files, result
        bodies.append(result.body)
        for offered in result.files:
            downloads[offered.url] = client.download(offered)
    return bodies, downloads


def _state(install) -> dict[str, object]:
    shown = {}
    for command in (("rules", "list"), ("test-devices", "list"), ("config", "show"), ("admins", "list")):
        shown[" ".join(command)] = json.loads(_run(install, *command, "--json"))
    return shown


def _need_pg_tools(install) -> None:
    if install.database_url and not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("pg_dump/pg_restore not installed (Debian: postgresql-client)")


def test_back_up_while_serving_wipe_restore_and_phones_get_the_same_answers(install, live_server, tmp_path):
    _need_pg_tools(install)
    _run(install, "import", str(_cab(tmp_path / "v1", V1)))
    rule = json.loads(_run(install, "rules", "list", "--json"))[0]["Id"]
    _run(install, "rules", "approve", rule)
    _run(install, "import", str(_cab(tmp_path / "v2", V2)))  # pending: the lab phone gets it
    _run(install, "test-devices", "add", "lab-phone", "--mac", LAB_MAC)
    _run(install, "config", "set", "MaxLogFileSize", "2048000", "--site", "Berlin")
    _run(install, "admins", "add", "alice", "--role", "admin", "--password-stdin", input="correct horse battery\n")
    _run(install, "cert", "create")
    (install.home / "devupdate.toml").write_text('service_name = "pool1.contoso.test"\n')
    before = _state(install)

    server = live_server(workers=1, DEVUPDATE_PUBLIC_INTERNAL_URL=PUBLIC)
    bodies, downloads = _answers(server)
    assert len(downloads) == 4  # image and catalog of V1 (the fleet) and of V2 (the lab phone)
    backup = tmp_path / "backups" / "nightly"
    created = install.cli("backup", "create", str(backup))  # online: the server keeps serving
    assert created.stdout.startswith(f"backed up into {backup}: ")
    assert "4 stored object(s)" in created.stdout
    server.stop()
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["Database"] == ("postgresql" if install.database_url else "sqlite")
    assert {"home/devupdate.toml", "home/tls/server.crt", "home/tls/server.key", "home/tls/ca.crt"} <= set(
        manifest["Files"])
    assert not [name for name in manifest["Files"] if name.startswith("home/run/")]
    assert not list(backup.parent.glob("*.partial"))

    _wipe(install)
    restored = install.cli("backup", "restore", str(backup))
    assert restored.stdout.startswith(f"restored from {backup}: ") and not restored.stderr
    verify = install.cli("filestore", "verify")
    assert verify.stdout.strip() == "all objects match their hashes"
    assert (install.home / "tls" / "server.key").read_bytes() and (install.home / "devupdate.toml").is_file()
    assert _state(install) == before

    again = live_server(workers=1, DEVUPDATE_PUBLIC_INTERNAL_URL=PUBLIC)
    bodies_after, downloads_after = _answers(again)
    assert bodies_after == bodies
    assert downloads_after == downloads

    refused = install.cli("backup", "restore", str(backup), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"devupdate: error: the installation at {install.home} already has data: "
                                      "restore into an empty data directory and database, or pass --replace "
                                      "(stop every server first)")


def test_a_damaged_backup_is_refused_before_anything_changes(install, tmp_path):
    _need_pg_tools(install)
    _run(install, "import", str(_cab(tmp_path / "v1", V1)))
    backup = tmp_path / "b"
    install.cli("backup", "create", str(backup))
    again = install.cli("backup", "create", str(backup), check=False)
    assert again.returncode == 1 and "already exists: name a new directory" in again.stderr

    image = next(name for name in json.loads((backup / "manifest.json").read_text())["Files"]
                 if name.startswith("filestore/images/"))
    (backup / image).write_bytes(b"not the image")
    _wipe(install)
    refused = install.cli("backup", "restore", str(backup), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"devupdate: error: backup file {image} does not match the manifest (size or "
                                      "SHA-256): the backup is damaged; restore another one")
    assert not any(install.home.iterdir())  # nothing written
    elsewhere = install.cli("backup", "restore", str(tmp_path), check=False)
    assert "is not a devupdate backup (no manifest.json)" in elsewhere.stderr


def test_restore_replace_puts_an_installation_back_as_it_was(install, tmp_path):
    """``--replace`` over an installation that moved on (stopped): the rules, test devices and files of
    the backup, and nothing of what came after."""
    _need_pg_tools(install)
    _run(install, "import", str(_cab(tmp_path / "v1", V1)))
    rule = json.loads(_run(install, "rules", "list", "--json"))[0]["Id"]
    backup = tmp_path / "before-approval"
    install.cli("backup", "create", str(backup))
    before = _state(install)
    _run(install, "rules", "approve", rule)
    _run(install, "import", str(_cab(tmp_path / "v2", V2)))
    _run(install, "test-devices", "add", "later", "--mac", LAB_MAC)
    assert _state(install) != before

    restored = install.cli("backup", "restore", "--replace", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert _state(install) == before
    assert install.cli("filestore", "verify").stdout.strip() == "all objects match their hashes"
    objects = [p for p in (install.home / "filestore" / "images").rglob("*") if p.is_file()]
    assert len(objects) == json.loads((backup / "manifest.json").read_text())["Objects"]  # V2's files are gone

    if install.database_url:  # over a database of another schema version: refused, nothing changed
        from devupdate import db, schema

        db.open_database(install.database_url).connect(reuse_if_open=True)
        schema.SchemaVersion.create(version=schema.current_version() + 1, name="a later release")
        db.database.close()
        refused = install.cli("backup", "restore", "--replace", str(backup), check=False)
        assert refused.returncode == 1
        assert "--replace restores over the same version only; restore into an empty database" in refused.stderr


@pytest.mark.parametrize(("name", "entry", "reason"), [
    ("home/../outside", None, "backup manifest names 'home/../outside': not a file under filestore/ or home/ this "
                              "restore may write"),
    ("filestore/../devupdate.toml", None, "backup manifest names 'filestore/../devupdate.toml': not a file under "
                                          "filestore/ or home/ this restore may write"),
    ("home/devupdate.db", None, "backup manifest names 'home/devupdate.db': not a file under filestore/ or home/ "
                                "this restore may write"),
    ("/etc/passwd", None, "backup manifest names '/etc/passwd': not a file under filestore/ or home/ this restore "
                          "may write"),
    ("home/notes.txt", "a string", "backup manifest entry 'home/notes.txt' has no size and SHA-256"),
    ("home/notes.txt", {"size": True, "sha256": "00"}, "backup manifest entry 'home/notes.txt' has no size and "
                                                       "SHA-256"),
], ids=["home-dotdot", "filestore-dotdot", "the-database", "absolute", "entry-not-an-object", "size-not-a-number"])
def test_a_hand_made_manifest_is_refused_before_anything_is_written(install, tmp_path, name, entry, reason):
    """A manifest is checked for shape before any file is compared or copied: a name outside the two
    trees the restore writes (``..``, absolute, the database's own file) or an entry without size and
    hash is refused with its reason, and the data directory's parent gets nothing."""
    _need_pg_tools(install)
    _run(install, "import", str(_cab(tmp_path / "v1", V1)))
    backup = tmp_path / "b"
    install.cli("backup", "create", str(backup))
    manifest = json.loads((backup / "manifest.json").read_text())
    (backup / "outside").write_text("not for the parent directory")
    (backup / "notes.txt").write_text("x")
    manifest["Files"][name] = entry if entry is not None else {"size": 28, "sha256": "0" * 64}
    (backup / "manifest.json").write_text(json.dumps(manifest))
    _wipe(install)
    refused = install.cli("backup", "restore", str(backup), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"devupdate: error: {reason}"
    assert not any(install.home.iterdir()) and not (install.home.parent / "outside").exists()


def test_a_restore_whose_database_load_fails_leaves_the_filestore_as_it_was(install, tmp_path):
    """``--replace`` stages the backup's objects beside the filestore and swaps them in only after the
    database is loaded: a dump that cannot be loaded changes no file of the installation."""
    _need_pg_tools(install)
    _run(install, "import", str(_cab(tmp_path / "v1", V1)))
    backup = tmp_path / "b"
    install.cli("backup", "create", str(backup))
    _run(install, "import", str(_cab(tmp_path / "v2", V2)))
    before = sorted(p.relative_to(install.home) for p in (install.home / "filestore").rglob("*") if p.is_file())
    manifest = json.loads((backup / "manifest.json").read_text())
    dump = "database.pgdump" if install.database_url else "database.sqlite"
    (backup / dump).write_bytes(b"not a database dump")  # and its manifest entry to match: it passes the check
    import hashlib

    manifest["Files"][dump] = {"size": 19, "sha256": hashlib.sha256(b"not a database dump").hexdigest()}
    (backup / "manifest.json").write_text(json.dumps(manifest))
    failed = install.cli("backup", "restore", "--replace", str(backup), check=False)
    assert failed.returncode != 0
    after = sorted(p.relative_to(install.home) for p in (install.home / "filestore").rglob("*") if p.is_file())
    assert after == before
    assert not (install.home / "filestore.restoring").exists()
    assert install.cli("filestore", "verify").stdout.strip() == "all objects match their hashes"


def test_a_restore_that_runs_out_of_disk_mid_copy_leaves_the_installation_as_it_was(install, tmp_path, monkeypatch):
    """The disk fills while the objects are copied (``--replace``, in-process): the live filestore and
    the database are untouched, and the staged copy is removed."""
    _need_pg_tools(install)
    from devupdate.backup import service

    _run(install, "import", str(_cab(tmp_path / "v1", V1)))
    backup = tmp_path / "b"
    install.cli("backup", "create", str(backup))
    _run(install, "import", str(_cab(tmp_path / "v2", V2)))
    before = {p.relative_to(install.home): p.read_bytes() for p in (install.home / "filestore").rglob("*")
              if p.is_file()}
    rules = json.loads(_run(install, "rules", "list", "--json"))
    copied = []
    real_copy = service._copy

    def copy(source: Path, target: Path):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(target)
        return real_copy(source, target)

    monkeypatch.setattr(service, "_copy", copy)
    with pytest.raises(OSError, match="No space left on device"):
        service.restore(install.settings(), backup, replace=True)
    after = {p.relative_to(install.home): p.read_bytes() for p in (install.home / "filestore").rglob("*")
             if p.is_file()}
    assert after == before
    assert not (install.home / "filestore.restoring").exists()
    assert json.loads(_run(install, "rules", "list", "--json")) == rules  # the database was not loaded
