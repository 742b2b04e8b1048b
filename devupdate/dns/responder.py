"""A small authoritative DNS server for the discovery names, on UDP and TCP.

Phones never signed in find the service only by ``ucupdates-r2.<domain>``; in a boot storm every
phone of a site asks within minutes, so the UDP path is built for throughput:

* **Slow path = reference.** ``_Tables.respond`` parses any query with dnspython and builds the
  answer as ``dns.message`` objects. It handles everything unusual (EDNS version > 0, other
  opcodes and classes, compressed or odd questions, zone transfer requests).
* **Fast path = cache of the slow path.** At (re)load, the slow path's wire answer for every
  existing name × query type is rendered once and kept as bytes after the question. A plain
  query is then answered by copying the client's ID/question (keeping its 0x20 case), patching
  RD/CD and appending our OPT record when the client sent one: no dnspython call per packet.
  Compression pointers into the question stay valid because only the letter case differs.

Behaviour (RFC 1034/1035/6891/7766): AA on our data, RD and CD echoed, RA never (no recursion);
names compared case-insensitively; in authoritative mode SOA/NS at each domain apex, NXDOMAIN or
NODATA with the SOA in authority for other names in the domain; REFUSED outside, and for AXFR/IXFR
(no zone transfers) and classes other than IN; NOTIMP for opcodes other than QUERY; BADVERS for
EDNS versions above 0. A UDP answer larger than the client's EDNS payload size (512 without EDNS,
capped at ``max_udp_size``, 1232 by default to avoid IP fragmentation) is sent empty with TC set,
and the client retries over TCP. Packets that are not a single-question query are dropped.

Rate limiting is per source address on UDP only (a TCP source cannot be spoofed): a token bucket
of ``rate_limit`` queries/s with ``rate_burst`` capacity. Over the limit the query is **dropped**,
except every ``slip``-th one, which gets an empty truncated (TC) answer no larger than the query:
a legitimate client behind a busy address retries over TCP, a spoofed victim gets nothing
amplified (the scheme of BIND's response rate limiting).
"""

from __future__ import annotations

import io
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from devupdate.dns.records import RecordSet
from devupdate.errors import DevupdateError
from devupdate.jobs import PeriodicJob, Retry

log = logging.getLogger("devupdate.dns")

DEFAULT_RATE_LIMIT = 200.0  # queries/s per source: a recursive resolver caching our TTL needs far less
DEFAULT_MAX_UDP_SIZE = 1232  # DNS flag day 2020: the size that does not fragment on common paths
RELOAD_INTERVAL = 5.0
TCP_IDLE_TIMEOUT = 10.0
TCP_MAX_CONNECTIONS = 64
_MAX_BUCKETS = 100_000  # per-source state bound; spoofed floods of new sources reset it
_A, _AAAA, _NS, _SOA, _ANY, _OPT = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.NS, dns.rdatatype.SOA,
                                    dns.rdatatype.ANY, dns.rdatatype.OPT)
_NO_TRANSFER = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def _wire(name: dns.name.Name) -> bytes:
    """``name`` in wire format (dnspython types ``to_wire()`` as ``bytes | None``: None is only
    returned when it writes into a file)."""
    wire = name.to_wire()
    assert wire is not None, "to_wire() without a file returns the bytes"
    return wire


@dataclass(frozen=True)
class _Entry:
    """A pre-rendered answer: everything after the question, plus header bits and counts."""

    flags: int  # 16-bit header flags without RD/CD (QR, AA, rcode)
    an: int
    ns: int
    ar: int  # not counting OPT
    tail: bytes

    def headers(self) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """Header bytes 2..12 for each (RD, CD) combination, without and with OPT."""
        def variant(bits: int, ar: int) -> bytes:
            return struct.pack("!HHHHH", self.flags | bits, 1, self.an, self.ns, ar)
        combos = (0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD)
        return tuple(variant(b, self.ar) for b in combos), tuple(variant(b, self.ar + 1) for b in combos)


