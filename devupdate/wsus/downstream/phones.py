"""Phone images across servers (issue "WSUS front, part 3" §3): synced "UC devices" updates become
phone rules and images here again, so this server's phones are offered them as if the cab had been
imported here.

The update of an image version (C10) says everything its rule needs: the Description
``DeviceType=…;Brand=…;Model=…;Revision=…;Locale=…;UpdateType=…;Version=…;RuleId=…``, the files
with SHA-1, SHA-256 and size, and ``CreationDate`` (the import time upstream). A version is brought
in once all its files are present (fetched and verified by the content phase, whatever
``LazySync`` says), with the same rule Id, version and import time — so the document this server
publishes for it is the upstream's, character for character, and its RevisionNumber does not move.

- ``autonomous``: a version new here becomes the rule's *pending* version (approved here).
- ``replica``: the rule's state follows the upstream's deployments of its updates (Install for
  ``All Computers`` = approved, for ``Test`` = pending; none = neither, so reset, restore and
  remove upstream are followed), and local rule changes are refused (:func:`refuse_local_change`).

Every change is audited with the sync (``sync:<upstream URL>``) as the actor.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from devupdate.audit.trail import record
from devupdate.content.models import StoredObject
from devupdate.db import locked, tuples, write_transaction
from devupdate.rules.catalog import publish_rules, sync_deployments
from devupdate.rules.lifecycle import bump_generation, rule_key, sync_version_refs
from devupdate.rules.models import Rule, RuleVersion, VersionFile
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import UpdateDocument, parse_update
from devupdate.wsus.catalog.images import PRODUCT_ID, image_update_id
from devupdate.wsus.catalog.models import CatalogFile, Update, UpdateCategory
from devupdate.wsus.soap.envelope import parse_datetime
from devupdate.wsus.targeting.models import ALL_COMPUTERS_ID, TEST_ID, Deployment

log = logging.getLogger("devupdate.wsus.downstream")

FIELDS = ("DeviceType", "Brand", "Model", "Revision", "Locale", "UpdateType", "Version", "RuleId")


def image_fields(doc: UpdateDocument) -> dict[str, str] | None:
    """The Description's fields of a phone image update, or None when it is not one we can map back."""
    for item in doc.localized:
        pairs = dict(part.split("=", 1) for part in item.description.split(";") if "=" in part)
        if all(pairs.get(key) for key in FIELDS) and image_update_id(pairs["RuleId"], pairs["Version"]) \
                == doc.update_id:
            return pairs
    return None


def _creation(doc: UpdateDocument) -> dt.datetime | None:
    if not doc.creation_date:
        return None
    try:
        return parse_datetime(doc.creation_date).replace(tzinfo=None)
    except ValueError:
        return None


def synced_images() -> list[tuple[UpdateDocument, dict[str, str]]]:
    """The current revisions of the catalog's "UC devices" updates that map back to a rule version."""
    rows = tuples(Update.select(Update.update_id, Update.current_revision)
                  .join(UpdateCategory, on=(UpdateCategory.update_id == Update.update_id))
                  .where(UpdateCategory.category_id == PRODUCT_ID, ~Update.deleted))
    found = []
    for _uid, rid in rows:
        doc = parse_update(store.document_text(rid))
        fields = image_fields(doc)
        if fields is not None:
            found.append((doc, fields))
    return found


def _present_files(doc: UpdateDocument) -> dict[str, str] | None:
    """file name → SHA-256 of the stored object, when every file of the version is stored."""
    names: dict[str, str] = {}
    for item in doc.files:
        if item.sha256 is None or not StoredObject.exists(item.sha256):
            return None
        names[item.file_name] = item.sha256
    return names if names else None


def _roles(names: dict[str, str]) -> list[tuple[str, str, str | None, str]]:
    """(file name, role, its catalog, SHA-256): an image is signed by the version's one ``.cat``."""
    catalogs = [name for name in names if name.lower().endswith(".cat")]
    out: list[tuple[str, str, str | None, str]] = []
    for name, sha256 in names.items():
        if name in catalogs:
            out.append((name, "catalog", None, sha256))
        else:
            out.append((name, "image" if len(catalogs) == 1 else "file", catalogs[0] if len(catalogs) == 1 else None,
                        sha256))
    return out


def _upstream_state(rule_id: str, versions: list[str]) -> dict[str, str | None]:
    """What the mirrored deployments of the rule's updates say: approved (All Computers) and pending (Test)."""
    by_update = {image_update_id(rule_id, v): v for v in versions}
    state: dict[str, str | None] = {"approved": None, "pending": None}
    for update_id, group_id in tuples(Deployment.select(Deployment.update_id, Deployment.group).where(
            Deployment.update_id.in_(sorted(by_update)), ~Deployment.revoked, Deployment.action == "Install")):
        if group_id == ALL_COMPUTERS_ID:
            state["approved"] = by_update[update_id]
        elif group_id == TEST_ID:
            state["pending"] = by_update[update_id]
    return state


