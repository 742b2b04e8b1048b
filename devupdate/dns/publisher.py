"""Push the discovery records into the organisation's DNS with RFC 2136 dynamic update + TSIG.

Most sites already run DNS (BIND, Windows, Infoblox…); the least intrusive way to make
``ucupdates-r2.<domain>`` resolve is to add two names to their zone. ``publish`` is idempotent so
it can run from cron or a deployment script: it reads what the server holds (TSIG-signed, so a
wrong key fails even when nothing would change), sends one update with only the differences, then
reads back to verify. It owns the A/AAAA sets of the discovery names only: after it, they hold
exactly the configured addresses (a stale AAAA is removed), and nothing else in the zone is touched.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from devupdate.dns.records import Record, RecordSet
from devupdate.errors import DevupdateError
from devupdate.numbers import is_digits

DEFAULT_TIMEOUT = 5.0
_KEY = re.compile(r'key\s+"?([A-Za-z0-9._-]+)"?\s*\{(.*?)\}\s*;', re.S)
_ALGORITHM = re.compile(r'algorithm\s+"?([A-Za-z0-9._-]+)"?\s*;')
_SECRET = re.compile(r'secret\s+"([^"]*)"\s*;')
_ALGORITHMS = {str(a).rstrip(".").lower(): a for a in (
    dns.tsig.HMAC_SHA256, dns.tsig.HMAC_SHA384, dns.tsig.HMAC_SHA512, dns.tsig.HMAC_SHA224,
    dns.tsig.HMAC_SHA1, dns.tsig.HMAC_MD5)}
_ALGORITHMS["hmac-md5"] = dns.tsig.HMAC_MD5  # BIND writes the short name


class PublishError(DevupdateError):
    code = "dns-publish"


@dataclass(frozen=True)
class TsigKey:
    name: dns.name.Name
    algorithm: dns.name.Name
    keyring: dict


@dataclass
class Change:
    name: str
    rtype: str
    before: list[str]
    after: list[str]

    @property
    def action(self) -> str:
        return "add" if not self.before else "delete" if not self.after else "replace"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.rtype, "action": self.action, "before": self.before,
                "after": self.after}


@dataclass
class PublishResult:
    server: str
    zone: str
    changes: list[Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    verified: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"server": self.server, "zone": self.zone, "changed": bool(self.changes),
                "changes": [c.as_dict() for c in self.changes], "skipped": self.skipped, "verified": self.verified}

    def lines(self) -> list[str]:
        lines = [f"skipped {name}: not inside zone {self.zone}" for name in self.skipped]
        if not self.changes:
            return [*lines, f"{self.server} zone {self.zone}: nothing to change (records already published)"]
        for change in self.changes:
            lines.append(f"{change.action:<7} {change.name} {change.rtype} "
                         f"{' '.join(change.before) or '-'} -> {' '.join(change.after) or '-'}")
        return [*lines, f"{self.server} zone {self.zone}: {len(self.changes)} change(s) applied and verified"]


def load_tsig_key(path: Path | str) -> TsigKey:
    """Read the first key of a BIND key file (what ``tsig-keygen`` prints)."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise PublishError(f"{path}: not a text key file") from exc
    match = _KEY.search(text)
    hint = 'expected key "NAME" { algorithm hmac-sha256; secret "BASE64"; }; as printed by tsig-keygen'
    if not match:
        raise PublishError(f"{path}: no key found ({hint})")
    algorithm, secret = _ALGORITHM.search(match.group(2)), _SECRET.search(match.group(2))
    if not algorithm or not secret:
        raise PublishError(f"{path}: key {match.group(1)!r} lacks an algorithm or secret ({hint})")
    known = _ALGORITHMS.get(algorithm.group(1).lower())
    if known is None:
        raise PublishError(f"{path}: unsupported TSIG algorithm {algorithm.group(1)!r} "
                           f"(use one of {', '.join(sorted(_ALGORITHMS))})")
    try:
        if not base64.b64decode(secret.group(1), validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError) as exc:
        raise PublishError(f"{path}: the secret of key {match.group(1)!r} is not base64 ({hint})") from exc
    name = dns.name.from_text(match.group(1))
    keyring = dns.tsigkeyring.from_text({match.group(1): (str(known), secret.group(1))})
    return TsigKey(name, known, keyring)


