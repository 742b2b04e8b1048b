"""Maintenance: ``files cleanup`` (Clear-CsDeviceUpdateFile), ``logs cleanup`` (Clear-CsDeviceUpdateLog) and
``filestore verify`` — the commands' own service functions, so the API and the CLI report the same."""

from __future__ import annotations

from flask import Response

from devupdate.admin.routing import CHANGE, JSON_CHANGE, json_body, json_response, principal, route, runtime
from devupdate.devices.logs import cleanup_now
from devupdate.rules.cleanup import cleanup_files


@route("POST", "/files/cleanup", role="admin", summary="Remove images no rule references any more (after the "
       "grace period, never while a phone may still download them)", responses={200: "FileCleanup", **CHANGE})
def clean_up_files() -> Response:
    rt = runtime()
    return json_response(cleanup_files(rt.store, grace_seconds=rt.settings.file_cleanup_grace,
                                       actor=principal().actor))


@route("POST", "/logs/cleanup", role="admin", body="LogCleanupRequest", body_optional=True,
       summary="Remove device logs and request audit logs last written more than DaysBack days ago "
               "(default: LogCleanUpInterval)", responses={200: "LogCleanup", **JSON_CHANGE})
def clean_up_logs() -> Response:
    return json_response(cleanup_now(runtime().store, json_body().get("DaysBack"), actor=principal().actor).as_dict())


@route("POST", "/filestore/verify", role="admin", summary="Re-hash every stored object; Ok is false when any "
       "does not match its name (each is listed)", responses={200: "FilestoreVerify", **CHANGE})
def verify_filestore() -> Response:
    problems = [{"Area": p.area, "SHA256": p.sha256, "Problem": p.problem} for p in runtime().store.verify()]
    return json_response({"Ok": not problems, "Problems": problems})
