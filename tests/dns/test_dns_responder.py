"""The responder as phones and resolvers see it: real ``dig`` over UDP and TCP on loopback."""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from dnskit import free_port, make_dig
from helpers.tools import wait_for

from devupdate.dns.records import RecordSet
from devupdate.dns.responder import DnsResponder, _Tables

ADDRESSES = ("10.0.0.5", "10.0.0.6", "2001:db8::5")
RECORDS = RecordSet(("contoso.com", "fabrikam.local"), ADDRESSES)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dig():
    return make_dig()


@pytest.fixture
def start_responder():
    """Factory: a DnsResponder on 127.0.0.1 port 0, stopped at teardown."""
    started: list[DnsResponder] = []

    def start(records: RecordSet = RECORDS, provider=None, **options) -> DnsResponder:
        options.setdefault("rate_limit", None)
        options.setdefault("reload_interval", None)
        responder = DnsResponder(provider or (lambda: records), "127.0.0.1", 0, **options)
        started.append(responder.start())
        return responder

    yield start
    for responder in started:
        responder.stop()


@pytest.fixture
def port(start_responder) -> int:
    return start_responder().port


@pytest.mark.parametrize("name", ["ucupdates-r2.contoso.com", "ucupdates.contoso.com",
                                  "ucupdates-r2.fabrikam.local", "ucupdates.fabrikam.local"])
def test_discovery_names_answer_a_and_aaaa_authoritatively(dig, port, name):
    a = dig(port, name, "A")
    assert a.status == "NOERROR" and {"qr", "aa", "rd"} <= a.flags and "ra" not in a.flags
    assert a.values("A") == {"10.0.0.5", "10.0.0.6"}
    assert all(rr[0] == f"{name}." and rr[1] == "300" for rr in a.answer)
    assert a.edns_udp == 1232  # our OPT record, echoing EDNS0 support
    aaaa = dig(port, name, "AAAA", "+norec")
    assert aaaa.values("AAAA") == {"2001:db8::5"} and "rd" not in aaaa.flags and "aa" in aaaa.flags


def test_soa_ns_and_any_at_the_apex(dig, port):
    soa = dig(port, "contoso.com", "SOA")
    assert soa.status == "NOERROR" and "aa" in soa.flags
    (mname, rname, serial, *_timers), = [v.split() for v in soa.values("SOA")]
    assert (mname, rname) == ("ucupdates-r2.contoso.com.", "hostmaster.contoso.com.") and int(serial) > 0
    ns = dig(port, "contoso.com", "NS")
    assert ns.values("NS") == {"ucupdates-r2.contoso.com."}
    assert ns.values("A", "ADDITIONAL") == {"10.0.0.5", "10.0.0.6"}  # glue saves the resolver a query
    any_ = dig(port, "ucupdates-r2.contoso.com", "ANY", "+tcp")
    assert {rr[3] for rr in any_.answer} == {"A", "AAAA"}


def test_nxdomain_nodata_and_refused(dig, port):
    nx = dig(port, "printer.contoso.com", "A")
    assert nx.status == "NXDOMAIN" and "aa" in nx.flags and not nx.answer
    assert [rr[3] for rr in nx.section("AUTHORITY")] == ["SOA"] and nx.section("AUTHORITY")[0][0] == "contoso.com."
    deep = dig(port, "x.ucupdates-r2.contoso.com", "AAAA")
    assert deep.status == "NXDOMAIN"
    nodata = dig(port, "ucupdates-r2.contoso.com", "MX")
    assert nodata.status == "NOERROR" and not nodata.answer and nodata.values("SOA", "AUTHORITY")
    outside = dig(port, "ucupdates-r2.example.org", "A")
    assert outside.status == "REFUSED" and "aa" not in outside.flags and not outside.answer
    parent = dig(port, "com", "SOA")
    assert parent.status == "REFUSED"
    chaos = dig(port, "ucupdates-r2.contoso.com", "A", "-c", "CH")
    assert chaos.status == "REFUSED"
    axfr = dig(port, "contoso.com", "AXFR")
    assert "Transfer failed" in axfr.text


def test_names_are_case_insensitive_and_the_question_case_is_kept(dig, port):
    result = dig(port, "UcUpDaTeS-R2.CoNtOsO.cOm", "A")
    assert result.status == "NOERROR" and result.values("A") == {"10.0.0.5", "10.0.0.6"}
    assert result.question == ["UcUpDaTeS-R2.CoNtOsO.cOm."]  # 0x20-randomising resolvers compare it
    assert dig(port, "PRINTER.CONTOSO.COM", "A").status == "NXDOMAIN"


