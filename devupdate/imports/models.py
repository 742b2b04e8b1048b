"""Import records and the journal that makes a crashed import clean up after itself."""

from __future__ import annotations

import peewee
from prometheus_client.core import CounterMetricFamily

from devupdate import metrics
from devupdate.content import registry
from devupdate.db import BaseModel, tuples, utcnow


class ImportRecord(BaseModel):
    """One import attempt, kept for the admin (successes, no-ops and refusals)."""

    id = peewee.AutoField()
    started_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(null=True)
    actor = peewee.CharField(max_length=200)
    file_name = peewee.CharField(max_length=500)
    size = peewee.BigIntegerField(default=0)
    sha256 = peewee.CharField(max_length=64, default="", index=True)
    outcome = peewee.CharField(max_length=20)  # imported | nothing-new | refused
    code = peewee.CharField(max_length=50, null=True)
    message = peewee.TextField(null=True)
    rules = peewee.TextField(default="[]")  # JSON list of {Id, Version, Created}
    findings = peewee.TextField(default="[]")  # JSON list of catalog findings


class ImportJournal(BaseModel):
    """Objects an unfinished import may have written; removed in the import's own transaction."""

    id = peewee.AutoField()
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    started_at = peewee.DateTimeField(default=utcnow)
    objects = peewee.TextField()  # JSON list of sha256 in the images area


# An import journals its objects before it renames them into the store and commits their rows.
registry.register_in_flight("imports", lambda: ImportJournal.select().exists())


def _metrics() -> list[CounterMetricFamily]:
    imports = CounterMetricFamily("devupdate_imports", "Cab imports by outcome (imported, nothing-new, "
                                  "refused), from the CLI and the API", labels=["outcome"])
    counts: dict[str, int] = dict(tuples(ImportRecord.select(ImportRecord.outcome, peewee.fn.COUNT(ImportRecord.id))
                                         .group_by(ImportRecord.outcome)))
    for outcome in ("imported", "nothing-new", "refused"):
        imports.add_metric([outcome], counts.pop(outcome, 0))
    for outcome, count in counts.items():
        imports.add_metric([outcome], count)
    return [imports]


metrics.register_state("imports", _metrics)
