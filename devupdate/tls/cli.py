"""``devupdate cert``: make certificates phones accept, and check the ones admins bring.

Registered by ``devupdate.cli`` with ``main.add_command(group, "cert")``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devupdate.clikit import WholeNumber
from devupdate.dns.cli import _print_json, handle_errors
from devupdate.settings import Settings


@click.group("cert")
def group() -> None:
    """TLS certificates carrying the names phones use (including ucupdates-r2.<domain>)."""


@group.command("create")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write to (default $DEVUPDATE_HOME/tls, where serve --tls reads).")
@click.option("--csr", is_flag=True, help="Write a key and a CSR for your organisation's CA instead.")
@click.option("--days", type=WholeNumber(1, 3650), default=825, show_default=True,
              help="Validity of the server certificate.")
@handle_errors
def create(out: Path | None, csr: bool, days: int) -> None:
    """Create a CA (once, then reused) and a server certificate for every service and discovery name.

    Names: the hosts of DEVUPDATE_PUBLIC_INTERNAL_URL and DEVUPDATE_PUBLIC_EXTERNAL_URL, and
    ucupdates-r2.<domain>, ucupdates.<domain> for each of DEVUPDATE_DNS_DOMAINS.
    """
    from devupdate.tls.certs import create_files

    result = create_files(Settings.load(), out, days=days, csr=csr)
    click.echo(f"names: {', '.join(result['names'])}")
    for path in result["written"]:
        click.echo(f"wrote {path}")
    for note in result["notes"]:
        click.echo(f"note: {note}")


@group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path),
              help="CA certificate(s) the chain must lead to (default: only check the file's own chain).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Exit with status 2 when there are warnings (for scripts).")
@handle_errors
def check(file: Path, ca: Path | None, as_json: bool, strict: bool) -> None:
    """Show subject, names, issuer and expiry; warn about what would make phones refuse FILE."""
    from devupdate.tls.certs import check_certificate, required_names

    report = check_certificate(file, required_names(Settings.load()), ca_path=ca)
    if as_json:
        _print_json(report.as_dict())
    else:
        click.echo(f"subject   : {report.subject}")
        click.echo(f"names     : {', '.join(report.sans) or '(none)'}")
        click.echo(f"issuer    : {report.issuer}")
        click.echo(f"not after : {report.not_after:%Y-%m-%d %H:%M:%S} UTC")
        click.echo(f"chain     : {report.chain_length} certificate(s) in the file")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        if not report.warnings:
            click.echo("ok: every required name is present, the chain is complete, not near expiry")
    if strict and report.warnings:
        sys.exit(2)
