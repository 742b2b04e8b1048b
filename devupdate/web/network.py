"""Who is asking: the client address (trusting X-Forwarded-For only from configured proxies),
whether it is on an internal network, and whether it arrived over HTTPS (trusting
X-Forwarded-Proto only from those proxies). Networks are parsed once, at start."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from devupdate.errors import SettingsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], setting: str) -> tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise SettingsError(f"{setting}: {value!r} is not a network (e.g. 10.0.0.0/8 or 192.0.2.7)") from None
    return tuple(networks)


def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    """``address`` (IPv4, IPv6, IPv4-mapped, with or without a zone) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


@dataclass(frozen=True)
class NetworkPolicy:
    internal: tuple[Network, ...]
    trusted_proxies: tuple[Network, ...]
    external_https_only: bool = False  # on with `serve --tls`: the external side refuses plain HTTP

    @classmethod
    def from_settings(cls, settings: Any) -> NetworkPolicy:
        """From the process settings (duck-typed: the kit does not import them)."""
        return cls(parse_networks(settings.internal_networks, "DEVUPDATE_INTERNAL_NETWORKS"),
                   parse_networks(settings.trusted_proxies, "DEVUPDATE_TRUSTED_PROXIES"),
                   settings.external_https_only)

    def is_https(self, url_scheme: str, remote_addr: str, forwarded_proto: str | None) -> bool:
        """HTTPS end to end as far as we can tell: our own TLS listener, or a trusted proxy that says
        its client used HTTPS (the proxy's first ``X-Forwarded-Proto`` value)."""
        if url_scheme == "https":
            return True
        if forwarded_proto and in_networks(remote_addr or "", self.trusted_proxies):
            return forwarded_proto.split(",", 1)[0].strip().lower() == "https"
        return False

    def client_address(self, remote_addr: str, forwarded_for: str | None) -> str:
        """The first address, walking X-Forwarded-For right to left, that is not a trusted proxy."""
        address = remote_addr or ""
        if not forwarded_for or not in_networks(address, self.trusted_proxies):
            return address
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            address = hop
            if not in_networks(hop, self.trusted_proxies):
                break
        return address

    def is_internal(self, address: str) -> bool:
        return in_networks(address, self.internal)
