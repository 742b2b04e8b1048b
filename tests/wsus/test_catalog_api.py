"""The WSUS catalog in the JSON API of a real ``devupdate serve``: the same answers as
``devupdate wsus … --json`` (one implementation), filters and pages, decline, delete and restore
(RevisionIDs kept across a server restart), products, and hostile input refused with a 4xx and the
reason, nothing changed. Every answer is checked against the OpenAPI document."""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

import jsonschema
import pytest
import requests
from catalogkit import BUNDLE, DEFENDER, DEFINITIONS, LEAF, SMALL, docs_dir, seed_catalog
from catalogkit import SYNTHETIC_A as A
from catalogkit import SYNTHETIC_B as B

pytestmark = pytest.mark.timeout(180)

ALL = [B, A, SMALL, BUNDLE, LEAF]  # newest RevisionID first


class Api:
    def __init__(self, url: str, token: str):
        self.url, self.token = url + "/api/v1", token

    def call(self, method: str, path: str, expect: int | None = None, **kwargs) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        assert response.headers["Content-Type"] == "application/json", (path, response.text[:200])
        body = response.json()
        documented(method, path, response.status_code, body)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, body)
        return response.status_code, body


def documented(method: str, path: str, status: int, body: object) -> None:
    """The answer is one the OpenAPI document describes for this operation."""
    from devupdate.admin.openapi import document

    if status == 414:  # the HTTP server's own refusal of an over-long request line, before any route
        assert body == {"error": {"code": "RequestLineTooLong", "message": "the request line is over 4094 bytes"}}
        return
    doc = document()
    route = path.split("?")[0]
    for template, operations in doc["paths"].items():
        parts, given = template.removeprefix("/api/v1").split("/"), route.split("/")
        if len(parts) == len(given) and all(p == g or p.startswith("{") for p, g in zip(parts, given, strict=True)):
            if method.lower() in operations:
                response = operations[method.lower()]["responses"].get(str(status))
                assert response is not None, f"{method} {template} answered {status}, which is not documented"
                schema = {**response["content"]["application/json"]["schema"], "components": doc["components"]}
                jsonschema.Draft202012Validator(schema).validate(body)
                return
    raise AssertionError(f"{method} {route} is not in the document")


def cli_json(install, *args: str):
    return json.loads(install.cli("wsus", *args, "--json").stdout)


@pytest.fixture
def catalog(install, live_server, tmp_path):
    extra = seed_catalog(install, tmp_path)
    admin = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    operator = install.cli("tokens", "create", "ci-operator", "--role", "operator").stdout.strip().splitlines()[-1]
    server = live_server(workers=2)
    return {"server": server, "admin": Api(server.url, admin), "operator": Api(server.url, operator),
            "extra": extra, "admin_token": admin, "start": live_server}


def ids(page: dict) -> list[str]:
    return [row["UpdateID"] for row in page["Items"]]


def test_listings_filters_and_pages_are_the_clis(install, catalog):
    api = catalog["operator"]
    _, page = api.call("GET", "/wsus/updates", 200)
    assert page == {"Items": cli_json(install, "updates", "list"), "Limit": 50, "Total": None, "Next": None}
    assert ids(page) == ALL
    pages, link = [], "/wsus/updates?limit=2"
    while link is not None:
        _, step = api.call("GET", link, 200)
        pages.append(ids(step))
        assert (step["Limit"], step["Total"]) == (2, None)
        link = step["Next"] and step["Next"].removeprefix("/api/v1")
    assert pages == [[B, A], [SMALL, BUNDLE], [LEAF]]
    # the cursor is a keyset position: a filter kept in the Next link pages the filtered listing
    _, first = api.call("GET", f"/wsus/updates?product={DEFENDER}&limit=3", 200)
    assert first["Next"].startswith(f"/api/v1/wsus/updates?product={DEFENDER}&limit=3&cursor=")
    assert ids(api.call("GET", first["Next"].removeprefix("/api/v1"), 200)[1]) == [LEAF]
    for cursor, reason in (("!!", "the opaque position from the previous page"), ("abc", "not one this API made"),
                           ("WyJ3c3VzLWNvbXB1dGVycyIsIiIsMV0", "belongs to another listing ('wsus-computers')"),
                           ("WyJ3c3VzLXVwZGF0ZXMiLCIiLCJ4Il0", "holds a position that is not a whole number")):
        status, body = api.call("GET", f"/wsus/updates?cursor={cursor}")
        assert (status, reason in body["error"]["message"]) == (400, True), (cursor, body)
    for query, expected in (
            (f"product={DEFENDER}", [A, SMALL, BUNDLE, LEAF]),
            ("product=microsoft%20DEFENDER%20antivirus", [A, SMALL, BUNDLE, LEAF]),
            ("classification=Definition%20Updates", [SMALL, BUNDLE, LEAF]),
            (f"product={DEFENDER}&classification={DEFINITIONS}&state=published", [SMALL, BUNDLE, LEAF]),
            ("search=KB2267602", [BUNDLE]), ("search=2267602", [BUNDLE]), ("search=synthetic", [B, A]),
            ("search=aaaaaaaa", [A]), ("search=%7BAAAAAAAA-0000", [A]), ("search=100%25", []),
            ("search=Synthetic&product=Microsoft%20Defender%20Antivirus&limit=1", [A]),
            ("state=declined", []), ("state=deleted", []), ("state=expired", []), ("state=superseded", [])):
        assert (query, ids(api.call("GET", f"/wsus/updates?{query}", 200)[1])) == (query, expected)
    cli = cli_json(install, "updates", "list", "--product", DEFENDER, "--search", "synthetic")
    assert api.call("GET", f"/wsus/updates?product={DEFENDER}&search=synthetic", 200)[1]["Items"] == cli
    for update_id in (BUNDLE, LEAF, A):
        assert api.call("GET", f"/wsus/updates/{update_id}", 200)[1] == cli_json(install, "updates", "show", update_id)
    assert api.call("GET", f"/wsus/updates/{{{BUNDLE.upper()}}}", 200)[1]["UpdateID"] == BUNDLE
    assert api.call("GET", "/wsus/categories", 200)[1] == cli_json(install, "categories", "list")


