"""The ``devupdate`` command. Thin: parse arguments, call the service function, print.

Every listing has ``--json``; every failure exits non-zero with one line naming the fix.
Settings come from ``DEVUPDATE_*`` variables or ``$DEVUPDATE_HOME/devupdate.toml``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from devupdate.clikit import (
    Main,
    Progress,
    WholeNumber,
    actor,
    handle_errors,
    print_json,
    print_record,
    print_table,
    runtime,
    settings,
)
from devupdate.errors import DevupdateError
from devupdate.settings import Settings


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="devupdate")
def main() -> None:
    """devupdate — device update service for IP phones and UC devices.

    \b
    Data lives in $DEVUPDATE_HOME (default ./devupdate-data): SQLite database and filestore.
    Use PostgreSQL with DEVUPDATE_DATABASE_URL=postgresql://USER@HOST/DB.
    Typical flow:  devupdate import UCUpdates.cab  →  devupdate rules list  →  devupdate rules approve ID
    """


# --- service ------------------------------------------------------------------------------------

@main.command()
@click.option("--host", help="Address to listen on (DEVUPDATE_HOST, default 127.0.0.1).")
@click.option("--port", type=WholeNumber(0, 65535), help="Port (DEVUPDATE_PORT, default 8080).")
@click.option("--workers", type=WholeNumber(1, 256), help="Worker processes (DEVUPDATE_WORKERS, default 2).")
@click.option("--tls", is_flag=True, help="Also serve HTTPS on DEVUPDATE_TLS_PORT (default 8443) with the "
              "certificate from 'devupdate cert create'; the external side then answers only over HTTPS.")
@click.option("--dns", "with_dns", is_flag=True, help="Also run the ucupdates-r2 DNS responder "
              "(DEVUPDATE_DNS_HOST/DEVUPDATE_DNS_PORT).")
@click.option("--listener", type=click.Choice(["tls"]), hidden=True)
@handle_errors
def serve(host: str | None, port: int | None, workers: int | None, tls: bool, with_dns: bool,
          listener: str | None) -> None:
    """Run the service (gunicorn; SIGTERM finishes requests in flight, then exits).

    \b
    Phones: /RequestHandler/ucdevice.upx (internal), /RequestHandlerExt/ucdevice.upx (external),
    downloads under /DeviceUpdateFiles_Int|_Ext/, log uploads to /RequestHandler(Ext)/Files.
    """
    from devupdate.server import run, run_listener

    overrides = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v is not None}
    chosen = Settings.load(**overrides)
    if listener:
        run_listener(chosen, listener)
    else:
        run(chosen, tls=tls, dns=with_dns)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Create the schema or apply pending migrations (safe to run any time)."""
    from devupdate import db as database
    from devupdate import schema

    settings().home.mkdir(parents=True, exist_ok=True)
    database.open_database(settings().effective_database_url).connect(reuse_if_open=True)
    done = schema.upgrade()
    click.echo("\n".join(done) if done else f"schema is up to date (version {schema.current_version()})")


# --- packages -----------------------------------------------------------------------------------

@main.command("import")
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


@main.command()
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


# --- rules --------------------------------------------------------------------------------------

RULE_COLUMNS = ["Id", "Brand", "Model", "Revision", "Locale", "UpdateType", "ApprovedVersion", "PendingVersion",
                "RestoreVersion"]


@main.group()
def rules() -> None:
    """Update rules: list, show, approve, reset (reject), restore (roll back), remove.

    RULE is a GUID, a unique GUID prefix, or the Identity (service:WebServer:NAME/GUID).
    """


@rules.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rules_list(as_json: bool) -> None:
    """All rules with their approved, pending and restore versions."""
    from devupdate.rules.lifecycle import list_rules, rule_dict

    name = runtime().settings.effective_service_name
    rows = [rule_dict(rule, name) for rule in list_rules()]
    print_json(rows) if as_json else print_table(rows, RULE_COLUMNS)