def test_tcp_gives_the_same_answers(dig, port):
    for name, rtype in [("ucupdates-r2.contoso.com", "A"), ("ucupdates.fabrikam.local", "AAAA"),
                        ("nothing.contoso.com", "A"), ("example.org", "A")]:
        udp, tcp = dig(port, name, rtype), dig(port, name, rtype, "+tcp")
        assert (udp.status, udp.flags, udp.answer) == (tcp.status, tcp.flags, tcp.answer)
        assert "(TCP)" in tcp.text


def test_large_answer_sets_tc_and_dig_retries_over_tcp(dig, start_responder):
    many = RecordSet(("contoso.com",), tuple(f"10.1.0.{i}" for i in range(1, 61)))  # ~1 kB of A records
    port = start_responder(many).port
    full = dig(port, "ucupdates-r2.contoso.com", "A")  # dig's 1232-byte buffer holds it
    assert "tc" not in full.flags and len(full.answer) == 60
    for options in (["+bufsize=512"], ["+noedns"]):
        truncated = dig(port, "ucupdates-r2.contoso.com", "A", "+ignore", *options)
        assert "tc" in truncated.flags and not truncated.answer, options
        retried = dig(port, "ucupdates-r2.contoso.com", "A", *options)
        assert "Truncated, retrying in TCP mode" in retried.text
        assert "tc" not in retried.flags and len(retried.answer) == 60
    assert dig(port, "ucupdates-r2.contoso.com", "A", "+noedns", "+ignore").edns_udp is None
    huge = RecordSet(("contoso.com",), tuple(f"10.2.{i // 250}.{i % 250 + 1}" for i in range(100)))
    port = start_responder(huge).port  # 1.6 kB: over our 1232-byte UDP cap even if the client allows 4096
    assert "tc" in dig(port, "ucupdates-r2.contoso.com", "A", "+bufsize=4096", "+ignore").flags


