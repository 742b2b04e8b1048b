"""``devupdate filestore``: usage against the quotas, and verifying every stored object.
Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

import sys

import click

from devupdate.clikit import handle_errors, print_json, print_table, runtime


@click.group()
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
