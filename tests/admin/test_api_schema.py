"""schemathesis against ``/api/v1/openapi.json``: generated requests (valid and invalid) to every
operation of the in-process app never get a server error, and every answer matches the document
(status, content type, body schema)."""

from __future__ import annotations

import pytest
import schemathesis
from apikit import cab_for, make_api
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance


@pytest.fixture
def api_schema(install, tmp_path):
    api_app = make_api(install)
    api_app.upload(cab_for(tmp_path, "4.0.7577.4372", models=(("Polycom", "CX600"), ("HP", "4110"))))
    api_app.call("POST", "/test-devices", json={"Name": "lab", "SerialNumber": "SN1"})
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app.app)
    schema.config.update(headers={"Authorization": f"Bearer {api_app.admin}"})
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_openapi_document(case):
    # positive_data_acceptance is left out on purpose: many schema-valid values are refused by the
    # service's own rules with a documented 400 (a MAC of the wrong length, a setting out of range,
    # an ambiguous GUID prefix) — the schema cannot state every business rule.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
