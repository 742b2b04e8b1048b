"""What ``devupdate serve`` says when it starts: where the data is, which URLs phones are handed, where
the console is and how to get into it — the questions a new admin otherwise answers by reading code.

:func:`lines` is pure (settings and a count in, text out); :func:`announce` reads the count and prints.
"""

from __future__ import annotations

import ipaddress
import sys
from urllib.parse import urlsplit, urlunsplit

from devupdate.settings import Settings

PREFIX = "devupdate: "


def _without_password(url: str) -> str:
    """A database URL fit for a log: the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "")
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def is_local(url: str) -> bool:
    """True when the URL's host is one only this machine can reach (``localhost``, loopback)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost") or not host:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def lines(settings: Settings, *, admins: int, tls: bool = False, dns: bool = False) -> list[str]:
    """The start-up lines, in the order an admin needs them."""
    bind = f"[{settings.host}]" if ":" in settings.host else settings.host
    internal, external = settings.public_internal_url.rstrip("/"), settings.public_external_url.rstrip("/")
    out = [
        f"data directory {settings.home.resolve()} (database {_without_password(settings.effective_database_url)}, "
        f"filestore {settings.filestore_root.resolve()})",
        f"listening on http://{bind}:{settings.port}" + (f" and https://{bind}:{settings.tls_port}" if tls else "")
        + (f", DNS on {settings.dns_host}:{settings.dns_port}" if dns else ""),
        f"phones are handed {internal}/ (internal, DEVUPDATE_PUBLIC_INTERNAL_URL) and {external}/ "
        "(external, DEVUPDATE_PUBLIC_EXTERNAL_URL)",
    ]
    local = [name for name, url in (("DEVUPDATE_PUBLIC_INTERNAL_URL", internal),
                                    ("DEVUPDATE_PUBLIC_EXTERNAL_URL", external)) if is_local(url)]
    if local:
        out.append(f"warning: {' and '.join(local)} still say{'s' if len(local) == 1 else ''} localhost: phones "
                   "on the network cannot reach that; set them to the names phones resolve "
                   "(e.g. https://ucupdates-r2.contoso.com)")
    out.append(f"console {internal}/console/ (API {internal}/api/v1/, metrics {internal}/metrics)")
    if admins:
        out.append(f"console accounts: {admins} ('devupdate admins list')")
    else:
        out.append("no console account yet: create the first with 'devupdate admins add NAME --role admin'")
    return [PREFIX + line for line in out]


def announce(settings: Settings, *, tls: bool = False, dns: bool = False, stream=None) -> None:
    """Print :func:`lines` (the database is open); a console table that cannot be read counts as none."""
    from devupdate.admin.console.auth import list_admins

    try:
        admins = len(list_admins())
    except Exception:  # noqa: BLE001 - the banner never stops a start
        admins = 0
    stream = stream or sys.stderr
    for line in lines(settings, admins=admins, tls=tls, dns=dns):
        print(line, file=stream, flush=True)
