"""``devupdate wsus groups|computers|approve|unapprove|approvals|eula|auto-approval|targeting``: target
groups, computers and approvals ([wsus] §1d W6–W8). Thin: the actions are in
:mod:`devupdate.wsus.targeting.service` and :mod:`.autoapproval`. Registered in ``devupdate.cli``."""

from __future__ import annotations

from typing import Any

import click

from devupdate.clikit import WholeNumber, actor, handle_errors, print_json, print_record, print_table, runtime


def _show(data: Any, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        print_json(data)
    elif isinstance(data, list):
        print_table(data, columns or [])
    else:
        print_record(data)


# -- groups --------------------------------------------------------------------------------------------

@click.group()
def groups() -> None:
    """Target groups: a tree under 'All Computers' ('Unassigned Computers' and 'Test' are built in).

    \b
    devupdate wsus groups add Finance
    devupdate wsus groups add "Finance Laptops" --parent Finance
    devupdate wsus groups rename "Finance Laptops" "Finance Notebooks"
    """


@groups.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def groups_list(as_json: bool) -> None:
    """Every group, the tree depth-first, with the computers directly in it."""
    from devupdate.wsus.targeting import service

    runtime()
    rows = service.list_groups()
    if as_json:
        print_json(rows)
        return
    print_table([{**row, "Name": "  " * row["Depth"] + row["Name"]} for row in rows],
                ["Name", "Id", "Computers", "BuiltIn"])


@groups.command("add")
@click.argument("name")
@click.option("--parent", help="The parent group (name or GUID); default 'All Computers'.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def groups_add(name: str, parent: str | None, as_json: bool) -> None:
    """Add a group (names are unique in any case and cannot contain ';')."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.add_group(name, parent=parent, actor=actor()), as_json)


@groups.command("rename")
@click.argument("group")
@click.argument("new_name")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def groups_rename(group: str, new_name: str, as_json: bool) -> None:
    """Rename a group (the built-in ones keep their names)."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.rename_group(group, new_name, actor=actor()), as_json)


@groups.command("remove")
@click.argument("group")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def groups_remove(group: str, as_json: bool) -> None:
    """Remove a group without subgroups: its approvals are withdrawn, its computers fall back to
    their other groups or 'Unassigned Computers'."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.remove_group(group, actor=actor()), as_json)


# -- computers -----------------------------------------------------------------------------------------

@click.group()
def computers() -> None:
    """Computers that registered (RegisterComputer): list, show, assign to groups (server-side
    targeting). COMPUTER is the TargetID, the ComputerID or the DNS name."""


@computers.command("list")
@click.option("--group", help="Only computers in this group or below it.")
@click.option("--limit", type=WholeNumber(1, 5000), default=500, show_default=True)
@click.option("--offset", type=WholeNumber(0, 10**9), default=0)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def computers_list(group: str | None, limit: int, offset: int, as_json: bool) -> None:
    from devupdate.wsus.targeting import service

    runtime()
    rows = service.list_computers(group=group, limit=limit, offset=offset)
    if as_json:
        print_json(rows)
        return
    print_table([{**r, "Groups": ", ".join(g["Name"] for g in r["Groups"])} for r in rows],
                ["TargetId", "DnsName", "OSVersion", "Groups", "LastSyncTime"])


@computers.command("show")
@click.argument("computer")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def computers_show(computer: str, as_json: bool) -> None:
    """A computer's fields, its groups (server- and client-side) and every group it belongs to."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.computer_dict(service.resolve_computer(computer), detail=True), as_json)


@computers.command("assign")
@click.argument("computer")
@click.argument("group_names", nargs=-1, required=True, metavar="GROUP...")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def computers_assign(computer: str, group_names: tuple[str, ...], as_json: bool) -> None:
    """Assign the computer to these groups (replacing its server-side groups); 'Unassigned Computers'
    alone unassigns it."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.assign_computer(computer, list(group_names), actor=actor()), as_json)


# -- approvals -----------------------------------------------------------------------------------------

@click.command("approve")
@click.argument("update")
@click.option("--group", "group_name", required=True, help="The target group (name or GUID).")
@click.option("--action", required=True, type=click.Choice(["install", "uninstall", "optional", "block"]))
@click.option("--deadline", help="ISO 8601 time (UTC unless it has an offset), e.g. 2026-12-24T18:00:00Z.")
@click.option("--priority", type=click.Choice(["high", "low", "normal"]), default="normal", show_default=True,
              help="Download priority.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def approve(update: str, group_name: str, action: str, deadline: str | None, priority: str, as_json: bool) -> None:
    """Approve UPDATE (an UpdateID) for a group, or change its approval there. An update with an EULA
    needs it accepted first ('devupdate wsus eula accept UPDATE'); Block is not allowed on 'All
    Computers'."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.approve(update, group_name, action, deadline=deadline, priority=service.PRIORITY_NAMES[priority],
                          actor=actor()), as_json)