def test_edns_version_opcode_and_cd(dig, port):
    badvers = dig(port, "ucupdates-r2.contoso.com", "A", "+edns=1")
    assert "BADVERS" in badvers.text and badvers.status == "NOERROR"  # dig retried with version 0
    cd = dig(port, "ucupdates-r2.contoso.com", "A", "+cdflag")
    assert "cd" in cd.flags
    notify = dns.message.make_query("contoso.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    response = dns.query.udp(notify, "127.0.0.1", port=port, timeout=2)
    assert response.rcode() == dns.rcode.NOTIMP


def _garbage() -> list[bytes]:
    rng = random.Random(4)
    query = dns.message.make_query("ucupdates-r2.contoso.com", "A").to_wire()
    loop = struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"  # pointer to itself
    return [b"", b"\x00", b"\xff" * 11, query[:12], query[:-3], query + b"trailing", loop,
            b"\x12\x34\x80\x00" + query[4:],  # a response: never answer those (reflection loops)
            query[:4] + b"\x00\x05" + query[6:],  # five questions, one present
            struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 10,  # label runs off the end
            b"GET / HTTP/1.0\r\n\r\n", *(rng.randbytes(rng.randint(1, 600)) for _ in range(200))]


def test_garbage_packets_are_dropped_and_the_server_keeps_answering(dig, start_responder):
    responder = start_responder()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in _garbage():
            sock.sendto(packet, ("127.0.0.1", responder.port))
        sock.settimeout(0.3)
        replies = []
        try:
            while True:
                replies.append(sock.recv(4096))
        except TimeoutError:
            pass
    assert all(dns.message.from_wire(r).flags & dns.flags.QR for r in replies)  # only real DNS answers
    for packet in [b"\x00\x05hello", b"\x00\x00", b"\xff\xff" + b"x" * 100, b"GET / HTTP/1.1\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", responder.port), timeout=2) as conn:
            conn.sendall(packet)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2)
            assert conn.recv(100) == b""  # closed on us, nothing answered
    assert responder.dropped >= 10
    assert dig(responder.port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.0.0.5", "10.0.0.6"}
    assert dig(responder.port, "ucupdates-r2.contoso.com", "A", "+tcp").values("A") == {"10.0.0.5", "10.0.0.6"}


def test_several_queries_on_one_tcp_connection(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        for rtype in ("A", "AAAA", "SOA"):
            dns.query.send_tcp(conn, dns.message.make_query("ucupdates.contoso.com", rtype), None)
            response, _ = dns.query.receive_tcp(conn, time.time() + 2)
            assert response.rcode() == dns.rcode.NOERROR


def test_fast_path_agrees_with_the_dnspython_reference():
    """The pre-rendered answers must be byte-for-byte what the slow path would say, semantically."""
    tables = _Tables(RECORDS, 7, authoritative=True, max_udp_size=1232)
    names = ["ucupdates-r2.contoso.com", "UCUPDATES.Contoso.COM", "contoso.com", "nope.contoso.com",
             "a.b.ucupdates.fabrikam.local", "example.org", "fabrikam.local"]
    for name in names:
        for rtype in ("A", "AAAA", "SOA", "NS", "MX", "ANY", "TXT"):
            for edns in (-1, 0):
                for rd in (0, dns.flags.RD):
                    query = dns.message.make_query(name, rtype, use_edns=edns, payload=1232)
                    query.flags = rd | dns.flags.CD
                    wire = query.to_wire()
                    fast, slow = tables.answer(wire, True), tables.respond(wire, True)
                    assert fast is not None and slow is not None
                    a, b = dns.message.from_wire(fast), dns.message.from_wire(slow)
                    assert a == b and a.flags == b.flags and a.edns == b.edns, (name, rtype, edns)
                    assert a.question[0].name.to_text() == query.question[0].name.to_text()  # case kept


def test_rate_limit_drops_or_truncates_per_source_and_tcp_still_answers(dig, start_responder):
    responder = start_responder(rate_limit=5, rate_burst=5, slip=2)
    query = dns.message.make_query("ucupdates-r2.contoso.com", "A", use_edns=False)
    full = truncated = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(40):
            query.id = i
            sock.sendto(query.to_wire(), ("127.0.0.1", responder.port))
        sock.settimeout(0.5)
        try:
            while True:
                reply = dns.message.from_wire(sock.recv(4096))
                if reply.flags & dns.flags.TC:
                    assert not reply.answer
                    truncated += 1
                else:
                    full += 1
        except TimeoutError:
            pass
    assert 5 <= full <= 8  # the burst, plus what refilled meanwhile
    assert 12 <= truncated <= 20  # every second limited query slips through as TC, the rest are dropped
    assert responder.limiter.limited >= 30
    assert dig(responder.port, "ucupdates-r2.contoso.com", "A", "+tcp").values("A")  # TCP is not limited
    time.sleep(0.5)  # 5 queries/s refill: the source is welcome again
    assert dig(responder.port, "ucupdates-r2.contoso.com", "A").status == "NOERROR"


def test_records_reload_without_restart(dig, start_responder):
    current = {"records": RecordSet(("contoso.com",), ("10.0.0.5",))}

    def provider():
        if current["records"] is None:
            raise ValueError("config file is being edited")
        return current["records"]

    responder = start_responder(provider=provider, reload_interval=0.1)
    serial = dig(responder.port, "contoso.com", "SOA").values("SOA").pop().split()[2]
    current["records"] = RecordSet(("contoso.com", "northwind.test"), ("10.9.9.9",))
    deadline = time.monotonic() + 5
    while dig(responder.port, "ucupdates-r2.contoso.com", "A").values("A") != {"10.9.9.9"}:
        assert time.monotonic() < deadline, "the new address was not served within 5 s"
        time.sleep(0.1)
    assert dig(responder.port, "ucupdates.northwind.test", "A").values("A") == {"10.9.9.9"}
    assert int(dig(responder.port, "contoso.com", "SOA").values("SOA").pop().split()[2]) > int(serial)
    current["records"] = None  # a broken reload keeps the last good records
    time.sleep(0.3)
    assert dig(responder.port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.9.9.9"}
    with pytest.raises(ValueError):  # the explicit hook reports what the background reload only logs
        responder.reload()


def test_the_reload_is_a_job_counted_in_the_metrics_and_a_failing_one_is_logged_once(dig, start_responder, caplog):
    import logging
    import threading

    import prometheus_client

    from devupdate import metrics

    metrics.families()

    def runs(outcome: str) -> float:
        value = prometheus_client.REGISTRY.get_sample_value("devupdate_job_runs_total",
                                                            {"job": "dns-reload", "outcome": outcome})
        return value or 0.0

    current = {"records": RecordSet(("contoso.com",), ("10.0.0.5",))}

    def provider():
        if current["records"] is None:
            raise ValueError("config file is being edited")
        return current["records"]

    ok_before, failed_before = runs("ok"), runs("failed")
    with caplog.at_level(logging.WARNING, "devupdate.dns"):
        responder = start_responder(provider=provider, reload_interval=0.05)
        assert [t.name for t in threading.enumerate()].count("dns-reload") == 1  # the PeriodicJob's thread
        assert wait_for(lambda: runs("ok") >= ok_before + 2, 5, 0.02), "the reload job never ran"
        current["records"] = None
        assert wait_for(lambda: runs("failed") >= failed_before + 5, 5, 0.02), "failed reloads not counted"
        assert dig(responder.port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.0.0.5"}
        current["records"] = RecordSet(("contoso.com",), ("10.0.0.9",))
        assert wait_for(lambda: dig(responder.port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.0.0.9"},
                        5, 0.05)
        assert wait_for(lambda: any("works again" in r.getMessage() for r in caplog.records), 5, 0.02)
    messages = [r.getMessage() for r in caplog.records if r.name == "devupdate.dns" and "reload" in r.getMessage()]
    assert len(messages) == 2, messages  # once when it starts failing, once when it works: not per attempt
    assert messages[0] == ("dns: reload of the records (the previous ones are kept) failed: ValueError: config file "
                           "is being edited; retrying every 0.05 s at most until it works")
    assert messages[1].startswith("dns: reload of the records (the previous ones are kept) works again after ")
    responder.stop()
    assert wait_for(lambda: "dns-reload" not in [t.name for t in threading.enumerate()], 5, 0.02)


def test_names_only_mode_refuses_everything_else(dig, start_responder):
    port = start_responder(authoritative=False).port
    assert dig(port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.0.0.5", "10.0.0.6"}
    for name, rtype in [("contoso.com", "SOA"), ("printer.contoso.com", "A")]:
        assert dig(port, name, rtype).status == "REFUSED"
    nodata = dig(port, "ucupdates-r2.contoso.com", "MX")
    assert nodata.status == "NOERROR" and not nodata.answer and "aa" in nodata.flags


def test_binding_a_taken_port_is_a_clear_error(start_responder):
    taken = start_responder().port
    with pytest.raises(Exception, match=f"cannot listen on 127.0.0.1 port {taken}"):
        DnsResponder(lambda: RECORDS, "127.0.0.1", taken).start()


def test_dns_serve_command_answers_and_stops_on_sigterm(dig, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "devupdate.toml").write_text('dns_domains = ["contoso.com"]\ndns_addresses = ["10.0.0.7"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update(DEVUPDATE_HOME=str(home), PYTHONPATH=str(REPO))
    code = "from devupdate.dns.cli import group; group(prog_name='devupdate dns')"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", "0"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stderr.readline()
            assert line, "dns serve exited before listening"
        port = int(line.split(" port ")[1].split()[0])
        assert dig(port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.0.0.7"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def _serving_home(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "devupdate.toml").write_text('dns_domains = ["contoso.com"]\ndns_addresses = ["10.0.0.8"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    return {**env, "DEVUPDATE_HOME": str(home)}


def _answers(port: int) -> bool:
    try:
        dns.query.udp(dns.message.make_query("ucupdates-r2.contoso.com", "A"), "127.0.0.1", port=port, timeout=0.2)
        return True
    except dns.exception.Timeout:
        return False


def test_spawned_responder_serves_and_stops(dig, tmp_path):
    from devupdate.dns import process

    port = free_port()
    proc = process.spawn("127.0.0.1", port, env=_serving_home(tmp_path))
    try:
        assert wait_for(lambda: _answers(port), 5, 0.05), "spawned responder never answered"
        assert dig(port, "ucupdates-r2.contoso.com", "A").values("A") == {"10.0.0.8"}
    finally:
        assert process.stop(proc) == 0


def test_spawned_responder_exits_when_its_parent_is_killed(tmp_path):
    port = free_port()
    code = ("import sys, time; from devupdate.dns import process; "
            f"process.spawn('127.0.0.1', {port}); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], env={**_serving_home(tmp_path), "PYTHONPATH": str(REPO)})
    try:
        assert wait_for(lambda: _answers(port), 5, 0.05), "spawned responder never answered"
    finally:
        parent.kill()  # SIGKILL: no chance to stop its child
        parent.wait()
    assert wait_for(lambda: not _answers(port), 5, 0.05), "the orphaned responder kept serving"
