"""The web console's HTTP surface (``/console``): translate requests into calls of the same service
functions the CLI uses, and their results into server-rendered pages. No logic of its own.

Every request passes one gate (:func:`_gate`): load the signed session, re-read the account behind
it, refuse a POST from another site (``Origin``/``Referer``, 403), check the CSRF token on every POST
(400), require sign-in (redirect or 401) and the ``admin`` role for every change (403). Actions are
attributed to ``console:<name>`` in the audit trail.
"""

from __future__ import annotations

import time
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response as BaseResponse

from devupdate import numbers
from devupdate.admin.console import auth, charts, fleet
from devupdate.admin.console.origin import foreign_origin
from devupdate.admin.console.session import COOKIE_NAME, SessionCookie, SessionData
from devupdate.audit.trail import list_events
from devupdate.devices import adoption, compliance, logs
from devupdate.devices.users import HashingBusy
from devupdate.errors import DevupdateError
from devupdate.rules import lifecycle
from devupdate.rules import test_devices as test_device_service
from devupdate.wsus.catalog import STATES as CATALOG_STATES
from devupdate.wsus.catalog import service as catalog
from devupdate.wsus.compliance import reports as wsus_reports
from devupdate.wsus.downstream import needed as wsus_needed
from devupdate.wsus.downstream import service as wsus_sync
from devupdate.wsus.targeting import service as wsus_targeting

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

PUBLIC = {"console.sign_in_form", "console.sign_in", "console.signed_in", "console.static"}
NO_ROLE_NEEDED = {"console.sign_out"}
PAGE = 50
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
VERBS = {"approve": ("Approve", "Approved"), "reset": ("Reject", "Rejected"), "restore": ("Roll back", "Rolled back")}


def _runtime():
    return current_app.extensions["devupdate"]


def _snapshot():
    """The snapshot phones are served, confirmed current first (one read of the generation): the
    compliance figures of a page without rebuilding every rule's versions and files per request."""
    holder = current_app.extensions.get("snapshots")
    if holder is None:
        return None
    holder.refresh()
    return holder.current


def _cookie() -> SessionCookie:
    return current_app.extensions["console.cookie"]


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def refuse(status: int, title: str, message: str) -> Response:
    """An error page (or JSON for the upload script) with ``status``."""
    if _wants_json():
        response = jsonify(error={"status": status, "title": title, "message": message})
    else:
        response = Response(render_template("console/error.html", status=status, title=title, message=message,
                                            admin=g.get("admin"), notices=[]), mimetype="text/html")
    response.status_code = status
    return response


def _client_address() -> str:
    network = current_app.extensions["network"]
    return network.client_address(request.remote_addr or "", request.headers.get("X-Forwarded-For"))


# --- the gate --------------------------------------------------------------------------------------

