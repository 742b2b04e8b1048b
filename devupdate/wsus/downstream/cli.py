"""``devupdate wsus sync`` and ``devupdate wsus needed``: the downstream role from the command line.
Thin: the actions are in :mod:`devupdate.wsus.downstream.service` and :mod:`.needed`."""

from __future__ import annotations

import sys
from typing import Any

import click

from devupdate.clikit import WholeNumber, actor, handle_errors, print_json, print_table, runtime


def _summary_line(done: dict[str, Any]) -> str:
    files = done.get("Files", {})
    return (f"{done.get('NewRevisions', 0)} new, {done.get('UpdatedRevisions', 0)} updated, "
            f"{done.get('UnchangedRevisions', 0)} unchanged revisions ({done.get('HeldRevisions', 0)} held, "
            f"{done.get('FailedRevisions', 0)} failed); files: {files.get('Fetched', 0)} fetched, "
            f"{files.get('Bytes', 0)} bytes, {files.get('Resumed', 0)} resumed, {files.get('Corrupt', 0)} corrupt; "
            f"{done.get('DeploymentsApplied', 0)} deployments applied; {done.get('DurationSeconds', 0)} s")


@click.group("sync", invoke_without_command=True)
@click.option("--upstream", metavar="URL", help="The upstream server (default: DEVUPDATE_WSUS_UPSTREAM_URL).")
@click.option("--mode", type=click.Choice(["autonomous", "replica", "fault-in"]),
              help="autonomous: metadata and content; replica: also the upstream's groups and approvals; "
                   "fault-in: the needed-update list only (default: DEVUPDATE_WSUS_SYNC_MODE).")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.pass_context
@handle_errors
def sync_group(ctx: click.Context, upstream: str | None, mode: str | None, as_json: bool) -> None:
    """Sync the catalog from the upstream server now (MS-WSUSSS, as a downstream server).

    \b
    devupdate wsus sync --upstream https://wsus.example.org:8531 --json
    devupdate wsus sync status
    A run already going on (another node, the schedule) is joined: its summary is printed."""
    if ctx.invoked_subcommand is not None:
        return
    from devupdate.wsus.downstream.service import SyncFailed, sync

    rt = runtime()
    try:
        done = sync(rt.settings, rt.store, upstream=upstream, mode=mode, trigger="cli", actor=actor())
    except SyncFailed as failed:
        if as_json:
            print_json({"Outcome": "failed", "Error": failed.message, **failed.summary})
        click.echo(f"devupdate: error: {failed.message}", err=True)
        sys.exit(1)
    if as_json:
        print_json({"Outcome": "ok", **done})
    else:
        click.echo(_summary_line(done))


