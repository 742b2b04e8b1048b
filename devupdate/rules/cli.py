"""``devupdate rules``, ``devupdate test-devices`` and ``devupdate files`` (the images rules reference).
Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

from collections.abc import Callable

import click

from devupdate.clikit import actor, handle_errors, print_json, print_record, print_table, runtime
from devupdate.errors import DevupdateError

RULE_COLUMNS = ["Id", "Brand", "Model", "Revision", "Locale", "UpdateType", "ApprovedVersion", "PendingVersion",
                "RestoreVersion"]


@click.group()
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

@click.group("test-devices")
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



@click.group()
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


COMMANDS = [rules, test_devices, files]