@click.command("unapprove")
@click.argument("update")
@click.option("--group", "group_name", required=True, help="The target group (name or GUID).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def unapprove(update: str, group_name: str, as_json: bool) -> None:
    """Withdraw the approval of UPDATE for a group."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.unapprove(update, group_name, actor=actor()), as_json)


@click.command("approvals")
@click.argument("update", required=False)
@click.option("--group", "group_name", help="Only approvals for this group.")
@click.option("--all", "include_revoked", is_flag=True, help="Withdrawn approvals too.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def approvals(update: str | None, group_name: str | None, include_revoked: bool, as_json: bool) -> None:
    """The approvals (deployments) of UPDATE, or of every update."""
    from devupdate.wsus.targeting import service

    runtime()
    rows = service.list_deployments(update, group=group_name, include_revoked=include_revoked)
    _show(rows, as_json, ["UpdateID", "Group", "Action", "Deadline", "Source", "Actor", "ChangedTime"])


# -- EULAs ---------------------------------------------------------------------------------------------

@click.group()
def eula() -> None:
    """License terms: an update whose metadata names an EULA is approved only once it is accepted."""


@eula.command("accept")
@click.argument("ref", metavar="UPDATE_OR_EULA")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def eula_accept(ref: str, as_json: bool) -> None:
    """Accept the EULA of an update (its UpdateID), or an EulaID."""
    from devupdate.wsus.targeting import service

    runtime()
    _show(service.accept_eula(ref, actor=actor()), as_json)


@eula.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def eula_list(as_json: bool) -> None:
    """Accepted EULAs, and the updates auto-approval skipped for an EULA not yet accepted."""
    from devupdate.wsus.targeting import autoapproval, service

    runtime()
    data = {"Accepted": service.list_eulas(), "AwaitingAcceptance": autoapproval.awaiting_eula()}
    if as_json:
        print_json(data)
        return
    click.echo("Accepted:")
    print_table(data["Accepted"], ["EulaID", "AcceptedBy", "AcceptedTime"])
    click.echo("Awaiting acceptance (skipped by auto-approval):")
    print_table(data["AwaitingAcceptance"], ["UpdateID", "EulaID", "Rule", "Time"])


# -- auto-approval -------------------------------------------------------------------------------------

@click.group("auto-approval")
def auto_approval() -> None:
    """The auto-approval rules: 'Test' (new updates → Test on arrival), 'All Computers' (the same
    after DeferDays, unless paused) and 'Definition Updates' (→ All Computers at once)."""


@auto_approval.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def auto_list(as_json: bool) -> None:
    from devupdate.wsus.targeting import autoapproval

    runtime()
    _show(autoapproval.list_rules(), as_json,
          ["Name", "Group", "DeferDays", "Enabled", "Paused", "AcceptEulas", "Approved", "AwaitingEula"])


@auto_approval.command("set")
@click.argument("name")
@click.option("--defer-days", type=WholeNumber(0, 30), help="Days after the Test approval (All Computers rule).")
@click.option("--accept-eulas/--no-accept-eulas", default=None, help="Accept the EULAs of the updates it approves.")
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def auto_set(name: str, defer_days: int | None, accept_eulas: bool | None, enabled: bool | None,
             as_json: bool) -> None:
    """Change a rule."""
    from devupdate.wsus.targeting import autoapproval

    runtime()
    _show(autoapproval.set_rule(name, actor=actor(), defer_days=defer_days, accept_eulas=accept_eulas,
                                enabled=enabled), as_json)


@auto_approval.command("pause")
@click.argument("name", default="All Computers")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def auto_pause(name: str, as_json: bool) -> None:
    """Pause a rule (default 'All Computers'): it adds no approval until resumed."""
    from devupdate.wsus.targeting import autoapproval

    runtime()
    _show(autoapproval.set_rule(name, actor=actor(), paused=True), as_json)


@auto_approval.command("resume")
@click.argument("name", default="All Computers")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def auto_resume(name: str, as_json: bool) -> None:
    """Resume a paused rule; the approvals that came due meanwhile are added at its next run."""
    from devupdate.wsus.targeting import autoapproval

    runtime()
    _show(autoapproval.set_rule(name, actor=actor(), paused=False), as_json)


@auto_approval.command("run")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def auto_run(as_json: bool) -> None:
    """Evaluate the rules now (they run after each import and hourly)."""
    from devupdate.wsus.targeting import autoapproval

    runtime()
    results = autoapproval.run_rules()
    if as_json:
        print_json(results)
        return
    for item in results:
        state = " (paused)" if item.get("Paused") else " (disabled)" if item.get("Disabled") else ""
        click.echo(f"{item['Rule']}{state}: {len(item['Approved'])} approved, "
                   f"{len(item['AwaitingEula'])} awaiting an EULA")


@click.command("targeting")
@click.argument("mode", required=False, type=click.Choice(["server", "client"]))
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def targeting(mode: str | None, as_json: bool) -> None:
    """Show or set the targeting mode: 'server' (groups assigned here; the default) or 'client' (from
    the computers' targetGroupName policy)."""
    from devupdate.wsus.targeting import service

    runtime()
    data = service.set_targeting_mode(mode, actor=actor()) if mode else {"Mode": service.targeting_mode()}
    _show(data, as_json)


COMMANDS = (groups, computers, approve, unapprove, approvals, eula, auto_approval, targeting)
