"""The catalog's tables ([wsus] §1a C1–C9, §5.2, §6.3).

A revision's RevisionID is allocated once per (UpdateID, RevisionNumber) in ``RevisionIdentity``,
whose rows are never deleted: a deleted revision that comes back gets its old RevisionID, and no
other revision ever gets it (ids are not ``max(live)+1``). Every write takes the next value of
the one global ``change_seq`` (``ChangeSequence``) in its transaction and stamps the rows it changed.
"""

from __future__ import annotations

import peewee

from devupdate.content import names, registry
from devupdate.db import BaseModel, tuples, utcnow


class ChangeSequence(BaseModel):
    """One row: the last ``change_seq`` handed out (anchors read it, §5.2)."""

    id = peewee.IntegerField(primary_key=True)
    value = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "wsus_change_seq"


class RevisionIdentity(BaseModel):
    """The RevisionID of every (UpdateID, RevisionNumber) ever stored; rows are never deleted."""

    id = peewee.AutoField()
    update_id = peewee.CharField(max_length=36)
    revision_number = peewee.IntegerField()

    class Meta:
        table_name = "wsus_revision_identity"
        indexes = ((("update_id", "revision_number"), True),)


class Update(BaseModel):
    """One UpdateID: what follows its current revision, plus the admin's declined and deleted flags.
    A deleted update is hidden from the catalog; its revisions stay, so restoring it (or importing
    it again) gives back the same RevisionIDs."""

    update_id = peewee.CharField(primary_key=True, max_length=36)
    current_revision = peewee.IntegerField(index=True)  # RevisionID of the highest RevisionNumber (C2)
    update_type = peewee.CharField(max_length=16, index=True)
    title = peewee.TextField(default="")
    kb_article = peewee.CharField(max_length=32, null=True, index=True)
    publication_state = peewee.CharField(max_length=16, default="Published")
    category_type = peewee.CharField(max_length=32, null=True)
    declined = peewee.BooleanField(default=False)
    deleted = peewee.BooleanField(default=False)
    is_leaf = peewee.BooleanField(default=True)
    change_seq = peewee.BigIntegerField(index=True)
    #: the current revision, where a query joins it in as ``attr="revision"`` (not a column)
    revision: Revision

    class Meta:
        table_name = "wsus_update"


class Revision(BaseModel):
    """One stored revision: the document (zlib, character-exact) and its fragments, derived once."""

    id = peewee.IntegerField(primary_key=True)  # the RevisionID (RevisionIdentity.id)
    update_id = peewee.CharField(max_length=36)
    revision_number = peewee.IntegerField()
    is_current = peewee.BooleanField(default=True, index=True)
    update_type = peewee.CharField(max_length=16)
    publication_state = peewee.CharField(max_length=16)
    creation_date = peewee.CharField(max_length=40, null=True)
    default_language = peewee.CharField(max_length=16)
    title = peewee.TextField(default="")
    kb_article = peewee.CharField(max_length=32, null=True)
    category_type = peewee.CharField(max_length=32, null=True)
    document = peewee.BlobField()
    document_sha256 = peewee.CharField(max_length=64)
    core = peewee.TextField()
    extended = peewee.TextField()
    imported_at = peewee.DateTimeField(default=utcnow)
    change_seq = peewee.BigIntegerField(index=True)

    class Meta:
        table_name = "wsus_revision"
        indexes = ((("update_id", "revision_number"), True),)


class LocalizedFragment(BaseModel):
    revision = peewee.ForeignKeyField(Revision, on_delete="CASCADE", column_name="revision_id")
    language = peewee.CharField(max_length=16)
    title = peewee.TextField()
    fragment = peewee.TextField()

    class Meta:
        table_name = "wsus_localized"
        indexes = ((("revision", "language"), True),)


class EulaFragment(BaseModel):
    revision = peewee.ForeignKeyField(Revision, on_delete="CASCADE", column_name="revision_id")
    language = peewee.CharField(max_length=16)
    fragment = peewee.TextField()

    class Meta:
        table_name = "wsus_eula"
        indexes = ((("revision", "language"), False),)


