"""``/configuration``: the device-update configuration, globally and per site."""

from __future__ import annotations

from flask import Response

from devupdate import configuration
from devupdate.admin import paging, validation
from devupdate.admin.routing import (
    CHANGE,
    JSON_CHANGE,
    READ,
    SITE,
    Param,
    json_body,
    json_response,
    principal,
    query_text,
    route,
    runtime,
)
from devupdate.admin.schemas import config_value_schema

# The document has one operation per setting (its value schema differs); the route takes any case.
CONFIG_KEY = Param("key", {"type": "string", "maxLength": 100}, "Setting name (case-insensitive)", "path", True)


@route("GET", "/configuration", role="operator", summary="The device-update configuration in force",
       params=(SITE,), responses={200: "Configuration", **READ})
def show_configuration() -> Response:
    return json_response(configuration.show(query_text("site")))


@route("GET", "/configurations", role="operator", params=paging.PARAMS,
       summary="Every scope with values of its own (Get-CsDeviceUpdateConfiguration without -Identity): global, "
               "then the sites", responses={200: "ConfigScopePage", **READ})
def list_configuration_scopes() -> Response:
    page = paging.page_request("configuration-scopes", (paging.TEXT,))
    return paging.in_memory(page, configuration.overrides().items(), lambda pair: (pair[0],),
                            lambda pair: {"Scope": pair[0], "Values": pair[1]})


@route("PUT", "/configuration/{key}", role="admin", summary="Change one setting (globally or for a site)",
       params=(CONFIG_KEY, SITE), body="ConfigValue", responses={200: "ConfigChange", **JSON_CHANGE})
def set_configuration(key: str) -> Response:
    name = configuration.canonical_key(key)
    # the body's shape was checked against ConfigValue (bad-body); what is left is the value itself
    validation.check(config_value_schema(name), json_body(), name, code="bad-value")
    value = json_body()["Value"]
    if value is None:
        text = "none"
    elif isinstance(value, list):
        text = " ".join(value)
    elif isinstance(value, float):  # 2048.0 is the integer 2048 in JSON
        text = str(int(value))
    else:
        text = str(value)
    change = configuration.set_value(name, text, site=query_text("site"), actor=principal().actor,
                                     quotas=runtime().settings.quotas)
    return json_response(change)


@route("DELETE", "/configuration", role="admin", params=(SITE,), summary="Remove a site's own configuration "
       "(Remove-CsDeviceUpdateConfiguration): the site follows the global values; without site, every global "
       "setting returns to its default", responses={200: "ConfigRemoval", **CHANGE, 404: "Error"})
def remove_configuration() -> Response:
    return json_response(configuration.remove(site=query_text("site"), actor=principal().actor))
