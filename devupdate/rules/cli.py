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
@click.option("--brand", help="Only this brand (case-insensitive; '*' matches anything).")
@click.option("--model", help="Only this model (case-insensitive; '*' matches anything, e.g. 'CX*').")
@click.option("--locale", help="Only this locale (case-insensitive).")
@click.option("--state", type=click.Choice(["pending", "approved", "none"]),
              help="Only rules with a pending version, an approved version, or neither.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rules_list(brand: str | None, model: str | None, locale: str | None, state: str | None, as_json: bool) -> None:
    """Rules with their approved, pending and restore versions."""
    from devupdate.rules.lifecycle import list_rules, rule_dict

    name = runtime().settings.effective_service_name
    rows = [rule_dict(rule, name) for rule in list_rules(brand=brand, model=model, locale=locale, state=state)]
    print_json(rows) if as_json else print_table(rows, RULE_COLUMNS)


@rules.command("show")
@click.argument("rule")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rules_show(rule: str, as_json: bool) -> None:
    """One rule in full, with its imported versions."""
    from devupdate.rules import rollout
    from devupdate.rules.lifecycle import resolve, rule_dict, rule_versions

    rt = runtime()
    found = resolve(rule)
    staged = rollout.of_rule(found.id)
    data = {**rule_dict(found, rt.settings.effective_service_name), "Versions": rule_versions(found.id),
            "Rollout": rollout.describe(staged) if staged is not None else None}
    print_json(data) if as_json else print_record(data)


def _rule_action(name: str, help_text: str, action_name: str) -> None:
    @rules.command(name, help=help_text)
    @click.argument("rule")
    @click.option("--json", "as_json", is_flag=True)
    @handle_errors
    def command(rule: str, as_json: bool, yes: bool = False) -> None:
        from devupdate.rules import lifecycle

        rt = runtime()
        if action_name == "remove":
            removed = lifecycle.remove(rule, actor())
            print_json(removed) if as_json else click.echo(f"removed rule {removed['Id']}")
            return
        if action_name == "restore":
            try:
                result = lifecycle.restore(rule, actor(), withdraw=yes)
            except lifecycle.WouldWithdraw as refusal:
                raise DevupdateError(f"{refusal.message}; to do that, run 'devupdate rules {name} {rule} --yes'",
                                     code=refusal.code) from None
        else:
            result = getattr(lifecycle, action_name)(rule, actor())
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


def _bulk_options(func: Callable) -> Callable:
    func = click.option("--dry-run", is_flag=True, help="Print what would change (the confirmation text) and "
                        "change nothing.")(func)
    func = click.option("--locale", help="Every pending rule of this locale (pattern).")(func)
    func = click.option("--model", help="Every pending rule of this model (pattern: '*' any run, '?' one "
                        "character, e.g. 'CX*').")(func)
    return click.option("--brand", help="Every pending rule of this brand (pattern, case-insensitive).")(func)


def _bulk(action: str, rule: str | None, brand: str | None, model: str | None, locale: str | None,
          dry_run: bool, as_json: bool) -> bool:
    """Run a bulk action (or a single rule's dry run); False when it is a plain single-rule action."""
    from devupdate.rules import bulk

    if not (brand or model or locale or dry_run):
        if rule is None:
            raise click.UsageError(f"give a RULE, or choose rules with --brand, --model or --locale "
                                   f"(e.g. devupdate rules {action} --brand Polycom --model 'CX*' --dry-run)")
        return False
    if rule is not None and (brand or model or locale):
        raise click.UsageError("give a RULE or --brand/--model/--locale, not both")
    selection = bulk.Selection(brand=brand, model=model, locale=locale, rules=(rule,) if rule else ())
    runtime()
    result = bulk.plan(action, selection) if dry_run else bulk.apply(action, selection, actor())
    if as_json:
        print_json(result)
    else:
        click.echo("\n".join(result["Confirmation"]))
        if dry_run:
            if result["Count"]:
                which = "this rule" if result["Count"] == 1 else f"these {result['Count']} rules"
                click.echo(f"Dry run: nothing was changed. Run it without --dry-run to {action} {which}.")
            else:
                click.echo("Dry run: nothing was changed.")
        else:
            for entry in result["Rules"]:
                if entry["Outcome"] == "refused":
                    click.echo(f"refused rule {entry['Id']} ({entry['Name']} · {entry['UpdateType']}): "
                               f"{entry['Error']['message']}")
                elif entry["Allowed"]:
                    click.echo(f"{entry['Outcome']} rule {entry['Id']} ({entry['Name']} · {entry['UpdateType']}): "
                               f"approved={entry['ApprovedVersion'] or '-'} pending={entry['PendingVersion'] or '-'} "
                               f"restore={entry['RestoreVersion'] or '-'}")
            allowed = sum(entry["Allowed"] for entry in result["Rules"])
            click.echo(f"{bulk.ACTIONS[action][1]} {result['Count']} of {allowed} rule{'s' if allowed != 1 else ''}")
    if not dry_run and any(entry["Outcome"] == "refused" for entry in result["Rules"]):
        raise click.exceptions.Exit(1)
    return True


@rules.command("approve")
@click.argument("rule", required=False)
@_bulk_options
@click.option("--rollout", "stages", metavar="STAGES", help="Roll out in stages, e.g. 5%,25%,100%: each device falls "
              "in a stable bucket; the rest keep the previous approved version; test devices get it at once.")
@click.option("--every", default="24h", show_default=True, help="Time between stages (30m, 24h, 2d).")
@click.option("--halt-at", default="2%", show_default=True, help="Halt when this share of the devices offered failed.")
@click.option("--fail-after-checks", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="A device offered the new version that still runs the old one after this many checks failed.")
@click.option("--fail-after", default="48h", show_default=True, help="… or after this long.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rules_approve(rule: str | None, brand: str | None, model: str | None, locale: str | None, dry_run: bool,
                  stages: str | None, every: str, halt_at: str, fail_after_checks: int, fail_after: str,
                  as_json: bool) -> None:
    """Approve the pending version (the old approved version becomes the restore version).

    With --brand/--model/--locale instead of RULE: every pending rule they match, one audit entry
    each; --dry-run prints the confirmation text and changes nothing.
    """
    from devupdate.rules import lifecycle, rollout
    from devupdate.rules.rollout_plan import Plan

    if stages and (brand or model or locale or dry_run):
        raise DevupdateError("--rollout approves one RULE; it does not combine with --brand/--model/--locale "
                             "or --dry-run", code="bad-selection")
    if _bulk("approve", rule, brand, model, locale, dry_run, as_json):
        return
    assert rule is not None
    rt = runtime()
    plan = Plan.parse(stages, every, halt_at, fail_after_checks, fail_after) if stages else None
    result = lifecycle.approve(rule, actor(), plan)
    data = lifecycle.rule_dict(result, rt.settings.effective_service_name)
    staged = rollout.of_rule(result.id)
    if staged is not None:
        data["Rollout"] = rollout.describe(staged)
    if as_json:
        print_json(data)
        return
    click.echo(f"approved rule {data['Id']}: approved={data['ApprovedVersion'] or '-'} "
               f"pending={data['PendingVersion'] or '-'} restore={data['RestoreVersion'] or '-'}")
    if staged is not None:
        info = data["Rollout"]
        click.echo(f"rollout: {info['Share']} of the fleet now, stages {','.join(info['Stages'])} every "
                   f"{info['Every']}, halts at {info['HaltAt']} failed; the rest keep "
                   f"{info['PreviousVersion'] or 'nothing'}")


# --- staged rollouts -----------------------------------------------------------------------------

@rules.group("rollout")
def rollout_group() -> None:
    """Staged rollouts (started by 'rules approve RULE --rollout 5%,25%,100%'): show, resume, advance, abort."""


@rollout_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rollout_list(as_json: bool) -> None:
    """Every rollout with its stage and devices offered / updated / failed."""
    from devupdate.rules.rollout_actions import list_rollouts

    runtime()
    rows = list_rollouts()
    print_json(rows) if as_json else print_table(rows, ["RuleId", "Version", "State", "Stage", "Share", "Offered",
                                                        "Updated", "Failed", "NextStageAt"])


@rollout_group.command("show")
@click.argument("rule")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rollout_show(rule: str, as_json: bool) -> None:
    """One rule's rollout."""
    from devupdate.rules.rollout_actions import show

    runtime()
    data = show(rule)
    print_json(data) if as_json else print_record(data)


def _rollout_action(name: str, help_text: str) -> None:
    @rollout_group.command(name, help=help_text)
    @click.argument("rule")
    @click.option("--json", "as_json", is_flag=True)
    @handle_errors
    def command(rule: str, as_json: bool) -> None:
        from devupdate.rules import lifecycle, rollout_actions

        rt = runtime()
        if name == "abort":
            restored = rollout_actions.abort(rule, actor())
            data = lifecycle.rule_dict(restored, rt.settings.effective_service_name)
            print_json(data) if as_json else click.echo(
                f"aborted the rollout of rule {data['Id']}: approved={data['ApprovedVersion'] or '-'} again")
            return
        data = getattr(rollout_actions, name)(rule, actor())
        print_json(data) if as_json else click.echo(
            f"rollout of rule {data['RuleId']}: {data['State']}, stage {data['Stage']} ({data['Share']})")


_rollout_action("resume", "Resume a halted rollout (the failures so far are accepted; new ones count).")
_rollout_action("advance", "Start the next stage now instead of waiting.")
_rollout_action("abort", "Abort = restore: the fleet goes back to the previous version; the rollout ends.")
@rules.command("reset")
@click.argument("rule", required=False)
@_bulk_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rules_reset(rule: str | None, brand: str | None, model: str | None, locale: str | None, dry_run: bool,
                as_json: bool) -> None:
    """Reject the pending version; test devices go back to the approved one.

    With --brand/--model/--locale instead of RULE: every pending rule they match; --dry-run prints
    the confirmation text and changes nothing.
    """
    from devupdate.rules import lifecycle

    if _bulk("reset", rule, brand, model, locale, dry_run, as_json):
        return
    assert rule is not None
    rt = runtime()
    data = lifecycle.rule_dict(lifecycle.reset(rule, actor()), rt.settings.effective_service_name)
    if as_json:
        print_json(data)
    else:
        click.echo(f"reset rule {data['Id']}: approved={data['ApprovedVersion'] or '-'} "
                   f"pending={data['PendingVersion'] or '-'} restore={data['RestoreVersion'] or '-'}")


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
