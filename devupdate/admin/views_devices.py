"""``/devices``: the inventory of phones seen, with their compliance status, and one device's page."""

from __future__ import annotations

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import READ, Param, json_response, query_bool, query_int, query_text, route, runtime
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
               *paging.PARAMS),
       responses={200: "DevicePage", **READ})
def list_devices() -> Response:
    sort = compliance.parse_sort(query_text("sort", 20) or "device")
    kind = _SORT_KINDS.get(sort.lstrip("-"), paging.TEXT)
    page = paging.page_request("devices", (kind, paging.TEXT), sort)
    age = query_text("not_seen_since", 10)
    model, search = query_text("model", 100), query_text("search", 100)
    not_seen_since = compliance.parse_age(age) if age else None
    status = "outdated" if query_bool("outdated") else query_text("status", 20)
    rows = compliance.device_page(model=model, search=search, not_seen_since=not_seen_since, status=status,
                                  sort=sort, limit=page.limit + 1, after=page.after)
    # counting is one indexed query without the status filter; with it, every row's versions are needed
    total = None if status else compliance.count_devices(model=model, search=search, not_seen_since=not_seen_since)
    return paging.respond(page, rows, lambda pair: pair[0], lambda pair: pair[1], total=total)


_SORT_KINDS = {"first-seen": paging.TIME, "last-seen": paging.TIME, "checks": paging.INT}


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
