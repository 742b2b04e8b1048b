"""The needed-update list and the fault-in run (D8, after [MDM]).

An MDM (or an admin) lists the UpdateIDs its devices need, optionally at a RevisionNumber. Each
fault-in run fetches, after the categories, every listed update that is absent or present only
at a lower revision, plus the absent prerequisites and bundle members of each (recursively), keeps
the highest revision per UpdateID, and removes the satisfied entries. An entry without a
RevisionNumber is resolved from a ``GetRevisionIdList(GetConfig=false)`` identity list. Definition
Updates are not kept on the list; an entry whose fetch fails keeps its place and is marked
``unavailable`` after 5 failed runs. No content is fetched in this mode.
"""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING, Any

from devupdate.audit.trail import record
from devupdate.db import tuples, utcnow, write_transaction
from devupdate.errors import DevupdateError, NotFound
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import UpdateDocument, parse_update
from devupdate.wsus.catalog.models import Revision, UpdateCategory
from devupdate.wsus.downstream.apply import names
from devupdate.wsus.downstream.models import HeldRevision, NeededUpdate

if TYPE_CHECKING:
    from devupdate.wsus.downstream.run import Run

DEFINITION_UPDATES = "e0789628-ce08-4437-be74-2495b842f43b"
UNAVAILABLE_AFTER = 5
MAX_SOURCE = 200


_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?\Z")


def _guid(value: str) -> str:
    match = _GUID.match(str(value).strip())
    if match:
        return match.group(1).lower()
    raise DevupdateError(f"{str(value)[:60]!r} is not an UpdateID (a GUID such as "
                         "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe)", code="bad-id")


def entry_dict(row: NeededUpdate) -> dict[str, Any]:
    return {"UpdateID": row.update_id, "RevisionNumber": row.revision_number, "Source": row.source,
            "Added": row.added_at.isoformat() + "Z", "Attempts": row.attempts, "LastError": row.last_error,
            "State": row.state}


def add(update_id: str, revision_number: int | None = None, *, source: str = "", actor: str) -> dict[str, Any]:
    uid = _guid(update_id)
    if revision_number is not None and not (0 < revision_number < 1 << 31):
        raise DevupdateError(f"RevisionNumber {revision_number} is not a positive 32-bit number", code="bad-revision")
    if _is_definition_update(uid):
        raise DevupdateError(f"{uid} is a Definition Update: they are cumulative and short-lived, and are not kept "
                             "on the needed list", code="definition-update")
    with write_transaction():
        NeededUpdate.insert(update_id=uid, revision_number=revision_number, source=source[:MAX_SOURCE],
                            added_at=utcnow(), state="needed").on_conflict(
            conflict_target=[NeededUpdate.update_id],
            update={NeededUpdate.revision_number: revision_number, NeededUpdate.source: source[:MAX_SOURCE],
                    NeededUpdate.state: "needed", NeededUpdate.attempts: 0}).execute()
        record(actor, "wsus.needed.add", uid, after={"RevisionNumber": revision_number, "Source": source[:MAX_SOURCE]})
    return entry_dict(NeededUpdate.get_by_id(uid))


def remove(update_id: str, *, actor: str) -> dict[str, Any]:
    uid = _guid(update_id)
    with write_transaction():
        row = NeededUpdate.get_or_none(NeededUpdate.update_id == uid)
        if row is None:
            raise NotFound(f"{uid} is not on the needed list (see 'devupdate wsus needed list')", code="not-needed")
        NeededUpdate.delete().where(NeededUpdate.update_id == uid).execute()
        record(actor, "wsus.needed.remove", uid, before=entry_dict(row))
    return entry_dict(row)


def entries() -> list[dict[str, Any]]:
    return [entry_dict(row) for row in NeededUpdate.select().order_by(NeededUpdate.added_at, NeededUpdate.update_id)]


def _is_definition_update(uid: str) -> bool:
    return UpdateCategory.select().where(UpdateCategory.update_id == uid,
                                         UpdateCategory.category_id == DEFINITION_UPDATES).exists()