def test_decline_delete_restore_and_products(install, catalog):
    admin, operator = catalog["admin"], catalog["operator"]
    before = cli_json(install, "updates", "list")
    for method, path in (("POST", f"/wsus/updates/{BUNDLE}/decline"), ("POST", f"/wsus/updates/{BUNDLE}/undecline"),
                         ("DELETE", f"/wsus/updates/{BUNDLE}"), ("POST", f"/wsus/updates/{BUNDLE}/restore"),
                         ("POST", f"/wsus/products/{DEFENDER}/select"),
                         ("POST", f"/wsus/products/{DEFENDER}/unselect")):
        status, body = operator.call(method, path, 403)
        assert body["error"]["code"] == "forbidden"
    assert cli_json(install, "updates", "list") == before

    assert admin.call("POST", f"/wsus/updates/{BUNDLE}/decline", 200)[1] == {
        "UpdateID": BUNDLE, "Declined": True, "Changed": True}
    assert admin.call("POST", f"/wsus/updates/{BUNDLE}/decline", 200)[1]["Changed"] is False
    assert [r["UpdateID"] for r in cli_json(install, "updates", "list", "--state", "declined")] == [BUNDLE]
    assert ids(operator.call("GET", "/wsus/updates?state=declined", 200)[1]) == [BUNDLE]
    assert admin.call("POST", f"/wsus/updates/{BUNDLE}/undecline", 200)[1] == {
        "UpdateID": BUNDLE, "Declined": False, "Changed": True}
    assert cli_json(install, "updates", "undecline", BUNDLE) == {"UpdateID": BUNDLE, "Declined": False,
                                                                 "Changed": False}

    kept = [r["RevisionID"] for r in cli_json(install, "updates", "show", A)["Revisions"]]
    assert len(kept) == 2
    assert admin.call("DELETE", f"/wsus/updates/{A}", 200)[1] == {
        "UpdateID": A, "Deleted": True, "Changed": True, "RevisionIDs": kept}
    assert ids(operator.call("GET", "/wsus/updates", 200)[1]) == [B, SMALL, BUNDLE, LEAF]
    assert ids(operator.call("GET", "/wsus/updates?state=deleted", 200)[1]) == [A]
    assert operator.call("GET", f"/wsus/updates/{A}", 200)[1]["State"] == "deleted"

    catalog["server"].stop()  # a restart: a new server reads what the old one wrote
    again = Api(catalog["start"](workers=1).url, catalog["admin_token"])
    assert ids(again.call("GET", "/wsus/updates?state=deleted", 200)[1]) == [A]
    assert again.call("POST", f"/wsus/updates/{A}/restore", 200)[1] == {
        "UpdateID": A, "Deleted": False, "Changed": True, "RevisionIDs": kept}
    assert again.call("POST", f"/wsus/updates/{A}/restore", 200)[1]["Changed"] is False
    assert ids(again.call("GET", "/wsus/updates", 200)[1]) == ALL
    assert [r["RevisionID"] for r in again.call("GET", f"/wsus/updates/{A}", 200)[1]["Revisions"]] == kept

    # a deleted update imported again is back, with its RevisionIDs
    again.call("DELETE", f"/wsus/updates/{A}", 200)
    install.cli("wsus", "import", str(docs_dir()), str(catalog["extra"]))
    assert ids(again.call("GET", "/wsus/updates", 200)[1]) == ALL
    assert again.call("GET", f"/wsus/updates/{A}", 200)[1]["RevisionID"] == kept[0]

    assert again.call("POST", f"/wsus/products/{DEFENDER}/select", 200)[1] == {
        "UpdateID": DEFENDER, "Title": "Microsoft Defender Antivirus", "Selected": True, "Changed": True}
    assert again.call("POST", f"/wsus/products/{DEFENDER}/select", 200)[1]["Changed"] is False
    assert [c["UpdateID"] for c in cli_json(install, "categories", "list") if c["Selected"]] == [DEFENDER]
    status, body = again.call("POST", f"/wsus/products/{DEFINITIONS}/select", 409)
    assert body["error"] == {"code": "not-a-product", "message": (
        f"{DEFINITIONS} (Definition Updates) is a UpdateClassification, not a product: select one of type "
        "Company, ProductFamily, Product")}
    assert again.call("POST", f"/wsus/products/{DEFENDER}/unselect", 200)[1]["Selected"] is False
    assert cli_json(install, "products", "unselect", DEFENDER) == {
        "UpdateID": DEFENDER, "Title": "Microsoft Defender Antivirus", "Selected": False, "Changed": False}

    from devupdate.audit.models import AuditEvent

    install.runtime()
    actions = [(e.actor, e.action, e.target) for e in AuditEvent.select().where(AuditEvent.action.startswith("wsus."),
                                                                                 AuditEvent.action != "wsus.import")
               .order_by(AuditEvent.id)]
    assert actions == [("token:ci-admin", action, target) for action, target in (
        ("wsus.decline", BUNDLE), ("wsus.undecline", BUNDLE), ("wsus.delete", A), ("wsus.restore", A),
        ("wsus.delete", A), ("wsus.product.select", DEFENDER), ("wsus.product.unselect", DEFENDER))]


