"""``devupdate users …`` (credentials for the external side) and ``devupdate devices …`` (inventory
and compliance). Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

import click

from devupdate.clikit import actor, handle_errors, print_json, print_table, read_password, runtime

# --- service functions (the JSON API calls the same ones) --------------------------------------------


def user_store(settings):
    """The built-in store (the directory's users are managed in the directory)."""
    from devupdate.devices.credentials import database_store

    return database_store(settings)


def add_user(store, name: str, password: str, *, replace: bool, actor: str) -> dict:
    """Add (or with ``replace`` change) a user; the row and its audit entry commit together."""
    from devupdate.audit.trail import record
    from devupdate.db import write_transaction

    credentials = store.credentials(name, password)  # the slow hash, before the write lock is taken
    with write_transaction():
        existed = store.put(name, credentials, replace=replace)
        record(actor, "user.add", f"user:{name}", before={"Name": name} if existed else None,
               after={"Name": name, "PasswordChanged": True})
    return {"Name": name, "Replaced": existed}


def remove_user(store, name: str, *, actor: str) -> dict:
    from devupdate.audit.trail import record
    from devupdate.db import write_transaction

    with write_transaction():
        store.remove(name)
        record(actor, "user.remove", f"user:{name}", before={"Name": name}, after=None)
    return {"Name": name}


# --- users ------------------------------------------------------------------------------------------

@click.group()
def users() -> None:
    """Users who may use the external paths (/RequestHandlerExt, /DeviceUpdateFiles_Ext).

    Stored as scrypt hashes in the database (every node shares them), with the NT hash NTLM needs
    while NTLM or Negotiate is offered; running servers pick up changes within seconds.
    """


@users.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--replace", is_flag=True, help="Change the password of an existing user.")
@handle_errors
def users_add(name: str, password_stdin: bool, replace: bool) -> None:
    """Add a user (prompts for the password unless --password-stdin)."""
    password = read_password(password_stdin)
    rt = runtime()
    result = add_user(user_store(rt.settings), name, password, replace=replace, actor=actor())
    click.echo(f"{'changed password of' if result['Replaced'] else 'added'} user {name}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def users_list(as_json: bool) -> None:
    """User names (never hashes); NTLM says whether the user has an NT hash (NTLM and Negotiate
    need one; a user whose password was set before they existed gets it when it is set again)."""
    rt = runtime()
    rows = [{"Name": name, "NTLM": has_nt} for name, has_nt in user_store(rt.settings).listing()]
    print_json(rows) if as_json else print_table(rows, ["Name", "NTLM"])


@users.command("remove")
@click.argument("name")
@handle_errors
def users_remove(name: str) -> None:
    """Remove a user."""
    rt = runtime()
    remove_user(user_store(rt.settings), name, actor=actor())
    click.echo(f"removed user {name}")


# --- devices ----------------------------------------------------------------------------------------

@click.group()
def devices() -> None:
    """Devices that checked for updates (inventory) and whether they run their approved versions."""


@devices.command("list")
@click.option("--model", help="Only this model (case-insensitive; '*' matches anything, e.g. 'CX*').")
@click.option("--status", type=click.Choice(["current", "outdated", "unmanaged"], case_sensitive=False),
              help="Only devices of this compliance status.")
@click.option("--outdated", is_flag=True, help="Only devices running something other than an approved version "
              "(--status outdated).")
@click.option("--not-seen-since", "not_seen", metavar="AGE",
              help="Only devices whose last check is older than AGE: 30d, 12h, 2w (a bare number: days).")
@click.option("--search", help="Only devices whose MAC (any spelling), serial or user ID contains this.")
@click.option("--sort", default="device", show_default=True,
              help="device, model, brand, user, first-seen, last-seen or checks; a leading '-' sorts descending.")
@click.option("--limit", type=click.IntRange(1), help="At most this many devices.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many devices.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def devices_list(model: str | None, status: str | None, outdated: bool, not_seen: str | None, search: str | None,
                 sort: str, limit: int | None, offset: int, as_json: bool) -> None:
    """Known devices with their compliance status (Current, Outdated, Unmanaged)."""
    from devupdate.devices.compliance import list_devices, parse_age, parse_sort

    age = parse_age(not_seen) if not_seen else None
    parse_sort(sort)
    runtime()
    rows = list_devices(model=model, outdated=outdated, status=status, not_seen_since=age, search=search, sort=sort,
                        limit=limit, offset=offset)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        outdated_updates = [u for u in row["Updates"] if u["Status"] != "Current"]
        shown = outdated_updates or row["Updates"]
        row["Installed"] = " ".join(f"{u['UpdateType']}={u['InstalledVersion'] or '-'}" for u in shown)
        row["Approved"] = " ".join(f"{u['UpdateType']}={u['ApprovedVersion']}" for u in shown)
        row["Test"] = "yes" if row["TestDevice"] else ""
    print_table(rows, ["DeviceId", "Model", "Locale", "Status", "Installed", "Approved", "Test", "LastSeen"])


@devices.command("show")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def devices_show(device: str, as_json: bool) -> None:
    """One device by MAC, serial or DeviceId: identity, versions over time, logs, audit-trail rows."""
    from devupdate.devices.compliance import device_detail

    rt = runtime()
    detail = device_detail(device, store=rt.store)
    if as_json:
        print_json(detail)
        return
    for key in ("DeviceId", "MACAddress", "SerialNumber", "Brand", "Model", "Revision", "Locale", "UserID",
                "Address", "Network", "FirstSeen", "LastSeen", "Checks", "Status", "TestDevice"):
        click.echo(f"{key:13} {detail[key] if detail[key] is not None else '-'}")
    click.echo("")
    print_table(detail["History"], ["Package", "Version", "State", "FirstReported", "LastReported"])
    if detail["Logs"]:
        click.echo("")
        print_table(detail["Logs"], ["Type", "FileName", "Size", "LastWriteTime"])
    if detail["Audit"]:
        click.echo("")
        print_table(detail["Audit"], ["Time", "Actor", "Action", "Target"])


@devices.command("activity")
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True,
              help="How many UTC days, today included.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def devices_activity(days: int, as_json: bool) -> None:
    """Check-ins and downloads per UTC day, internal and external, oldest first (the dashboard's chart;
    kept activity_retention_days)."""
    from devupdate.devices.adoption import activity_days

    runtime()
    rows = activity_days(days)
    print_json(rows) if as_json else print_table(rows, ["Date", "Checks", "ChecksInternal", "ChecksExternal",
                                                        "Downloads", "DownloadBytes"])


@devices.command("adoption")
@click.argument("rule")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def devices_adoption(rule: str, as_json: bool) -> None:
    """A rule's rollout since its last approval: who runs what now, and devices on the approved version
    over time (per hour, per day beyond a week)."""
    from devupdate.devices.adoption import adoption
    from devupdate.rules.lifecycle import resolve

    rt = runtime()
    data = adoption(resolve(rule), retention_days=rt.settings.activity_retention_days)
    if as_json:
        print_json(data)
        return
    click.echo(f"{data['OnApproved']} of {data['Devices']} devices on the approved version "
               f"{data['ApprovedVersion'] or '-'} (since {data['Since']}: {data['Checks']} check-ins, "
               f"{data['Downloads']} downloads)")
    click.echo("")
    print_table([{**row, "Version": row["Version"] or "(not reported)", "Approved": "yes" if row["Approved"] else ""}
                 for row in data["Versions"]], ["Version", "Devices", "Internal", "External", "Approved"])
    click.echo("")
    print_table(data["Curve"], ["Time", "Approved", "Devices"])


@click.command("check")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rollout_check(as_json: bool) -> None:
    """Evaluate every rollout now: count devices offered / updated / failed, halt at the threshold, start
    the next stage when it is due (what the server's rollout-watch job does every rollout_check_seconds)."""
    from devupdate.devices.rollout_watch import evaluate

    runtime()
    rows = evaluate()
    print_json(rows) if as_json else print_table(rows, ["RuleId", "State", "Stage", "Offered", "Updated", "Failed"])
