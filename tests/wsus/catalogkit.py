"""Update documents for the catalog tests: the captured real ones, and small synthetic ones shaped
like them (categories, prerequisites, bundles, supersedence)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers.cabs import SHARED

CAPTURES = SHARED / "wsus" / "captures"
DOCS = CAPTURES / "wsus-m0-wsusss" / "docs"
EXCHANGES = CAPTURES / "wsus-m0-wsusss" / "exchanges"
NATIVE = CAPTURES / "wsus-m0-native"

COMPANY = "56309036-4c77-4dd9-951a-99ee9c246a94"  # Microsoft (captured, r101)
BUNDLE = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"  # KB2267602 r200: bundles 266f6222…, ccb78947…
LEAF = "266f6222-c89d-43f2-9f8a-69340271e677"
SMALL = "ccb78947-6453-4ecc-9de8-bc0305c98f2d"
DEFENDER = "8c3fcc84-7410-4a95-8b89-a166a0190486"  # product named by KB2267602's IsCategory clause
DEFINITIONS = "e0789628-ce08-4437-be74-2495b842f43b"  # classification named by the same

NS = ('xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update" '
      'xmlns:lar="http://schemas.microsoft.com/msus/2002/12/LogicalApplicabilityRules" '
      'xmlns:cat="http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category"')


def docs_dir() -> Path:
    if not DOCS.is_dir():
        pytest.skip(f"captured WSUS documents not found at {DOCS} (clone shared/ beside the repository, "
                    "or set DEVUPDATE_SHARED_DIR)")
    return DOCS


def captured(update_id: str) -> Path:
    found = sorted(docs_dir().glob(f"{update_id}-r*.xml"))
    assert found, update_id
    return found[0]


def category(update_id: str, title: str, kind: str, *, parent: str | None = None, revision: int = 100) -> str:
    relationships = ("" if parent is None else
                     f'<upd:Relationships><upd:Prerequisites><upd:AtLeastOne IsCategory="true">'
                     f'<upd:UpdateIdentity UpdateID="{parent}" /></upd:AtLeastOne></upd:Prerequisites>'
                     f'</upd:Relationships>')
    return (f'<upd:Update {NS}><upd:UpdateIdentity UpdateID="{update_id}" RevisionNumber="{revision}" />'
            f'<upd:Properties DefaultPropertiesLanguage="en" UpdateType="Category" PublicationState="Published" />'
            f'<upd:LocalizedPropertiesCollection><upd:LocalizedProperties><upd:Language>en</upd:Language>'
            f'<upd:Title>{title}</upd:Title></upd:LocalizedProperties></upd:LocalizedPropertiesCollection>'
            f'{relationships}<upd:ApplicabilityRules><upd:IsInstalled><lar:True /></upd:IsInstalled>'
            f'</upd:ApplicabilityRules><upd:HandlerSpecificData xsi:type="cat:Category" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><cat:CategoryInformation CategoryType="{kind}" />'
            f'</upd:HandlerSpecificData></upd:Update>')


def software(update_id: str, revision: int = 100, *, title: str = "An update", prerequisites: tuple[str, ...] = (),
             categories: tuple[str, ...] = (), supersedes: tuple[str, ...] = (), state: str = "Published",
             bundles: tuple[tuple[str, int], ...] = ()) -> str:
    prereq = "".join(f'<upd:UpdateIdentity UpdateID="{p}" />' for p in prerequisites)
    prereq += "".join(f'<upd:AtLeastOne IsCategory="true"><upd:UpdateIdentity UpdateID="{c}" /></upd:AtLeastOne>'
                      for c in categories)
    relationships = ""
    if supersedes:
        relationships += ("<upd:SupersededUpdates>" + "".join(f'<upd:UpdateIdentity UpdateID="{s}" />'
                                                              for s in supersedes) + "</upd:SupersededUpdates>")
    if prereq:
        relationships += f"<upd:Prerequisites>{prereq}</upd:Prerequisites>"
    if bundles:
        relationships += ("<upd:BundledUpdates><upd:AtLeastOne>" + "".join(
            f'<upd:UpdateIdentity UpdateID="{u}" RevisionNumber="{n}" />' for u, n in bundles)
            + "</upd:AtLeastOne></upd:BundledUpdates>")
    return (f'<upd:Update {NS}><upd:UpdateIdentity UpdateID="{update_id}" RevisionNumber="{revision}" />'
            f'<upd:Properties UpdateType="Software" DefaultPropertiesLanguage="en" PublicationState="{state}" />'
            f'<upd:LocalizedPropertiesCollection><upd:LocalizedProperties><upd:Language>en</upd:Language>'
            f'<upd:Title>{title}</upd:Title></upd:LocalizedProperties></upd:LocalizedPropertiesCollection>'
            + (f"<upd:Relationships>{relationships}</upd:Relationships>" if relationships else "")
            + "</upd:Update>")


def structure(fragment: str) -> list[tuple[str, list[tuple[str, str]], str]]:
    """A fragment (several top-level elements, no namespaces) as (element path, attributes in order,
    text) in document order: what 'structurally equal' compares."""
    root = ET.fromstring(f"<fragment>{fragment}</fragment>")
    out: list[tuple[str, list[tuple[str, str]], str]] = []

    def walk(element: ET.Element, path: str) -> None:
        for child in element:
            here = f"{path}/{child.tag}"
            out.append((here, list(child.attrib.items()), (child.text or "").strip()))
            walk(child, here)

    walk(root, "")
    return out


SYNTHETIC_A = "aaaaaaaa-0000-4000-8000-000000000001"
SYNTHETIC_B = "bbbbbbbb-0000-4000-8000-000000000002"


def seed_catalog(install, tmp_path: Path) -> Path:
    """The captured documents, their product and classification, and synthetic A (two revisions, of
    the product) and B (uncategorized), imported with the CLI; returns the folder of the extra ones."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "product.xml").write_text(category(DEFENDER, "Microsoft Defender Antivirus", "Product", parent=COMPANY))
    (extra / "classification.xml").write_text(category(DEFINITIONS, "Definition Updates", "UpdateClassification"))
    (extra / "a-100.xml").write_text(software(SYNTHETIC_A, 100, title="Synthetic A", categories=(DEFENDER,)))
    (extra / "a-101.xml").write_text(software(SYNTHETIC_A, 101, title="Synthetic A", categories=(DEFENDER,)))
    (extra / "b-100.xml").write_text(software(SYNTHETIC_B, 100, title="Synthetic B"))
    install.cli("wsus", "import", str(docs_dir()), str(extra))
    return extra
