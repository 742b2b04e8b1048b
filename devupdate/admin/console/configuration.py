"""``/console/configuration``: the device-update configuration per scope, changing one setting, and
removing a site's own values (Remove-CsDeviceUpdateConfiguration) — the service functions the CLI
and the API call, registered on the console's blueprint."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from devupdate import configuration
from devupdate.admin.console.views import _runtime, bp, page
from devupdate.errors import DevupdateError


def _shown(value: object) -> str:
    if value is None:
        return "none"
    return " ".join(value) if isinstance(value, list) else str(value)


def _configuration_page(status: int = 200, error: str | None = None, form: dict | None = None) -> BaseResponse:
    scopes = configuration.overrides()
    scopes.setdefault("global", {})
    rows = [{"Key": key, "Global": _shown(value)} for key, value in configuration.effective().items()]
    sites = [{"Scope": scope, "Site": scope[5:], "Values": {k: _shown(v) for k, v in values.items()}}
             for scope, values in scopes.items() if scope.startswith("site:")]
    return page("configuration.html", status=status, rows=rows, sites=sites, keys=list(configuration.OPTIONS),
                global_own=scopes["global"], error=error, form=form or {})


@bp.get("/configuration")
def configuration_page() -> BaseResponse:
    return _configuration_page()


@bp.post("/configuration")
def configuration_set() -> BaseResponse:
    form = {key: request.form.get(key, "").strip() for key in ("key", "value", "site")}
    try:
        change = configuration.set_value(form["key"], form["value"], site=form["site"] or None, actor=g.admin.actor,
                                         quotas=_runtime().settings.quotas)
    except DevupdateError as exc:
        return _configuration_page(status=exc.status, error=exc.message, form=form)
    g.session.notice("ok", f"{change['Scope']}: {change['Key']} = {_shown(change['After'])} "
                           f"(was {_shown(change['Before'])}).")
    return redirect(url_for(".configuration_page"), code=303)


@bp.post("/configuration/remove")
def configuration_remove() -> BaseResponse:
    site = request.form.get("site", "").strip() or None
    try:
        result = configuration.remove(site=site, actor=g.admin.actor)
    except DevupdateError as exc:
        g.session.notice("error", f"Remove refused: {exc.message}")
    else:
        removed = ", ".join(f"{key}={_shown(value)}" for key, value in result["Removed"].items())  # type: ignore[attr-defined]
        g.session.notice("ok", f"Removed the configuration of {result['Scope']} ({removed}): it follows the global "
                               "values now." if site else f"Global configuration reset to the defaults ({removed}).")
    return redirect(url_for(".configuration_page"), code=303)