@rules.command("show")
@click.argument("rule")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rules_show(rule: str, as_json: bool) -> None:
    """One rule in full, with its imported versions."""
    from devupdate.rules.lifecycle import resolve, rule_dict, rule_versions

    rt = runtime()
    found = resolve(rule)
    data = {**rule_dict(found, rt.settings.effective_service_name), "Versions": rule_versions(found.id)}
    print_json(data) if as_json else print_record(data)


def _rule_action(name: str, help_text: str, action_name: str) -> None:
    @rules.command(name, help=help_text)
    @click.argument("rule")
    @click.option("--json", "as_json", is_flag=True)
    @handle_errors
    def command(rule: str, as_json: bool, yes: bool = False) -> None:
        from devupdate.rules import lifecycle

        rt = runtime()
        if action_name == "restore":
            try:
                result = lifecycle.restore(rule, actor(), withdraw=yes)
            except lifecycle.WouldWithdraw as refusal:
                raise DevupdateError(f"{refusal.message}; to do that, run 'devupdate rules {name} {rule} --yes'",
                                     code=refusal.code) from None
        else:
            result = getattr(lifecycle, action_name)(rule, actor())
        if action_name == "remove":
            print_json(result) if as_json else click.echo(f"removed rule {result['Id']}")
            return
        data = lifecycle.rule_dict(result, rt.settings.effective_service_name)
        if as_json:
            print_json(data)
        else:
            verb = {"approve": "approved", "reset": "reset", "restore": "restored"}[action_name]
            click.echo(f"{verb} rule {data['Id']}: approved={data['ApprovedVersion'] or '-'} "
                       f"pending={data['PendingVersion'] or '-'} restore={data['RestoreVersion'] or '-'}")

    if action_name == "restore":
        click.option("--yes", is_flag=True, help="Also when there is no restore version: the approved version is "
                     "withdrawn and the fleet is offered nothing for this rule.")(command)


_rule_action("approve", "Approve the pending version (the old approved version becomes the restore version).",
             "approve")
_rule_action("reset", "Reject the pending version; test devices go back to the approved one.", "reset")
_rule_action("restore", "Roll back to the restore version (with none, refused unless --yes: the fleet would be "
             "offered nothing).", "restore")
_rule_action("rollback", "Alias of restore.", "restore")
_rule_action("remove", "Delete the rule; its images are removed by 'files cleanup' after the grace period.",
             "remove")


# --- test devices -------------------------------------------------------------------------------

@main.group("test-devices")
def test_devices() -> None:
    """Devices that receive pending versions before the fleet (by MAC address or serial number)."""


def _identifier_options(func: Callable) -> Callable:
    func = click.option("--site", help="Site scope (default: global).")(func)
    func = click.option("--serial", help="Serial number (letters, digits, - and _).")(func)
    return click.option("--mac", help="MAC address, e.g. 00-04-F2-AA-BB-CC.")(func)


@test_devices.command("add")
@click.argument("name")
@_identifier_options
@handle_errors
def test_devices_add(name: str, mac: str | None, serial: str | None, site: str | None) -> None:
    """Register a test device."""
    from devupdate.rules import test_devices as service

    runtime()
    device = service.add(name, mac=mac, serial=serial, site=site, actor=actor())
    click.echo(f"added test device {device.name} ({device.identifier_type} {device.identifier}, {device.scope})")


@test_devices.command("set")
@click.argument("name")
@_identifier_options
@handle_errors
def test_devices_set(name: str, mac: str | None, serial: str | None, site: str | None) -> None:
    """Change a test device's MAC address or serial number."""
    from devupdate.rules import test_devices as service

    runtime()
    device = service.set_identifier(name, mac=mac, serial=serial, site=site, actor=actor())
    click.echo(f"updated test device {device.name} ({device.identifier_type} {device.identifier})")


@test_devices.command("remove")
@click.argument("name")
@click.option("--site", help="Site scope (default: global).")
@handle_errors
def test_devices_remove(name: str, site: str | None) -> None:
    """Unregister a test device."""
    from devupdate.rules import test_devices as service

    runtime()
    service.remove(name, site=site, actor=actor())
    click.echo(f"removed test device {name}")


