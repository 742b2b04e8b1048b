"""Process settings: one immutable object built from defaults < config file < environment.

Settings are about *this installation* (where data lives, which database, which ports).
The device-update configuration that admins change at run time (log sizes, valid log types…)
lives in the database instead, see `devupdate.configuration`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from devupdate import numbers
from devupdate.content import areas
from devupdate.errors import SettingsError

CONFIG_FILE_NAME = "devupdate.toml"
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}


def parse_size(text: str | int) -> int:
    """'100MiB', '2GB', '512000' -> bytes. Sizes are how admins think of quotas."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 512000, 100MiB, 2GB)")
    unit = (match.group(2) or "").upper().rstrip("B")
    return int(float(match.group(1)) * _UNITS[unit])


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


_INT_RANGES = {"console_lockout_failures": (1, 1000), "console_lockout_seconds": (1, 900),
               "external_auth_failure_limit": (0, 100_000), "external_auth_failure_window": (1, 86400),
               "password_check_slots": (0, 1024)}


def _convert(name: str, value: object) -> object:
    target = {f.name: f for f in dataclasses.fields(Settings)}[name]
    where = f"DEVUPDATE_{name.upper()}"
    try:
        kind = target.type
        if name == "home":
            return Path(str(value)).expanduser()
        if name.startswith("quota_") and name != "quota_warn_fraction" or name == "max_cab_size":
            size = parse_size(value)  # type: ignore[arg-type]
            if size <= 0:
                raise ValueError("must be positive")
            return size
        if kind == "int":
            number = value if type(value) is int else numbers.whole(str(value).strip())
            if name in ("port", "tls_port", "dns_port") and not 0 <= number <= 65535:
                raise ValueError("out of range 0–65535")
            if name == "max_connections_per_source" and not 1 <= number <= 65535:
                raise ValueError("out of range 1–65535")
            if name in ("workers", "threads", "graceful_timeout") and number < 1:
                raise ValueError("out of range")
            if name in _INT_RANGES and not _INT_RANGES[name][0] <= number <= _INT_RANGES[name][1]:
                raise ValueError("out of range {}–{}".format(*_INT_RANGES[name]))
            return number
        if kind == "float":
            number = float(value) if type(value) in (int, float) else numbers.decimal(str(value).strip())
            if name == "quota_warn_fraction" and not 0 < number <= 1:
                raise ValueError("must be between 0 and 1")
            if name == "snapshot_max_age" and not 1 <= number <= 86400:
                raise ValueError("must be between 1 and 86400 seconds")
            if name in ("header_timeout", "body_timeout", "send_timeout") and not 1 <= number <= 3600:
                raise ValueError("must be between 1 and 3600 seconds")
            if name == "min_body_rate" and not 1 <= number <= 1e9:
                raise ValueError("must be between 1 and 1000000000 bytes/s")
            return number
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
        raise SettingsError(f"{where}={value!r}: {exc}") from exc