def parse_server(text: str) -> tuple[str, int, str]:
    """'ns1', 'ns1:5353', '10.0.0.2:53', '[2001:db8::1]:53', '2001:db8::1' → (address, port, label)."""
    text = text.strip()
    host, port = text, 53
    match = re.fullmatch(r"\[([^\]]+)\](?::([0-9]{1,5}))?", text)
    if match:
        host, port = match.group(1), int(match.group(2) or 53)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not is_digits(port_text):
            raise PublishError(f"--server {text!r}: the port must be a number (HOST[:PORT])")
        port = int(port_text)
    if not host or not 0 < port < 65536:
        raise PublishError(f"--server {text!r}: expected HOST[:PORT]")
    try:
        # an IPv4 or IPv6 socket address: its first item is the address text
        address = str(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
    except socket.gaierror as exc:
        raise PublishError(f"--server {host}: cannot resolve the name ({exc.strerror}); give its IP address") from exc
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address, port, label


class _Session:
    """Signed TCP exchanges with one server, turning transport and TSIG failures into clear errors."""

    def __init__(self, address: str, port: int, label: str, key: TsigKey, timeout: float):
        self.address, self.port, self.label, self.key, self.timeout = address, port, label, key, timeout

    def exchange(self, message: dns.message.Message) -> dns.message.Message:
        key = self.key.name.to_text(omit_final_dot=True)
        message.use_tsig(self.key.keyring, keyname=self.key.name, algorithm=self.key.algorithm)
        try:
            return dns.query.tcp(message, self.address, timeout=self.timeout, port=self.port)
        except dns.tsig.PeerBadKey as exc:
            raise PublishError(f"{self.label} does not know TSIG key {key!r} (NOTAUTH/BADKEY): "
                               "use the key file configured on that server") from exc
        except dns.tsig.PeerBadSignature as exc:
            raise PublishError(f"{self.label} rejected the signature of TSIG key {key!r} (NOTAUTH/BADSIG): "
                               "the secret in the key file differs from the server's") from exc
        except dns.tsig.PeerBadTime as exc:
            raise PublishError(f"{self.label} rejected the TSIG time (BADTIME): "
                               "this machine's clock differs from the server's; fix NTP") from exc
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadKey) as exc:
            raise PublishError(f"{self.label}: TSIG failure with key {key!r}: {exc}") from exc
        except dns.exception.Timeout as exc:
            raise PublishError(f"{self.label}: no answer within {self.timeout:g}s "
                               "(server down, firewalled, or wrong address/port)") from exc
        except ConnectionRefusedError as exc:
            raise PublishError(f"{self.label}: connection refused (no DNS server listening on TCP there; "
                               "check the address and port)") from exc
        except (OSError, EOFError) as exc:
            raise PublishError(f"{self.label}: cannot reach the server ({getattr(exc, 'strerror', None) or exc})") \
                from exc
        except dns.exception.DNSException as exc:
            raise PublishError(f"{self.label}: unusable answer ({exc})") from exc

    def query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        message = dns.message.make_query(name, rdtype)
        message.flags &= ~dns.flags.RD  # ask the zone's own data, never a recursive guess
        return self.exchange(message)


def _rcode_error(label: str, zone: str, rcode: dns.rcode.Rcode, doing: str) -> PublishError:
    refused = (f"the server refuses updates to zone {zone} with this key: allow them with update-policy or "
               "allow-update for the key (BIND), or secure dynamic updates (Windows)" if doing == "updating" else
               f"the server does not serve zone {zone} to this client (wrong --zone or server, or allow-query)")
    hints = {
        dns.rcode.REFUSED: refused,
        dns.rcode.NOTAUTH: f"the server is not authoritative for zone {zone} (wrong --zone or wrong server)",
        dns.rcode.NOTZONE: f"a name is outside zone {zone}",
        dns.rcode.SERVFAIL: "the server failed (see its log; a read-only zone file or journal is a common cause)",
    }
    text = dns.rcode.to_text(rcode)
    return PublishError(f"{label}: {text} while {doing}: {hints.get(rcode, 'see the server log')}")


