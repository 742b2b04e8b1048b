"""``devupdate audit``: the admin audit trail. Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from devupdate import numbers
from devupdate.clikit import WholeNumber, handle_errors, print_json, print_table, runtime


@click.group()
def audit() -> None:
    """The admin audit trail: every import and change, with who, when, before and after."""


def _filter_options(func: Callable) -> Callable:
    func = click.option("--until", help="Up to this time (exclusive; a date: the whole day), same forms as "
                        "--since.")(func)
    func = click.option("--since", help="From this time (UTC): 2026-12-01, 2026-12-01T08:30Z, or an age: 7d, "
                        "12h.")(func)
    func = click.option("--target", help="Target contains this text, or names a rule whose name does "
                        "('CX600').")(func)
    func = click.option("--actor", "who", help="Only this actor, e.g. console:alice.")(func)
    return click.option("--action", help="Action prefix, e.g. 'rule.' or 'import'.")(func)


def _filter(action, who, target, since, until):
    from devupdate.audit.trail import Filter

    return Filter.parse(action=action, actor=who, target=target, since=since, until=until)


def _write_csv(where) -> None:
    from devupdate.audit.readable import export_csv

    out = sys.stdout
    for line in export_csv(where):
        out.write(line)
    out.flush()


@audit.command("list")
@click.option("--limit", type=WholeNumber(1, 1000), default=50, show_default=True)
@click.option("--offset", type=WholeNumber(0, numbers.MAX_OFFSET), default=0)
@_filter_options
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV of every matching entry (--limit/--offset do not apply).")
@handle_errors
def audit_list(limit: int, offset: int, action: str | None, who: str | None, target: str | None,
               since: str | None, until: str | None, as_json: bool, as_csv: bool) -> None:
    """Newest first, targets by name."""
    from devupdate.audit.readable import list_events

    runtime()
    where = _filter(action, who, target, since, until)
    if as_csv:
        _write_csv(where)
        return
    rows = list_events(where, limit=limit, offset=offset)
    if as_json:
        print_json(rows)
    else:  # people read the name; the raw target is in --json and --csv
        print_table([{**row, "Target": row["TargetName"]} for row in rows],
                    ["Time", "Actor", "Action", "Target", "Outcome"])


@audit.command("export")
@_filter_options
@handle_errors
def audit_export(action: str | None, who: str | None, target: str | None, since: str | None,
                 until: str | None) -> None:
    """Every matching entry as CSV on standard output (for a spreadsheet: formulas are neutralised)."""
    runtime()
    _write_csv(_filter(action, who, target, since, until))


@audit.group("requests")
def requests_group() -> None:
    """The per-request audit log files phones' check-ins are written to (the console's viewer)."""


@requests_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def requests_list(as_json: bool) -> None:
    """The request audit log files, newest day first."""
    from devupdate.audit import requestlog_view

    rows = requestlog_view.files(runtime().store)
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["Name", "Server", "Day", "Part", "Size"])


@requests_group.command("show")
@click.argument("name")
@click.option("--search", default="", help="Only rows containing this text (case-insensitive).")
@click.option("--start", type=WholeNumber(0, 2**62), default=0,
              help="Byte offset to start at (a previous page's Next).")
@click.option("--limit", type=WholeNumber(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def requests_show(name: str, search: str, start: int, limit: int, as_json: bool) -> None:
    """Rows of the request audit log file NAME (as 'audit requests list' names it), one page."""
    from devupdate.audit import requestlog_view

    with requestlog_view.open_file(runtime().store, name) as handle:
        found = requestlog_view.read_page(handle, start=start, search=search, limit=limit)
    if as_json:
        print_json({"Items": found.rows, "Next": found.next_start})
        return
    print_table(found.rows, ["Logging DateTime", "User Host Address", "Mac Address", "Model", "Result"])
    if found.next_start is not None:
        click.echo(f"more: --start {found.next_start}", err=True)
