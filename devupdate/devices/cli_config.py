"""``devupdate config``: the device-update configuration (Lync's ``*-CsDeviceUpdateConfiguration``).
Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

from typing import cast

import click

from devupdate.clikit import actor, handle_errors, print_json, print_record, runtime


@click.group()
def config() -> None:
    """Device-update configuration (log sizes, intervals, valid log types), global or per site."""


@config.command("show")
@click.option("--site", help="Show the values in force for this site.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def config_show(site: str | None, as_json: bool) -> None:
    """The configuration in force."""
    from devupdate import configuration

    runtime()
    data = configuration.show(site)
    print_json(data) if as_json else print_record(data)


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--site", help="Override for this site only.")
@handle_errors
def config_set(key: str, value: str, site: str | None) -> None:
    """Change one setting (refused with its range when invalid)."""
    from devupdate import configuration

    rt = runtime()
    change = configuration.set_value(key, value, site=site, actor=actor(), quotas=rt.settings.quotas)
    click.echo(f"{change['Scope']}: {change['Key']} = {change['After']} (was {change['Before']})")


@config.command("remove")
@click.option("--site", help="Remove this site's own values (without it: reset the global values to their defaults).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def config_remove(site: str | None, as_json: bool) -> None:
    """Remove a site's configuration (Remove-CsDeviceUpdateConfiguration); the site then follows the global one."""
    from devupdate import configuration

    runtime()
    result = configuration.remove(site=site, actor=actor())
    if as_json:
        print_json(result)
        return
    removed = cast(dict, result["Removed"])
    values = ", ".join(f"{key}={' '.join(v) if isinstance(v, list) else v}" for key, v in removed.items())
    click.echo(f"{result['Scope']}: removed {values}" + ("; the global values are the defaults again" if site is None
                                                          else "; the site follows the global values"))
