"""``devupdate audit``: the admin audit trail. Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

import click

from devupdate.clikit import WholeNumber, handle_errors, print_json, print_table, runtime


@click.group()
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
