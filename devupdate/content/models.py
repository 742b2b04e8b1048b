"""The object table: one row per stored object of the images area."""

from __future__ import annotations

import peewee

from devupdate.db import BaseModel, utcnow


class StoredObject(BaseModel):
    """A stored object in the filestore's ``images`` area, named by its SHA-256 (SHA-1 indexed too:
    WSUS clients ask for content by SHA-1). Owners point at it; it knows none of them."""

    sha256 = peewee.CharField(primary_key=True, max_length=64)
    sha1 = peewee.CharField(max_length=40, index=True)
    size = peewee.BigIntegerField()
    created_at = peewee.DateTimeField(default=utcnow)

    @classmethod
    def exists(cls, sha256: str) -> bool:
        return cls.select().where(cls.sha256 == sha256).exists()

    class Meta:
        table_name = "blob"  # its name before it had a home of its own