class CatalogFile(BaseModel):
    """A file of a revision (C4); ``present`` once its content is in the filestore."""

    id = peewee.AutoField()
    revision = peewee.ForeignKeyField(Revision, on_delete="CASCADE", column_name="revision_id")
    sha1 = peewee.CharField(max_length=40, index=True)
    sha256 = peewee.CharField(max_length=64, null=True, index=True)
    size = peewee.BigIntegerField()
    file_name = peewee.CharField(max_length=512)
    patching_type = peewee.CharField(max_length=32, null=True)
    modified = peewee.CharField(max_length=40, null=True)
    mu_url = peewee.TextField(null=True)
    present = peewee.BooleanField(default=False)

    class Meta:
        table_name = "wsus_file"


class Prerequisite(BaseModel):
    """One literal of a CNF clause (C6): ``revision`` needs any ``update_id`` of its ``clause``."""

    id = peewee.AutoField()
    revision = peewee.ForeignKeyField(Revision, on_delete="CASCADE", column_name="revision_id")
    clause = peewee.IntegerField()
    update_id = peewee.CharField(max_length=36, index=True)
    is_category = peewee.BooleanField(default=False)

    class Meta:
        table_name = "wsus_prerequisite"
        indexes = ((("revision", "clause", "update_id"), True),)


class BundledUpdate(BaseModel):
    """A bundle member (C7): exact (UpdateID, RevisionNumber)."""

    id = peewee.AutoField()
    revision = peewee.ForeignKeyField(Revision, on_delete="CASCADE", column_name="revision_id")
    clause = peewee.IntegerField()
    update_id = peewee.CharField(max_length=36, index=True)
    revision_number = peewee.IntegerField()

    class Meta:
        table_name = "wsus_bundled"
        indexes = ((("revision", "clause", "update_id"), True),)


class Supersedence(BaseModel):
    """``revision`` supersedes the UpdateID ``update_id`` (C8)."""

    id = peewee.AutoField()
    revision = peewee.ForeignKeyField(Revision, on_delete="CASCADE", column_name="revision_id")
    update_id = peewee.CharField(max_length=36, index=True)

    class Meta:
        table_name = "wsus_supersedence"
        indexes = ((("revision", "update_id"), True),)


class Category(BaseModel):
    """A category's current revision, indexed by type (Company, ProductFamily, Product,
    UpdateClassification)."""

    update_id = peewee.CharField(primary_key=True, max_length=36)
    category_type = peewee.CharField(max_length=32, index=True)
    title = peewee.TextField(default="")
    change_seq = peewee.BigIntegerField(index=True)

    class Meta:
        table_name = "wsus_category"


class UpdateCategory(BaseModel):
    """An update's categories (C5): from its current revision's ``IsCategory`` clauses, or — for a
    bundle member — from the current revisions bundling it (``via_bundle``)."""

    update_id = peewee.CharField(max_length=36)
    category_id = peewee.CharField(max_length=36)
    via_bundle = peewee.BooleanField(default=False)

    class Meta:
        table_name = "wsus_update_category"
        primary_key = peewee.CompositeKey("update_id", "category_id")
        indexes = ((("category_id", "update_id"), False),)


class SelectedProduct(BaseModel):
    """A product (or product family, or company) whose updates are synced and offered."""

    category_id = peewee.CharField(primary_key=True, max_length=36)
    selected_at = peewee.DateTimeField(default=utcnow)
    change_seq = peewee.BigIntegerField(index=True)

    class Meta:
        table_name = "wsus_selected_product"


MODELS: list[type[BaseModel]] = [ChangeSequence, RevisionIdentity, Update, Revision, LocalizedFragment, EulaFragment,
                                 CatalogFile, Prerequisite, BundledUpdate, Supersedence, Category, UpdateCategory,
                                 SelectedProduct]

registry.register_references(
    "wsus catalog files",
    lambda: CatalogFile.select(CatalogFile.sha256).where(CatalogFile.present & CatalogFile.sha256.is_null(False)))
# ... and name them for /Content: a present file is reachable by SHA-1 under its FileName's extension.
names.register_names(
    "wsus catalog files",
    lambda sha1: tuples(CatalogFile.select(CatalogFile.sha256, CatalogFile.file_name)
                        .where((CatalogFile.sha1 == sha1) & CatalogFile.present & CatalogFile.sha256.is_null(False))))
