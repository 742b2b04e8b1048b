"""A rule's imported versions as WSUS catalog updates ([wsus] §1a C10).

The rules side reads its own rows and calls down into the catalog, always inside the transaction
that changes the rule (import, remove, files cleanup), so the catalog never disagrees with the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from devupdate.content.models import StoredObject
from devupdate.packages import version_key
from devupdate.rules.models import Rule, RuleVersion, VersionFile
from devupdate.wsus.catalog import publish
from devupdate.wsus.catalog.images import Deployment, ImageFile, PhoneImage, image_update_id, rule_deployments
from devupdate.wsus.targeting import service as targeting


def _order(version: RuleVersion) -> tuple[int, tuple[int, ...], str, object]:
    key = version_key(version.version)
    return (0, key, "", version.imported_at) if isinstance(key, tuple) else (1, (), key, version.imported_at)


def rule_images(rule: Rule) -> list[PhoneImage]:
    """Every imported version of the rule; each supersedes the rule's earlier (lower) versions."""
    versions = sorted(RuleVersion.select().where(RuleVersion.rule_id == rule.id), key=_order)
    files: dict[int, list[ImageFile]] = {}
    rows = (VersionFile.select(VersionFile.rule_version, VersionFile.file_name, StoredObject.sha1,
                               StoredObject.sha256, StoredObject.size)
            .join(StoredObject).where(VersionFile.rule_version.in_([v.id for v in versions]))
            .order_by(VersionFile.id).tuples())
    for version_id, name, sha1, sha256, size in cast(Iterable[tuple[int, str, str, str, int]], rows):
        files.setdefault(version_id, []).append(ImageFile(name, sha1, sha256, size))
    images = []
    for index, version in enumerate(versions):
        images.append(PhoneImage(
            rule_id=rule.id, device_type=rule.device_type, brand=rule.brand, model=rule.model,
            revision=rule.revision, locale=rule.locale, update_type=rule.update_type, version=version.version,
            imported_at=version.imported_at, files=tuple(files.get(version.id, ())),
            superseded_versions=tuple(v.version for v in versions[:index])))
    return images


def publish_rules(rules: Iterable[tuple[Rule, bool]]) -> dict[str, str]:
    """Publish the versions of these rules (new ones, and earlier ones whose supersedence changed) as
    one catalog batch; ``(rule, True)``: the rule was (re)created, so its versions are undeclined."""
    images: list[PhoneImage] = []
    undecline: list[str] = []
    for rule, recreated in rules:
        found = rule_images(rule)
        images += found
        if recreated:
            undecline += [image.update_id for image in found]
    return publish.publish_images(images, undecline=undecline)


def decline_rule(rule_id: str) -> int:
    """The rule is removed: the updates of all its versions are declined."""
    versions = RuleVersion.select().where(RuleVersion.rule_id == rule_id)
    return publish.set_declined([image_update_id(rule_id, version.version) for version in versions], True)


def release_versions(versions: Iterable[RuleVersion]) -> int:
    """These versions are being cleaned up: their catalog files stop being present."""
    return publish.release_files([image_update_id(v.rule_id, v.version) for v in versions])


def deployments(rule: Rule | None, rule_id: str) -> frozenset[Deployment]:
    """What the rule's state deploys (None: the rule was removed)."""
    if rule is None:
        return rule_deployments(rule_id, pending_version=None, approved_version=None, removed=True)
    return rule_deployments(rule.id, pending_version=rule.pending_version, approved_version=rule.approved_version)


def sync_deployments(rule: Rule | None, rule_id: str, actor: str) -> dict[str, list[dict[str, object]]]:
    """The WSUS deployments of the rule's versions become what its state asks for (C10), in the
    caller's transaction: import (pending → Test), approve, reset, restore, remove (none)."""
    versions = RuleVersion.select(RuleVersion.version).where(RuleVersion.rule_id == rule_id)
    wanted = [(item.group, item.update_id, item.action) for item in deployments(rule, rule_id)]
    return targeting.sync_image_deployments([image_update_id(rule_id, v.version) for v in versions], wanted,
                                            actor=actor, rule_id=rule_id)