def bring_in(*, mode: str, actor: str) -> dict[str, Any]:
    """Turn the synced phone image updates into rules and versions; returns counts for the summary."""
    summary: dict[str, Any] = {"Versions": 0, "Rules": 0, "StateChanges": 0, "Waiting": 0, "Refused": []}
    images = synced_images()
    by_rule: dict[str, list[tuple[UpdateDocument, dict[str, str]]]] = {}
    for doc, fields in images:
        by_rule.setdefault(fields["RuleId"].lower(), []).append((doc, fields))
    for rule_id, versions in sorted(by_rule.items()):
        try:
            _bring_rule(rule_id, versions, mode=mode, actor=actor, summary=summary)
        except Exception as exc:  # noqa: BLE001 - one rule's refusal never stops the others
            log.warning("phone images of rule %s not brought in: %s", rule_id, exc)
            summary["Refused"].append({"Rule": rule_id, "Reason": str(exc)[:300]})
    return summary


def _bring_rule(rule_id: str, versions: list[tuple[UpdateDocument, dict[str, str]]], *, mode: str, actor: str,
                summary: dict[str, Any]) -> None:
    fields = versions[0][1]
    key = rule_key(fields["DeviceType"], fields["Brand"], fields["Model"], fields["Revision"], fields["Locale"],
                   fields["UpdateType"])
    with write_transaction():
        rule = locked(Rule.select().where(Rule.id == rule_id)).first()
        created = False
        if rule is None:
            other = Rule.get_or_none(Rule.key == key)
            if other is not None:
                raise ValueError(f"this server has rule {other.id} for {key}; the upstream's is {rule_id}")
            rule = Rule.create(id=rule_id, key=key, device_type=fields["DeviceType"], brand=fields["Brand"],
                               model=fields["Model"], revision=fields["Revision"], locale=fields["Locale"],
                               update_type=fields["UpdateType"])
            created = True
        have = {v.version for v in RuleVersion.select(RuleVersion.version).where(RuleVersion.rule_id == rule_id)}
        added: list[str] = []
        for doc, item in versions:
            version = item["Version"]
            if version in have:
                continue
            names = _present_files(doc)
            if names is None:
                summary["Waiting"] += 1
                continue
            prefix = "/".join((item["DeviceType"], item["Brand"], item["Model"], item["Revision"], item["Locale"],
                               version))
            row = RuleVersion.create(rule_id=rule_id, version=version, path_prefix=prefix,
                                     imported_at=_creation(doc) or dt.datetime.now(dt.UTC).replace(tzinfo=None))
            for name, role, catalog, sha256 in _roles(names):
                VersionFile.create(rule_version=row, file_name=name, signature_file_name=catalog, role=role,
                                   blob=sha256)
            added.append(version)
        if not added and not created and mode != "replica":
            return
        before = {"PendingVersion": rule.pending_version, "ApprovedVersion": rule.approved_version}
        known = have | set(added)
        if mode == "replica":
            upstream = _upstream_state(rule_id, sorted(known))
            if (rule.approved_version, rule.pending_version) != (upstream["approved"], upstream["pending"]):
                if rule.approved_version != upstream["approved"]:
                    rule.restore_version = rule.approved_version
                rule.approved_version, rule.pending_version = upstream["approved"], upstream["pending"]
                summary["StateChanges"] += 1
        elif added:
            newest = added[-1]
            if newest not in (rule.pending_version, rule.approved_version):
                rule.pending_version = newest
                summary["StateChanges"] += 1
        after = {"PendingVersion": rule.pending_version, "ApprovedVersion": rule.approved_version}
        if before == after and not added:
            return
        rule.save()
        sync_version_refs(rule.id, {rule.approved_version, rule.pending_version, rule.restore_version})
        publish_rules([(rule, created)])
        sync_deployments(rule, rule.id, actor)
        CatalogFile.update(present=True).where(CatalogFile.sha256.in_(
            [sha for doc, _i in versions for sha in (f.sha256 for f in doc.files) if sha])).execute()
        bump_generation()
        if added:
            record(actor, "rule.sync", rule.id, before=before, after={**after, "Versions": added})
        elif before != after:
            record(actor, "rule.sync", rule.id, before=before, after=after)
        summary["Versions"] += len(added)
        summary["Rules"] += created
