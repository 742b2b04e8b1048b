"""Whether this server is a replica of an upstream (D2): the one fact about the downstream sync that
the features below it need, so they refuse a local change without importing the sync.

The sync's state table (:class:`devupdate.wsus.downstream.models.UpstreamState`, named by
:data:`UPSTREAM_TABLE`) records each upstream's mode of the last run; one in ``replica`` mode makes
approvals, rule states and phone packages follow that upstream.
"""

from __future__ import annotations

from devupdate import db
from devupdate.errors import Conflict

UPSTREAM_TABLE = "wsus_dss_upstream"
REPLICA = "replica"


def replica_upstream() -> str | None:
    """The upstream whose approvals and rule states this server follows (its last run was in replica
    mode), if any: local approvals and rule changes are refused then."""
    param = db.database.param
    row = db.database.execute_sql(f"SELECT url FROM {UPSTREAM_TABLE} WHERE mode = {param} ORDER BY url LIMIT 1",
                                  (REPLICA,)).fetchone()
    return None if row is None else str(row[0])


def refuse_if_replica(what: str) -> None:
    """One clear line for a local change a replica must take from its upstream."""
    upstream = replica_upstream()
    if upstream is not None:
        raise Conflict(f"this server is a replica of {upstream}: {what} follow the upstream; change them there "
                       "(or sync with --mode autonomous to decide here)", code="replica")
