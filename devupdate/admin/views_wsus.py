"""``/wsus``: the WSUS update catalog — updates (list, show, decline, undecline, delete, restore),
categories and the selected products. The same service functions as ``devupdate wsus``."""

from __future__ import annotations

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import JSON_CHANGE, READ, Param, json_response, principal, query_text, route
from devupdate.admin.schemas import NO_NUL, UPDATE_ID
from devupdate.wsus.catalog import STATES
from devupdate.wsus.catalog import service as catalog

UPDATE = Param("update", UPDATE_ID, "UpdateID of the update", "path", True)
PRODUCT = Param("product", {**UPDATE_ID, "description": "the UpdateID of a product, product family or company: a GUID "
                            "such as 56309036-4c77-4dd9-951a-99ee9c246a94 (see GET /wsus/categories)"},
                "UpdateID of the product", "path", True)
#: 100 characters each: the longest valid request line stays within what the server reads
FILTER = {"type": "string", "maxLength": 100, "pattern": NO_NUL}


@route("GET", "/wsus/updates", role="operator", summary="Software and driver updates of the catalog, newest first",
       params=(Param("product", FILTER, "Only updates of this product: its UpdateID or title (case-insensitive)"),
               Param("classification", FILTER, "Only updates of this classification: its UpdateID or title"),
               Param("state", {"type": "string", "enum": list(STATES), "maxLength": 20,
                                       "pattern": "^[a-z]+$", "description": f"one of {', '.join(STATES)}"},
                     "Only updates in this state (deleted ones are listed only with state=deleted)"),
               Param("search", FILTER, "Title or KB contains this text, or the UpdateID starts with it"),
               *paging.PARAMS),
       responses={200: "WsusUpdatePage", **READ, 404: "Error"})
def list_wsus_updates() -> Response:
    # keyset on the indexed current RevisionID: a page of a 250,000-revision catalog reads one page;
    # Total is left out (counting every filtered update is the read the keyset avoids)
    page = paging.page_request("wsus-updates", (paging.INT,))
    rows = catalog.list_updates(product=query_text("product", 100), classification=query_text("classification", 100),
                                state=query_text("state", 20), search=query_text("search", 100),
                                limit=page.limit + 1, before=page.after[0] if page.after else None)
    return paging.respond(page, rows, lambda row: (row["RevisionID"],))


@route("GET", "/wsus/updates/{update}", role="operator",
       summary="One update: revisions, files, prerequisites, bundles, supersedence", params=(UPDATE,),
       responses={200: "WsusUpdateDetail", **READ, 404: "Error"})
def show_wsus_update(update: str) -> Response:
    return json_response(catalog.show_update(update))


@route("POST", "/wsus/updates/{update}/decline", role="admin", summary="Decline an update: it is never offered",
       params=(UPDATE,), responses={200: "WsusDecline", **JSON_CHANGE, 404: "Error"})
def decline_wsus_update(update: str) -> Response:
    return json_response(catalog.decline(update, actor=principal().actor, declined=True))


@route("POST", "/wsus/updates/{update}/undecline", role="admin", summary="Offer a declined update again",
       params=(UPDATE,), responses={200: "WsusDecline", **JSON_CHANGE, 404: "Error"})
def undecline_wsus_update(update: str) -> Response:
    return json_response(catalog.decline(update, actor=principal().actor, declined=False))


@route("DELETE", "/wsus/updates/{update}", role="admin",
       summary="Delete an update from the catalog (its revisions are kept: restore gives the same RevisionIDs back)",
       params=(UPDATE,), responses={200: "WsusDeletion", **JSON_CHANGE, 404: "Error"})
def delete_wsus_update(update: str) -> Response:
    return json_response(catalog.delete(update, actor=principal().actor, deleted=True))


@route("POST", "/wsus/updates/{update}/restore", role="admin",
       summary="Restore a deleted update, with the RevisionIDs it had", params=(UPDATE,),
       responses={200: "WsusDeletion", **JSON_CHANGE, 404: "Error"})
def restore_wsus_update(update: str) -> Response:
    return json_response(catalog.delete(update, actor=principal().actor, deleted=False))


@route("GET", "/wsus/categories", role="operator",
       summary="Companies, product families, products and classifications; Selected: synced and offered",
       responses={200: "WsusCategoryList", **READ})
def list_wsus_categories() -> Response:
    return json_response(catalog.list_categories())


@route("POST", "/wsus/products/{product}/select", role="admin", summary="Sync and offer the updates of a product",
       params=(PRODUCT,), responses={200: "WsusProductSelection", **JSON_CHANGE, 404: "Error", 409: "Error"})
def select_wsus_product(product: str) -> Response:
    return json_response(catalog.select_product(product, actor=principal().actor, selected=True))


@route("POST", "/wsus/products/{product}/unselect", role="admin",
       summary="Stop syncing and offering the updates of a product", params=(PRODUCT,),
       responses={200: "WsusProductSelection", **JSON_CHANGE, 404: "Error", 409: "Error"})
def unselect_wsus_product(product: str) -> Response:
    return json_response(catalog.select_product(product, actor=principal().actor, selected=False))
