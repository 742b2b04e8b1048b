"""Fixtures for the device end-to-end tests: real vendor cabs imported with ``devupdate import``,
a server whose public names are those of a real deployment, and a phonesim client that reaches
it the way DNS would.

Cabs come from ``helpers.cabs`` (signed catalogs, ``build_package``); the bytes of every member are
kept so tests can assert Size and SHA-256 of what the service advertises and serves.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers.cabs import FIXED_TIME, make_update, package_files, rule_guid

from devupdate.packages import build_package

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

INTERNAL = "http://ucupdates-r2.contoso.com"
EXTERNAL = "https://ucupdates.contoso.com"
SERVER_NAME = "ucweb01"

CX600 = ("UCPhone", "Polycom", "CX600", "A", "ENU")
AASTRA = ("UCPhone", "Aastra", "6725ip", "A", "DEU")
V0, V1, V2, V3 = "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372", "4.0.7577.4387"
IMAGE_SIZE = 20_000

AUDIT_HEADER = ("Logging DateTime,User Host Address,Device Type,Mac Address,Serial Number,Vendor,Model,"
                "Revision,Locale,Request Modules,Response Modules,User ID,Result")


@dataclass(frozen=True)
class Release:
    """One imported version of one rule, with the exact bytes of its files."""

    family: tuple[str, str, str, str, str]
    rule_id: str
    version: str
    image: str
    catalog: str
    files: dict[str, bytes]
    imported: str  # TimeStamp the service advertises

    def expected(self, side: str = "Int") -> list[dict]:
        """The ``File`` elements a device must be offered for this release, in order."""
        base = INTERNAL if side == "Int" else EXTERNAL
        prefix = "/".join((*self.family, self.version))
        rows = []
        for name, signature in ((self.image, self.catalog), (self.catalog, None)):
            row = {"FileName": name}
            if signature:
                row["SignatureFileName"] = signature
            row.update({"Version": self.version, "TimeStamp": self.imported,
                        "Url": f"{base}/DeviceUpdateFiles_{side}/{prefix}/{name}",
                        "Size": str(len(self.files[name])),
                        "SHA256": hashlib.sha256(self.files[name]).hexdigest()})
            rows.append(row)
        return rows


def import_release(install, directory: Path, version: str, families=(CX600,)) -> dict[tuple, Release]:
    """Build a vendor cab with one CPE update per family at ``version`` and import it with the real
    CLI. Returns a Release per family."""
    updates = [make_update(brand, model, version, locale=locale, revision=revision, device_type=device_type)
               for device_type, brand, model, revision, locale in families]
    images, catalogs = package_files(updates, IMAGE_SIZE)
    cab = Path(directory) / f"UCUpdates-{version}-{len(families)}.cab"
    build_package(cab, updates, images, catalogs, description_name="UCUpdates.xml", compress=True,
                  mtime=FIXED_TIME)
    install.cli("import", str(cab), "--json")
    releases = {}
    for family, update in zip(families, updates, strict=True):
        rule_id = rule_guid(*family, "CPE")
        imported = imported_time(install, rule_id, version)
        ref = update.files[0]
        releases[family] = Release(family, rule_id, version, ref.name, ref.catalog,
                                   {ref.name: images[ref.name], ref.catalog: catalogs[ref.catalog]}, imported)
    return releases


def imported_time(install, rule_id: str, version: str) -> str:
    """When the service recorded the import (the TimeStamp it advertises), read from the database."""
    from devupdate import db
    from devupdate.rules.models import RuleVersion

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        row = RuleVersion.get((RuleVersion.rule_id == rule_id) & (RuleVersion.version == version))
        return row.imported_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        db.database.close()


def server_env(**extra: str) -> dict[str, str]:
    return {"DEVUPDATE_PUBLIC_INTERNAL_URL": INTERNAL, "DEVUPDATE_PUBLIC_EXTERNAL_URL": EXTERNAL,
            "DEVUPDATE_SERVER_NAME": SERVER_NAME, **extra}


def client(server, **kwargs) -> phonesim.Client:
    """A phone-side client: the public names resolve to the test server (as DNS would)."""
    return phonesim.Client(server.url, url_map={INTERNAL: server.url, EXTERNAL: server.url}, **kwargs)


def fleet(count: int, installed: str | None = V0, family=CX600, seed: int = 7, **kwargs) -> list[phonesim.Phone]:
    modules = {"CPE.nbt": installed} if installed else {}
    return phonesim.make_fleet(count, families=[family], installed=modules, seed=seed, **kwargs)


def offered(result: phonesim.CheckResult) -> list[dict]:
    """The ``File`` elements of an answer as dicts of their child elements, in document order —
    so the element order and every field are compared exactly."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(result.body)
    assert [child.tag for child in root] == ["NumOfFiles", "Files"]
    files = [{child.tag: child.text for child in element} for element in root.find("Files")]
    assert root.findtext("NumOfFiles") == str(len(files))
    for element, row in zip(root.find("Files"), files, strict=True):
        assert [c.tag for c in element] == list(row)
    return files


def assert_answer(result: phonesim.CheckResult, expected: list[dict]) -> None:
    assert result.status == 200, (result.status, result.body)
    assert result.headers["content-type"] == "text/xml; charset=utf-8"
    assert result.headers["cache-control"] == "no-store"
    assert offered(result) == expected
    if not expected:
        assert result.body == (b'<?xml version="1.0" encoding="utf-8"?>\n'
                               b"<Response><NumOfFiles>0</NumOfFiles><Files/></Response>\n")


def audit_files(install) -> list[Path]:
    directory = install.home / "filestore" / "logs" / "audit" / "imageUpdates"
    if not directory.is_dir():
        return []

    def order(path: Path):
        stem = path.stem.split("_")
        return (stem[2], int(stem[3]) if len(stem) > 3 else 0)
    return sorted((p for p in directory.iterdir() if p.name.startswith("RequestHandlerAuditLog_")), key=order)


def audit_rows(install) -> list[dict[str, str]]:
    """Every row of every audit log file (header checked on each file)."""
    rows = []
    for path in audit_files(install):
        text = path.read_bytes().decode("utf-8")
        assert text.startswith(AUDIT_HEADER + "\r\n"), path
        assert text.endswith("\r\n"), f"{path} ends in a partial row"
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            assert None not in row and len(row) == 13, row
            rows.append(row)
    return rows


