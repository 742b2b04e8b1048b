"""Filestore area names: one spelling for every module, the quotas and the usage report."""

from __future__ import annotations

IMAGES = "images"  # content-addressed objects (phone images and catalogs), named by SHA-256
INCOMING = "incoming"  # uploads being received, before import
LOGS_CLIENT = "logs/client"  # device log uploads
LOGS_AUDIT = "logs/audit"  # request audit log files
