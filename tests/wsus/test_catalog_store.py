"""The catalog model: RevisionIDs that never change or come back to another revision (C1), one
current revision (C2), IsLeaf kept incrementally (§6.3), products through bundles (C5), the change
sequence (§5.2), content ownership."""

from __future__ import annotations

import zlib

import peewee
import pytest
from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS, LEAF, SMALL, captured, category, software

from devupdate import db
from devupdate.content import registry
from devupdate.wsus.catalog import service, store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.catalog.models import CatalogFile, Revision, RevisionIdentity, Update, UpdateCategory

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def load(*texts: str) -> store.ImportCounts:
    return store.import_documents(parse_update(t.encode()) for t in texts)


def ids() -> dict[tuple[str, int], int]:
    return {(r.update_id, r.revision_number): r.id for r in Revision.select()}


def test_revision_ids_survive_restart_reimport_delete_and_restore(install, database):
    counts = load(software(A, 100), software(B, 100), software(A, 101))
    assert (counts.new, counts.updated, counts.unchanged) == (3, 0, 0)
    first = ids()
    assert sorted(first.values()) == [1, 2, 3]
    assert all(0 < value < 2**31 for value in first.values())

    database.close()  # a restart: the database opened again, nothing cached in the process
    db.open_database(install.settings().effective_database_url).connect()
    assert ids() == first

    again = load(software(A, 100), software(B, 100), software(A, 101))
    assert (again.new, again.updated, again.unchanged) == (0, 0, 3)
    assert ids() == first

    assert store.delete_update(A) == 2
    assert set(ids()) == {(B, 100)}
    load(software(C, 100))  # a new revision after the delete: a new id, never A's
    assert ids()[(C, 100)] == 4
    load(software(A, 101), software(A, 100))  # restored: the same ids as before
    assert ids()[(A, 100)] == first[(A, 100)] and ids()[(A, 101)] == first[(A, 101)]
    assert RevisionIdentity.select().count() == 4


def test_two_revisions_leave_exactly_one_current(database):
    load(software(A, 101, title="newer"))
    load(software(A, 100, title="older"))  # an older revision arriving later does not take over
    current = list(Revision.select().where(Revision.update_id == A, Revision.is_current))
    assert [r.revision_number for r in current] == [101]
    row = Update.get_by_id(A)
    assert (row.current_revision, row.title) == (current[0].id, "newer")
    load(software(A, 102, title="newest"))
    current = list(Revision.select().where(Revision.update_id == A, Revision.is_current))
    assert [r.revision_number for r in current] == [102]
    assert Update.get_by_id(A).title == "newest"
    assert [r["RevisionNumber"] for r in service.show_update(A)["Revisions"]] == [102, 101, 100]


def test_is_leaf_flips_when_a_prerequisite_arrives_and_back(database):
    load(software(A, 100))
    assert Update.get_by_id(A).is_leaf is True
    seq = Update.get_by_id(A).change_seq
    load(software(B, 100, prerequisites=(A,)))
    a = Update.get_by_id(A)
    assert a.is_leaf is False
    assert a.change_seq > seq  # cached clients get a ChangedUpdates entry
    assert Update.get_by_id(B).is_leaf is True
    load(software(B, 101))  # B's new current revision no longer names A
    assert Update.get_by_id(A).is_leaf is True
    load(software(C, 100, prerequisites=(A,)))
    assert Update.get_by_id(A).is_leaf is False
    store.delete_update(C)
    assert Update.get_by_id(A).is_leaf is True


def test_a_prerequisite_that_arrives_first_makes_the_later_update_non_leaf(database):
    load(software(B, 100, prerequisites=(A,)))
    load(software(A, 100))
    assert Update.get_by_id(A).is_leaf is False


def test_bundle_membership_does_not_make_non_leaf(database):
    load(software(A, 100), software(B, 100, bundles=((A, 100),)))
    assert Update.get_by_id(A).is_leaf is True


