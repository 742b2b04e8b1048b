"""``devupdate migrate lync``. Registered in ``devupdate.cli``."""

from __future__ import annotations

from pathlib import Path

import click

from devupdate.clikit import actor, handle_errors, print_json, runtime

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("migrate")
def group() -> None:
    """Take over from another device update server."""


@group.command("lync")
@click.option("--rules", "rules_csv", required=True, type=_FILE,
              help="Get-CsDeviceUpdateRule | Export-Csv -Path RULES.csv")
@click.option("--test-devices", "devices_csv", type=_FILE, help="Get-CsTestDevice | Export-Csv -Path TD.csv")
@click.option("--configuration", "config_csv", type=_FILE,
              help="Get-CsDeviceUpdateConfiguration | Export-Csv -Path CFG.csv")
@click.argument("cabs", nargs=-1, type=_FILE)
@click.option("--dry-run", is_flag=True, help="Print what would be done and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (and the result) as JSON.")
@handle_errors
def lync(rules_csv: Path, devices_csv: Path | None, config_csv: Path | None, cabs: tuple[Path, ...], dry_run: bool,
         as_json: bool) -> None:
    """Recreate a Lync / Skype for Business pool's rules (approved, pending and restore versions), test
    devices and configuration (sites included) from its PowerShell exports and the vendor CABS, in one
    transaction. Anything that cannot be mapped is refused, one line each, and nothing changes.

    \b
    devupdate migrate lync --rules rules.csv --test-devices td.csv --configuration cfg.csv \\
        UCUpdates-4372.cab UCUpdates-4380.cab --dry-run
    See docs/migrating-from-lync.md for the export commands.
    """
    from devupdate.migrate import lync as migration
    from devupdate.migrate import lyncexport

    try:
        rules = lyncexport.rules(rules_csv.read_bytes(), rules_csv.name)
        devices = lyncexport.test_devices(devices_csv.read_bytes(), devices_csv.name) if devices_csv else []
        configs = lyncexport.configuration(config_csv.read_bytes(), config_csv.name) if config_csv else []
        rt = runtime()
        plan = migration.plan(rt.settings, rules=rules, cabs=list(cabs), devices=devices, configs=configs)
    except (lyncexport.ExportError, migration.MigrationRefused) as exc:
        for line in exc.lines:
            click.echo(f"cannot map: {line}", err=True)
        from devupdate.errors import DevupdateError

        raise DevupdateError(f"cannot migrate: {len(exc.lines)} problem(s), nothing changed",
                             code="cannot-migrate") from None
    lines = plan.lines()
    if dry_run:
        if as_json:
            print_json({"DryRun": True, "Steps": lines})
        else:
            click.echo("\n".join(lines))
            click.echo("dry run: nothing changed")
        return
    summary = migration.apply(rt, plan, actor=actor())
    if as_json:
        print_json({"DryRun": False, "Steps": lines, **summary})
    else:
        click.echo("\n".join(lines))
        click.echo(f"migrated: {summary['Rules']} rule(s), {summary['TestDevices']} test device(s), "
                   f"{summary['Settings']} setting(s) from {summary['Cabs']} cab(s)")
