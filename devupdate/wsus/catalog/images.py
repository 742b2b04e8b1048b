"""Phone images as catalog updates ([wsus] §1a C10): their identities, their Update XML, and the
deployments a rule's state asks for.

Pure: plain values in, document text and plain values out. The documents are real ``upd:Update``
documents, so they go through the same reader and fragment derivation (:mod:`.document`) and the
same store as any imported Microsoft document; nothing here writes rows.

- UpdateID of an image version: ``uuid5(NAMESPACE, "image/<rule Id>/<Version>")`` (rule Id lower
  case, no braces), ``NAMESPACE = uuid5(NAMESPACE_URL, "urn:devupdate")``.
- Product "UC devices" under Company "devupdate" (both devupdate's, from the same namespace);
  classification "Updates" is Microsoft's own GUID, so a Windows WSUS downstream merges it with its
  own "Updates".
- ``Software`` with the command-line handler and no command (inert), ``IsInstalled`` and
  ``IsInstallable`` both ``<lar:False />``: no Windows client ever finds one applicable.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:devupdate")  # a3df0b13-16c4-54e7-9720-c60d3b21ef0f
COMPANY_ID = str(uuid.uuid5(NAMESPACE, "category/company/devupdate"))  # 165148cc-c294-5411-bc2e-b1a184c498dd
PRODUCT_ID = str(uuid.uuid5(NAMESPACE, "category/product/UC devices"))  # 5f3aaaad-af2b-572a-a8bc-99155ce81a09
UPDATES_CLASSIFICATION_ID = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"  # Microsoft's "Updates"
COMPANY_TITLE = "devupdate"
PRODUCT_TITLE = "UC devices"
CLASSIFICATION_TITLE = "Updates"

#: the generated category documents are the same text on every server and every run
CATEGORY_CREATION_DATE = "2026-01-01T00:00:00.000Z"

TEST_GROUP = "Test"
ALL_COMPUTERS = "All Computers"

_NAMESPACES = (
    'xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update" '
    'xmlns:lar="http://schemas.microsoft.com/msus/2002/12/LogicalApplicabilityRules" '
    'xmlns:cmd="http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/CommandLineInstallation" '
    'xmlns:cat="http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')
_COMMAND_LINE = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/CommandLineInstallation"
_CATEGORY = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category"


def image_update_id(rule_id: str, version: str) -> str:
    """The UpdateID of one imported version of a rule (C10)."""
    return str(uuid.uuid5(NAMESPACE, f"image/{rule_id.strip('{}').lower()}/{version}"))


@dataclass(frozen=True)
class ImageFile:
    file_name: str
    sha1: str  # lower-case hex
    sha256: str  # lower-case hex
    size: int


@dataclass(frozen=True)
class PhoneImage:
    """One imported version of a rule, with what its document says."""

    rule_id: str
    device_type: str
    brand: str
    model: str
    revision: str
    locale: str
    update_type: str
    version: str
    imported_at: dt.datetime  # naive UTC: CreationDate and the files' Modified
    files: tuple[ImageFile, ...]
    superseded_versions: tuple[str, ...] = field(default=())  # every earlier version of the same rule
    #: UpdateIDs superseded before whose versions are gone (cleaned up): supersedence never shrinks
    also_superseded: tuple[str, ...] = field(default=())

    @property
    def update_id(self) -> str:
        return image_update_id(self.rule_id, self.version)

    @property
    def superseded(self) -> tuple[str, ...]:
        """The UpdateIDs its document supersedes, sorted (the text does not depend on how they were
        found)."""
        return tuple(sorted({image_update_id(self.rule_id, version) for version in self.superseded_versions}
                            | set(self.also_superseded)))

    @property
    def title(self) -> str:
        return " ".join((self.brand, self.model, self.revision, self.locale, self.update_type, self.version))

    @property
    def description(self) -> str:
        """Machine-readable: ``DeviceType=…;Brand=…;Model=…;Revision=…;Locale=…;UpdateType=…;Version=…``,
        then ``;RuleId=…``: a downstream devupdate turns the update back into the same rule (its Id is
        not derivable from the UpdateID, a one-way hash)."""
        return ";".join(f"{key}={value}" for key, value in (
            ("DeviceType", self.device_type), ("Brand", self.brand), ("Model", self.model),
            ("Revision", self.revision), ("Locale", self.locale), ("UpdateType", self.update_type),
            ("Version", self.version), ("RuleId", self.rule_id.strip("{}").lower())))


def _when(value: dt.datetime) -> str:
    """``2026-07-21T12:00:00.000Z`` (the CreationDate form of the real documents)."""
    value = value.replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def _localized(title: str, description: str) -> str:
    return ("<upd:LocalizedPropertiesCollection><upd:LocalizedProperties><upd:Language>en</upd:Language>"
            f"<upd:Title>{escape(title)}</upd:Title><upd:Description>{escape(description)}</upd:Description>"
            "</upd:LocalizedProperties></upd:LocalizedPropertiesCollection>")


def _category_clause(update_id: str) -> str:
    return f'<upd:AtLeastOne IsCategory="true"><upd:UpdateIdentity UpdateID="{update_id}" /></upd:AtLeastOne>'


def image_document(image: PhoneImage, revision_number: int) -> str:
    """The Update XML (the ``XmlUpdateBlob`` form, §6.1) of one image version."""
    superseded = "".join(f'<upd:UpdateIdentity UpdateID="{update_id}" />' for update_id in image.superseded)
    relationships = ("<upd:Relationships>"
                     + (f"<upd:SupersededUpdates>{superseded}</upd:SupersededUpdates>" if superseded else "")
                     + "<upd:Prerequisites>" + _category_clause(UPDATES_CLASSIFICATION_ID)
                     + _category_clause(PRODUCT_ID) + "</upd:Prerequisites></upd:Relationships>")
    modified = _when(image.imported_at)[:19] + "Z"
    files = "".join(
        f"<upd:File Digest={quoteattr(_b64(item.sha1))} DigestAlgorithm=\"SHA1\" FileName={quoteattr(item.file_name)} "
        f'Size="{item.size}" Modified="{modified}"><upd:AdditionalDigest Algorithm="SHA256">{_b64(item.sha256)}'
        "</upd:AdditionalDigest></upd:File>" for item in image.files)
    size = sum(item.size for item in image.files)
    return (f'<upd:Update {_NAMESPACES}><upd:UpdateIdentity UpdateID="{image.update_id}" '
            f'RevisionNumber="{revision_number}" />'
            f'<upd:Properties UpdateType="Software" DefaultPropertiesLanguage="en" Handler="{_COMMAND_LINE}" '
            f'MaxDownloadSize="{size}" MinDownloadSize="0" PublicationState="Published" '
            f'CreationDate="{_when(image.imported_at)}"></upd:Properties>'
            + _localized(image.title, image.description) + relationships
            + "<upd:ApplicabilityRules><upd:IsInstalled><lar:False /></upd:IsInstalled>"
              "<upd:IsInstallable><lar:False /></upd:IsInstallable></upd:ApplicabilityRules>"
            + (f"<upd:Files>{files}</upd:Files>" if files else "")
            + '<upd:HandlerSpecificData xsi:type="cmd:CommandLineInstallation" /></upd:Update>')


@dataclass(frozen=True)
class CategoryDocument:
    update_id: str
    title: str
    category_type: str
    parent: str | None
    information: str  # the CategoryInformation attributes after CategoryType
    #: publish only when the UpdateID is not in the catalog at all (a category that is not ours)
    only_if_absent: bool = False

    def document(self, revision_number: int) -> str:
        relationships = ("" if self.parent is None else
                         f"<upd:Relationships><upd:Prerequisites>{_category_clause(self.parent)}"
                         "</upd:Prerequisites></upd:Relationships>")
        return (f'<upd:Update {_NAMESPACES}><upd:UpdateIdentity UpdateID="{self.update_id}" '
                f'RevisionNumber="{revision_number}" />'
                f'<upd:Properties UpdateType="Category" DefaultPropertiesLanguage="en" Handler="{_CATEGORY}" '
                f'PublicationState="Published" CreationDate="{CATEGORY_CREATION_DATE}"></upd:Properties>'
                + _localized(self.title, self.title) + relationships
                + "<upd:ApplicabilityRules><upd:IsInstalled><lar:True /></upd:IsInstalled></upd:ApplicabilityRules>"
                + '<upd:HandlerSpecificData xsi:type="cat:Category">'
                  f'<cat:CategoryInformation CategoryType="{self.category_type}" {self.information} />'
                  "</upd:HandlerSpecificData></upd:Update>")


#: Company → Product, and the classification (Microsoft's, generated only where the catalog has none)
CATEGORIES: tuple[CategoryDocument, ...] = (
    CategoryDocument(COMPANY_ID, COMPANY_TITLE, "Company", None,
                     'ProhibitsSubcategories="false" ProhibitsUpdates="true"'),
    CategoryDocument(PRODUCT_ID, PRODUCT_TITLE, "Product", COMPANY_ID,
                     'ProhibitsSubcategories="true" ProhibitsUpdates="false"'),
    CategoryDocument(UPDATES_CLASSIFICATION_ID, CLASSIFICATION_TITLE, "UpdateClassification", None,
                     'ProhibitsSubcategories="true" ProhibitsUpdates="false"', only_if_absent=True),
)


# -- deployments follow the rule state (C10), never the auto-approval rules -----------------------------

@dataclass(frozen=True)
class Deployment:
    group: str  # TEST_GROUP or ALL_COMPUTERS
    update_id: str
    action: str = "Install"


def rule_deployments(rule_id: str, *, pending_version: str | None, approved_version: str | None,
                     removed: bool = False) -> frozenset[Deployment]:
    """The deployments a rule's state asks for: its pending version → Install for ``Test``, its
    approved version → Install for ``All Computers``; a removed rule has none.

    So import (a pending version) deploys to ``Test``; approve moves the version to ``All
    Computers`` (``Test`` is below it and gets it from there); reset drops the ``Test`` deployment;
    restore moves the ``All Computers`` deployment to the restored version (none when there is no
    earlier one); remove drops both (and the updates are declined)."""
    if removed:
        return frozenset()
    wanted = set()
    if pending_version is not None:
        wanted.add(Deployment(TEST_GROUP, image_update_id(rule_id, pending_version)))
    if approved_version is not None:
        wanted.add(Deployment(ALL_COMPUTERS, image_update_id(rule_id, approved_version)))
    return frozenset(wanted)


@dataclass(frozen=True)
class DeploymentChanges:
    added: tuple[Deployment, ...]
    removed: tuple[Deployment, ...]


def deployment_changes(before: Sequence[Deployment] | frozenset[Deployment],
                       after: Sequence[Deployment] | frozenset[Deployment]) -> DeploymentChanges:
    """What to add and remove to go from one rule state's deployments to the next (sorted, so the
    same transition always gives the same list)."""
    old, new = set(before), set(after)

    def order(item: Deployment) -> tuple[str, str, str]:
        return item.group, item.update_id, item.action

    return DeploymentChanges(tuple(sorted(new - old, key=order)), tuple(sorted(old - new, key=order)))
