"""``devupdate dns``: serve the discovery names, print them as zone lines, or publish them (RFC 2136)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click

from devupdate.clikit import DecimalNumber, WholeNumber, handle_errors, print_json
from devupdate.dns.records import RecordSet
from devupdate.settings import Settings


def _print_json(data) -> None:
    print_json(data)


def load_records() -> RecordSet:
    """Settings are re-read on every call: the responder's reload picks up config file edits."""
    return RecordSet.from_settings(Settings.load())


@click.group("dns")
def group() -> None:
    """DNS discovery: phones with no signed-in user find the service as ucupdates-r2.<domain>.

    \b
    Domains and addresses: DEVUPDATE_DNS_DOMAINS, DEVUPDATE_DNS_ADDRESSES (comma-separated).
    Run your own DNS?  devupdate dns records  (zone lines)  or  devupdate dns publish  (RFC 2136).
    No DNS access?     devupdate dns serve  and delegate/forward the names to it.
    """


@group.command("serve")
@click.option("--host", help="Address to listen on (default 0.0.0.0; '::' for IPv4 and IPv6).")
@click.option("--port", type=WholeNumber(0, 65535), help="UDP and TCP port (default 53; 0 picks a free one).")
@click.option("--rate-limit", type=DecimalNumber(0), help="Queries/s per source address before dropping "
              "(default 200; 0 disables).")
@click.option("--authoritative/--no-authoritative", default=True, show_default=True,
              help="Serve SOA/NS and NXDOMAIN for the whole domain, or only the two discovery names.")
@click.option("--parent-pid", type=WholeNumber(1), hidden=True, help="Exit when this process is gone (serve --dns).")
@handle_errors
def serve(host: str | None, port: int | None, rate_limit: float | None, authoritative: bool,
          parent_pid: int | None) -> None:
    """Answer A/AAAA for ucupdates-r2.<domain> and ucupdates.<domain> (UDP and TCP).

    Records follow the settings: edit devupdate.toml and the answers change within seconds.
    """
    from devupdate.dns.responder import DnsResponder

    settings = Settings.load()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    records = RecordSet.from_settings(settings).require_domains()
    for note in records.notes:
        click.echo(f"devupdate dns: note: {note}", err=True)
    host = host or settings.dns_host
    port = settings.dns_port if port is None else port
    if rate_limit is None:
        rate_limit = settings.dns_rate_limit
    responder = DnsResponder(load_records, host, port, rate_limit=rate_limit or None, authoritative=authoritative)
    responder.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: responder.request_stop())
    if parent_pid:
        _stop_with_parent(responder, parent_pid)
    click.echo(f"devupdate dns: listening on {host} port {responder.port} (UDP+TCP) for "
               f"{', '.join(records.discovery_names())}", err=True)
    responder.serve_forever()


def _stop_with_parent(responder, parent_pid: int) -> None:
    """A responder started by ``serve --dns`` must not outlive a killed parent holding port 53:
    the ``dns-parent-watch`` job looks every second whether this process has been orphaned."""
    import os

    from devupdate.jobs import PeriodicJob

    def watch() -> None:
        if os.getppid() != parent_pid:
            responder.request_stop()
            job.stop()

    job = PeriodicJob("dns-parent-watch", watch, 1.0, first_delay=0)
    job.start()


@group.command("records")
@click.option("--json", "as_json", is_flag=True, help="Print domains, addresses and records as JSON.")
@handle_errors
def records_(as_json: bool) -> None:
    """Print the discovery records as zone-file lines, to add to your own DNS zone."""
    records = load_records().require_domains()
    if as_json:
        _print_json(records.as_dict())
        return
    click.echo("\n".join(records.zone_lines()))


@group.command("publish")
@click.option("--server", required=True, metavar="HOST[:PORT]", help="Primary DNS server of the zone.")
@click.option("--zone", required=True, help="Zone to update, e.g. contoso.com.")
@click.option("--tsig-key-file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help='BIND key file: key "NAME" { algorithm hmac-sha256; secret "..."; };  (tsig-keygen output).')
@click.option("--timeout", type=DecimalNumber(0.1, 120), default=5.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@handle_errors
def publish(server: str, zone: str, tsig_key_file: Path, timeout: float, as_json: bool) -> None:
    """Add or fix the discovery A/AAAA records on your DNS server (RFC 2136 update signed with TSIG).

    Idempotent: only differences are sent, then read back to verify. Running it again says
    "nothing to change".
    """
    from devupdate.dns.publisher import publish as publish_records

    result = publish_records(load_records(), server, zone, tsig_key_file, timeout=timeout)
    if as_json:
        _print_json(result.as_dict())
        return
    click.echo("\n".join(result.lines()))
