"""The JSON API under ``/api/v1`` (issue 5), assembled: views translate HTTP ⇄ the service
functions the CLI calls, and nothing else.

- ``routing.py``: the route table, authentication and roles, request checks, error bodies;
- ``views_<feature>.py``: one module per feature (rules, imports, test devices, configuration,
  devices, audit trail, device logs, filestore), each declaring its routes with ``routing.route``;
- ``openapi.py``: the document generated from that table (it imports every feature's views, so the
  table is complete once it is imported) and ``GET /openapi.json``;
- ``schemas.py``: the shapes the document publishes and the request checks enforce.

This module adds the JSON catch-all for unknown paths and methods, after every route, and installs
the blueprint. ``ROUTES`` is the complete table once this module is imported.
"""

from __future__ import annotations

from flask import Flask

from devupdate.admin import openapi  # noqa: F401 - registers every feature's views and the document
from devupdate.admin.routing import ROUTES, add_fallback, bp

__all__ = ["ROUTES", "install"]

add_fallback()


def install(app: Flask) -> None:
    """Register the API on the app (called from ``create_app``)."""
    app.register_blueprint(bp)
