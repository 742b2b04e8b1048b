"""The tables behind cookies (spec/wsus.md §4.3): this server's identity and its cookie keys.

Both live in the database, not on a node's disk, so every node of one installation seals and opens
the same cookies, and a key rotated on one node is rotated for all.

- ``ServerIdentity``: one row, the ServerId (a GUID) every cookie is bound to (associated data).
  Another installation has another one, so its cookies never open here.
- ``CookieKey``: a 4-byte key id (8 hex digits, unique per server) and its 32-byte secret. The
  newest key without ``retired`` seals; a retired key still opens cookies for one lifetime of their
  kind after ``retired``, then it is removed and its cookies get ``ServerChanged``.
"""

from __future__ import annotations

import peewee

from devupdate.db import BaseModel, utcnow


class ServerIdentity(BaseModel):
    id = peewee.IntegerField(primary_key=True)  # always 1
    server_id = peewee.CharField(max_length=36)
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wsus_server_identity"


class CookieKey(BaseModel):
    key_id = peewee.CharField(primary_key=True, max_length=8)  # 4 bytes, hex
    secret = peewee.CharField(max_length=64)  # 32 bytes, hex
    created = peewee.DateTimeField(default=utcnow)  # naive UTC
    retired = peewee.DateTimeField(null=True, index=True)

    class Meta:
        table_name = "wsus_cookie_key"


MODELS: list[type[BaseModel]] = [ServerIdentity, CookieKey]
