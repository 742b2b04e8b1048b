"""``/rules``: the update rules and their lifecycle (approve, reset, restore, remove)."""

from __future__ import annotations

from typing import Any

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import (
    CHANGE,
    JSON_CHANGE,
    READ,
    Param,
    clean,
    json_body,
    json_response,
    principal,
    query_text,
    route,
    runtime,
)
from devupdate.rules import bulk, lifecycle, rollout, rollout_actions
from devupdate.rules.rollout_plan import Plan

RULE = Param("rule", {"type": "string", "maxLength": 38, "pattern": r"^\{?[0-9A-Fa-f-]{4,36}\}?$",
                      "description": "a rule GUID or a unique prefix of one (4 or more characters): hex digits "
                                     "and '-', braces allowed",
                      "examples": ["5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11", "5a1d2c3e"]},
             "Rule GUID or a unique GUID prefix (a prefix matching several rules: 409)", "path", True)


def _rule_json(rule) -> dict[str, Any]:
    return lifecycle.rule_dict(rule, runtime().settings.effective_service_name)


_RULE_KEY = (paging.TEXT,) * 7


def _rule_key(rule) -> paging.Key:
    return (rule.device_type, rule.brand, rule.model, rule.revision, rule.locale, rule.update_type, rule.id)


_PATTERN = lifecycle.PATTERN_SCHEMA
RULE_FILTERS = (Param("brand", _PATTERN, "Only this brand (pattern)"),
                Param("model", _PATTERN, "Only this model (pattern), e.g. CX*"),
                Param("locale", _PATTERN, "Only this locale (pattern)"))


@route("GET", "/rules", role="operator", summary="Update rules, filtered by brand, model, locale and state",
       params=(*RULE_FILTERS, Param("state", {"type": "string", "enum": list(lifecycle.RULE_STATES), "maxLength": 20,
                                 "pattern": "^[a-z]+$"},
                                    "Only rules with a pending version, an approved one, or neither"),
               *paging.PARAMS),
       responses={200: "RulePage", **READ})
def list_rules() -> Response:
    page = paging.page_request("rules", _RULE_KEY)
    found = lifecycle.list_rules(brand=query_text("brand", 100), model=query_text("model", 100),
                                 locale=query_text("locale", 100), state=query_text("state", 20))
    return paging.in_memory(page, found, _rule_key, _rule_json)


def _bulk_action(name: str, summary: str) -> None:
    def view() -> Response:
        body = json_body()
        selection = bulk.Selection(brand=body.get("Brand"), model=body.get("Model"), locale=body.get("Locale"),
                                   rules=tuple(clean(ref, "rule") for ref in body.get("Rules", ())))
        if body.get("DryRun", False):
            return json_response(bulk.plan(name, selection))
        return json_response(bulk.apply(name, selection, principal().actor, expect=body.get("Expect")))
    view.__name__ = f"{name}_rules"
    route("POST", f"/bulk/rules/{name}", role="admin", summary=summary, body="BulkSelection",
          responses={200: "BulkResult", **JSON_CHANGE, 404: "Error", 409: "Error"})(view)


_bulk_action("approve", "Approve every pending rule a brand / model / locale pattern (or a list of rules) picks; "
             "DryRun answers the confirmation text and changes nothing; one audit entry per rule; Expect (from the "
             "dry run) refuses with 409 if the selection changed since")
_bulk_action("reset", "Reject the pending version of every rule a brand / model / locale pattern (or a list of "
             "rules) picks; DryRun, Expect and the audit entries as for approve")


@route("GET", "/rules/{rule}", role="operator", summary="One rule with its imported versions", params=(RULE,),
       responses={200: "RuleDetail", **READ, 404: "Error", 409: "Error"})
def show_rule(rule: str) -> Response:
    found = lifecycle.resolve(clean(rule, "rule"))
    return json_response({**_rule_json(found), "Versions": lifecycle.rule_versions(found.id)})


