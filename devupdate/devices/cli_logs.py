"""``devupdate logs``: device logs uploaded by phones (list) and log cleanup (Clear-CsDeviceUpdateLog)."""

from __future__ import annotations

import click

from devupdate.clikit import WholeNumber, actor, handle_errors, print_json, print_table, runtime


@click.group("logs")
def group() -> None:
    """Device logs uploaded by phones (Logs/Client/<Type>/<device>/<file>) and log cleanup."""


@group.command("list")
@click.option("--type", "log_type", help="Only this log type (e.g. Watson, DiagLog).")
@click.option("--device", help="Only this device: MAC address (any spelling) or serial number.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@handle_errors
def logs_list(log_type: str | None, device: str | None, as_json: bool) -> None:
    """Uploaded device logs, by type, device and name."""
    from devupdate.devices.logs import list_logs

    rows = [item.as_dict() for item in list_logs(runtime().store, log_type=log_type, device=device)]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["Type", "DeviceId", "FileName", "Size", "LastWriteTime"])


@group.command("cleanup")
@click.option("--days-back", type=WholeNumber(0, 36500),
              help="Remove logs last written more than N days ago (default: LogCleanUpInterval).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def logs_cleanup(days_back: int | None, as_json: bool) -> None:
    """Remove old device logs and request audit logs (what the service also does on its own)."""
    from devupdate.devices.logs import cleanup_now

    report = cleanup_now(runtime().store, days_back, actor=actor())
    if as_json:
        print_json(report.as_dict())
        return
    for item in report.removed:
        click.echo(f"removed {item['Path']}")
    click.echo(f"removed {len(report.removed)} file(s), {report.bytes_freed} bytes, "
               f"last written more than {report.days_back} day(s) ago")
