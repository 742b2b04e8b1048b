"""``devupdate backup create DIR`` / ``devupdate backup restore DIR``. Registered in ``devupdate.cli``."""

from __future__ import annotations

from pathlib import Path

import click

from devupdate.clikit import handle_errors, print_json, settings


def _print(report, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    click.echo(f"{verb} {report.directory}: {report.database} database at schema version {report.schema}, "
               f"{report.objects} stored object(s), {report.files} file(s), {report.bytes} bytes")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


@click.group("backup")
def group() -> None:
    """Back up and restore the installation: database, filestore, keys and settings.

    \b
    devupdate backup create /var/backups/devupdate/2026-12-03    # while serving; DIR must be new
    devupdate backup restore /var/backups/devupdate/2026-12-03   # into an empty installation
    devupdate filestore verify                                   # afterwards: every object re-hashed
    """


@group.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def create(directory: Path, as_json: bool) -> None:
    """Write a consistent backup into DIRECTORY (SQLite's online backup or pg_dump, then the filestore)."""
    from devupdate.backup import service

    _print(service.create(settings(), directory), "backed up into", as_json)


@group.command("restore")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite an installation that already has data (stop every "
              "server of it first).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def restore(directory: Path, replace: bool, as_json: bool) -> None:
    """Restore the backup in DIRECTORY, checked file by file against its manifest first."""
    from devupdate.backup import service

    _print(service.restore(settings(), directory, replace=replace), "restored from", as_json)