@route("GET", "/rules/{rule}/adoption", role="operator", summary="The rule's rollout since its last approval: "
       "devices on the approved version over time, who runs what now, checks and downloads", params=(RULE,),
       responses={200: "RuleAdoption", **READ, 404: "Error", 409: "Error"})
def rule_adoption(rule: str) -> Response:
    from devupdate.devices import adoption

    found = lifecycle.resolve(clean(rule, "rule"))
    return json_response(adoption.adoption(found, retention_days=runtime().settings.activity_retention_days))


def _rule_action(name: str, summary: str) -> None:
    def view(rule: str) -> Response:
        changed = getattr(lifecycle, name)(clean(rule, "rule"), principal().actor)
        return json_response(_rule_json(changed))
    view.__name__ = f"{name}_rule"
    route("POST", f"/rules/{{rule}}/{name}", role="admin", summary=summary, params=(RULE,),
          responses={200: "Rule", **CHANGE, 404: "Error", 409: "Error"})(view)


_rule_action("approve", "Approve the pending version (the approved one becomes the restore version)")
_rule_action("reset", "Reject the pending version; test devices go back to the approved one")
_rule_action("restore", "Roll back to the restore version (none: the fleet is offered nothing)")


@route("DELETE", "/rules/{rule}", role="admin", summary="Delete a rule (its images leave after the grace period)",
       params=(RULE,), responses={200: "RemovedRule", **CHANGE, 404: "Error", 409: "Error"})
def remove_rule(rule: str) -> Response:
    return json_response(lifecycle.remove(clean(rule, "rule"), principal().actor))


# --- staged rollouts (docs/rollouts.md) --------------------------------------------------------------

@route("POST", "/rules/{rule}/rollout", role="admin", params=(RULE,), body="RolloutPlan",
       summary="Approve the pending version in stages (rules approve --rollout): a stable, growing share of the "
               "fleet is offered it, the rest keep the previous approved version; halts at HaltAt failed",
       responses={200: "RuleWithRollout", **JSON_CHANGE, 404: "Error", 409: "Error"})
def approve_in_stages(rule: str) -> Response:
    body = json_body()
    plan = Plan.from_shares(body["Stages"], body.get("Every", "24h"), body.get("HaltAt", "2%"),
                            body.get("FailAfterChecks", 3), body.get("FailAfter", "48h"))
    changed = lifecycle.approve(clean(rule, "rule"), principal().actor, plan)
    staged = rollout.of_rule(changed.id)
    return json_response({**_rule_json(changed), "Rollout": rollout.describe(staged) if staged else None})


@route("GET", "/rollouts", role="operator", summary="Every staged rollout with its stage and devices",
       responses={200: "RolloutList", **READ})
def list_rollouts() -> Response:
    return json_response(rollout_actions.list_rollouts())


@route("GET", "/rules/{rule}/rollout", role="operator", params=(RULE,),
       summary="A rule's rollout: stage, devices offered / updated / failed, halt reason",
       responses={200: "Rollout", **READ, 404: "Error", 409: "Error"})
def show_rollout(rule: str) -> Response:
    return json_response(rollout_actions.show(clean(rule, "rule")))


def _rollout_action(name: str, summary: str) -> None:
    def view(rule: str) -> Response:
        return json_response(getattr(rollout_actions, name)(clean(rule, "rule"), principal().actor))
    view.__name__ = f"{name}_rollout"
    route("POST", f"/rules/{{rule}}/rollout/{name}", role="admin", summary=summary, params=(RULE,),
          responses={200: "Rollout", **CHANGE, 404: "Error", 409: "Error"})(view)


_rollout_action("resume", "Resume a halted rollout (the failures so far are accepted; new ones count)")
_rollout_action("advance", "Start the next stage of a running rollout now")


@route("POST", "/rules/{rule}/rollout/abort", role="admin", params=(RULE,),
       summary="Abort = restore: the fleet goes back to the previous version and the rollout ends",
       responses={200: "Rule", **CHANGE, 404: "Error", 409: "Error"})
def abort_rollout(rule: str) -> Response:
    return json_response(_rule_json(rollout_actions.abort(clean(rule, "rule"), principal().actor)))