def _current(session: _Session, zone: str, name: dns.name.Name,
             rdtype: dns.rdatatype.RdataType) -> tuple[set[str], int | None]:
    response = session.query(name, rdtype)
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return set(), None
    if rcode != dns.rcode.NOERROR:
        raise _rcode_error(session.label, zone, rcode, f"reading {name}")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == name:
            raise PublishError(f"{name} is a CNAME to {rrset[0].target} on {session.label}: delete the CNAME "
                               "(or point its target at the service) and publish again")
    found = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
    if not found:
        return set(), None
    return {rdata.to_text() for rdata in found}, found.ttl


def publish(records: RecordSet, server: str, zone: str, key_file: Path | str,
            timeout: float = DEFAULT_TIMEOUT) -> PublishResult:
    """Make the server's A/AAAA for the discovery names equal the record set; idempotent."""
    records.require_domains()
    key = load_tsig_key(key_file)
    try:
        origin = dns.name.from_text(zone)
    except dns.exception.DNSException as exc:
        raise PublishError(f"--zone {zone!r} is not a DNS name ({exc})") from exc
    zone_text = origin.to_text(omit_final_dot=True)
    address, port, label = parse_server(server)
    session = _Session(address, port, label, key, timeout)
    result = PublishResult(label, zone_text)

    wanted: dict[tuple[str, str], list[Record]] = {}
    for name in records.discovery_names():
        if not dns.name.from_text(name).is_subdomain(origin):
            result.skipped.append(name)
            continue
        for rtype in ("A", "AAAA"):
            wanted[(name, rtype)] = [r for r in records.address_records() if r.name == name and r.rtype == rtype]
    if not wanted:
        raise PublishError(f"none of the discovery names ({', '.join(records.discovery_names())}) is inside zone "
                           f"{zone_text}: pass --zone with the domain from DEVUPDATE_DNS_DOMAINS")

    soa = session.query(origin, dns.rdatatype.SOA)  # proves the key and that the server holds the zone
    if soa.rcode() != dns.rcode.NOERROR:
        raise _rcode_error(label, zone_text, soa.rcode(), "reading the zone's SOA")
    if not soa.flags & dns.flags.AA or not soa.get_rrset(soa.answer, origin, dns.rdataclass.IN, dns.rdatatype.SOA):
        raise _rcode_error(label, zone_text, dns.rcode.NOTAUTH, "reading the zone's SOA")

    update = dns.update.UpdateMessage(origin, keyring=key.keyring, keyname=key.name, keyalgorithm=key.algorithm)
    for (name, rtype), want in wanted.items():
        qname, rdtype = dns.name.from_text(name), dns.rdatatype.from_text(rtype)
        have, ttl = _current(session, zone_text, qname, rdtype)
        after = {r.value for r in want}
        if have == after and (not want or ttl == want[0].ttl):
            continue
        result.changes.append(Change(name, rtype, sorted(have), sorted(after)))
        if want:
            update.replace(qname, want[0].ttl, rtype, *sorted(after))
        else:
            update.delete(qname, rtype)
    if not result.changes:
        result.verified = True
        return result

    update.use_tsig(key.keyring, keyname=key.name, algorithm=key.algorithm)
    response = session.exchange(update)
    if response.rcode() != dns.rcode.NOERROR:
        raise _rcode_error(label, zone_text, response.rcode(), "updating")
    for change in result.changes:
        have, _ttl = _current(session, zone_text, dns.name.from_text(change.name),
                              dns.rdatatype.from_text(change.rtype))
        if have != set(change.after):
            got, wanted_text = " ".join(sorted(have)) or "(nothing)", " ".join(change.after) or "(nothing)"
            raise PublishError(f"{label} accepted the update but answers {change.name} {change.rtype} {got} "
                               f"instead of {wanted_text}: is the zone served by another primary, or does a "
                               "policy drop the change?")
    result.verified = True
    return result
