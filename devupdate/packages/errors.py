"""Refusals of a package, one stable code per reason.

The package reader is pure: PackageError is a plain exception with a stable ``code`` (for
scripts and the import record) and a ``message`` (for people). The importer turns it into the
service's refusal, HTTP status included; nothing here knows of HTTP.
"""

from __future__ import annotations

#: Every code PackageError uses, with what it means (the importer records the code).
CODES = {
    "not-a-cabinet": "the file does not start with a cabinet header",
    "corrupt": "truncated or damaged cabinet (bad header, table, checksum or compressed data)",
    "multi-cabinet": "part of a multi-cabinet set (continued from or into another cabinet)",
    "unsafe-name": "a member name is empty, absolute, has '..', a drive letter, ':', control characters, "
                   "or non-ASCII bytes without the UTF-8 flag",
    "duplicate-name": "two members have the same name, ignoring case",
    "too-many-members": "more members than the configured limit",
    "too-large": "the uncompressed content, or its number of data blocks, is above the configured limit",
    "decompression-bomb": "the expansion ratio (uncompressed / cab size) is above the configured limit",
    "unsupported-compression": "LZX or Quantum data and no cabextract to read it",
    "no-description": "no .xml member with a DeviceUpdate root element",
    "bad-description": "a description is not well-formed, uses a DTD, or has a missing or invalid field",
    "missing-file": "a description names a file the cab does not contain",
    "missing-catalog": "an image (.nbt) has no catalog (.cat) in the cab",
}

#: The codes that mean "too big" rather than "malformed" (the importer answers them with 413).
SIZE_CODES = frozenset({"too-large", "decompression-bomb", "too-many-members"})


class PackageError(Exception):
    """A cab or description was refused; nothing from it may be stored."""

    def __init__(self, code: str, message: str) -> None:
        assert code in CODES, code
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
