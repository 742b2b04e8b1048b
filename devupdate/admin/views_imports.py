"""``/imports``: vendor cabs over HTTP.

``POST /imports`` takes the cab as the raw request body, streamed into the filestore's
``incoming`` area (quota-checked, never held in memory), then imported from there. The import is
idempotent: sending the same cab again answers ``200`` with ``Outcome: nothing-new``.
"""

from __future__ import annotations

from typing import BinaryIO, cast

from flask import Response, request

from devupdate.admin.routing import (
    CHANGE,
    READ,
    Param,
    error_response,
    json_response,
    principal,
    query_text,
    route,
    runtime,
)
from devupdate.admin.schemas import CAB_MEDIA_TYPES, NO_NUL
from devupdate.content.usage import usage_rows
from devupdate.devices.logs import safe_name
from devupdate.errors import DevupdateError
from devupdate.imports.upload import import_upload
from devupdate.web.bodies import BodyError, refuse_encoding


def _upload_name() -> str:
    raw = query_text("filename", 255)
    if not raw:
        return "upload.cab"
    try:
        return safe_name(raw)
    except DevupdateError:
        return "upload.cab"


@route("GET", "/imports/limits", role="operator", summary="Upload limits: largest cab accepted, area usage",
       responses={200: "ImportLimits", **READ})
def import_limits() -> Response:
    rt = runtime()
    areas = [row for row in usage_rows(rt.store) if row["Area"] in ("incoming", "images")]
    return json_response({"MaxCabSize": rt.settings.max_cab_size, "Areas": areas})


@route("POST", "/imports", role="admin", summary="Import a .cab sent as the request body",
       params=(Param("filename", {"type": "string", "maxLength": 255, "pattern": NO_NUL},
                     "Name recorded for the upload (reduced to a safe base name)"),),
       body="cab",
       responses={201: "ImportResult", 200: "ImportResult", **CHANGE, 409: "Error", 413: "Error", 415: "Error",
                  507: "Error"})
def import_cab() -> Response:
    if (request.mimetype or "") not in ("", *CAB_MEDIA_TYPES):
        return error_response(415, "unsupported-media-type", "send the .cab itself as the request body "
                              "(Content-Type: application/octet-stream)")
    try:
        refuse_encoding(request.environ)
    except BodyError as exc:
        return error_response(415, "unsupported-encoding", exc.message)
    rt = runtime()
    # werkzeug types the request body IO[bytes]; import_upload only reads it
    result = import_upload(rt.store, rt.settings, cast(BinaryIO, request.stream), size=request.content_length,
                           file_name=_upload_name(), actor=principal().actor)
    return json_response(result.as_dict(), 201 if result.outcome == "imported" else 200)
