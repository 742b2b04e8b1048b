"""Quota-managed local file store: content-addressed objects and named files in areas.

Standalone (imports nothing from ``devupdate``). Writes are atomic (temp ->
fsync -> rename -> fsync dir), quotas hold across processes, and no name
argument can reach outside the store. See :class:`FileStore`.
"""

from .errors import (
    FileStoreError,
    ObjectNotFound,
    QuotaExceeded,
    TooLarge,
    UnknownArea,
    UnsafePath,
)
from .store import (
    AreaConfig,
    AreaUsage,
    FileStore,
    NamedEntry,
    Staged,
    StoredObject,
    VerifyProblem,
)

__all__ = [
    "AreaConfig",
    "AreaUsage",
    "FileStore",
    "FileStoreError",
    "NamedEntry",
    "ObjectNotFound",
    "QuotaExceeded",
    "Staged",
    "StoredObject",
    "TooLarge",
    "UnknownArea",
    "UnsafePath",
    "VerifyProblem",
]
