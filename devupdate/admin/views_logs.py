"""``/logs``: the logs phones uploaded, listed and downloaded."""

from __future__ import annotations

from typing import Any

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import (
    PREFIX,
    READ,
    Param,
    clean,
    error_response,
    query_text,
    route,
    runtime,
)
from devupdate.admin.schemas import NO_NUL
from devupdate.devices import logs


def LOG_PART(length: int) -> dict[str, Any]:  # noqa: N802 - reads as a constant
    """A stored log's type, device id or file name: what the upload endpoint writes (safe names)."""
    return {"type": "string", "maxLength": length, "pattern": rf"^[A-Za-z0-9._-]{{1,{length}}}$",
            "description": "letters, digits, '.', '_' or '-'"}


@route("GET", "/logs", role="operator", summary="Device logs uploaded by phones",
       params=(Param("type", {"type": "string", "maxLength": 40, "pattern": NO_NUL}, "Only this log type, e.g. Watson"),
               Param("device", {"type": "string", "maxLength": 80, "pattern": NO_NUL},
                     "Only this device: MAC or serial"), *paging.PARAMS),
       responses={200: "LogFilePage", **READ})
def list_logs() -> Response:
    page = paging.page_request("logs", (paging.TEXT,) * 3)
    files = logs.list_logs(runtime().store, log_type=query_text("type", 40), device=query_text("device", 80))
    return paging.in_memory(page, files, lambda item: (item.log_type, item.device_id, item.name),
                            lambda item: item.as_dict())


@route("GET", "/logs/{type}/{device}/{name}", role="operator", summary="Download one device log",
       params=(Param("type", LOG_PART(40), "Log type", "path", True),
               Param("device", LOG_PART(80), "Device id (MAC or SN-<serial>)", "path", True),
               Param("name", LOG_PART(200), "File name", "path", True)),
       responses={200: "", **READ, 404: "Error"})
def download_log(type: str, device: str, name: str) -> Response:  # noqa: A002 - the path parameter's name
    store = runtime().store
    for item in logs.list_logs(store, log_type=clean(type, "type"), device=clean(device, "device")):
        if item.name == name:
            try:
                handle = store.open_named(logs.CLIENT_AREA, item.relpath)
            except Exception:  # noqa: BLE001 - removed by cleanup since it was listed
                break
            response = Response(_file_chunks(handle), mimetype="application/octet-stream",
                                direct_passthrough=True)
            response.headers["Content-Length"] = str(item.size)
            response.headers["Content-Disposition"] = f'attachment; filename="{item.name}"'
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
    return error_response(404, "no-such-log", f"no log {type}/{device}/{name}; see GET {PREFIX}/logs")


def _file_chunks(handle):
    with handle:
        while chunk := handle.read(1 << 16):
            yield chunk
