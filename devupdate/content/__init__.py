"""Stored content: the object table, who references each object, cleanup and usage.

Every owner of stored objects (phone images today, WSUS files later, one object possibly owned by
both) registers the objects it still needs in :mod:`devupdate.content.registry`; cleanup deletes
only what no owner names. Features import this package; it imports no feature.
"""
