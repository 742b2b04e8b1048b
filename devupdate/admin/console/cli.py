"""``devupdate admins``: the people who may sign in to the web console."""

from __future__ import annotations

import click

from devupdate.clikit import actor, handle_errors, print_json, print_table, read_password, runtime


@click.group("admins")
def admins() -> None:
    """Web console accounts: 'admin' may change rules, imports and test devices; 'operator' may only look.

    \b
    devupdate admins add alice --role admin          # prompts for the password
    printf '%s\\n' "$PASSWORD" | devupdate admins add bob --role operator --password-stdin
    """


@admins.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "operator"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--replace", is_flag=True, help="Set a new password and role for an existing account.")
@handle_errors
def admins_add(name: str, role: str, password_stdin: bool, replace: bool) -> None:
    """Create a console account (prompts for the password unless --password-stdin)."""
    from devupdate.admin.console.auth import add_admin
    password = read_password(password_stdin)
    runtime()
    add_admin(name, password, role, actor=actor(), replace=replace)
    click.echo(f"{'updated' if replace else 'added'} {role} {name}")


@admins.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def admins_list(as_json: bool) -> None:
    """Accounts with their role and last sign-in (never the hashes)."""
    from devupdate.admin.console.auth import admin_dict, list_admins
    runtime()
    rows = [admin_dict(user) for user in list_admins()]
    print_json(rows) if as_json else print_table(rows, ["Name", "Role", "Created", "LastSignIn"])


@admins.command("remove")
@click.argument("name")
@handle_errors
def admins_remove(name: str) -> None:
    """Delete an account; its open console sessions end at their next request."""
    from devupdate.admin.console.auth import remove_admin
    runtime()
    remove_admin(name, actor=actor())
    click.echo(f"removed {name}")
