"""``/tokens``, ``/admins``, ``/users``: API tokens, web console accounts and the users of the external
side — what ``devupdate tokens|admins|users`` do, through the same service functions (and audit rows)."""

from __future__ import annotations

from flask import Response

from devupdate.admin import paging, tokens
from devupdate.admin.console import auth
from devupdate.admin.routing import (
    CHANGE,
    JSON_CHANGE,
    Param,
    clean,
    json_body,
    json_response,
    principal,
    route,
    runtime,
)
from devupdate.admin.schemas import ACCOUNT_NAME, TOKEN_NAME
from devupdate.devices import cli as device_commands

TOKEN = Param("name", TOKEN_NAME, "Token name", "path", True)
ACCOUNT = Param("name", ACCOUNT_NAME, "Account name", "path", True)
_BY_NAME = (paging.TEXT,)


# --- API tokens -----------------------------------------------------------------------------------

@route("GET", "/tokens", role="admin", summary="API tokens with their role, creation, last use and revocation "
       "(never the secrets)", params=paging.PARAMS, responses={200: "TokenPage", **CHANGE})
def list_tokens() -> Response:
    page = paging.page_request("tokens", _BY_NAME)
    return paging.in_memory(page, tokens.list_tokens(), lambda token: (token.name,), tokens.token_dict)


@route("POST", "/tokens", role="admin", summary="Create a token; the answer holds its secret, shown only now",
       body="TokenNew", responses={201: "TokenCreated", **JSON_CHANGE, 409: "Error"})
def create_token() -> Response:
    body = json_body()
    token, secret = tokens.create(body["Name"], body["Role"], actor=principal().actor)
    return json_response({**tokens.token_dict(token), "Secret": secret}, 201)


@route("DELETE", "/tokens/{name}", role="admin", summary="Revoke a token: requests presenting it are refused "
       "from now on", params=(TOKEN,), responses={200: "Token", **CHANGE, 404: "Error", 409: "Error"})
def revoke_token(name: str) -> Response:
    return json_response(tokens.token_dict(tokens.revoke(clean(name, "name"), actor=principal().actor)))


# --- web console accounts -------------------------------------------------------------------------

@route("GET", "/admins", role="admin", summary="Web console accounts with their role and last sign-in",
       params=paging.PARAMS, responses={200: "AdminPage", **CHANGE})
def list_admins() -> Response:
    page = paging.page_request("admins", _BY_NAME)
    return paging.in_memory(page, auth.list_admins(), lambda user: (user.name,), auth.admin_dict)


@route("POST", "/admins", role="admin", summary="Create a console account (Replace: set a new password and role)",
       body="AdminNew", responses={200: "Admin", 201: "Admin", **JSON_CHANGE, 409: "Error"})
def add_admin() -> Response:
    body = json_body()
    replace = bool(body.get("Replace", False))
    existed = replace and any(user.name == body["Name"] for user in auth.list_admins())
    user = auth.add_admin(body["Name"], body["Password"], body["Role"], actor=principal().actor, replace=replace)
    return json_response(auth.admin_dict(user), 200 if existed else 201)


@route("DELETE", "/admins/{name}", role="admin", summary="Delete a console account; its open sessions end at "
       "their next request", params=(ACCOUNT,), responses={200: "AdminRemoved", **CHANGE, 404: "Error"})
def remove_admin(name: str) -> Response:
    return json_response(auth.remove_admin(clean(name, "name"), actor=principal().actor))


# --- users of the external side -------------------------------------------------------------------

def _users():
    return device_commands.user_store(runtime().settings)


@route("GET", "/users", role="admin", summary="Users who may use the external paths (names only; NTLM: whether "
       "the user has the hash NTLM and Negotiate need)", params=paging.PARAMS, responses={200: "UserPage", **CHANGE})
def list_users() -> Response:
    page = paging.page_request("users", _BY_NAME)
    return paging.in_memory(page, _users().listing(), lambda pair: (pair[0],),
                            lambda pair: {"Name": pair[0], "NTLM": pair[1]})


@route("POST", "/users", role="admin", summary="Add a user of the external side (Replace: change the password)",
       body="UserNew", responses={200: "UserChange", 201: "UserChange", **JSON_CHANGE, 409: "Error"})
def add_user() -> Response:
    body = json_body()
    result = device_commands.add_user(_users(), body["Name"], body["Password"],
                                      replace=bool(body.get("Replace", False)), actor=principal().actor)
    return json_response(result, 200 if result["Replaced"] else 201)


@route("DELETE", "/users/{name}", role="admin", summary="Remove a user of the external side", params=(ACCOUNT,),
       responses={200: "UserRemoved", **CHANGE, 404: "Error"})
def remove_user(name: str) -> Response:
    return json_response(device_commands.remove_user(_users(), clean(name, "name"), actor=principal().actor))
