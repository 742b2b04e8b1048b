"""``/request-logs``: the per-request audit log files and their rows — the console's viewer over the
API, through the same reader (``audit.requestlog_view``): rows from a byte offset, a search text,
one bounded scan per request. The cursor holds the file's name and the offset the page ended at,
so a cursor of one file is refused for another."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, request

from devupdate.admin import paging
from devupdate.admin.routing import READ, Param, json_response, query_text, route, runtime
from devupdate.audit import requestlog_view
from devupdate.errors import DevupdateError

NAME = Param("name", {"type": "string", "minLength": 1, "maxLength": 300, "pattern": r"^[A-Za-z0-9._-]+$",
                      "description": "a file name as GET /request-logs lists it"},
             "The log file", "path", True)
SEARCH = Param("q", {"type": "string", "maxLength": requestlog_view.MAX_SEARCH, "pattern": r"^[^\x00]*$"},
               "Only rows containing this text (case-insensitive)")


@route("GET", "/request-logs", role="operator", summary="The request audit log files, by name (server, then day)",
       params=paging.PARAMS, responses={200: "RequestLogFilePage", **READ})
def list_request_logs() -> Response:
    page = paging.page_request("request-logs", (paging.TEXT,))
    return paging.in_memory(page, requestlog_view.files(runtime().store), lambda row: (row["Name"],))


@route("GET", "/request-logs/{name}", role="operator",
       summary="Rows of one request audit log file, from the start or a cursor; q: only rows containing it",
       params=(NAME, SEARCH, *paging.PARAMS), responses={200: "RequestLogRowPage", **READ, 404: "Error"})
def show_request_log(name: str) -> Response:
    page = paging.page_request("request-log", (paging.INT,), sort=name[:300])
    start = int(page.after[0]) if page.after else 0
    if start < 0:
        raise DevupdateError("query parameter 'cursor' holds a negative offset", code="bad-cursor")
    with requestlog_view.open_file(runtime().store, name) as handle:
        found = requestlog_view.read_page(handle, start=start, search=query_text("q", requestlog_view.MAX_SEARCH)
                                          or "", limit=page.limit)
    # the reader stops at a page or at its scan budget: either way Next goes on from where it stopped
    next_link = None
    if found.next_start is not None:
        args = [(key, value) for key, value in request.args.items(multi=True) if key not in ("cursor", "limit")]
        args += [("limit", str(page.limit)), ("cursor", paging.encode(page.listing, page.sort, (found.next_start,)))]
        next_link = f"{request.path}?{urlencode(args)}"
    headers = {"Link": f'<{next_link}>; rel="next"'} if next_link else None
    return json_response({"Items": found.rows, "Limit": page.limit, "Total": None, "Next": next_link},
                         headers=headers)