def _current(update_ids: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    items = sorted(update_ids)
    for start in range(0, len(items), 400):
        for uid, number in tuples(Revision.select(Revision.update_id, Revision.revision_number)
                                  .where(Revision.update_id.in_(items[start:start + 400]))):
            found[uid] = max(found.get(uid, 0), number)
        for uid, number in tuples(HeldRevision.select(HeldRevision.update_id, HeldRevision.revision_number)
                                  .where(HeldRevision.update_id.in_(items[start:start + 400]))):
            found[uid] = max(found.get(uid, 0), number)
    return found


def fault_in(run: Run) -> dict[str, Any]:
    """The needed-update phase of a fault-in run; returns what it did for the summary."""
    rows = list(NeededUpdate.select().where(NeededUpdate.state == "needed"))
    summary: dict[str, Any] = {"Listed": len(rows), "Fetched": 0, "Satisfied": 0, "Unavailable": 0, "Closure": 0}
    if not rows:
        return summary
    latest: dict[str, int] = {}
    if run.category_list is not None:
        for uid, number in run.category_list.identities:
            latest[uid] = max(latest.get(uid, 0), number)
    listing = run.revision_list(anchor=None, get_config=False)
    for uid, number in listing.identities:
        latest[uid] = max(latest.get(uid, 0), number)
    have = _current({row.update_id for row in rows})
    wanted: dict[str, int] = {}
    errors: dict[str, str] = {}
    for row in rows:
        want = row.revision_number or latest.get(row.update_id)
        if want is None:
            errors[row.update_id] = "the upstream lists no revision of it"
        elif have.get(row.update_id, 0) < want:
            wanted[row.update_id] = want
    fetched: set[tuple[str, int]] = set()
    todo = sorted(wanted.items())
    while todo:
        applied = run.fetch(todo)
        run.summary.add(applied)
        summary["Fetched"] += len(applied.applied_ids)
        fetched |= set(todo)
        for failure in applied.failed:
            errors.setdefault(failure["UpdateID"], failure["Reason"])
        # the closure: what the fetched revisions name that is absent here
        named: dict[str, int] = {}
        for uid, number in todo:
            doc = _stored(uid, number)
            if doc is None:
                continue
            prerequisites, members = names(doc)
            for pid in prerequisites:
                if pid in latest:
                    named[pid] = max(named.get(pid, 0), latest[pid])
            for mid, mnumber in members:
                named[mid] = max(named.get(mid, 0), mnumber)
        present = _current(set(named))
        todo = sorted((uid, n) for uid, n in named.items() if present.get(uid, 0) < n and (uid, n) not in fetched)
        summary["Closure"] += len(todo)
    now_have = _current({row.update_id for row in rows})
    with write_transaction():
        for row in rows:
            want = row.revision_number or latest.get(row.update_id)
            if want is not None and now_have.get(row.update_id, 0) >= want or _is_definition_update(row.update_id):
                NeededUpdate.delete().where(NeededUpdate.update_id == row.update_id).execute()
                summary["Satisfied"] += 1
                continue
            attempts = row.attempts + 1
            state = "unavailable" if attempts >= UNAVAILABLE_AFTER else "needed"
            summary["Unavailable"] += state == "unavailable"
            NeededUpdate.update(attempts=attempts, state=state,
                                last_error=errors.get(row.update_id, "not fetched")[:1000]).where(
                NeededUpdate.update_id == row.update_id).execute()
    return summary


def _stored(uid: str, number: int) -> UpdateDocument | None:
    rid = Revision.select(Revision.id).where(Revision.update_id == uid, Revision.revision_number == number).scalar()
    if rid is not None:
        return parse_update(store.document_text(rid))
    held = HeldRevision.get_or_none(HeldRevision.update_id == uid, HeldRevision.revision_number == number)
    if held is not None:
        return parse_update(zlib.decompress(bytes(held.document)))
    return None


