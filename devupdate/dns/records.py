"""The discovery record set, derived from settings. Pure: no sockets, no clocks.

Phones look up ``ucupdates-r2.<DHCP domain>`` (older firmware ``ucupdates.<domain>``) and talk to
whatever address it resolves to, so every configured domain gets both names, each with an A/AAAA
record per service address. The same set feeds the responder, ``dns records`` and ``dns publish``.

Defaults when ``DEVUPDATE_DNS_DOMAINS`` / ``DEVUPDATE_DNS_ADDRESSES`` are empty:

* domains: each public URL host with at least three labels, minus its first label
  (``pool.contoso.com`` → ``contoso.com``). Two-label hosts and ``localhost`` give no domain:
  guessing ``com`` or the host itself would publish the wrong name.
* addresses: the public URL hosts that are literal IP addresses, else ``127.0.0.1``. Host names
  are not resolved here: a DNS lookup at startup would make the answer depend on the resolver of
  the moment, and the responder may itself be what answers for those names.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devupdate.errors import DevupdateError

DEFAULT_TTL = 300  # short: a changed address reaches phones within minutes, queries are rare anyway
DISCOVERY_PREFIXES = ("ucupdates-r2", "ucupdates")
FALLBACK_ADDRESS = "127.0.0.1"
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Record:
    """One resource record in presentation form; ``name`` is absolute, lower case, with the dot."""

    name: str
    rtype: str
    ttl: int
    value: str

    def zone_line(self) -> str:
        return f"{self.name:<40} {self.ttl:<6} IN {self.rtype:<5} {self.value}"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.rtype, "ttl": self.ttl, "value": self.value}


@dataclass(frozen=True)
class RecordSet:
    """Domains and addresses to publish. Equality is what the responder's reload compares."""

    domains: tuple[str, ...]
    addresses: tuple[str, ...]
    ttl: int = DEFAULT_TTL
    notes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_settings(cls, settings, ttl: int = DEFAULT_TTL) -> RecordSet:
        """Validated domains/addresses from settings, or the documented defaults (with a note)."""
        notes: list[str] = []
        if settings.dns_domains:
            domains = tuple(dict.fromkeys(normalize_domain(d) for d in settings.dns_domains))
        else:
            domains = derive_domains(settings)
            if domains:
                notes.append(f"domains derived from the public URLs: {', '.join(domains)} "
                             "(set DEVUPDATE_DNS_DOMAINS to choose)")
        if settings.dns_addresses:
            addresses = tuple(dict.fromkeys(normalize_address(a) for a in settings.dns_addresses))
        else:
            addresses = derive_addresses(settings)
            if addresses == (FALLBACK_ADDRESS,):
                notes.append(f"no service address configured, answering {FALLBACK_ADDRESS}: "
                             "set DEVUPDATE_DNS_ADDRESSES to the address phones should reach")
        return cls(domains, addresses, ttl, tuple(notes))

    def require_domains(self) -> RecordSet:
        """Refuse an empty set: a responder or publisher with no domain would do nothing silently."""
        if not self.domains:
            raise DevupdateError("no DNS domain to answer for: set DEVUPDATE_DNS_DOMAINS=contoso.com "
                                 "(or public URLs whose host has a domain, e.g. http://pool.contoso.com)",
                                 code="no-dns-domain")
        return self

    def discovery_names(self) -> list[str]:
        return [name for domain in self.domains for name in discovery_names(domain)]

    def address_records(self) -> list[Record]:
        """A/AAAA for both discovery names of every domain: what phones need, nothing else."""
        records = []
        for name in self.discovery_names():
            for address in self.addresses:
                rtype = "AAAA" if ":" in address else "A"
                records.append(Record(name, rtype, self.ttl, address))
        return records

    def zone_records(self, serial: int) -> list[Record]:
        """Address records plus SOA/NS per domain, for serving the domains authoritatively.

        The name server and SOA MNAME is ``ucupdates-r2.<domain>``: it already resolves to the
        service, where the responder normally runs, so no extra name needs publishing.
        """
        records = []
        for domain in self.domains:
            apex, primary = f"{domain}.", f"{discovery_names(domain)[0]}"
            records.append(Record(apex, "SOA", self.ttl,
                                  f"{primary} hostmaster.{apex} {serial} 3600 600 86400 {self.ttl}"))
            records.append(Record(apex, "NS", self.ttl, primary))
        return records + self.address_records()

    def zone_lines(self) -> list[str]:
        """Zone-file lines for admins who run their own DNS (no SOA/NS: their zone has those)."""
        lines = [f"; {note}" for note in self.notes]
        return lines + [record.zone_line() for record in self.address_records()]

    def as_dict(self) -> dict[str, object]:
        return {"domains": list(self.domains), "addresses": list(self.addresses), "ttl": self.ttl,
                "notes": list(self.notes), "records": [r.as_dict() for r in self.address_records()]}


def discovery_names(domain: str) -> tuple[str, ...]:
    """``contoso.com`` → the absolute names phones look up, newest firmware's first."""
    domain = domain.rstrip(".").lower()
    return tuple(f"{prefix}.{domain}." for prefix in DISCOVERY_PREFIXES)


def normalize_domain(text: str) -> str:
    domain = text.strip().rstrip(".").lower()
    labels = domain.split(".")
    if not domain or len(domain) > 240 or not all(_LABEL.match(label) for label in labels):
        raise DevupdateError(f"DEVUPDATE_DNS_DOMAINS: {text!r} is not a DNS domain name (example: contoso.com)",
                             code="bad-settings")
    return domain


def normalize_address(text: str) -> str:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        address = None
    if address is None or getattr(address, "scope_id", None):
        raise DevupdateError(f"DEVUPDATE_DNS_ADDRESSES: {text!r} is not an IP address "
                             "(examples: 10.0.0.5, 2001:db8::5)", code="bad-settings")
    return str(address)


def _public_hosts(settings) -> list[str]:
    hosts = []
    for url in (settings.public_internal_url, settings.public_external_url):
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def derive_domains(settings) -> tuple[str, ...]:
    domains = []
    for host in _public_hosts(settings):
        labels = host.split(".")
        if _is_ip(host) or len(labels) < 3:
            continue
        domain = ".".join(labels[1:])
        if domain not in domains and all(_LABEL.match(label) for label in labels[1:]):
            domains.append(domain)
    return tuple(domains)


def derive_addresses(settings) -> tuple[str, ...]:
    addresses = [str(ipaddress.ip_address(h)) for h in _public_hosts(settings) if _is_ip(h)]
    return tuple(dict.fromkeys(addresses)) or (FALLBACK_ADDRESS,)
