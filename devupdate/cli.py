"""The ``devupdate`` command: ``serve`` and ``db`` here, every feature's own group (its ``cli.py``)
assembled below. Thin: parse arguments, call the service function, print.

Every listing has ``--json``; every failure exits non-zero with one line naming the fix.
Settings come from ``DEVUPDATE_*`` variables or ``$DEVUPDATE_HOME/devupdate.toml``.
"""

from __future__ import annotations

import click

from devupdate import clikit
from devupdate.clikit import Main, WholeNumber, handle_errors, settings
from devupdate.settings import Settings


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="devupdate")
def main() -> None:
    """devupdate — device update service for IP phones and UC devices.

    \b
    Data lives in $DEVUPDATE_HOME (default ./devupdate-data): SQLite database and filestore.
    Use PostgreSQL with DEVUPDATE_DATABASE_URL=postgresql://USER@HOST/DB.
    Typical flow:  devupdate import UCUpdates.cab  →  devupdate rules list  →  devupdate rules approve ID
    """


# --- service ------------------------------------------------------------------------------------

@main.command()
@click.option("--host", help="Address to listen on (DEVUPDATE_HOST, default 127.0.0.1).")
@click.option("--port", type=WholeNumber(0, 65535), help="Port (DEVUPDATE_PORT, default 8080).")
@click.option("--workers", type=WholeNumber(1, 256), help="Worker processes (DEVUPDATE_WORKERS, default 2).")
@click.option("--tls", is_flag=True, help="Also serve HTTPS on DEVUPDATE_TLS_PORT (default 8443) with the "
              "certificate from 'devupdate cert create'; the external side then answers only over HTTPS.")
@click.option("--dns", "with_dns", is_flag=True, help="Also run the ucupdates-r2 DNS responder "
              "(DEVUPDATE_DNS_HOST/DEVUPDATE_DNS_PORT).")
@click.option("--listener", type=click.Choice(["tls"]), hidden=True)
@handle_errors
def serve(host: str | None, port: int | None, workers: int | None, tls: bool, with_dns: bool,
          listener: str | None) -> None:
    """Run the service (gunicorn; SIGTERM finishes requests in flight, then exits).

    \b
    Phones: /RequestHandler/ucdevice.upx (internal), /RequestHandlerExt/ucdevice.upx (external),
    downloads under /DeviceUpdateFiles_Int|_Ext/, log uploads to /RequestHandler(Ext)/Files.
    """
    from devupdate.server import run, run_listener

    overrides = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v is not None}
    chosen = Settings.load(**overrides)
    if listener:
        run_listener(chosen, listener)
    else:
        run(chosen, tls=tls, dns=with_dns)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Create the schema or apply pending migrations (safe to run any time)."""
    from devupdate import db as database
    from devupdate import schema

    settings().home.mkdir(parents=True, exist_ok=True)
    database.open_database(settings().effective_database_url).connect(reuse_if_open=True)
    done = schema.upgrade()
    click.echo("\n".join(done) if done else f"schema is up to date (version {schema.current_version()})")



def _open_runtime(chosen: Settings, *, upgrade: bool = False):
    """What ``clikit.runtime()`` opens for every feature's commands (imported late: ``--help`` and
    ``pack`` need no database)."""
    from devupdate.runtime import open_runtime

    return open_runtime(chosen, upgrade=upgrade)


clikit.set_runtime_opener(_open_runtime)

# --- each feature's own commands ---------------------------------------------------------------------

from devupdate.admin import cli as _admin_cli  # noqa: E402
from devupdate.admin.console.cli import admins as _console_admins  # noqa: E402
from devupdate.audit.cli import audit as _audit  # noqa: E402
from devupdate.backup.cli import group as _backup_group  # noqa: E402
from devupdate.content.cli import filestore as _filestore  # noqa: E402
from devupdate.devices import cli as _device_cli  # noqa: E402
from devupdate.devices import cli_logs as _cli_logs  # noqa: E402
from devupdate.devices.cli_config import config as _config  # noqa: E402
from devupdate.dns.cli import group as _dns_group  # noqa: E402
from devupdate.imports.cli import COMMANDS as _import_commands  # noqa: E402
from devupdate.migrate.cli import group as _migrate_group  # noqa: E402
from devupdate.rules.cli import COMMANDS as _rule_commands  # noqa: E402
from devupdate.tls.cli import group as _cert_group  # noqa: E402
from devupdate.wsus.cli import group as _wsus_group  # noqa: E402
from devupdate.wsus.downstream.cli import COMMANDS as _downstream_commands  # noqa: E402
from devupdate.wsus.targeting.cli import COMMANDS as _targeting_commands  # noqa: E402

for _command in (*_import_commands, *_rule_commands, _config, _filestore, _audit, _device_cli.users,
                 _device_cli.devices, _admin_cli.group, _console_admins):
    main.add_command(_command)
_rule_commands[0].commands["rollout"].add_command(_device_cli.rollout_check)  # type: ignore[attr-defined]
main.add_command(_cli_logs.group, "logs")
main.add_command(_dns_group, "dns")
main.add_command(_cert_group, "cert")
main.add_command(_wsus_group, "wsus")
main.add_command(_backup_group, "backup")
main.add_command(_migrate_group, "migrate")
for _command in _targeting_commands:
    _wsus_group.add_command(_command)
for _command in _downstream_commands:
    _wsus_group.add_command(_command)
