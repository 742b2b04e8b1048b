"""The admin audit trail table."""

from __future__ import annotations

import peewee

from devupdate.db import BaseModel, utcnow


class AuditEvent(BaseModel):
    """One admin action, with the state before and after (JSON), successful or refused."""

    id = peewee.AutoField()
    at = peewee.DateTimeField(default=utcnow, index=True)
    actor = peewee.CharField(max_length=200)
    action = peewee.CharField(max_length=50, index=True)
    target = peewee.CharField(max_length=300, index=True)
    outcome = peewee.CharField(max_length=20, default="ok")  # ok | refused
    before = peewee.TextField(null=True)
    after = peewee.TextField(null=True)
    detail = peewee.TextField(null=True)
