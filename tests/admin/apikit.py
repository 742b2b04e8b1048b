"""Helpers of the JSON API, upload tool and metrics tests: an in-process app with an admin and an
operator token, and cabs built the way vendors ship them (``helpers.cabs``)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.cabs import make_package, make_update

API = "/api/v1"
RULE_ID_CX600 = make_update().id


@functools.cache
def _operations() -> list[tuple[re.Pattern, str, dict]]:
    from devupdate.admin.openapi import document

    found = []
    for path, methods in document()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in methods.items():
            found.append((pattern, method.upper(), operation))
    return found


def conforms(response, method: str, url: str):
    """Assert the answer is one the OpenAPI document describes (status, content type, JSON schema)."""
    import jsonschema

    from devupdate.admin.openapi import document

    path = url.split("?", 1)[0]
    matches = [op for pattern, verb, op in _operations() if verb == method.upper() and pattern.match(path)]
    if not matches:
        return response  # not an API operation (unknown path, wrong method): answered 404/405
    documented = matches[0]["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path} answered {response.status_code}, which is not documented"
    content = documented.get("content", {})
    if "application/json" in content:
        assert response.mimetype == "application/json", response.mimetype
        schema = {**content["application/json"]["schema"], "components": document()["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json)
    return response


@dataclass
class ApiApp:
    """A ``create_app`` in this process (no background threads) with one token per role."""

    app: Any
    runtime: Any
    admin: str
    operator: str

    @property
    def client(self):
        return self.app.test_client()

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin if role == 'admin' else self.operator}"}

    def get(self, path: str, role: str = "operator", **kwargs):
        return conforms(self.client.get(API + path, headers=self.auth(role), **kwargs), "GET", API + path)

    def call(self, method: str, path: str, role: str = "admin", **kwargs):
        response = self.client.open(API + path, method=method,
                                    headers={**self.auth(role), **kwargs.pop("headers", {})}, **kwargs)
        return conforms(response, method, API + path)

    def upload(self, cab: Path, role: str = "admin", name: str | None = None):
        with open(cab, "rb") as handle:
            response = self.client.post(f"{API}/imports?filename={name or cab.name}", data=handle,
                                        headers={**self.auth(role), "Content-Type": "application/octet-stream",
                                                 "Content-Length": str(cab.stat().st_size)})
        return conforms(response, "POST", f"{API}/imports")


def make_api(install, **settings) -> ApiApp:
    from devupdate.admin import tokens
    from devupdate.app import create_app

    runtime = install.runtime(**settings)
    app = create_app(runtime, background=False)
    app.config["TESTING"] = True
    _, admin = tokens.create("ci-admin", "admin", actor="test")
    _, operator = tokens.create("ci-reader", "operator", actor="test")
    return ApiApp(app, runtime, admin, operator)


def cab_for(directory: Path, version: str = "4.0.7577.4372", *, models=(("Polycom", "CX600"),), size: int = 20_000,
            name: str | None = None) -> Path:
    """A vendor-like cab (signed catalogs) with one update per model."""
    directory.mkdir(parents=True, exist_ok=True)
    return make_package(directory, [make_update(brand, model, version) for brand, model in models],
                        image_sizes=size, name=name or "UCUpdates.cab")
