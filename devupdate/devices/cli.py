"""``devupdate users …`` (credentials for the external side) and ``devupdate devices …`` (inventory
and compliance). Registered on the main command in ``devupdate.cli``."""

from __future__ import annotations

import click

from devupdate.clikit import actor, handle_errors, print_json, print_table, read_password, runtime

# --- service functions (the JSON API calls the same ones) --------------------------------------------


def user_store(settings):
    from devupdate.devices.users import DatabaseUserStore

    return DatabaseUserStore()


def add_user(store, name: str, password: str, *, replace: bool, actor: str) -> dict:
    """Add (or with ``replace`` change) a user; the row and its audit entry commit together."""
    from devupdate.audit.trail import record
    from devupdate.db import write_transaction

    with write_transaction():
        existed = name in store.names()
        store.add(name, password, replace=replace)
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

    Stored as scrypt hashes in the database (every node shares them); running servers pick up
    changes within seconds.
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
    """User names (never hashes)."""
    rt = runtime()
    rows = [{"Name": name} for name in user_store(rt.settings).names()]
    print_json(rows) if as_json else print_table(rows, ["Name"])


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
@click.option("--model", help="Only this model (case-insensitive).")
@click.option("--outdated", is_flag=True, help="Only devices running something other than an approved version.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def devices_list(model: str | None, outdated: bool, as_json: bool) -> None:
    """Known devices with their compliance status (Current, Outdated, Unmanaged)."""
    from devupdate.devices.compliance import list_devices

    runtime()
    rows = list_devices(model=model, outdated=outdated)
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
