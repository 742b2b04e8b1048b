"""Vendor update packages (.cab): read, check, describe, write. Pure — no database, web or settings.

The importer calls ``open_package`` (a context manager) and stages ``package.members`` from
their streams; ``devupdate pack`` calls ``pack_files``/``build_package``. Every refusal is a
``PackageError`` with a stable ``code`` (see ``errors.CODES``).
"""

from devupdate.packages.cab import Cabinet, CabMember, Limits, read_cab, unsafe_name_reason
from devupdate.packages.catalog import CatalogFinding, TrustAnchorError, check_catalog, load_trust_anchors
from devupdate.packages.description import (
    FileRef,
    UpdateDescription,
    describe_updates,
    parse_description,
    parse_descriptions,
    parse_guid,
    parse_locale,
    parse_version,
    version_key,
)
from devupdate.packages.errors import CODES, PackageError
from devupdate.packages.package import Package, open_package, scan_package, validate_package
from devupdate.packages.writer import build_package, write_cab

__all__ = [
    "CODES", "Cabinet", "CabMember", "CatalogFinding", "FileRef", "Limits", "Package", "PackageError",
    "TrustAnchorError", "UpdateDescription", "build_package", "check_catalog", "describe_updates",
    "load_trust_anchors", "open_package", "scan_package",
    "parse_description", "parse_descriptions", "parse_guid", "parse_locale", "parse_version", "read_cab",
    "unsafe_name_reason", "validate_package", "version_key", "write_cab",
]
