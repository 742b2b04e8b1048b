"""``devupdate wsus report computers|updates|groups [--json]``: the compliance reports ([wsus] §1d W9).
Thin: the figures come from ``devupdate.wsus.compliance.reports``, as the API's do."""

from __future__ import annotations

import click

from devupdate.clikit import handle_errors, print_json, print_table, runtime


@click.group("report")
def report() -> None:
    """Compliance from the clients' reports: per computer, per update, per target group.

    \b
    Needed = needed or downloaded, Installed = installed (PendingReboot: of them, awaiting a restart),
    Failed, NotApplicable; Unknown (per update) = known computers that reported nothing about it.
    devupdate wsus report computers --group Test
    devupdate wsus report computer pc1.corp.example
    devupdate wsus report updates --json
    devupdate wsus report groups
    """


@report.command("computers")
@click.option("--group", help="Only computers that belong to this group (name or GUID), directly or below it.")
@click.option("--limit", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--offset", type=click.IntRange(0, 10**9), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def report_computers(group: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Per computer: updates needed, installed, failed; last sync, last status, last scan and its error."""
    from devupdate.wsus.compliance import reports

    runtime()
    rows = reports.computers(group=group, limit=limit, offset=offset)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["ComputerId", "DnsName", "Needed", "Installed", "Failed", "NotApplicable", "LastSyncTime",
                       "LastStatusTime", "LastScanError", "ReportedBy"])


@report.command("computer")
@click.argument("computer")
@click.option("--limit", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def report_computer(computer: str, limit: int, as_json: bool) -> None:
    """One computer (TargetID, ComputerID or DNS name): its counts and its state per update, each with
    the event that set it."""
    from devupdate.wsus.compliance import reports

    runtime()
    row = reports.computer(computer, limit=limit)
    if as_json:
        print_json(row)
        return
    for name in ("ComputerId", "DnsName", "Needed", "Installed", "Failed", "NotApplicable", "LastSyncTime",
                 "LastStatusTime", "LastScanError", "ReportedBy"):
        click.echo(f"{name}: {'' if row[name] is None else row[name]}")
    print_table([{**u, "EventID": u["Event"]["EventID"], "TimeAtTarget": u["Event"]["TimeAtTarget"]}
                 for u in row["Updates"]], ["UpdateID", "State", "HResult", "EventID", "TimeAtTarget", "Title"])


@report.command("updates")
@click.option("--group", help="Only the computers that belong to this group (name or GUID).")
@click.option("--limit", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--offset", type=click.IntRange(0, 10**9), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def report_updates(group: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Per update: computers needing it, with it installed, failed, not applicable, unknown."""
    from devupdate.wsus.compliance import reports

    runtime()
    rows = reports.updates(group=group, limit=limit, offset=offset)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["UpdateID", "KB", "Needed", "Installed", "Failed", "NotApplicable", "Unknown", "Title"])


@report.command("groups")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def report_groups(as_json: bool) -> None:
    """Per target group (tree order): its computers and the sums of their counts."""
    from devupdate.wsus.compliance import reports

    runtime()
    rows = reports.groups()
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["Path", "Computers", "Needed", "Installed", "Failed", "NotApplicable", "ComputersNeeding",
                       "ComputersFailed"])
