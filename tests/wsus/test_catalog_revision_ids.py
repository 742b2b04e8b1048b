"""RevisionIDs survive restart, re-import, delete and restore (C1): ``wsus updates delete`` hides an
update and keeps its revisions, ``restore`` and a new import give the same RevisionIDs back, and a
revision seen for the first time gets an id no other revision ever had. Every step is a new
``devupdate`` process (a restart), reading what the previous one wrote."""

from __future__ import annotations

import json

from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS, LEAF, SMALL, docs_dir, seed_catalog, software
from catalogkit import SYNTHETIC_A as A
from catalogkit import SYNTHETIC_B as B

seed = seed_catalog


def revision_ids(install) -> dict[str, list[int]]:
    """Every UpdateID's RevisionIDs (highest RevisionNumber first), read by a new process."""
    found = {}
    for update_id in (COMPANY, DEFENDER, DEFINITIONS, BUNDLE, LEAF, SMALL, A, B):
        shown = json.loads(install.cli("wsus", "updates", "show", update_id, "--json").stdout)
        found[update_id] = [r["RevisionID"] for r in shown["Revisions"]]
    return found


def listed(install, *args: str) -> list[str]:
    return [row["UpdateID"] for row in json.loads(install.cli("wsus", "updates", "list", "--json", *args).stdout)]


def test_revision_ids_survive_restart_reimport_delete_and_restore(install, tmp_path):
    extra = seed(install, tmp_path)
    ids = revision_ids(install)
    assert sorted(i for rids in ids.values() for i in rids) == list(range(1, 10))  # 9 revisions, ids 1–9
    assert len(ids[A]) == 2
    assert listed(install) == [B, A, SMALL, BUNDLE, LEAF]

    # delete: hidden from every listing but --state deleted; shown as deleted; the ids are kept
    deleted = install.cli("wsus", "updates", "delete", A.upper())
    assert deleted.stdout == f"{A}: deleted (RevisionIDs {ids[A][0]}, {ids[A][1]})\n"
    again = json.loads(install.cli("wsus", "updates", "delete", A, "--json").stdout)
    assert again == {"UpdateID": A, "Deleted": True, "Changed": False, "RevisionIDs": ids[A]}
    assert listed(install) == [B, SMALL, BUNDLE, LEAF]
    assert listed(install, "--state", "published") == [B, SMALL, BUNDLE, LEAF]
    assert listed(install, "--product", DEFENDER) == [SMALL, BUNDLE, LEAF]
    assert listed(install, "--state", "deleted") == [A]
    shown = json.loads(install.cli("wsus", "updates", "show", A, "--json").stdout)
    assert (shown["State"], shown["Deleted"], shown["RevisionID"]) == ("deleted", True, ids[A][0])
    assert revision_ids(install) == ids

    # restore: back in the listings with the same ids
    restored = json.loads(install.cli("wsus", "updates", "restore", A, "--json").stdout)
    assert restored == {"UpdateID": A, "Deleted": False, "Changed": True, "RevisionIDs": ids[A]}
    assert install.cli("wsus", "updates", "restore", A).stdout == (
        f"{A}: restored (already) (RevisionIDs {ids[A][0]}, {ids[A][1]})\n")
    assert listed(install) == [B, A, SMALL, BUNDLE, LEAF]
    assert listed(install, "--state", "deleted") == []
    assert revision_ids(install) == ids

    # re-import of deleted updates: unchanged revisions, the updates are back with the same ids
    install.cli("wsus", "updates", "delete", A)
    install.cli("wsus", "updates", "delete", BUNDLE)
    summary = json.loads(install.cli("wsus", "import", str(docs_dir()), str(extra), "--json").stdout)
    assert (summary["new"], summary["updated"], summary["unchanged"]) == (0, 0, 9)
    assert listed(install, "--state", "deleted") == []
    assert listed(install) == [B, A, SMALL, BUNDLE, LEAF]
    assert revision_ids(install) == ids

    # a revision never seen before gets a new id, above every id ever handed out, while a deleted
    # update's kept ones stay its own; importing it restores its update
    install.cli("wsus", "updates", "delete", A)
    newer = tmp_path / "a-102.xml"
    newer.write_text(software(A, 102, title="Synthetic A, third revision", categories=(DEFENDER,)))
    assert json.loads(install.cli("wsus", "import", str(newer), "--json").stdout)["new"] == 1
    after = revision_ids(install)
    assert after[A] == [10, *ids[A]]
    assert {k: v for k, v in after.items() if k != A} == {k: v for k, v in ids.items() if k != A}
    shown = json.loads(install.cli("wsus", "updates", "show", A, "--json").stdout)
    assert (shown["State"], shown["RevisionID"], shown["Title"]) == ("published", 10,
                                                                     "Synthetic A, third revision")


def test_delete_and_restore_refusals(install, tmp_path):
    seed(install, tmp_path)
    for command in ("delete", "restore"):
        bad = install.cli("wsus", "updates", command, "nope", check=False)
        assert (bad.returncode, bad.stdout, bad.stderr) == (
            1, "", "devupdate: error: UpdateID 'nope' is not a GUID (e.g. 56309036-4c77-4dd9-951a-99ee9c246a94)\n")
        missing = install.cli("wsus", "updates", command, "cccccccc-0000-4000-8000-000000000003", check=False)
        assert (missing.returncode, missing.stderr) == (
            1, "devupdate: error: no update cccccccc-0000-4000-8000-000000000003 in the catalog "
               "(see 'devupdate wsus updates list --state deleted')\n")


def test_a_version_4_database_gets_the_deleted_flag(database):
    """Migration 5 on a catalog created before it: every update not deleted."""
    from devupdate import schema
    from devupdate.wsus.catalog.models import Update

    table = Update._meta.table_name
    database.execute_sql(f"ALTER TABLE {table} DROP COLUMN deleted")
    schema.SchemaVersion.delete().execute()
    schema.SchemaVersion.create(version=4, name=schema.MIGRATIONS[3].name)
    assert schema.upgrade() == [f"applied migration {migration.version}: {migration.name}"
                                for migration in schema.MIGRATIONS[4:]]
    assert "deleted" in {column.name for column in database.get_columns(table)}
    assert schema.upgrade() == []