@test_devices.command("list")
@click.option("--site", help="Only this site's devices.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def test_devices_list(site: str | None, as_json: bool) -> None:
    """Registered test devices."""
    from devupdate.rules import test_devices as service

    runtime()
    rows = [service.device_dict(d) for d in service.list_devices(site)]
    print_json(rows) if as_json else print_table(rows, ["Name", "Scope", "IdentifierType", "Identifier"])


# --- configuration ------------------------------------------------------------------------------

@main.group()
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

    runtime()
    change = configuration.set_value(key, value, site=site, actor=actor())
    click.echo(f"{change['Scope']}: {change['Key']} = {change['After']} (was {change['Before']})")


# --- storage ------------------------------------------------------------------------------------

@main.group()
def files() -> None:
    """Imported images."""


@files.command("cleanup")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def files_cleanup(as_json: bool) -> None:
    """Remove images no rule references any more (after DEVUPDATE_FILE_CLEANUP_GRACE seconds)."""
    from devupdate.rules.cleanup import cleanup_files

    rt = runtime()
    report = cleanup_files(rt.store, grace_seconds=rt.settings.file_cleanup_grace, actor=actor())
    if as_json:
        print_json(report)
    else:
        click.echo(f"removed {len(report['VersionsRemoved'])} version(s), {report['ObjectsRemoved']} object(s) "
                   f"({report['BytesFreed']} bytes), {report['OrphansRemoved']} orphan(s)")


@main.group()
def filestore() -> None:
    """The quota-managed filestore."""


@filestore.command("usage")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def filestore_usage(as_json: bool) -> None:
    """Bytes used per area against its quota."""
    from devupdate.content.usage import usage_rows

    rows = usage_rows(runtime().store)
    print_json(rows) if as_json else print_table(rows, ["Area", "UsedBytes", "QuotaBytes", "UsedPercent",
                                                         "Objects", "Warning"])


@filestore.command("verify")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def filestore_verify(as_json: bool) -> None:
    """Re-hash every stored object; exit 1 when any does not match its name."""
    problems = runtime().store.verify()
    rows = [{"Area": p.area, "SHA256": p.sha256, "Problem": p.problem} for p in problems]
    if as_json:
        print_json(rows)
    elif rows:
        print_table(rows, ["Area", "SHA256", "Problem"])
    else:
        click.echo("all objects match their hashes")
    if rows:
        sys.exit(1)


# --- audit --------------------------------------------------------------------------------------

@main.group()
def audit() -> None:
    """The admin audit trail: every import and change, with who, when, before and after."""


@audit.command("list")
@click.option("--limit", type=WholeNumber(1, 1000), default=50, show_default=True)
@click.option("--offset", type=WholeNumber(0), default=0)
@click.option("--action", help="Action prefix, e.g. 'rule.' or 'import'.")
@click.option("--actor", "who", help="Only this actor.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def audit_list(limit: int, offset: int, action: str | None, who: str | None, as_json: bool) -> None:
    """Newest first."""
    from devupdate.audit.trail import list_events

    runtime()
    rows = list_events(limit=limit, offset=offset, action=action, actor=who)
    print_json(rows) if as_json else print_table(rows, ["Time", "Actor", "Action", "Target", "Outcome"])


# --- devices: users of the external side, inventory ---------------------------------------------

from devupdate.devices import cli as _device_cli  # noqa: E402

main.add_command(_device_cli.users)
main.add_command(_device_cli.devices)

from devupdate.devices import cli_logs as _cli_logs  # noqa: E402

main.add_command(_cli_logs.group, "logs")

# --- discovery and transport security -----------------------------------------------------------

from devupdate.dns.cli import group as _dns_group  # noqa: E402
from devupdate.tls.cli import group as _cert_group  # noqa: E402

main.add_command(_dns_group, "dns")
main.add_command(_cert_group, "cert")

from devupdate.admin import cli as _admin_cli  # noqa: E402

main.add_command(_admin_cli.group)

from devupdate.admin.console.cli import admins as _console_admins  # noqa: E402

main.add_command(_console_admins)
