"""``devupdate tokens``: bearer tokens for the JSON API and the upload tool."""

from __future__ import annotations

import click

from devupdate.clikit import actor, handle_errors, print_json, print_table, runtime


@click.group("tokens")
def group() -> None:
    """API tokens: 'admin' may change rules, imports and settings; 'operator' may only read.

    \b
    devupdate tokens create uploader --role admin > uploader.token
    devupdate-upload --server https://updates.example.com --token-file uploader.token UCUpdates.cab
    """


@group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "operator"]), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the token and its secret as JSON.")
@handle_errors
def tokens_create(name: str, role: str, as_json: bool) -> None:
    """Create a token and print its secret — once: only a hash is stored."""
    from devupdate.admin.tokens import create, token_dict
    runtime()
    token, secret = create(name, role, actor=actor())
    if as_json:
        print_json({**token_dict(token), "Secret": secret})
        return
    click.echo(secret)
    click.echo(f"created {role} token {name!r}; the secret above is shown only now: store it in a file "
               "readable only by you (devupdate-upload --token-file FILE)", err=True)


@group.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def tokens_list(as_json: bool) -> None:
    """Tokens with their role, creation, last use and revocation (never the secrets)."""
    from devupdate.admin.tokens import list_tokens, token_dict
    runtime()
    rows = [token_dict(token) for token in list_tokens()]
    print_json(rows) if as_json else print_table(rows, ["Name", "Role", "Created", "LastUsed", "Revoked"])


@group.command("revoke")
@click.argument("name")
@handle_errors
def tokens_revoke(name: str) -> None:
    """Revoke a token: requests presenting it are refused from now on."""
    from devupdate.admin.tokens import revoke
    runtime()
    revoke(name, actor=actor())
    click.echo(f"revoked token {name}")
