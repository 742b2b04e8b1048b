"""Staged rollouts over the JSON API: the CLI's service functions, the same shapes and refusals, every
change in the audit trail under the token's name; the answers match the API's OpenAPI document."""

from __future__ import annotations

import json

import jsonschema
import pytest
from apikit import RULE_ID_CX600, cab_for, make_api

V1, V2 = "4.0.7577.4366", "4.0.7577.4372"


@pytest.fixture
def api_app(install):
    return make_api(install)


def valid(api_app, name: str, value) -> None:
    document = api_app.get("/openapi.json").json
    jsonschema.validate(value, {**document["components"]["schemas"][name], "components": document["components"]})


def test_rollout_over_the_api(api_app, install, tmp_path):
    rule = RULE_ID_CX600
    api_app.upload(cab_for(tmp_path / "a", V1))
    api_app.call("POST", f"/rules/{rule}/approve")
    api_app.upload(cab_for(tmp_path / "b", V2))

    bad = api_app.call("POST", f"/rules/{rule}/rollout", json={"Stages": ["5%"], "Every": "0h"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "bad-body"
    unknown = api_app.call("POST", f"/rules/{rule}/rollout", json={"Stages": ["5%"], "Speed": "fast"})
    assert unknown.status_code == 400 and unknown.json["error"]["code"] == "bad-body"
    assert api_app.get(f"/rules/{rule}").json["PendingVersion"] == V2  # refused: nothing changed

    started = api_app.call("POST", f"/rules/{rule}/rollout", json={"Stages": ["25%", "5%"], "Every": "24h",
                                                                  "HaltAt": "2%", "FailAfterChecks": 4})
    assert started.status_code == 200, started.json
    valid(api_app, "RuleWithRollout", started.json)
    assert (started.json["ApprovedVersion"], started.json["ApprovedBy"]) == (V2, "token:ci-admin")
    plan = started.json["Rollout"]
    assert {k: plan[k] for k in ("State", "Stage", "Share", "Stages", "Every", "HaltAt", "FailAfterChecks",
                                 "FailAfter", "PreviousVersion", "StartedBy")} == {
        "State": "running", "Stage": 1, "Share": "5%", "Stages": ["5%", "25%", "100%"], "Every": "24h",
        "HaltAt": "2%", "FailAfterChecks": 4, "FailAfter": "48h", "PreviousVersion": V1,
        "StartedBy": "token:ci-admin"}
    shown = api_app.get(f"/rules/{rule[:8]}/rollout").json
    valid(api_app, "Rollout", shown)
    assert shown == json.loads(install.cli("rules", "rollout", "show", rule, "--json").stdout)
    assert api_app.get("/rollouts").json == [shown]

    resumed = api_app.call("POST", f"/rules/{rule}/rollout/resume")
    assert resumed.status_code == 409 and resumed.json["error"]["code"] == "not-halted"
    advanced = api_app.call("POST", f"/rules/{rule}/rollout/advance")
    assert advanced.status_code == 200 and (advanced.json["Stage"], advanced.json["Share"]) == (2, "25%")
    aborted = api_app.call("POST", f"/rules/{rule}/rollout/abort")
    assert aborted.status_code == 200 and (aborted.json["ApprovedVersion"], aborted.json["RestoreVersion"]) == (
        V1, None)
    gone = api_app.get(f"/rules/{rule}/rollout")
    assert gone.status_code == 404 and gone.json["error"]["code"] == "no-rollout"
    assert api_app.call("POST", f"/rules/{rule}/rollout/abort").status_code == 404

    trail = api_app.get("/audit?actor=token:ci-admin&action=rule.").json["Items"]
    assert [(e["Action"], e["Outcome"]) for e in trail][::-1][-6:] == [
        ("rule.approve", "ok"), ("rule.rollout.start", "ok"), ("rule.rollout.resume", "refused"),
        ("rule.rollout.advance", "ok"), ("rule.restore", "ok"), ("rule.rollout.end", "ok")]