def _unstorable_value() -> str | None:
    """The name of the first path part, query or (URL-encoded) form value no field may hold: a NUL
    (PostgreSQL refuses it in any text) or a lone surrogate. Multipart bodies are left to their views,
    which stream them."""
    values = [*(request.view_args or {}).items(), *request.args.items(multi=True)]
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        values += request.form.items(multi=True)
    for name, value in values:
        if isinstance(value, str) and ("\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)):
            return name
    return None


@bp.before_request
def _gate() -> BaseResponse | None:
    if request.endpoint == "console.static":
        return None
    g.session = _cookie().load(request.cookies.get(COOKIE_NAME))
    g.admin = None
    if g.session.name:
        g.admin = auth.current_admin(g.session.name, g.session.fingerprint)
        if g.admin is None:  # account removed or password changed since sign-in
            g.session = SessionData(notices=[["info", "Your session has ended; please sign in again."]])
    unstorable = _unstorable_value()
    if unstorable is not None:
        return refuse(400, "Not accepted", f"{unstorable[:40]} holds a NUL or an unencodable character; nothing "
                                           "was looked up or changed.")
    if request.method == "POST":
        other = foreign_origin(request.headers.get("Origin"), request.headers.get("Referer"),
                               request.headers.get("Host", ""), _runtime().settings.console_trusted_origins)
        if other is not None:
            return refuse(403, "Request from another site",
                          f"This form was sent from {other}, not from this console, so nothing was changed. "
                          "Open the console at its own address and submit it there (a console reached through "
                          "a proxy that rewrites Host lists its address in DEVUPDATE_CONSOLE_TRUSTED_ORIGINS).")
        submitted = request.headers.get("X-CSRF-Token")
        if submitted is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            submitted = request.form.get("csrf_token")
        if not g.session.csrf_ok(submitted):
            return refuse(400, "Form not accepted",
                          "This form has no valid security token (CSRF protection), so nothing was changed. "
                          "Reload the page and submit it again.")
    if request.endpoint in PUBLIC:
        return None
    if g.admin is None:
        if request.method == "GET":
            return redirect(url_for(".sign_in_form", next=request.full_path.rstrip("?")))
        return refuse(401, "Not signed in", "Sign in first; nothing was changed.")
    if request.method == "POST" and request.endpoint not in NO_ROLE_NEEDED and not g.admin.can_change:
        return refuse(403, "Not allowed", f"Your role ({g.admin.role}) may look at everything but change nothing; "
                                          "ask an admin.")
    return None


@bp.after_request
def _finish(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint == "console.static":
        return response
    response.headers.update({"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                             "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})
    session: SessionData | None = g.get("session")
    cookie = _cookie()
    if session is None or session.empty:
        if request.cookies.get(COOKIE_NAME):
            response.delete_cookie(COOKIE_NAME, **cookie.cookie_options())
    else:
        response.set_cookie(COOKIE_NAME, cookie.dump(session), **cookie.cookie_options())
    return response


@bp.app_template_global()
def csrf_token() -> str:
    return g.session.ensure_csrf()


@bp.app_template_filter("bytes")
def _bytes(value: int | None) -> str:
    return charts.human_bytes(value)


@bp.app_template_filter("when")
def _when(value: str | None, seconds: bool = False) -> str:
    """'2026-07-21T12:00:05Z' → '2026-07-21 12:00 UTC' (with ``seconds``: '… 12:00:05 UTC')."""
    return "—" if not value else value.replace("T", " ")[:19 if seconds else 16] + " UTC"


def page(template: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("notices", g.session.take_notices())
    return Response(render_template(f"console/{template}", admin=g.admin, **context), status=status,
                    mimetype="text/html")


def _safe_next(target: str | None) -> str:
    parts = urlsplit(target or "")
    if target is None or parts.scheme or parts.netloc or not parts.path.startswith("/console/") or "//" in parts.path:
        return url_for(".dashboard")
    return target


# --- sign-in ---------------------------------------------------------------------------------------

@bp.get("/sign-in")
def sign_in_form() -> BaseResponse:
    if g.admin is not None:
        return redirect(_safe_next(request.args.get("next")))
    return page("sign_in.html", next=request.args.get("next", ""))


@bp.post("/sign-in")
def sign_in() -> BaseResponse:
    name, target = request.form.get("name", ""), request.form.get("next", "")
    try:
        admin = auth.authenticate(name, request.form.get("password", ""), address=_client_address(),
                                  lockout=auth.Lockout.from_settings(_runtime().settings),
                                  gate=current_app.extensions["password_gate"])
    except HashingBusy:
        response = page("sign_in.html", status=503, error="The server is busy checking passwords; "
                        "sign in again in a second.", name=name, next=target)
        response.headers["Retry-After"] = "1"
        return response
    except auth.TooManyAttempts as exc:
        response = page("sign_in.html", status=429, error=exc.message[0].upper() + exc.message[1:] + ".",
                        name=name, next=target)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except auth.SignInRefused:
        return page("sign_in.html", status=401, error="Wrong name or password.", name=name, next=target)
    g.session = SessionData(name=admin.name, fingerprint=admin.fingerprint, signed_in_at=int(time.time()))
    g.session.ensure_csrf()  # a new token: nothing from before sign-in carries over
    return redirect(url_for(".signed_in", next=_safe_next(target)), code=303)


@bp.get("/signed-in")
def signed_in() -> BaseResponse:
    """Where sign-in lands: if the browser did not keep the cookie, say why instead of looping."""
    if g.admin is None:
        return page("sign_in.html", status=400, next=request.args.get("next", ""),
                    error="Your browser did not keep the sign-in cookie. The console's cookie is Secure: open the "
                          "console over HTTPS (or on this machine via http://127.0.0.1), and allow cookies.")
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    g.session = SessionData(notices=[["info", "Signed out."]])
    return redirect(url_for(".sign_in_form"), code=303)


# --- dashboard -------------------------------------------------------------------------------------

ACTIVITY_DAYS = 30
ACTIVITY_COLOURS = {"Internal": charts.INTERNAL, "External": charts.EXTERNAL}


@bp.get("/")
def dashboard() -> Response:
    rt = _runtime()
    data = fleet.summary(rt.store, rt.settings.effective_service_name, snapshot=_snapshot())
    days = adoption.activity_days(ACTIVITY_DAYS)
    return page("dashboard.html", data=data, bars=charts.distribution_bars(data["VersionDistribution"]),
                storage=charts.usage_bars(data["Storage"]), checks=charts.daily_columns(days, "Checks"),
                downloads=charts.daily_columns(days, "Downloads"), colours=ACTIVITY_COLOURS)


# --- rules -----------------------------------------------------------------------------------------

def _rule_row(rule, service_name: str, known: int | None = None) -> dict[str, Any]:
    known = fleet.family_devices(rule) if known is None else known
    previews = {action: fleet.preview(rule, action, known_devices=known) for action in fleet.ACTIONS}
    return {**lifecycle.rule_dict(rule, service_name), "Known": known, "Label": fleet.family_label(rule),
            "Previews": previews}


RULE_FILTERS = ("brand", "model", "locale", "state")


@bp.get("/rules")
def rules() -> Response:
    name = _runtime().settings.effective_service_name
    form = {key: request.args.get(key, "").strip()[:200] for key in RULE_FILTERS}
    number = _page_number()
    try:
        query = lifecycle.rule_query(**{key: value or None for key, value in form.items()}, pending_first=True)
        found = list(query.offset((number - 1) * PAGE).limit(PAGE + 1))
    except DevupdateError as exc:
        return refuse(exc.status, "Bad filter", exc.message)
    shown = found[:PAGE]  # waiting for approval first; the device counts for the rules shown only
    known = fleet.family_device_counts(shown)
    rows = [_rule_row(rule, name, known[rule.id]) for rule in shown]
    return page("rules.html", rules=rows, verbs=VERBS, form=form, states=lifecycle.RULE_STATES, number=number,
                more=len(found) > PAGE)


@bp.post("/rules/bulk")
def rules_bulk() -> BaseResponse:
    """The rules chosen on the rules page: without ``confirmed`` the confirmation (the same text as
    ``rules approve --dry-run`` and the API's DryRun); confirmed, ``bulk.apply`` with the ``expect``
    digest the confirmation carried (a selection that changed since is shown again, not acted on)."""
    from devupdate.rules import bulk

    action = request.form.get("action", "")
    chosen = tuple(value[:38] for value in request.form.getlist("rule")[:bulk.MAX_RULES])
    if action not in bulk.ACTIONS:
        return refuse(400, "No such action", f"{action[:40]!r} is not one of approve, reset.")
    if not chosen:
        g.session.notice("error", "Choose one or more rules first (the boxes in the first column).")
        return redirect(url_for(".rules"), code=303)
    selection = bulk.Selection(rules=chosen)
    try:
        if request.form.get("confirmed") == "yes":
            result = bulk.apply(action, selection, g.admin.actor, expect=request.form.get("expect", "")[:64])
        else:
            return page("bulk_confirm.html", plan=bulk.plan(action, selection), action=action,
                        verb=bulk.ACTIONS[action][0], changed=False)
    except DevupdateError as exc:
        if exc.code == "selection-changed":
            return page("bulk_confirm.html", status=409, plan=bulk.plan(action, selection), action=action,
                        verb=bulk.ACTIONS[action][0], changed=True)
        return refuse(exc.status, "Not possible", exc.message)
    for entry in result["Rules"]:
        if entry["Outcome"] == "refused":
            g.session.notice("error", f"{entry['Name']} · {entry['UpdateType']}: {entry['Error']['message']}")
    names = ", ".join(f"{e['Name']} · {e['UpdateType']}" for e in result["Rules"]
                      if e["Outcome"] == bulk.ACTIONS[action][1])
    g.session.notice("ok", f"{bulk.ACTIONS[action][0]}: {result['Count']} rule{'s' if result['Count'] != 1 else ''}"
                           f"{' (' + names + ')' if names else ''}.")
    return redirect(url_for(".rules"), code=303)


@bp.get("/rules/<rule_id>")
def rule_detail(rule_id: str) -> Response:
    try:
        rule = lifecycle.resolve(rule_id)
    except DevupdateError as exc:
        return refuse(exc.status, "No such rule", exc.message)
    settings = _runtime().settings
    rollout_now = adoption.adoption(rule, retention_days=settings.activity_retention_days)
    row = _rule_row(rule, settings.effective_service_name, rollout_now["Devices"])
    from devupdate.rules import rollout

    staged = rollout.of_rule(rule.id)
    return page("rule.html", rule=row, versions=lifecycle.rule_versions(rule.id), verbs=VERBS,
                adoption=rollout_now, curve=charts.curve_lines(rollout_now["Curve"]),
                events=list_events(limit=20, target=rule.id),
                rollout=rollout.describe(staged) if staged is not None else None)


@bp.post("/rules/<rule_id>/rollout")
def rule_rollout_start(rule_id: str) -> BaseResponse:
    """Approve in stages (the rule page's form): the CLI's and the API's ``lifecycle.approve`` with a plan."""
    from devupdate.rules.rollout_plan import Plan

    try:
        rule = lifecycle.resolve(rule_id)
        plan = Plan.parse(request.form.get("stages", ""), request.form.get("every", "24h") or "24h",
                          request.form.get("halt_at", "2%") or "2%")
        lifecycle.approve(rule.id, g.admin.actor, plan)
    except DevupdateError as exc:
        g.session.notice("error", f"Approve in stages refused: {exc.message}")
    else:
        g.session.notice("ok", f"Approved {rule.approved_version or ''} in stages "
                               f"{request.form.get('stages')}: the first share of the fleet is offered it now.")
    return redirect(url_for(".rule_detail", rule_id=rule_id), code=303)


ROLLOUT_ACTIONS = {"resume": "Resumed", "advance": "Advanced", "abort": "Aborted (rolled back)"}


@bp.post("/rules/<rule_id>/rollout/<action>")
def rule_rollout_action(rule_id: str, action: str) -> BaseResponse:
    """Resume, advance or abort a rule's rollout (``rollout_actions``, as the CLI and the API)."""
    from devupdate.rules import rollout_actions

    if action not in ROLLOUT_ACTIONS:
        return refuse(404, "No such action", f"{action!r} is not one of {', '.join(ROLLOUT_ACTIONS)}.")
    try:
        getattr(rollout_actions, action)(rule_id, g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Rollout {action} refused: {exc.message}")
    else:
        g.session.notice("ok", f"{ROLLOUT_ACTIONS[action]} the rollout.")
    return redirect(url_for(".rule_detail", rule_id=rule_id), code=303)


@bp.route("/rules/<rule_id>/<action>", methods=["GET", "POST"])
def rule_action(rule_id: str, action: str) -> BaseResponse:
    """GET, or a POST without ``confirmed``: the confirmation page. A confirmed POST acts, unless
    the rule changed since the confirmation was shown (then the new effect is shown instead)."""
    if action not in fleet.ACTIONS:
        return refuse(404, "No such action", f"{action!r} is not one of approve, reset, restore.")
    try:
        rule = lifecycle.resolve(rule_id)
    except DevupdateError as exc:
        return refuse(exc.status, "No such rule", exc.message)
    row = _rule_row(rule, _runtime().settings.effective_service_name)
    preview = row["Previews"][action]
    if request.method == "POST" and request.form.get("confirmed") == "yes":
        if request.form.get("expect") != preview["State"]:
            return page("confirm.html", status=409, rule=row, action=action, preview=preview, verbs=VERBS,
                        changed=True)
        try:
            getattr(lifecycle, action)(rule.id, g.admin.actor)
        except DevupdateError as exc:
            g.session.notice("error", f"{VERBS[action][0]} refused: {exc.message}")
        else:
            g.session.notice("ok", f"{VERBS[action][1]} {row['Label']} {row['UpdateType']}. {preview['Summary']}")
        return redirect(url_for(".rules") + f"#rule-{rule.id}", code=303)
    return page("confirm.html", rule=row, action=action, preview=preview, verbs=VERBS, changed=False)


# --- test devices ----------------------------------------------------------------------------------

def _site_of(scope: str) -> str | None:
    return scope[5:] if scope.startswith("site:") else None


@bp.get("/test-devices")
def test_devices() -> Response:
    return _test_devices_page()


def _test_devices_page(status: int = 200, error: str | None = None, form: dict | None = None) -> Response:
    rows = [test_device_service.device_dict(device) for device in test_device_service.list_devices()]
    return page("test_devices.html", status=status, devices=rows, error=error, form=form or {})


@bp.post("/test-devices")
def test_device_add() -> BaseResponse:
    form = {key: request.form.get(key, "").strip() for key in ("name", "kind", "identifier", "site")}
    identifier: dict[str, str | None] = {"mac": None, "serial": None}
    identifier["serial" if form["kind"] == "serial" else "mac"] = form["identifier"]
    try:
        device = test_device_service.add(form["name"], mac=identifier["mac"], serial=identifier["serial"],
                                         site=form["site"] or None, actor=g.admin.actor)
    except DevupdateError as exc:
        return _test_devices_page(status=exc.status, error=exc.message, form=form)
    g.session.notice("ok", f"Added test device {device.name} ({device.identifier_type} {device.identifier}, "
                           f"{device.scope}): it is offered pending versions from its next update check.")
    return redirect(url_for(".test_devices"), code=303)


@bp.post("/test-devices/remove")
def test_device_remove() -> BaseResponse:
    name, scope = request.form.get("name", ""), request.form.get("scope", "global")
    try:
        test_device_service.remove(name, site=_site_of(scope), actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Remove refused: {exc.message}")
    else:
        g.session.notice("ok", f"Removed test device {name} ({scope}): it gets the approved versions from now on.")
    return redirect(url_for(".test_devices"), code=303)


# --- inventory, audit trail, device logs -----------------------------------------------------------

def _page_number() -> int:
    """``?page=`` from 1; past the furthest offset any listing pages to, the (empty) last page."""
    number = request.args.get("page", 1, type=numbers.whole) or 1
    return min(max(1, number), numbers.MAX_OFFSET // PAGE + 1)


DEVICE_FILTERS = ("q", "model", "status", "days", "sort")


@bp.get("/devices")
def devices() -> Response:
    number = _page_number()
    form = {key: request.args.get(key, "").strip() for key in DEVICE_FILTERS}
    if request.args.get("outdated") == "1":
        form["status"] = "outdated"
    try:
        age = compliance.parse_age(form["days"]) if form["days"] else None
        rows = compliance.list_devices(search=form["q"] or None, model=form["model"] or None,
                                       status=form["status"] or None, not_seen_since=age,
                                       sort=form["sort"] or "device", limit=PAGE + 1, offset=(number - 1) * PAGE,
                                       snapshot=_snapshot())
    except DevupdateError as exc:
        return refuse(exc.status, "Bad filter", exc.message)
    query = {key: value for key, value in form.items() if value}
    return page("devices.html", devices=rows[:PAGE], more=len(rows) > PAGE, number=number, q=form["q"],
                outdated=form["status"] == "outdated", form=form, query=query, sorts=list(compliance.SORTS))


@bp.get("/devices/<device_id>")
def device_page(device_id: str) -> Response:
    try:
        detail = compliance.device_detail(device_id, store=_runtime().store)
    except DevupdateError as exc:
        return refuse(exc.status, "No such device", exc.message)
    return page("device.html", d=detail)


AUDIT_FILTERS = ("action", "actor", "target", "since", "until")


def _audit_filter() -> tuple[dict[str, str], Any]:
    from devupdate.audit.trail import Filter

    form = {key: request.args.get(key, "").strip()[:300] for key in AUDIT_FILTERS}
    return form, Filter.parse(**form)


@bp.get("/audit")
def audit() -> Response:
    from devupdate.audit.readable import list_events as readable_events

    number = _page_number()
    try:
        form, where = _audit_filter()
    except DevupdateError as exc:
        return refuse(exc.status, "Bad filter", exc.message)
    rows = readable_events(where, limit=PAGE + 1, offset=(number - 1) * PAGE)
    query = {key: value for key, value in form.items() if value}
    return page("audit.html", events=rows[:PAGE], more=len(rows) > PAGE, number=number, form=form, query=query,
                action=form["action"], actor=form["actor"])


@bp.get("/audit.csv")
def audit_csv() -> BaseResponse:
    """The filtered trail as a CSV download (the same export as 'devupdate audit export')."""
    from flask import stream_with_context

    from devupdate.audit.readable import export_csv

    try:
        _, where = _audit_filter()
    except DevupdateError as exc:
        return refuse(exc.status, "Bad filter", exc.message)
    return Response(stream_with_context(export_csv(where)), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})


@bp.get("/request-logs")
def request_logs() -> Response:
    """The per-request audit log files (one row per update check), newest first."""
    from devupdate.audit import requestlog_view

    return page("request_logs.html", files=requestlog_view.files(_runtime().store))


@bp.get("/request-logs/<name>")
def request_log(name: str) -> Response:
    """One file a page at a time from a byte offset, searched; never read whole."""
    from devupdate.audit import requestlog_view

    search = request.args.get("q", "")
    try:
        start = numbers.whole(request.args.get("start", "0") or "0")
    except ValueError:
        return refuse(400, "Bad offset", "start must be a whole number (digits 0-9).")
    try:
        with requestlog_view.open_file(_runtime().store, name) as handle:
            found = requestlog_view.read_page(handle, start=start, search=search, limit=PAGE)
    except DevupdateError as exc:
        return refuse(exc.status, "Not possible", exc.message)
    return page("request_log.html", name=name, found=found, q=search, columns=requestlog_view.COLUMNS)


@bp.get("/logs")
def device_logs() -> Response:
    number = _page_number()
    log_type, device = request.args.get("type", "").strip(), request.args.get("device", "").strip()
    found = logs.list_logs(_runtime().store, log_type=log_type or None, device=device or None)
    rows = [entry.as_dict() for entry in found[(number - 1) * PAGE:number * PAGE + 1]]
    return page("logs.html", logs=rows[:PAGE], more=len(rows) > PAGE, number=number, type=log_type, device=device,
                total=len(found))


@bp.get("/logs/file/<log_type>/<device>/<name>")
def device_log_file(log_type: str, device: str, name: str) -> Response:
    store = _runtime().store
    for entry in logs.list_logs(store, log_type=log_type, device=device):
        if entry.log_type == log_type and entry.device_id == device and entry.name == name:
            handle = store.open_named(logs.CLIENT_AREA, entry.relpath)
            return send_file(handle, mimetype="application/octet-stream", as_attachment=True, download_name=name,
                             conditional=False)
    return refuse(404, "No such log file", f"There is no {log_type} log {name!r} of device {device}.")


# --- upload ----------------------------------------------------------------------------------------

@bp.get("/upload")
def upload_form() -> Response:
    return page("upload.html", max_size=_runtime().settings.max_cab_size)


def _upload_name(raw: str) -> str:
    try:
        return logs.safe_name(unquote(raw)) if raw else "upload.cab"
    except DevupdateError:
        return "upload.cab"


@bp.post("/upload")
def upload() -> BaseResponse:
    """The cab as the raw request body (the upload page's script streams it, with progress) or, without
    JavaScript, as a multipart form; received and imported by :func:`import_upload`."""
    from devupdate.imports.upload import import_upload

    rt = _runtime()
    if request.mimetype == "multipart/form-data":
        part = request.files.get("cab")
        if part is None or not part.filename:
            return _upload_refused(400, "Choose a .cab file to upload.")
        stream, size, name = part.stream, None, _upload_name(part.filename)
    else:
        stream, size, name = request.stream, request.content_length, _upload_name(
            request.headers.get("X-File-Name", ""))
    try:
        # werkzeug types request bodies IO[bytes]; import_upload only reads them
        result = import_upload(rt.store, rt.settings, cast(BinaryIO, stream), size=size, file_name=name,
                               actor=g.admin.actor)
    except DevupdateError as exc:
        return _upload_refused(exc.status, f"{name}: {exc.message}")
    touched = {row["Id"] for row in result.rules}
    labels = {rule.id: f"{fleet.family_label(rule)} · {rule.update_type}"
              for rule in lifecycle.list_rules() if rule.id in touched}
    rules = [{**row, "Label": labels.get(row["Id"], row["Id"]),
              "Url": url_for(".rules") + f"#rule-{row['Id']}"} for row in result.rules]
    message = (f"{name}: imported; new versions are pending until approved." if result.outcome == "imported"
               else f"{name}: nothing new (every update in it is already pending or approved).")
    if _wants_json():
        response = jsonify(outcome=result.outcome, message=message, rules=rules, findings=result.findings,
                           rulesUrl=url_for(".rules"))
        response.status_code = 201 if result.outcome == "imported" else 200
        return response
    g.session.notice("ok", message)
    for finding in result.findings:
        g.session.notice("warning", finding)
    return redirect(url_for(".rules"), code=303)


def _upload_refused(status: int, message: str) -> Response:
    if _wants_json():
        return refuse(status, "Upload refused", message)
    return page("upload.html", status=status, error=message, max_size=_runtime().settings.max_cab_size)


# --- WSUS update catalog ---------------------------------------------------------------------------

#: catalog action → (button, done, what happens, service call)
CATALOG_ACTIONS = {
    "decline": ("Decline", "Declined", "It is never offered to clients or downstream servers.",
                lambda update_id, actor: catalog.decline(update_id, actor=actor, declined=True)),
    "undecline": ("Undecline", "Undeclined", "It is offered again.",
                  lambda update_id, actor: catalog.decline(update_id, actor=actor, declined=False)),
    "delete": ("Delete", "Deleted", "It leaves the catalog; its revisions are kept, so restoring it (or importing "
               "it again) gives it back with the same RevisionIDs.",
               lambda update_id, actor: catalog.delete(update_id, actor=actor, deleted=True)),
    "restore": ("Restore", "Restored", "It is back in the catalog with the RevisionIDs it had.",
                lambda update_id, actor: catalog.delete(update_id, actor=actor, deleted=False)),
}


def _catalog_filters() -> dict[str, str]:
    return {key: request.args.get(key, "").strip()[:100] for key in ("q", "product", "classification", "state")}


@bp.get("/catalog")
def wsus_catalog() -> Response:
    """The catalog's updates, searched and filtered like ``devupdate wsus updates list``."""
    number, filters = _page_number(), _catalog_filters()
    categories = catalog.list_categories()
    products = [c for c in categories if c["Type"] in catalog.PRODUCT_TYPES]
    classifications = [c for c in categories if c["Type"] == catalog.CLASSIFICATION]
    status, error, rows = 200, None, []
    try:
        rows = catalog.list_updates(product=filters["product"] or None, state=filters["state"] or None,
                                    classification=filters["classification"] or None, search=filters["q"] or None,
                                    limit=PAGE + 1, offset=(number - 1) * PAGE)
    except DevupdateError as exc:
        status, error = exc.status, exc.message
    return page("catalog.html", status=status, error=error, updates=rows[:PAGE], more=len(rows) > PAGE,
                number=number, filters=filters, products=products, classifications=classifications,
                states=CATALOG_STATES, actions=CATALOG_ACTIONS, back=request.full_path.rstrip("?"))


@bp.post("/catalog/<update_id>/<action>")
def wsus_catalog_action(update_id: str, action: str) -> BaseResponse:
    if action not in CATALOG_ACTIONS:
        return refuse(404, "No such action", f"{action[:40]!r} is not one of {', '.join(CATALOG_ACTIONS)}.")
    verb, done, effect, call = CATALOG_ACTIONS[action]
    try:
        result = call(update_id, g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"{verb} refused: {exc.message}")
    else:
        title = catalog.show_update(result["UpdateID"])["Title"]
        g.session.notice("ok", f"{done} {title} ({result['UpdateID']}). {effect}" if result["Changed"]
                         else f"{title} ({result['UpdateID']}) was already {done.lower()}; nothing changed.")
    back = request.form.get("next", "")
    return redirect(back if back.startswith("/console/catalog") and _safe_next(back) == back
                    else url_for(".wsus_catalog"), code=303)


@bp.get("/compliance")
def wsus_compliance() -> Response:
    """WSUS compliance (W9): needed / installed / failed per target group and per update, as
    ``devupdate wsus report groups|updates``; ``group`` narrows the updates to that group's computers."""
    group = request.args.get("group", "").strip()[:258]
    status, error, updates = 200, None, []
    groups = wsus_reports.groups()
    try:
        updates = wsus_reports.updates(group=group or None, limit=PAGE)
    except DevupdateError as exc:
        status, error = exc.status, exc.message
    return page("compliance.html", status=status, error=error, group=group, groups=groups,
                group_bars=charts.compliance_bars(groups, "Path", "Id"),
                update_bars=charts.compliance_bars(updates, "Title", "UpdateID"),
                computers=wsus_reports.computers(group=group or None, limit=PAGE) if error is None else [])


@bp.get("/sync")
def wsus_sync_page() -> Response:
    """The downstream sync: the upstreams and their anchors, the run history (30 days), held revisions,
    marked files and the needed list, as ``devupdate wsus sync status`` and ``wsus needed list``."""
    return page("sync.html", sync=wsus_sync.status(100), needed=wsus_needed.entries())


@bp.get("/targeting")
def wsus_targeting_page() -> Response:
    """Target groups as a tree, the computers of one (``group``), the approvals of one update
    (``update``; none given: the latest approvals), as ``devupdate wsus groups|computers|approvals``."""
    group = request.args.get("group", "").strip()[:258]
    update = request.args.get("update", "").strip()[:38]
    status, error, computers, approvals, selected, eula = 200, None, [], [], None, None
    groups = wsus_targeting.list_groups()
    try:
        if group:
            found = wsus_targeting.resolve_group(group)
            selected = next(row for row in groups if row["Id"] == found.id)
        computers = wsus_targeting.list_computers(group=group or None, limit=PAGE)
        approvals = wsus_targeting.list_deployments(update or None, limit=PAGE)
        if update:
            eula = wsus_targeting.eula_state(update)
    except DevupdateError as exc:
        status, error = exc.status, exc.message
    return page("targeting.html", status=status, error=error, groups=groups, group=group, selected=selected,
                group_name=selected["Name"] if selected else "", computers=computers, approvals=approvals,
                update=update, eula=eula, priorities=wsus_targeting.PRIORITY_NAMES,
                mode=wsus_targeting.targeting_mode(), mode_effects=MODE_EFFECTS, back=request.full_path.rstrip("?"))


@bp.get("/computers/<ref>")
def wsus_computer_page(ref: str) -> Response:
    """One computer: its fields and groups as 'devupdate wsus computers show', its state per update with
    the event that set it as 'devupdate wsus report computer', and (server-side targeting) its groups."""
    try:
        found = wsus_targeting.resolve_computer(ref[:256])
        detail = wsus_targeting.computer_dict(found, detail=True)
        report = wsus_reports.computer(str(found.id), limit=PAGE * 4)
    except DevupdateError as exc:
        return refuse(exc.status, "No such computer", exc.message)
    return page("computer.html", c=detail, report=report, groups=wsus_targeting.list_groups(),
                mode=detail["TargetingMode"], back=url_for(".wsus_computer_page", ref=found.id))


def _targeting_back(update: str) -> BaseResponse:
    return redirect(url_for(".wsus_targeting_page", update=update[:38]) if update else url_for(".wsus_targeting_page"),
                    code=303)


def _back_to(allowed: str, fallback: str) -> BaseResponse:
    """Back to the page the form was on (the ``next`` field), if it is a console page under ``allowed``."""
    back = request.form.get("next", "")
    return redirect(back if back.startswith(allowed) and _safe_next(back) == back else url_for(fallback), code=303)


@bp.post("/targeting/approve")
def wsus_targeting_approve() -> BaseResponse:
    """Approve an update for a group (the EULA and Block rules as 'devupdate wsus approve')."""
    form = request.form
    update, group = form.get("update", "").strip()[:38], form.get("group", "")[:258]
    try:
        priority = wsus_targeting.PRIORITY_NAMES.get(form.get("priority", "normal"))
        if priority is None:
            raise DevupdateError("the download priority is low, normal or high", code="bad-priority")
        result = wsus_targeting.approve(update, group, form.get("action", "")[:20],
                                        deadline=form.get("deadline", "").strip()[:40] or None, priority=priority,
                                        actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Approval refused: {exc.message}")
    else:
        g.session.notice("ok", f"Approved {result['UpdateID']} for {result['Group']}: {result['Action']}."
                         if result["Changed"] else f"{result['UpdateID']} was already approved so; nothing changed.")
    return _targeting_back(update)


@bp.post("/targeting/groups")
def wsus_targeting_add_group() -> BaseResponse:
    """Add a target group under a parent (the same refusals and audit entry as 'devupdate wsus groups add')."""
    form = request.form
    try:
        result = wsus_targeting.add_group(form.get("name", "")[:300], parent=form.get("parent", "")[:258] or None,
                                          actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Adding the group refused: {exc.message}")
        return redirect(url_for(".wsus_targeting_page"), code=303)
    g.session.notice("ok", f"Added the group {result['Name']}.")
    return redirect(url_for(".wsus_targeting_page", group=result["Id"]), code=303)


@bp.post("/targeting/assign")
def wsus_targeting_assign() -> BaseResponse:
    """Server-side targeting: set a computer's groups (as 'devupdate wsus computers assign'); none
    chosen: 'Unassigned Computers'. Back to the computer's page when the form came from it."""
    form = request.form
    groups = [value[:258] for value in form.getlist("groups")[:65] if value.strip()]
    try:
        result = wsus_targeting.assign_computer(form.get("computer", "")[:256], groups, actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Assignment refused: {exc.message}")
        return _back_to("/console/computers/", ".wsus_targeting_page")
    names = ", ".join(group["Name"] for group in result["ServerGroups"])
    g.session.notice("ok", f"{result['DnsName'] or result['ComputerId']} is now in {names}.")
    if request.form.get("next", "").startswith("/console/computers/"):
        return _back_to("/console/computers/", ".wsus_targeting_page")
    return redirect(url_for(".wsus_targeting_page", group=result["ServerGroups"][0]["Id"]), code=303)


@bp.post("/targeting/unapprove")
def wsus_targeting_unapprove() -> BaseResponse:
    form = request.form
    update, group = form.get("update", "").strip()[:38], form.get("group", "")[:258]
    try:
        result = wsus_targeting.unapprove(update, group, actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Withdrawal refused: {exc.message}")
    else:
        g.session.notice("ok", f"Withdrew the approval of {result['UpdateID']} for {result['Group']}.")
    return _targeting_back(update)


MODE_EFFECTS = {
    "server": "Computers are in the groups assigned here (new ones in Unassigned Computers).",
    "client": "Computers are in the groups their targetGroupName policy names, from their next cookie; the "
              "assignments made here are kept for a switch back.",
}


@bp.post("/targeting/mode")
def wsus_targeting_mode() -> BaseResponse:
    """Server- or client-side targeting (as 'devupdate wsus targeting server|client')."""
    try:
        result = wsus_targeting.set_targeting_mode(request.form.get("mode", "")[:10], actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Changing the targeting mode refused: {exc.message}")
    else:
        g.session.notice("ok", f"Targeting is {result['Mode']}-side now. {MODE_EFFECTS[result['Mode']]}"
                         if result["Changed"] else f"Targeting was {result['Mode']}-side already; nothing changed.")
    return redirect(url_for(".wsus_targeting_page"), code=303)


@bp.post("/targeting/groups/<group_id>/rename")
def wsus_targeting_rename_group(group_id: str) -> BaseResponse:
    """Rename a group (the refusals and audit entry of 'devupdate wsus groups rename')."""
    try:
        result = wsus_targeting.rename_group(group_id[:258], request.form.get("name", "")[:300], actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Renaming the group refused: {exc.message}")
        known = exc.code not in ("no-such-group", "bad-group")
        return redirect(url_for(".wsus_targeting_page", group=group_id[:258]) if known
                        else url_for(".wsus_targeting_page"), code=303)
    g.session.notice("ok", f"Renamed the group to {result['Name']}.")
    return redirect(url_for(".wsus_targeting_page", group=result["Id"]), code=303)


@bp.post("/targeting/groups/<group_id>/remove")
def wsus_targeting_remove_group(group_id: str) -> BaseResponse:
    """Remove a group without subgroups (as 'devupdate wsus groups remove'): its approvals are
    withdrawn, its computers fall back to their other groups or 'Unassigned Computers'."""
    try:
        result = wsus_targeting.remove_group(group_id[:258], actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Removing the group refused: {exc.message}")
        known = exc.code not in ("no-such-group", "bad-group")
        return redirect(url_for(".wsus_targeting_page", group=group_id[:258]) if known
                        else url_for(".wsus_targeting_page"), code=303)
    g.session.notice("ok", f"Removed the group {result['Name']}: its approvals are withdrawn and its computers "
                           "fall back to their other groups or Unassigned Computers.")
    return redirect(url_for(".wsus_targeting_page"), code=303)


@bp.post("/eulas/accept")
def wsus_eula_accept() -> BaseResponse:
    """Accept an EULA by EulaID or by an UpdateID that names one (as 'devupdate wsus eula accept'); back
    to the page the form was on."""
    ref = request.form.get("eula", "").strip()[:80]
    try:
        result = wsus_targeting.accept_eula(ref, actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Accepting the EULA refused: {exc.message}")
    else:
        g.session.notice("ok", f"Accepted EULA {result['EulaID']}: the updates that name it can be approved."
                         if result["Changed"] else
                         f"EULA {result['EulaID']} was already accepted (by {result['AcceptedBy']}); nothing changed.")
    return _back_to("/console/", ".wsus_auto_approval_page")


@bp.get("/auto-approval")
def wsus_auto_approval_page() -> Response:
    """The auto-approval rules and the EULAs (accepted, and those the rules wait for), as
    ``devupdate wsus auto-approval list`` and ``wsus eula list``."""
    from devupdate.wsus.targeting import autoapproval

    accepted = wsus_targeting.list_eulas()
    return page("auto_approval.html", rules=autoapproval.list_rules(), accepted=accepted,
                accepted_ids={row["EulaID"] for row in accepted}, awaiting=autoapproval.awaiting_eula(),
                max_defer=wsus_targeting.MAX_DEFER_DAYS)


@bp.post("/auto-approval/<rule>")
def wsus_auto_approval_set(rule: str) -> BaseResponse:
    """Change a rule from its row's form (as 'devupdate wsus auto-approval set'): the form sends the whole
    row, the service changes what differs. ``pause`` / ``resume`` as 'auto-approval pause|resume'."""
    from devupdate.wsus.targeting import autoapproval

    form = request.form
    action = form.get("do", "set")
    try:
        if action in ("pause", "resume"):
            result = autoapproval.set_rule(rule[:64], actor=g.admin.actor, paused=action == "pause")
        elif action == "set":
            text = form.get("defer_days", "").strip()[:12]
            try:
                defer = numbers.whole(text) if text else None
            except ValueError:
                raise DevupdateError(f"the deferral is a whole number of days, 0 to {wsus_targeting.MAX_DEFER_DAYS} "
                                     f"(not {text!r})", code="bad-defer-days") from None
            result = autoapproval.set_rule(rule[:64], actor=g.admin.actor, defer_days=defer,
                                           accept_eulas=form.get("accept_eulas") == "yes",
                                           enabled=form.get("enabled") == "yes")
        else:
            return refuse(404, "No such action", f"{action[:40]!r} is not one of set, pause, resume.")
    except DevupdateError as exc:
        g.session.notice("error", f"Changing the rule refused: {exc.message}")
    else:
        done = {"pause": "Paused", "resume": "Resumed", "set": "Changed"}[action]
        effect = {"pause": " It adds no approval until resumed.",
                  "resume": " The approvals that came due meanwhile are added at its next run."}.get(action, "")
        g.session.notice("ok", f"{done} the rule {result['Name']}.{effect}" if result["Changed"]
                         else f"The rule {result['Name']} was already so; nothing changed.")
    return redirect(url_for(".wsus_auto_approval_page") + f"#rule-{_anchor(rule)}", code=303)


@bp.app_template_filter("anchor")
def _anchor(name: str) -> str:
    """A rule's name as an HTML id ('All Computers' → 'all-computers')."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.casefold()[:64])