GUID_REFUSED = "a GUID such as 56309036-4c77-4dd9-951a-99ee9c246a94"


def test_hostile_input_is_refused_with_the_reason(install, catalog):
    admin = catalog["admin"]
    before = (cli_json(install, "updates", "list"), cli_json(install, "categories", "list"))
    bad_ids = ("nope", BUNDLE[:-1], BUNDLE + "0", f"{{{BUNDLE}}}}}", BUNDLE.replace("a", "g", 1), "0" * 100,
               "0" * 5000,
               quote(BUNDLE + "\x00"), quote(BUNDLE + "\n"), quote("../../audit", safe=""))
    for bad in bad_ids:
        for method, template in (("GET", "/wsus/updates/{}"), ("POST", "/wsus/updates/{}/decline"),
                                 ("DELETE", "/wsus/updates/{}"), ("POST", "/wsus/updates/{}/restore"),
                                 ("POST", "/wsus/products/{}/select")):
            status, body = admin.call(method, template.format(bad))
            assert 400 <= status < 500, (bad, template, status, body)
            if len(bad) > 4000:
                assert status == 414, (bad[:40], status, body)
            elif status == 400:
                reason = "is longer than 38 characters" if len(unquote(bad)) > 38 else GUID_REFUSED
                assert body["error"]["code"] == "bad-parameter" and reason in body["error"]["message"], body
            else:  # a path that is not a route at all (an encoded '/')
                assert status in (404, 405), (bad, status, body)
    missing = "cccccccc-0000-4000-8000-000000000003"
    status, body = admin.call("DELETE", f"/wsus/updates/{missing}", 404)
    assert body["error"] == {"code": "not-found", "message": f"no update {missing} in the catalog (see "
                                                            "'devupdate wsus updates list --state deleted')"}
    assert admin.call("POST", f"/wsus/updates/{missing}/decline", 404)[1]["error"]["code"] == "not-found"
    assert admin.call("POST", f"/wsus/products/{missing}/select", 404)[1]["error"]["code"] == "not-found"

    for query, needle in (
            ("state=bogus", "query parameter 'state' 'bogus' refused: one of published"),
            ("state=Published", "'Published' refused"),
            ("limit=0", "query parameter 'limit' must be at least 1"),
            ("limit=501", "query parameter 'limit' must be at most 500"),
            ("offset=0", "unknown query parameter 'offset'"),
            ("limit=abc", "query parameter 'limit' must be a whole number"),
            ("cursor=" + "A" * 2401, "query parameter 'cursor'"),
            ("search=" + "x" * 101, "query parameter 'search' is longer than 100 characters"),
            ("product=" + "\U0001f600" * 101, "query parameter 'product' is longer than 100 characters"),
            ("classification=a%00b", "query parameter 'classification'"),
            ("search=a&search=b", "query parameter 'search' given 2 times"),
            ("sort=title", "unknown query parameter 'sort'")):
        status, body = admin.call("GET", f"/wsus/updates?{query}", 400)
        assert body["error"]["code"] == "bad-parameter" and needle in body["error"]["message"], (query, body)
    status, body = admin.call("GET", "/wsus/updates?product=Office", 404)
    assert body["error"]["message"] == "no product 'Office' in the catalog (see 'devupdate wsus categories list')"
    status, body = admin.call("GET", "/wsus/updates?classification=Microsoft", 404)  # a company, not a classification
    assert body["error"]["code"] == "not-found"

    status, body = admin.call("POST", f"/wsus/updates/{BUNDLE}/decline", 400, data=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert body["error"]["code"] == "malformed-json"
    status, body = admin.call("POST", f"/wsus/updates/{BUNDLE}/decline", 413, data=b"[" + b"0," * (1 << 20) + b"0]",
                              headers={"Content-Type": "application/json"})
    assert body["error"]["code"] == "body-too-large"
    assert (cli_json(install, "updates", "list"), cli_json(install, "categories", "list")) == before