@sync_group.command("status")
@click.option("--limit", type=WholeNumber(1, 1000), default=20, show_default=True, help="Runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def sync_status(limit: int, as_json: bool) -> None:
    """The sync history (kept 30 days) and the anchors stored per upstream."""
    from devupdate.wsus.downstream.service import status

    runtime()
    found = status(limit)
    if as_json:
        print_json(found)
        return
    for upstream in found["Upstreams"]:
        click.echo(f"{upstream['Upstream']} ({upstream['Mode']}): sync anchor {upstream['SyncAnchor'] or '-'}, "
                   f"deployment anchor {upstream['DeploymentAnchor'] or '-'}, ServerId {upstream['ServerId'] or '-'}")
    rows = [{"Id": r["Id"], "Started": r["Started"], "Outcome": r["Outcome"], "Mode": r["Mode"],
             "Trigger": r["Trigger"], "New": r["Summary"].get("NewRevisions", ""),
             "Files": r["Summary"].get("Files", {}).get("Fetched", ""), "Error": r["Error"][:60]}
            for r in found["Runs"]]
    print_table(rows, ["Id", "Started", "Outcome", "Mode", "Trigger", "New", "Files", "Error"])


@sync_group.group("files", invoke_without_command=True)
@click.option("--corrupt", "state", flag_value="corrupt-upstream", help="Only the files marked corrupt-upstream.")
@click.option("--unavailable", "state", flag_value="unavailable", help="Only the files marked unavailable.")
@click.option("--limit", type=WholeNumber(1, 1000), default=100, show_default=True, help="Files to show.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def sync_files(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """The files the sync gave up on: corrupt upstream (3 mismatches) or unavailable there. They are not
    fetched again until their mark is cleared.

    \b
    devupdate wsus sync files --corrupt
    devupdate wsus sync files retry 3f786850e387550fdab836ed7e6dc881de23001b
    devupdate wsus sync files retry --all --corrupt"""
    if ctx.invoked_subcommand is not None:
        return
    from devupdate.wsus.downstream import marks

    runtime()
    rows = marks.marked(state, limit)
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["SHA1", "State", "Attempts", "FileName", "Changed", "Reason"])


@sync_files.command("retry")
@click.argument("sha1s", nargs=-1, metavar="[SHA1]...")
@click.option("--all", "every", is_flag=True, help="Every marked file (with --corrupt or --unavailable: those).")
@click.option("--corrupt", "state", flag_value="corrupt-upstream", help="Only files marked corrupt-upstream.")
@click.option("--unavailable", "state", flag_value="unavailable", help="Only files marked unavailable.")
@click.option("--json", "as_json", is_flag=True, help="Print the cleared files as JSON.")
@handle_errors
def sync_files_retry(sha1s: tuple[str, ...], every: bool, state: str | None, as_json: bool) -> None:
    """Clear the marks of these files: the next sync fetches, verifies and stores them again."""
    from devupdate.errors import DevupdateError
    from devupdate.wsus.downstream import marks

    if bool(sha1s) == every:
        raise DevupdateError("name the files' SHA-1s or give --all (see 'devupdate wsus sync files')",
                             code="bad-arguments")
    runtime()
    cleared = marks.clear(list(sha1s) if sha1s else None, state=state, actor=actor())
    if as_json:
        print_json(cleared)
        return
    for item in cleared:
        click.echo(f"{item['SHA1']} ({item['State']}) cleared: the next sync fetches it again")
    if not cleared:
        click.echo("no marked files")


@click.group("needed")
def needed_group() -> None:
    """The needed-update list that fault-in mode fetches (an MDM pushes what its devices need).

    \b
    devupdate wsus needed add a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe --revision 200 --source mdm
    devupdate wsus needed list --json
    devupdate wsus sync --mode fault-in"""


@needed_group.command("add")
@click.argument("update_id")
@click.option("--revision", type=WholeNumber(1, 2**31 - 1), help="The RevisionNumber (default: the upstream's latest).")
@click.option("--source", default="", help="Who needs it (an MDM's name, a ticket).")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@handle_errors
def needed_add(update_id: str, revision: int | None, source: str, as_json: bool) -> None:
    """Put an update on the needed list."""
    from devupdate.wsus.downstream import needed

    runtime()
    entry = needed.add(update_id, revision, source=source, actor=actor())
    if as_json:
        print_json(entry)
    else:
        click.echo(f"{entry['UpdateID']} is needed" + (f" at revision {revision}" if revision else ""))


@needed_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def needed_list(as_json: bool) -> None:
    """The needed list, oldest first."""
    from devupdate.wsus.downstream import needed

    runtime()
    rows = needed.entries()
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["UpdateID", "RevisionNumber", "State", "Attempts", "Source", "LastError"])


@needed_group.command("remove")
@click.argument("update_id")
@handle_errors
def needed_remove(update_id: str) -> None:
    """Take an update off the needed list."""
    from devupdate.wsus.downstream import needed

    runtime()
    entry = needed.remove(update_id, actor=actor())
    click.echo(f"{entry['UpdateID']} removed from the needed list")


COMMANDS = (sync_group, needed_group)
