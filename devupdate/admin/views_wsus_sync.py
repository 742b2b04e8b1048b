"""``/wsus/sync`` and ``/wsus/needed``: the downstream sync's history, a run on demand, and the
needed-update list of fault-in mode. The same functions as ``devupdate wsus sync`` and
``devupdate wsus needed``."""

from __future__ import annotations

import logging
import threading

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import (
    JSON_CHANGE,
    LIMIT,
    READ,
    Param,
    json_body,
    json_response,
    only_keys,
    principal,
    query_int,
    query_text,
    route,
    runtime,
)
from devupdate.admin.schemas import UPDATE_ID
from devupdate.errors import DevupdateError
from devupdate.wsus.downstream import marks, needed, service

log = logging.getLogger("devupdate.wsus.downstream")
UPDATE = Param("update", UPDATE_ID, "The UpdateID", where="path")
FILE_STATE = Param("state", {"type": "string", "enum": list(marks.STATES), "maxLength": 40, "pattern": "^[a-z-]+$"},
                   "Only the files in this state")


@route("GET", "/wsus/sync", role="operator",
       summary="The sync history (newest first, kept 30 days) and the anchors stored per upstream",
       params=(LIMIT,), responses={200: "WsusSyncStatus", **READ})
def wsus_sync_status() -> Response:
    return json_response(service.status(query_int("limit", 50, 1, 1000)))


@route("GET", "/wsus/sync/runs", role="operator", summary="The sync history, newest first (kept 30 days), paged",
       params=paging.PARAMS, responses={200: "WsusSyncRunPage", **READ})
def list_wsus_sync_runs() -> Response:
    page = paging.page_request("wsus-sync-runs", (paging.INT,))
    rows = service.runs(page.limit + 1, before=page.after[0] if page.after else None)
    return paging.respond(page, rows, lambda row: (row["Id"],))


@route("POST", "/wsus/sync", role="admin",
       summary="Start a sync from the configured upstream (DEVUPDATE_WSUS_UPSTREAM_URL) now; a run already "
               "going on is joined, not started twice",
       body="WsusSyncStart", responses={202: "WsusSyncStarted", **JSON_CHANGE, 409: "Error"})
def start_wsus_sync() -> Response:
    body = json_body()
    only_keys(body, "Mode")
    rt = runtime()
    mode = body.get("Mode")
    # only the configured upstream: the API never points this server at a URL a caller names
    url = service.upstream_url(rt.settings, None)  # refused here, not in the thread
    actor = principal().actor

    def run() -> None:
        try:
            service.sync(rt.settings, rt.store, upstream=url, mode=mode, trigger="api", actor=actor,
                         attach_timeout=1.0)
        except DevupdateError as exc:
            log.warning("sync started over the API: %s", exc.message)

    threading.Thread(target=run, name="wsus-sync-api", daemon=True).start()
    return json_response({"Started": True, "Upstream": url, "Mode": mode or rt.settings.wsus_sync_mode}, 202)


@route("GET", "/wsus/sync/files", role="operator",
       summary="The files the sync gave up on (corrupt upstream after 3 mismatches, or unavailable there); "
               "they are not fetched again until cleared",
       params=(FILE_STATE, *paging.PARAMS), responses={200: "WsusMarkedFilePage", **READ})
def list_wsus_sync_files() -> Response:
    page = paging.page_request("wsus-sync-files", (paging.TEXT,))
    rows = marks.marked(query_text("state", 40), page.limit + 1, after=page.after[0] if page.after else None)
    return paging.respond(page, rows, lambda row: (row["SHA1"],))


@route("POST", "/wsus/sync/files/retry", role="admin",
       summary="Clear the marks of these files (or of all of them, or all in one state): the next sync fetches, "
               "verifies and stores them again",
       body="WsusMarkedFileRetry", responses={200: "WsusMarkedFileList", **JSON_CHANGE, 404: "Error"})
def retry_wsus_sync_files() -> Response:
    body = json_body()
    only_keys(body, "SHA1", "All", "State")
    sha1s, every = body.get("SHA1"), body.get("All") is True
    if (sha1s is None) == (not every):
        raise DevupdateError("give either SHA1 (a list) or All: true", code="bad-body")
    return json_response(marks.clear(None if every else [str(s) for s in sha1s or []], state=body.get("State"),
                                     actor=principal().actor))


@route("GET", "/wsus/needed", role="operator", summary="The needed-update list of fault-in mode, oldest first",
       responses={200: "WsusNeededList", **READ})
def list_wsus_needed() -> Response:
    return json_response(needed.entries())


@route("POST", "/wsus/needed", role="admin", summary="Put an update on the needed list (an MDM pushes these)",
       body="WsusNeededNew", responses={201: "WsusNeeded", **JSON_CHANGE, 409: "Error"})
def add_wsus_needed() -> Response:
    body = json_body()
    only_keys(body, "UpdateID", "RevisionNumber", "Source")
    source = body.get("Source") or ""
    return json_response(needed.add(str(body["UpdateID"]), body.get("RevisionNumber"), source=str(source),
                                    actor=principal().actor), 201)


@route("DELETE", "/wsus/needed/{update}", role="admin", summary="Take an update off the needed list",
       params=(UPDATE,), responses={200: "WsusNeeded", **JSON_CHANGE, 404: "Error"})
def remove_wsus_needed(update: str) -> Response:
    return json_response(needed.remove(update, actor=principal().actor))
