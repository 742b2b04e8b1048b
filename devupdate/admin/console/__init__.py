"""The web console: server-rendered pages under ``/console`` for admins and operators (docs/console.md).

:func:`install` is what ``devupdate.app.create_app`` calls. Importing this package stays cheap (no
Flask), because the CLI imports ``devupdate.admin.console.cli`` and the schema imports ``auth``.
"""

from __future__ import annotations


def install(app, runtime) -> None:
    """Register the console blueprint, its cookie settings, and ``/`` → ``/console/``."""
    from flask import redirect, url_for

    from devupdate.admin.console import configuration  # noqa: F401 - its pages join the blueprint
    from devupdate.admin.console.session import SessionCookie, cookie_secure, load_signing_key
    from devupdate.admin.console.views import bp

    settings = runtime.settings
    app.extensions["console.cookie"] = SessionCookie(load_signing_key(settings.home),
                                                     secure=cookie_secure(settings))
    app.register_blueprint(bp)
    app.add_url_rule("/", "root", lambda: redirect(url_for("console.dashboard")))
