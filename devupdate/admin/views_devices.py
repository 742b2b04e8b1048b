"""``/devices``: the inventory of phones seen, with their compliance status, and one device's page."""

from __future__ import annotations

from flask import Response

from devupdate.admin.routing import (
    LIMIT,
    MAX_OFFSET,
    MAX_PAGE,
    OFFSET,
    READ,
    Param,
    json_response,
    query_bool,
    query_int,
    query_text,
    route,
    runtime,
)
from devupdate.admin.schemas import NO_NUL
from devupdate.devices import compliance


@route("GET", "/devices", role="operator", summary="Known devices with their compliance status",
       params=(Param("model", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Only this model (case-insensitive; '*' matches anything)"),
               Param("status", {"type": "string", "enum": ["current", "outdated", "unmanaged"], "maxLength": 9,
                                 "pattern": "^(current|outdated|unmanaged)$"}, "Only this compliance status"),
               Param("outdated", {"type": "boolean"}, "Only devices running something other than an approved "
                     "version (status=outdated)"),
               Param("not_seen_since", {"type": "string", "maxLength": 5, "pattern": "^[0-9]{1,4}[hdw]?$"},
                     "Only devices whose last check is older than this: 30d, 12h, 2w (a bare number: days)"),
               Param("search", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Only devices whose MAC (any spelling), serial or user ID contains this"),
               Param("sort", {"type": "string", "enum": [p + key for key in compliance.SORTS for p in ("", "-")],
                              "maxLength": 20, "pattern": "^-?[a-z][a-z-]{0,18}$"},
                     "Sort key; a leading '-' sorts descending (default: device)"),
               LIMIT, OFFSET),
       responses={200: "DeviceList", **READ})
def list_devices() -> Response:
    age = query_text("not_seen_since", 10)
    rows = compliance.list_devices(model=query_text("model", 100), outdated=query_bool("outdated"),
                                   status=query_text("status", 20), search=query_text("search", 100),
                                   not_seen_since=compliance.parse_age(age) if age else None,
                                   sort=query_text("sort", 20) or "device",
                                   limit=query_int("limit", 50, 1, MAX_PAGE),
                                   offset=query_int("offset", 0, 0, MAX_OFFSET))
    return json_response(rows)


@route("GET", "/devices/{device}", role="operator", summary="One device: identity, versions over time, its logs "
       "and audit-trail rows",
       params=(Param("device", {"type": "string", "maxLength": 80, "pattern": NO_NUL},
                     "MAC address (any spelling), serial number or DeviceId", where="path", required=True),),
       responses={200: "DeviceDetail", 404: "Error", **READ})
def show_device(device: str) -> Response:
    return json_response(compliance.device_detail(device, store=runtime().store))


@route("GET", "/activity", role="operator", summary="Check-ins and downloads per UTC day, oldest first",
       params=(Param("days", {"type": "integer", "minimum": 1, "maximum": 3650, "default": 30},
                     "How many days, today included (beyond the retention, activity_retention_days: zeros)"),),
       responses={200: "ActivityDays", **READ})
def activity_days() -> Response:
    from devupdate.devices import adoption

    return json_response(adoption.activity_days(query_int("days", 30, 1, 3650)))
