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
from typing import Any
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
    keepalive_timeout: int = 75  # seconds an idle kept-alive connection stays open (WSUS content: ≥ 60)
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
    #: offered on the external side, in this order: Negotiate, NTLM (per-connection handshakes), Basic
    external_auth_schemes: tuple[str, ...] = ("Negotiate", "NTLM", "Basic")
    #: where external users are looked up, in order: database (devupdate users …), directory ([directory])
    external_user_sources: tuple[str, ...] = ("database",)
    ntlm_handshake_timeout: float = 30.0  # seconds from NEGOTIATE to AUTHENTICATE on one connection
    ntlm_max_pending: int = 1024  # NTLM handshakes waiting for their AUTHENTICATE per worker (oldest dropped)
    ntlm_domains: tuple[str, ...] = ()  # NTLM domain names accepted (besides none); empty: any
    #: 64 hex digits: NT hashes are stored wrapped with it (AES key wrap); empty: stored as they are
    nt_hash_key: str = field(default="", repr=False)
    # --- directory (LDAP / Active Directory) for Basic: the [directory] section, DEVUPDATE_DIRECTORY_* ---
    directory_url: str = ""  # ldap://host:389 or ldaps://host:636; several, comma separated, form a pool
    directory_start_tls: bool = False  # StartTLS on ldap:// URLs
    directory_ca_file: str = ""  # PEM CA certificates the server's certificate must chain to; empty: system's
    directory_bind_dn: str = ""  # the service account that searches users; empty: anonymous search
    directory_bind_password: str = field(default="", repr=False)
    directory_user_base: str = ""  # where users are searched (subtree)
    directory_user_filter: str = "(uid={user})"  # AD: (sAMAccountName={user}); {user} is escaped
    directory_required_group: str = ""  # DN of the group a user must be a member of; empty: any user
    directory_group_member_attribute: str = "member"  # member (groupOfNames, AD) or uniqueMember
    directory_timeout: float = 5.0  # seconds for connecting and for each answer
    directory_pool_size: int = 4  # connections kept per worker
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
    rollout_check_seconds: int = 60  # how often the rollout watch counts failures and starts stages (0: never)
    activity_retention_days: int = 90  # hourly check-in and download counts are kept this long
    tls_port: int = 8443  # `serve --tls`: HTTPS listener (external side); plain HTTP stays on `port`
    dns_domains: tuple[str, ...] = ()
    dns_addresses: tuple[str, ...] = ()
    dns_host: str = "0.0.0.0"
    dns_port: int = 53
    dns_rate_limit: float = 200.0  # queries/s per source address
    json_logs: bool = False
    accel_redirect_prefix: str = ""  # e.g. /_devupdate_images: nginx sends image bodies (docs/nginx.md)
    # --- WSUS front: the [wsus] section of devupdate.toml, DEVUPDATE_WSUS_* (spec/wsus.md §1e, §1f, §7) ---
    wsus_allow_http_soap: bool = False  # S5: SOAP over plain HTTP only when switched on
    wsus_content_base_url: str = ""  # H2: base of every content URL handed out; default http://<public host>:8530
    wsus_page_size: int = 30  # SyncUpdates NewUpdates per page
    #: ClientScope (§3.5): "all" offers every update of the selected products (unapproved ones as
    #: PreDeploymentCheck, so clients report them), "approved" only explicit deployments
    wsus_client_scope: str = "all"
    wsus_max_installed_non_leaf_update_ids: int = 400
    wsus_max_other_cached_update_ids: int = 20_000
    wsus_max_cached_driver_ids: int = 20_000
    wsus_max_system_spec_devices: int = 2_000
    wsus_max_filter_category_ids: int = 200  # also StartCategoryScan entries
    wsus_max_refresh_cache_ids: int = 20_000
    wsus_max_file_location_digests: int = 1_000
    wsus_max_report_events: int = 1_000
    wsus_max_event_string_length: int = 4_096
    wsus_max_misc_data_items: int = 64
    wsus_auto_approval_interval: int = 3600  # seconds between the runs of the auto-approval rules (W8: hourly)
    wsus_event_retention_days: int = 30  # reported events are kept this long (the compliance state stays)
    wsus_max_updates_per_request: int = 100  # GetUpdateData
    wsus_max_download_files_digests: int = 100
    wsus_max_body_config: int = 64 * 1024  # SimpleAuth, DssAuth, GetConfig, GetCookie, config operations, Ping
    wsus_max_body_client: int = 8 * 1024**2  # Client and Reporting operations
    wsus_max_body_server_sync: int = 1024**2
    wsus_max_body_rollup: int = 64 * 1024**2
    wsus_max_xml_depth: int = 64
    wsus_max_xml_elements: int = 200_000
    wsus_max_update_xml_size: int = 16 * 1024**2  # one imported or synced Update XML document
    wsus_client_cookie_lifetime: int = 3600
    wsus_auth_cookie_lifetime: int = 3600
    wsus_dss_cookie_lifetime: int = 240 * 60
    # S6: who may sync from this server (ServerSyncWebService, DssAuthWebService, the rollup operations)
    wsus_sync_networks: tuple[str, ...] = ()  # empty: internal_networks
    wsus_sync_accounts: tuple[str, ...] = ()  # DSS account GUIDs (ServerIds) allowed a cookie; empty: any
    wsus_sync_basic: str = field(default="", repr=False)  # user:password every sync request must send (Basic)
    wsus_sync_token: str = field(default="", repr=False)  # a Bearer token every sync request may send instead
    wsus_sync_client_certificate: bool = False  # mutual TLS, verified by a trusted TLS proxy
    #: 64 hex digits: cookie key secrets are stored wrapped with it (AES key wrap); empty: stored as they are
    wsus_cookie_master_key: str = field(default="", repr=False)
    # S8 admission control, per operation class and worker (devupdate.wsus.soap.registry weights)
    wsus_light_in_flight: int = 0  # light SOAP requests at work at once; 0: the threads the heavy class leaves
    wsus_light_queue: int = 128  # light requests waiting for a slot at once; beyond: ServerBusy at once
    wsus_light_wait: float = 2.0  # seconds a light request waits for a slot before ServerBusy
    wsus_heavy_in_flight: int = 0  # heavy SOAP requests at work at once; 0: half the threads (at least 1)
    wsus_heavy_queue: int = 128
    wsus_heavy_wait: float = 2.0
    # downstream role (D1–D8): the upstream this server syncs from, and how
    wsus_upstream_url: str = ""  # empty: no scheduled sync ('devupdate wsus sync --upstream URL' still works)
    wsus_sync_mode: str = "autonomous"  # autonomous | replica | fault-in
    wsus_upstream_token: str = field(default="", repr=False)  # Bearer token an upstream devupdate asks for
    wsus_upstream_basic: str = field(default="", repr=False)  # user:password (HTTP Basic) instead
    wsus_sync_interval: int = 7200  # seconds between scheduled runs (±10 % jitter)
    wsus_sync_products: tuple[str, ...] = ()  # product UpdateIDs to sync; both lists empty: everything
    wsus_sync_classifications: tuple[str, ...] = ()
    wsus_sync_retry_base: float = 30.0  # first back-off (D6), doubled per failure, capped at 30 min
    wsus_sync_attempts: int = 8  # attempts per step before the run fails
    wsus_sync_downloads: int = 4  # content downloads at once
    wsus_sync_timeout: float = 120.0  # seconds one upstream request may take
    wsus_sync_history_days: int = 30  # sync runs kept in the history
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "directory" in self.external_user_sources and not (self.directory_url and self.directory_user_base):
            raise SettingsError("DEVUPDATE_EXTERNAL_USER_SOURCES names the directory: set DEVUPDATE_DIRECTORY_URL "
                                "and DEVUPDATE_DIRECTORY_USER_BASE (or url and user_base in the [directory] section)")
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
    def effective_wsus_content_base_url(self) -> str:
        """H2: the configured base, or ``http://<host of the public internal URL>:8530`` — never the
        request's ``Host``."""
        if self.wsus_content_base_url:
            return self.wsus_content_base_url.rstrip("/")
        host = urlsplit(self.public_internal_url).hostname or socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:8530"

    def wsus_admission(self, weight: str) -> tuple[int, int, float]:
        """(in flight, queue, wait) of the SOAP operation class ``weight`` (``light`` or ``heavy``).
        By default the two classes share the worker's threads out between them, so an admitted
        request never waits for a thread behind the other class's."""
        heavy = self.wsus_heavy_in_flight or max(1, self.threads // 2)
        if weight == "heavy":
            return heavy, self.wsus_heavy_queue, self.wsus_heavy_wait
        return self.wsus_light_in_flight or max(1, self.threads - heavy), self.wsus_light_queue, self.wsus_light_wait

    @property
    def quotas(self) -> dict[str, int]:
        return {areas.IMAGES: self.quota_images, areas.LOGS_CLIENT: self.quota_logs_client,
                areas.LOGS_AUDIT: self.quota_logs_audit, areas.INCOMING: self.quota_incoming}

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, /, **overrides: object) -> Settings:
        """Defaults, then ``<home>/devupdate.toml``, then ``DEVUPDATE_*`` variables, then overrides."""
        environ = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        home = Path(str(overrides.get("home") or environ.get("DEVUPDATE_HOME") or cls.home))
        config_file = home / CONFIG_FILE_NAME
        if config_file.is_file():
            try:
                raw.update(tomllib.loads(config_file.read_text("utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{config_file}: not valid TOML ({exc}); fix or remove the file") from exc
            for name in _SECTIONS:
                section = raw.pop(name, {})
                if not isinstance(section, dict):
                    raise SettingsError(f"{config_file}: {name} must be a [{name}] section of settings")
                for key, value in section.items():
                    raw[f"{name}_{key}"] = value
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(_shown(key) for key in set(raw) - names)
        if unknown:
            raise SettingsError(f"{config_file}: unknown setting(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(names))}")
        for name in names:
            env_value = environ.get(f"DEVUPDATE_{name.upper()}")
            if env_value is not None:
                raw[name] = env_value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        raw["home"] = home
        # each value has the type its field declares: _convert checks that
        values: dict[str, Any] = {name: _convert(name, value) for name, value in raw.items()}
        return cls(**values)


_SECTIONS = ("wsus", "directory")


def _shown(key: str) -> str:
    """A setting as the config file spells it (``[wsus] page_size``)."""
    section = next((name for name in _SECTIONS if key.startswith(f"{name}_")), None)
    return f"[{section}] {key[len(section) + 1:]}" if section else key


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
    "keepalive_timeout": Range(1, 3600, unit=SECONDS),
    "min_body_rate": Range(1, 1_000_000_000, "decimal", BYTES_PER_S),
    "max_connections_per_source": Range(1, 65535),
    "console_lockout_failures": Range(1, 1000), "console_lockout_seconds": Range(1, 900, unit=SECONDS),
    "external_auth_failure_limit": Range(0, 100_000), "external_auth_failure_window": Range(1, 86400, unit=SECONDS),
    "password_check_slots": Range(0, 1024),
    "ntlm_handshake_timeout": Range(1, 600, "decimal", SECONDS), "ntlm_max_pending": Range(1, 1_000_000),
    "directory_timeout": Range(0.1, 300, "decimal", SECONDS), "directory_pool_size": Range(1, 256),
    "max_cab_size": Range(1024, 1024**4, "size"), "max_expansion_ratio": Range(1, 100_000, "decimal"),
    "quota_images": _QUOTA, "quota_logs_client": _QUOTA, "quota_logs_audit": _QUOTA, "quota_incoming": _QUOTA,
    "quota_warn_fraction": Range(0, 1, "decimal", low_open=True),
    "file_cleanup_grace": Range(0, 10 * 365 * 86400, unit=SECONDS),
    "rollout_check_seconds": Range(0, 86400, unit=SECONDS),
    "dns_rate_limit": Range(0, 1_000_000, "decimal", "queries/s"),  # 0: no limit
    "wsus_page_size": Range(10, 200),
    "wsus_max_installed_non_leaf_update_ids": Range(1, 100_000),
    "wsus_max_other_cached_update_ids": Range(1, 1_000_000),
    "wsus_max_cached_driver_ids": Range(1, 1_000_000), "wsus_max_system_spec_devices": Range(1, 100_000),
    "wsus_max_filter_category_ids": Range(1, 10_000), "wsus_max_refresh_cache_ids": Range(1, 1_000_000),
    "wsus_max_file_location_digests": Range(1, 100_000), "wsus_max_report_events": Range(1, 100_000),
    "wsus_max_event_string_length": Range(16, 1_048_576, unit="characters"),
    "wsus_max_misc_data_items": Range(1, 10_000), "wsus_event_retention_days": Range(1, 3650, unit="days"),
    "activity_retention_days": Range(1, 3650, unit="days"),
    "wsus_auto_approval_interval": Range(5, 86400, unit=SECONDS),
    "wsus_max_updates_per_request": Range(1, 10_000), "wsus_max_download_files_digests": Range(1, 10_000),
    "wsus_max_body_config": Range(4096, 1024**3, "size"), "wsus_max_body_client": Range(4096, 1024**3, "size"),
    "wsus_max_body_server_sync": Range(4096, 1024**3, "size"), "wsus_max_body_rollup": Range(4096, 1024**3, "size"),
    "wsus_max_xml_depth": Range(8, 10_000), "wsus_max_xml_elements": Range(100, 100_000_000),
    "wsus_max_update_xml_size": Range(4096, 1024**3, "size"),
    "wsus_client_cookie_lifetime": Range(60, 7 * 86400, unit=SECONDS),
    "wsus_auth_cookie_lifetime": Range(60, 7 * 86400, unit=SECONDS),
    "wsus_dss_cookie_lifetime": Range(60, 7 * 86400, unit=SECONDS),
    "wsus_light_in_flight": Range(0, 100_000), "wsus_heavy_in_flight": Range(0, 100_000),  # 0: from the threads
    "wsus_light_queue": Range(0, 1_000_000), "wsus_heavy_queue": Range(0, 1_000_000),
    "wsus_light_wait": Range(0, 60, "decimal", SECONDS), "wsus_heavy_wait": Range(0, 60, "decimal", SECONDS),
    "wsus_sync_interval": Range(3600, 86400, unit=SECONDS),
    "wsus_sync_retry_base": Range(0.001, 3600, "decimal", SECONDS),
    "wsus_sync_attempts": Range(1, 100), "wsus_sync_downloads": Range(1, 64),
    "wsus_sync_timeout": Range(1, 3600, "decimal", SECONDS), "wsus_sync_history_days": Range(1, 3650, unit="days"),
}


_CHOICES = {"external_auth_schemes": ("Negotiate", "NTLM", "Basic"),
            "external_user_sources": ("database", "directory")}


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
        if kind == "tuple[str, ...]" and name not in _CHOICES:
            return _split_list(value)  # type: ignore[arg-type]
        text = str(value)
        if name == "catalog_policy" and text not in ("off", "warn", "enforce"):
            raise ValueError("expected off, warn or enforce")
        if kind == "tuple[str, ...]" and name in _CHOICES:
            items = _split_list(value)  # type: ignore[arg-type]
            allowed = _CHOICES[name]
            canonical = {choice.lower(): choice for choice in allowed}
            bad = [item for item in items if item.lower() not in canonical]
            if bad or not items:
                raise ValueError(f"expected one or more of {', '.join(allowed)}" + (f", not {bad[0]!r}" if bad else ""))
            return tuple(dict.fromkeys(canonical[item.lower()] for item in items))
        if name in ("wsus_cookie_master_key", "nt_hash_key"):
            if text and not re.fullmatch(r"[0-9a-fA-F]{64}", text.strip()):
                raise SettingsError(f"{where}: expected 64 hex digits (32 random bytes, e.g. from "
                                    "'openssl rand -hex 32'); the value is not shown")
            return text.strip().lower()
        if name == "directory_url":
            for url in _split_list(text):
                if urlsplit(url).scheme not in ("ldap", "ldaps") or not urlsplit(url).hostname:
                    raise ValueError(f"expected ldap://host[:port] or ldaps://host[:port], not {url!r}")
        if name == "wsus_client_scope" and text not in ("all", "approved"):
            raise ValueError("expected all or approved")
        if name == "wsus_sync_mode" and text not in ("autonomous", "replica", "fault-in"):
            raise ValueError("expected autonomous, replica or fault-in")
        is_url = name.startswith("public_") or name in ("wsus_content_base_url", "wsus_upstream_url") and text
        if is_url and urlsplit(text).scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// URL")
        return text
    except (TypeError, ValueError) as exc:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "…"
        raise SettingsError(f"{where}={shown}: {exc}") from exc