class _Tables:
    """Everything needed to answer for one record set; immutable once built, swapped on reload."""

    def __init__(self, records: RecordSet, serial: int, authoritative: bool, max_udp_size: int):
        self.records = records
        self.authoritative = authoritative
        self.max_udp_size = max_udp_size
        self.opt = struct.pack("!BHHIH", 0, _OPT, max_udp_size, 0, 0)  # root, OPT, payload, v0 no DO, no rdata
        self.nodes: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        wanted = records.zone_records(serial) if authoritative else records.address_records()
        for record in wanted:
            name = dns.name.from_text(record.name)
            rdtype = dns.rdatatype.from_text(record.rtype)
            node = self.nodes.setdefault(name, {})
            if rdtype not in node:
                node[rdtype] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
            node[rdtype].add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, record.value), record.ttl)
        self.zones = [dns.name.from_text(f"{d}.") for d in records.domains]
        self.zones.sort(key=lambda z: len(z.labels), reverse=True)  # longest (most specific) first
        self._build_fast_path()

    # --- reference answers (dnspython) ---------------------------------------------------------

    def zone_of(self, qname: dns.name.Name) -> dns.name.Name | None:
        for zone in self.zones:
            if qname.is_subdomain(zone):
                return zone
        return None

    def _soa(self, zone: dns.name.Name) -> list[dns.rrset.RRset]:
        rrset = self.nodes.get(zone, {}).get(_SOA)
        return [rrset] if rrset is not None else []

    def lookup(self, qname: dns.name.Name,
               rdtype: dns.rdatatype.RdataType) -> tuple[dns.rcode.Rcode, bool, list, list, list]:
        """(rcode, aa, answer, authority, additional) for one IN question."""
        zone = self.zone_of(qname)
        node = self.nodes.get(qname)
        if zone is None or (not self.authoritative and node is None) or rdtype in _NO_TRANSFER:
            return dns.rcode.REFUSED, False, [], [], []
        if node is None:
            return dns.rcode.NXDOMAIN, True, [], self._soa(zone), []
        if rdtype == _ANY:
            answer = [node[t] for t in sorted(node)]
        else:
            answer = [node[rdtype]] if rdtype in node else []
        if not answer:
            return dns.rcode.NOERROR, True, [], self._soa(zone), []
        additional = []
        if rdtype == _NS:  # addresses of our name server, saves the resolver a round trip
            for target in node[_NS]:
                additional += [rr for t, rr in sorted(self.nodes.get(target.target, {}).items()) if t in (_A, _AAAA)]
        return dns.rcode.NOERROR, True, answer, [], additional

    def respond(self, wire: bytes, udp: bool) -> bytes | None:
        """Answer any query with dnspython; None means drop (not a single-question query)."""
        try:
            query = dns.message.from_wire(wire, ignore_trailing=False)
        except Exception:  # dnspython raises many types for hostile input: all mean "malformed"
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1 or query.answer or query.authority:
            return None
        question = query.question[0]
        response = dns.message.Message(id=query.id)
        response.flags = dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
        response.set_opcode(query.opcode())
        response.question = [question]
        limit = 65535
        if query.edns >= 0:
            response.use_edns(0, 0, self.max_udp_size)
            if udp:
                limit = min(max(512, query.payload), self.max_udp_size)
        elif udp:
            limit = 512
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
        else:
            rcode, aa, response.answer, response.authority, response.additional = self.lookup(
                question.name, question.rdtype)
            response.set_rcode(rcode)
            if aa:
                response.flags |= dns.flags.AA
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    # --- fast path -----------------------------------------------------------------------------

    def _render(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Entry:
        query = dns.message.make_query(qname, rdtype, use_edns=False)
        query.flags = 0
        wire = self.respond(query.to_wire(), False)
        assert wire is not None, "a single-question query of our own is always answered"
        flags, _qd, an, ns, ar = struct.unpack("!HHHHH", wire[2:12])
        return _Entry(flags, an, ns, ar, wire[12 + len(_wire(qname)) + 4:])

    def _build_fast_path(self) -> None:
        self.names: dict[bytes, tuple[dict[int, tuple], tuple]] = {}
        for name, node in self.nodes.items():
            if self.zone_of(name) is None:
                continue
            types: dict[int, tuple] = {t: self._compile(self._render(name, t))
                                       for t in (*node, _ANY, _A, _AAAA, _SOA, _NS)}
            nodata = self._compile(self._render(name, dns.rdatatype.TXT))
            self.names[_wire(name).lower()] = (types, nodata)
        self.zone_wires: dict[bytes, tuple] = {}
        for zone in self.zones:  # NXDOMAIN: SOA owner written in full, the qname varies
            soa = self._soa(zone) if self.authoritative else []
            tail = io.BytesIO()
            for rrset in soa:
                rrset.to_wire(tail)
            rcode = dns.rcode.NXDOMAIN if self.authoritative else dns.rcode.REFUSED
            aa = dns.flags.AA if self.authoritative else 0
            self.zone_wires[_wire(zone).lower()] = self._compile(
                _Entry(dns.flags.QR | aa | rcode, 0, len(soa), 0, tail.getvalue()))
        self.refused = self._compile(_Entry(dns.flags.QR | dns.rcode.REFUSED, 0, 0, 0, b""))

    def _compile(self, entry: _Entry) -> tuple:
        plain, with_opt = entry.headers()
        truncated = _Entry(entry.flags | dns.flags.TC, 0, 0, 0, b"").headers()
        return plain, with_opt, entry.tail, entry.tail + self.opt, truncated

    def answer(self, data: bytes, udp: bool) -> bytes | None:
        """Answer one query; the hot path. Anything unusual goes to ``respond``."""
        size = len(data)
        if size < 17 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return self.respond(data, udp) if size >= 12 else None
        end = data.find(0, 12)
        found = self.names.get(data[12:end + 1].lower()) if 0 < end < size - 4 else None
        if found is not None:
            qtype = data[end + 1] << 8 | data[end + 2]
            entry = found[0].get(qtype)
            if entry is None:
                if qtype == _OPT or 128 <= qtype < 255 or qtype in _NO_TRANSFER:
                    return self.respond(data, udp)
                entry = found[1]
        else:
            entry, end = self._miss(data, size)
            if entry is None:
                return self.respond(data, udp)
        qend = end + 5
        if data[end + 3:qend] != b"\x00\x01":  # class IN only here
            return self.respond(data, udp)
        arcount = data[10] << 8 | data[11]
        if arcount == 0 and qend == size:
            limit = 512
            headers, tail = entry[0], entry[2]
        elif (arcount == 1 and size >= qend + 11 and data[qend:qend + 3] == b"\x00\x00\x29" and data[qend + 6] == 0
              and qend + 11 + (data[qend + 9] << 8 | data[qend + 10]) == size):
            limit = data[qend + 3] << 8 | data[qend + 4]
            limit = 512 if limit < 512 else self.max_udp_size if limit > self.max_udp_size else limit
            headers, tail = entry[1], entry[3]
        else:  # trailing bytes, several additional records, EDNS version > 0: let dnspython judge
            return self.respond(data, udp)
        bits = (data[2] & 1) | (data[3] & 0x10) >> 3  # RD → 1, CD → 2: index into header variants
        question = data[12:qend]
        if udp and qend + len(tail) > limit:
            headers = entry[4][1] if tail is entry[3] else entry[4][0]
            return data[:2] + headers[bits] + question + (self.opt if tail is entry[3] else b"")
        return data[:2] + headers[bits] + question + tail

    def _miss(self, data: bytes, size: int) -> tuple[tuple | None, int]:
        """A name we do not hold: walk its labels to find its zone (NXDOMAIN) or none (REFUSED)."""
        offset, starts = 12, []
        while offset < size:
            length = data[offset]
            if length == 0:
                break
            if length > 63:  # compression pointer or reserved label type in a question: slow path
                return None, 0
            starts.append(offset)
            offset += length + 1
        if offset >= size - 4:
            return None, 0
        qtype = data[offset + 1] << 8 | data[offset + 2]
        if qtype == _OPT or 128 <= qtype < 255 or qtype in _NO_TRANSFER:
            return None, 0
        lowered = data[12:offset + 1].lower()
        for start in starts:
            entry = self.zone_wires.get(lowered[start - 12:])
            if entry is not None:
                return entry, offset
        return self.refused, offset


class RateLimiter:
    """Per-source token buckets. Only the UDP thread calls ``allow``; housekeeping calls ``prune``."""

    def __init__(self, rate: float, burst: float | None = None, slip: int = 2):
        if rate <= 0:
            raise ValueError("rate must be positive (use None to disable rate limiting)")
        self.rate, self.slip = float(rate), slip
        self.burst = max(1.0, float(burst or 2 * rate))
        self.buckets: dict[str, list[float]] = {}
        self.limited = 0

    def allow(self, source: str, now: float) -> bool | None:
        """True: answer. None: answer with an empty TC reply (slip). False: drop."""
        bucket = self.buckets.get(source)
        if bucket is None:
            if len(self.buckets) >= _MAX_BUCKETS:
                self.buckets.clear()
            self.buckets[source] = [self.burst - 1, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return True
        bucket[0] = tokens
        self.limited += 1
        return None if self.slip and self.limited % self.slip == 0 else False

    def prune(self, now: float) -> None:
        """Forget sources whose bucket has refilled: they are indistinguishable from new ones."""
        for source, bucket in list(self.buckets.items()):
            if bucket[0] + (now - bucket[1]) * self.rate >= self.burst:
                self.buckets.pop(source, None)


def _truncated(data: bytes) -> bytes | None:
    """An empty TC answer echoing the query's ID, RD/CD and question: never larger than the query."""
    if len(data) < 17 or data[2] & 0xF8 or data[4:6] != b"\x00\x01":
        return None
    offset = 12
    while offset < len(data) and 0 < data[offset] < 64:
        offset += data[offset] + 1
    if offset + 5 > len(data) or data[offset] != 0:
        return None
    return data[:2] + bytes([0x82 | (data[2] & 0x01), data[3] & 0x10]) + b"\x00\x01" + bytes(6) + data[12:offset + 5]


class DnsResponder:
    """UDP + TCP DNS server for the discovery record set.

    ``records_provider`` is called at start and every ``reload_interval`` seconds (and by
    ``reload()``); when the record set it returns differs, the answers are rebuilt and swapped in,
    so changing ``DEVUPDATE_DNS_ADDRESSES`` in the config file takes effect without a restart.
    The periodic reload (and the rate limiter's pruning of idle sources) is the ``dns-reload``
    :class:`~devupdate.jobs.PeriodicJob`: its runs are in the job metrics, and a reload that fails
    keeps the previous records, logged once per outage and once when it works again.
    """

    def __init__(self, records_provider: Callable[[], RecordSet], host: str = "127.0.0.1", port: int = 53, *,
                 rate_limit: float | None = DEFAULT_RATE_LIMIT, rate_burst: float | None = None, slip: int = 2,
                 authoritative: bool = True, max_udp_size: int = DEFAULT_MAX_UDP_SIZE,
                 reload_interval: float | None = RELOAD_INTERVAL):
        self.records_provider = records_provider
        self.host, self.port = host, port
        self.authoritative = authoritative
        self.max_udp_size = max(512, min(max_udp_size, 65535))
        self.reload_interval = reload_interval
        self.limiter = RateLimiter(rate_limit, rate_burst, slip) if rate_limit else None
        self.dropped = 0
        self._serial = 0
        self._tables: _Tables | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._job: PeriodicJob | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._connections = threading.BoundedSemaphore(TCP_MAX_CONNECTIONS)
        self._clients: set[socket.socket] = set()

    # --- records -------------------------------------------------------------------------------

    @property
    def records(self) -> RecordSet | None:
        return self._tables.records if self._tables else None

    def reload(self) -> bool:
        """Re-read the record set; rebuild the answers if it changed. True when it changed."""
        records = self.records_provider().require_domains()
        if self._tables is not None and records == self._tables.records:
            return False
        self._serial = max(self._serial + 1, int(time.time()))  # SOA serial only ever grows
        self._tables = _Tables(records, self._serial, self.authoritative, self.max_udp_size)
        log.info("dns: answering for %s with %s (serial %d)", ", ".join(records.domains),
                 ", ".join(records.addresses), self._serial)
        return True

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> DnsResponder:
        """Bind UDP and TCP on the same port and answer in background threads."""
        self.reload()
        self._bind()
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._udp_loop, name="dns-udp", daemon=True),
                         threading.Thread(target=self._tcp_loop, name="dns-tcp", daemon=True)]
        for thread in self._threads:
            thread.start()
        interval = self.reload_interval or RELOAD_INTERVAL
        self._job = PeriodicJob("dns-reload", self._housekeeping, interval,
                                retry=Retry("dns: reload of the records (the previous ones are kept)", first=interval,
                                            maximum=interval, logger=log))
        self._job.start()
        return self

    def serve_forever(self) -> None:
        """Start and block until ``stop()`` (from a signal handler or another thread)."""
        if not self._threads:
            self.start()
        try:
            while not self._stopping.wait(3600):
                pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Safe from a signal handler: ``serve_forever`` notices and stops."""
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        if self._job is not None:
            self._job.stop(wait=2)
            self._job = None
        for sock in (self._udp, self._tcp):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recvfrom/accept on Linux
                except OSError:
                    pass
        for conn in list(self._clients):  # idle TCP clients would otherwise hold their thread 10 s
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(2)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None
        self._threads = []

    def __enter__(self) -> DnsResponder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        last_error: OSError | None = None
        for _attempt in range(10):  # port 0: the UDP port the kernel picks may be taken on TCP
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                for sock in (udp, tcp):
                    if family == socket.AF_INET6 and self.host == "::":
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                udp.bind((self.host, self.port))
                port = udp.getsockname()[1]
                tcp.bind((self.host, port))
                tcp.listen(128)
            except OSError as exc:
                udp.close()
                tcp.close()
                last_error = exc
                if self.port:
                    break
                continue
            self._udp, self._tcp, self.port = udp, tcp, port
            return
        hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if 0 < self.port < 1024 else ""
        raise DevupdateError(f"dns: cannot listen on {self.host} port {self.port}: "
                             f"{getattr(last_error, 'strerror', None) or last_error}{hint}", code="dns-bind")

    # --- loops ---------------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        sock, stopping = self._udp, self._stopping
        assert sock is not None, "start() binds before the loops run"
        recvfrom, sendto, limiter, monotonic = sock.recvfrom, sock.sendto, self.limiter, time.monotonic
        while True:
            try:
                data, source = recvfrom(4096)
            except OSError:
                if stopping.is_set():
                    return
                continue
            if stopping.is_set():
                return
            if limiter is not None:
                verdict = limiter.allow(source[0], monotonic())
                if verdict is not True:
                    reply = _truncated(data) if verdict is None else None
                    if reply:
                        try:
                            sendto(reply, source)
                        except OSError:
                            pass
                    continue
            try:
                tables = self._tables  # read per packet: reload() swaps it
                assert tables is not None, "start() loads the records before the loops run"
                reply = tables.answer(data, True)
            except Exception:  # never let one packet stop the server
                log.exception("dns: failed to answer a %d-byte query from %s", len(data), source[0])
                reply = None
            if reply is None:
                self.dropped += 1
                continue
            try:
                sendto(reply, source)
            except OSError:  # send buffer full or source unreachable: the client retries
                pass

    def _tcp_loop(self) -> None:
        listener = self._tcp
        assert listener is not None, "start() binds before the loops run"
        while not self._stopping.is_set():
            try:
                conn, source = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.01)  # e.g. EMFILE: do not spin
                continue
            if not self._connections.acquire(blocking=False):
                conn.close()  # too many clients: they retry, we stay responsive
                continue
            threading.Thread(target=self._tcp_client, args=(conn,), name="dns-tcp-client", daemon=True).start()

    def _tcp_client(self, conn: socket.socket) -> None:
        """Several queries per connection (RFC 7766); anything malformed closes it."""
        self._clients.add(conn)
        try:
            conn.settimeout(TCP_IDLE_TIMEOUT)
            while not self._stopping.is_set():
                header = _recv_exactly(conn, 2)
                if header is None:
                    return
                data = _recv_exactly(conn, struct.unpack("!H", header)[0])
                if data is None:
                    return
                try:
                    tables = self._tables  # read per query: reload() swaps it
                    assert tables is not None, "start() loads the records before the loops run"
                    reply = tables.answer(data, False)
                except Exception:
                    log.exception("dns: failed to answer a %d-byte TCP query", len(data))
                    reply = None
                if reply is None:
                    self.dropped += 1
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass
        finally:
            self._clients.discard(conn)
            conn.close()
            self._connections.release()

    def _housekeeping(self) -> None:
        """One run of the ``dns-reload`` job: forget idle rate-limited sources, re-read the records.
        A reload that raises (a config file half edited) keeps the answers being served."""
        if self.limiter is not None:
            self.limiter.prune(time.monotonic())
        if self.reload_interval:
            self.reload()


def _recv_exactly(conn: socket.socket, count: int) -> bytes | None:
    chunks, remaining = [], count
    while remaining:
        chunk = conn.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
