"""``devupdate import`` and ``devupdate pack``: vendor packages into the service, and built like vendors
build them. Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

from pathlib import Path

import click

from devupdate.clikit import Progress, actor, handle_errors, print_json, print_table, runtime


@click.command("import")
@click.argument("cab", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def import_(cab: Path, as_json: bool) -> None:
    """Import a vendor .cab (images, catalogs, descriptions); new versions become pending."""
    from devupdate.imports.service import import_cab

    rt = runtime()
    progress = Progress(f"importing {cab.name}")
    try:
        result = import_cab(rt.store, rt.settings, cab, actor=actor(), progress=progress.advance,
                            on_total=progress.total)
    finally:
        progress.close()
    if as_json:
        print_json(result.as_dict())
        return
    if result.outcome == "nothing-new":
        click.echo(f"{cab.name}: nothing new (every update in it is already pending or approved)")
    else:
        click.echo(f"{cab.name}: imported")
    print_table(result.rules, ["Id", "Version", "Change"])
    for finding in result.findings:
        click.echo(f"warning: {finding}")


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--description", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this description XML instead of building one from the options below.")
@click.option("--id", "rule_id", help="Rule GUID (a new one when omitted).")
@click.option("--device-type", default="UCPhone", show_default=True)
@click.option("--brand")
@click.option("--model")
@click.option("--revision", default="A", show_default=True)
@click.option("--locale", default="ENU", show_default=True)
@click.option("--update-type", help="Default: the image's file stem (CPE.nbt → CPE).")
@click.option("--version", "version")
@handle_errors
def pack(out: Path, files: tuple[Path, ...], description: Path | None, rule_id: str | None, device_type: str,
         brand: str | None, model: str | None, revision: str, locale: str, update_type: str | None,
         version: str | None) -> None:
    """Build a .cab from images (.nbt) and their catalogs (.cat), as vendors ship them.

    \b
    devupdate pack UCUpdates.cab CPE.nbt CPE.cat --brand Polycom --model CX600 --version 4.0.7577.4372
    devupdate pack UCUpdates.cab --description updates.xml CPE.nbt CPE.cat
    """
    from devupdate.packages.pack import pack_files

    result = pack_files(out, list(files), description=description, rule_id=rule_id, device_type=device_type,
                        brand=brand, model=model, revision=revision, locale=locale, update_type=update_type,
                        version=version)
    click.echo(f"wrote {out} ({result['Size']} bytes, {len(result['Members'])} members)")


COMMANDS = [import_, pack]
