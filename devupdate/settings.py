"""Process settings: one immutable object built from defaults < config file < environment.

Settings are about *this installation* (where data lives, which database, which ports).
The device-update configuration that admins change at run time (log sizes, valid log types…)
lives in the database instead, see `devupdate.configuration`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from devupdate.content import areas
from devupdate.errors import SettingsError
from devupdate.ranges import Range, parse_size

CONFIG_FILE_NAME = "devupdate.toml"
__all__ = ["CONFIG_FILE_NAME", "RANGES", "Settings", "parse_size"]  # parse_size: from devupdate.ranges


def _split_list(value: str | list) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything a devupdate process needs to know about its installation."""

    home: Path = Path("devupdate-data")
    database_url: str = ""  # empty: SQLite at <home>/devupdate.db
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4  # application threads per worker (devupdate.web.worker)
    graceful_timeout: int = 30
    snapshot_max_age: float = 30.0  # /healthz fails when a worker's rules snapshot is older (database away)
    header_timeout: float = 10.0  # seconds a request head may take to arrive (then 408)
    body_timeout: float = 30.0  # seconds a body may take after its head, plus 1 s per min_body_rate bytes
    min_body_rate: float = 500.0  # bytes/s a body must keep up on average (then 408)
    send_timeout: float = 60.0  # seconds a client may read nothing of an answer before it is dropped
    max_connections_per_source: int = 64  # open connections per client address (then 429); trusted proxies exempt
    service_name: str = ""  # Identity prefix service:WebServer:<service_name>; default: host name
    server_name: str = ""  # used in audit log file names; default: host name
    public_internal_url: str = "http://localhost:8080"
    public_external_url: str = "https://localhost:8443"
    internal_networks: tuple[str, ...] = (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10")
    trusted_proxies: tuple[str, ...] = ()
    external_https_only: bool = False  # refuse /RequestHandlerExt, _Ext over plain HTTP (on with serve --tls)
    console_cookie_secure: bool = True  # false only for plain-HTTP testing on a loopback address
    console_trusted_origins: tuple[str, ...] = ()  # other origins whose console POSTs count as our own
    console_lockout_failures: int = 5  # failed sign-ins of one name from one source before it is locked
    console_lockout_seconds: int = 30  # first lock; doubles with each further failure, at most 15 minutes
    external_auth_failure_limit: int = 10  # failed Basic logins per source and window (0: no limit)
    external_auth_failure_window: int = 300  # seconds
    password_check_slots: int = 0  # scrypt runs at once per worker; 0: half the threads, at most CPUs ÷ workers
    max_cab_size: int = 2 * 1024**3
    max_expansion_ratio: float = 200.0
    catalog_policy: str = "warn"  # off | warn | enforce
    trust_anchors: str = ""  # PEM file of CA certificates catalogs must chain to (enforce)
    quota_images: int = 20 * 1024**3
    quota_logs_client: int = 5 * 1024**3
    quota_logs_audit: int = 5 * 1024**3
    quota_incoming: int = 4 * 1024**3
    quota_warn_fraction: float = 0.8
    file_cleanup_grace: int = 24 * 3600  # seconds an unreferenced image stays downloadable
    tls_port: int = 8443  # `serve --tls`: HTTPS listener (external side); plain HTTP stays on `port`
    dns_domains: tuple[str, ...] = ()
    dns_addresses: tuple[str, ...] = ()
    dns_host: str = "0.0.0.0"
    dns_port: int = 53
    dns_rate_limit: float = 200.0  # queries/s per source address
    json_logs: bool = False
    accel_redirect_prefix: str = ""  # e.g. /_devupdate_images: nginx sends image bodies (docs/nginx.md)
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threads > 1 and self.password_check_slots >= self.threads:
            raise SettingsError(f"DEVUPDATE_PASSWORD_CHECK_SLOTS={self.password_check_slots}: must stay below "
                                f"DEVUPDATE_THREADS={self.threads}, so password checks never take every request "
                                "thread; use 0 for half the threads")

    @property
    def effective_password_check_slots(self) -> int:
        """Set, or half the threads but no more than this worker's share of the CPUs: scrypt is pure
        CPU, and more runs at once than cores only slow everything else down."""
        if self.password_check_slots:
            return self.password_check_slots
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(self.threads // 2, cpus // self.workers))

    @property
    def database_path(self) -> Path:
        return self.home / "devupdate.db"

    @property
    def filestore_root(self) -> Path:
        return self.home / "filestore"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.database_path}"

    @property
    def effective_server_name(self) -> str:
        return self.server_name or socket.gethostname().split(".")[0]

    @property
    def effective_service_name(self) -> str:
        return self.service_name or urlsplit(self.public_internal_url).hostname or socket.gethostname()

    @property
    def quotas(self) -> dict[str, int]:
        return {areas.IMAGES: self.quota_images, areas.LOGS_CLIENT: self.quota_logs_client,
                areas.LOGS_AUDIT: self.quota_logs_audit, areas.INCOMING: self.quota_incoming}

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then ``<home>/devupdate.toml``, then ``DEVUPDATE_*`` variables, then overrides."""
        environ = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        home = Path(overrides.get("home") or environ.get("DEVUPDATE_HOME") or cls.home)
        config_file = home / CONFIG_FILE_NAME
        if config_file.is_file():
            try:
                raw.update(tomllib.loads(config_file.read_text("utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{config_file}: not valid TOML ({exc}); fix or remove the file") from exc
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise SettingsError(f"{config_file}: unknown setting(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(names))}")
        for name in names:
            env_value = environ.get(f"DEVUPDATE_{name.upper()}")
            if env_value is not None:
                raw[name] = env_value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        raw["home"] = home
        return cls(**{name: _convert(name, value) for name, value in raw.items()})


SECONDS, BYTES_PER_S = "seconds", "bytes/s"
_PORT = Range(1, 65535)
_QUOTA = Range(1024, 1024**5, "size")
_TIMEOUT = Range(1, 3600, "decimal", SECONDS)

#: The range of every numeric setting — documented in docs/settings.md, which a test keeps equal to
#: this table; a value outside is refused when the settings are read, naming the setting and range.
RANGES: dict[str, Range] = {
    "port": _PORT, "tls_port": _PORT, "dns_port": Range(0, 65535),  # dns: 0 picks a free port
    "workers": Range(1, 256), "threads": Range(1, 1024), "graceful_timeout": Range(1, 3600, unit=SECONDS),
    "snapshot_max_age": Range(1, 86400, "decimal", SECONDS),
    "header_timeout": _TIMEOUT, "body_timeout": _TIMEOUT, "send_timeout": _TIMEOUT,
    "min_body_rate": Range(1, 1_000_000_000, "decimal", BYTES_PER_S),
    "max_connections_per_source": Range(1, 65535),
    "console_lockout_failures": Range(1, 1000), "console_lockout_seconds": Range(1, 900, unit=SECONDS),
    "external_auth_failure_limit": Range(0, 100_000), "external_auth_failure_window": Range(1, 86400, unit=SECONDS),
    "password_check_slots": Range(0, 1024),
    "max_cab_size": Range(1024, 1024**4, "size"), "max_expansion_ratio": Range(1, 100_000, "decimal"),
    "quota_images": _QUOTA, "quota_logs_client": _QUOTA, "quota_logs_audit": _QUOTA, "quota_incoming": _QUOTA,
    "quota_warn_fraction": Range(0, 1, "decimal", low_open=True),
    "file_cleanup_grace": Range(0, 10 * 365 * 86400, unit=SECONDS),
    "dns_rate_limit": Range(0, 1_000_000, "decimal", "queries/s"),  # 0: no limit
}


def _convert(name: str, value: object) -> object:
    target = {f.name: f for f in dataclasses.fields(Settings)}[name]
    where = f"DEVUPDATE_{name.upper()}"
    try:
        kind = target.type
        if name == "home":
            return Path(str(value)).expanduser()
        if name in RANGES:
            return RANGES[name].parse(value)
        if kind in ("int", "float"):  # a new numeric setting without its range: a bug, say so
            raise ValueError("has no range in devupdate.settings.RANGES (add it there and to docs/settings.md)")
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError("expected true or false")
            return text in ("1", "true", "yes", "on")
        if kind == "tuple[str, ...]":
            return _split_list(value)  # type: ignore[arg-type]
        text = str(value)
        if name == "catalog_policy" and text not in ("off", "warn", "enforce"):
            raise ValueError("expected off, warn or enforce")
        if name.startswith("public_") and urlsplit(text).scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// URL")
        return text
    except (TypeError, ValueError) as exc:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "…"
        raise SettingsError(f"{where}={shown}: {exc}") from exc
