"""``/filestore``: bytes used per area against its quota."""

from __future__ import annotations

from flask import Response

from devupdate.admin.routing import READ, json_response, route, runtime
from devupdate.content.usage import usage_rows


@route("GET", "/filestore/usage", role="operator", summary="Bytes used per filestore area against its quota",
       responses={200: "UsageList", **READ})
def filestore_usage() -> Response:
    return json_response(usage_rows(runtime().store))