def test_real_catalog_products_and_classifications_through_the_bundle(database):
    counts = store.import_documents(parse_update(captured(u).read_bytes()) for u in (COMPANY, BUNDLE, LEAF, SMALL))
    assert counts.new == 4
    load(category(DEFENDER, "Microsoft Defender Antivirus", "Product", parent=COMPANY),
         category(DEFINITIONS, "Definition Updates", "UpdateClassification"))
    for update_id in (BUNDLE, LEAF, SMALL):  # the members take their bundle's categories
        shown = service.show_update(update_id)
        assert shown["Products"] == [{"UpdateID": DEFENDER, "Title": "Microsoft Defender Antivirus"}], update_id
        assert shown["Classifications"] == [{"UpdateID": DEFINITIONS, "Title": "Definition Updates"}]
    assert UpdateCategory.get(update_id=LEAF).via_bundle is True
    assert UpdateCategory.get(update_id=BUNDLE, category_id=DEFENDER).via_bundle is False
    listed = service.list_updates(product="microsoft defender antivirus", classification=DEFINITIONS)
    assert sorted(r["UpdateID"] for r in listed) == sorted([BUNDLE, LEAF, SMALL])
    # the company category is a prerequisite of the product: no longer a leaf
    assert Update.get_by_id(COMPANY).is_leaf is False


def test_document_stored_once_compressed_and_exact(database):
    text = captured(BUNDLE).read_text(encoding="utf-8")
    load(text)
    row = Revision.get(update_id=BUNDLE)
    assert zlib.decompress(bytes(row.document)).decode("utf-8") == text
    assert store.document_text(row.id) == text
    assert len(bytes(row.document)) < len(text.encode()) / 3


def test_every_change_is_stamped_with_one_rising_sequence(database):
    load(software(A, 100), software(B, 100))
    first = store.current_seq()
    assert {Update.get_by_id(A).change_seq, Update.get_by_id(B).change_seq} == {first}  # one batch, one value
    load(software(A, 100))  # unchanged: still a transaction, but nothing stamped with it
    assert Update.get_by_id(A).change_seq == first
    service.decline(A, actor="test")
    assert Update.get_by_id(A).change_seq == store.current_seq() > first
    assert Update.get_by_id(A).declined is True


def test_a_changed_document_under_the_same_identity_is_updated_in_place(database):
    load(software(A, 100, title="first"))
    rid = ids()[(A, 100)]
    counts = load(software(A, 100, title="second"))
    assert (counts.new, counts.updated, counts.unchanged) == (0, 1, 0)
    assert ids()[(A, 100)] == rid and Update.get_by_id(A).title == "second"


def test_catalog_files_are_content_owners(database):
    load(captured(LEAF).read_text(encoding="utf-8"))
    assert "wsus catalog files" in registry.owners()
    query = registry._references["wsus catalog files"]
    assert list(query().tuples()) == []  # not present locally: nothing to keep
    CatalogFile.update(present=True).execute()
    sha256 = CatalogFile.get().sha256
    assert [row[0] for row in query().tuples()] == [sha256]


def test_a_failing_batch_writes_nothing(database, monkeypatch):
    def failing(update_ids):  # the last step of a batch, after every row is written
        raise peewee.IntegrityError("injected")

    seq = store.current_seq()  # a new database's seeded rows (the built-in target groups) took values
    monkeypatch.setattr(store, "_refresh_categories", failing)
    with pytest.raises(peewee.IntegrityError):
        load(software(A, 100), software(B, 100))
    assert Revision.select().count() == 0 and Update.select().count() == 0
    assert RevisionIdentity.select().count() == 0 and store.current_seq() == seq


def test_a_deleted_update_is_restored_in_the_transaction_of_its_document(database, monkeypatch):
    load(software(A, 100), software(B, 100))
    assert store.set_deleted(A, True)
    seq = store.current_seq()

    def failing(update_ids):
        raise peewee.IntegrityError("injected")

    monkeypatch.setattr(store, "_refresh_categories", failing)
    with pytest.raises(peewee.IntegrityError):
        load(software(A, 100))
    assert Update.get_by_id(A).deleted is True and store.current_seq() == seq  # nothing of it committed
    monkeypatch.undo()
    counts = load(software(A, 100), software(B, 100))
    assert (counts.unchanged, counts.restored) == (2, [A])
    row = Update.get_by_id(A)
    assert row.deleted is False and row.change_seq == store.current_seq() == seq + 1  # one transaction, one value
    assert Update.get_by_id(B).change_seq < seq
