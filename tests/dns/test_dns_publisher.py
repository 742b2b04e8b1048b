"""``dns publish`` against a real BIND ``named`` with a dynamic zone and TSIG keys."""

from __future__ import annotations

import json
import socket

import pytest
from dnskit import clean_environment, invoke, make_dig, run_named

from devupdate.dns.cli import group as dns_group
from devupdate.dns.publisher import PublishError, load_tsig_key, parse_server, publish
from devupdate.dns.records import RecordSet

NAMES = ("ucupdates-r2.contoso.com", "ucupdates.contoso.com")


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    with run_named(tmp_path_factory.mktemp("named")) as server:
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch):
    clean_environment(tmp_path / "home", monkeypatch)
    monkeypatch.setenv("DEVUPDATE_DNS_DOMAINS", "contoso.com")
    monkeypatch.setenv("DEVUPDATE_DNS_ADDRESSES", "10.0.0.5,2001:db8::5")
    return monkeypatch


def run_publish(named, *extra: str, key=None, zone="contoso.com", server=None):
    return invoke(dns_group, "publish", "--server", server or f"127.0.0.1:{named.port}", "--zone", zone,
                  "--tsig-key-file", str(key or named.key_file), "--timeout", "2", *extra)


def test_publish_adds_records_then_changes_nothing_then_follows_settings(named, env):
    dig = make_dig()
    first = run_publish(named)
    assert first.exit_code == 0, first.output
    assert first.output.count("add ") == 4 and "applied and verified" in first.output
    for name in NAMES:
        assert dig(named.port, name, "A").values("A") == {"10.0.0.5"}
        assert dig(named.port, name, "AAAA").values("AAAA") == {"2001:db8::5"}
        assert dig(named.port, name, "A").answer[0][1] == "300"

    again = run_publish(named, "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.output)
    assert report["changed"] is False and report["changes"] == [] and report["verified"] is True
    assert "nothing to change" in run_publish(named).output

    env.setenv("DEVUPDATE_DNS_ADDRESSES", "10.0.0.9")  # IPv6 gone: the stale AAAA must go too
    changed = json.loads(run_publish(named, "--json").output)
    assert sorted((c["type"], c["action"]) for c in changed["changes"]) == [
        ("A", "replace"), ("A", "replace"), ("AAAA", "delete"), ("AAAA", "delete")]
    for name in NAMES:
        assert dig(named.port, name, "A").values("A") == {"10.0.0.9"}
        assert dig(named.port, name, "AAAA").status == "NOERROR" and not dig(named.port, name, "AAAA").answer
    assert dig(named.port, "ns.contoso.com", "A").values("A") == {"127.0.0.1"}  # the rest is untouched


@pytest.mark.parametrize("key_attr, message", [
    ("stranger_key_file", "does not know TSIG key 'stranger-key'"),
    ("other_key_file", "REFUSED while updating: the server refuses updates to zone contoso.com with this key"),
])
def test_keys_the_server_rejects_are_clear_errors(named, env, key_attr, message):
    env.setenv("DEVUPDATE_DNS_ADDRESSES", "10.0.0.77")  # something to change, so the update is attempted
    result = run_publish(named, key=getattr(named, key_attr))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and result.output.startswith("devupdate: error: ")
    assert message in result.output


def test_wrong_secret_is_reported_even_when_nothing_would_change(named, env, tmp_path):
    assert run_publish(named).exit_code == 0
    good = named.key_file.read_text()
    secret = good.split('secret "')[1].split('"')[0]
    forged = tmp_path / "forged.conf"
    forged.write_text(good.replace(secret, "Zm9yZ2VkIHNlY3JldCBmb3JnZWQgc2VjcmV0IGZvcmdlZA=="))
    result = run_publish(named, key=forged)
    assert result.exit_code == 1
    assert "rejected the signature of TSIG key 'devupdate-key' (NOTAUTH/BADSIG)" in result.output
    assert "secret in the key file differs" in result.output


def test_zones_the_server_will_not_update_or_does_not_serve(named):
    server = f"127.0.0.1:{named.port}"
    with pytest.raises(PublishError, match="REFUSED while updating: the server refuses updates to zone readonly.test"):
        publish(RecordSet(("readonly.test",), ("10.0.0.5",)), server, "readonly.test", named.key_file, timeout=2)
    with pytest.raises(PublishError, match="does not serve zone northwind.test"):
        publish(RecordSet(("northwind.test",), ("10.0.0.5",)), server, "northwind.test", named.key_file, timeout=2)
    with pytest.raises(PublishError, match="none of the discovery names .* is inside zone contoso.com"):
        publish(RecordSet(("fabrikam.com",), ("10.0.0.5",)), server, "contoso.com", named.key_file, timeout=2)


def test_unreachable_servers_are_clear_errors(named):
    records = RecordSet(("contoso.com",), ("10.0.0.5",))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: nothing answers there
        with pytest.raises(PublishError, match=f"127.0.0.1:{port}: connection refused"):
            publish(records, f"127.0.0.1:{port}", "contoso.com", named.key_file, timeout=1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections (backlog) but never answers
        port = silent.getsockname()[1]
        with pytest.raises(PublishError, match=r"no answer within 0.5s"):
            publish(records, f"127.0.0.1:{port}", "contoso.com", named.key_file, timeout=0.5)
    with pytest.raises(PublishError, match="cannot resolve the name"):
        publish(records, "no-such-host.invalid", "contoso.com", named.key_file, timeout=1)


@pytest.mark.parametrize("content, message", [
    ("", "no key found"),
    ("this is not a key file\n", "no key found"),
    ('key "k" { algorithm hmac-sha256; };', "lacks an algorithm or secret"),
    ('key "k" { algorithm hmac-sha256; secret "not base64!"; };', "is not base64"),
    ('key "k" { algorithm hmac-whirlpool; secret "c2VjcmV0"; };', "unsupported TSIG algorithm 'hmac-whirlpool'"),
])
def test_bad_key_files_are_clear_errors(tmp_path, env, content, message):
    key = tmp_path / "bad.key"
    key.write_text(content)
    with pytest.raises(PublishError, match=message):
        load_tsig_key(key)
    result = invoke(dns_group, "publish", "--server", "127.0.0.1:1", "--zone", "contoso.com",
                    "--tsig-key-file", str(key))
    assert result.exit_code == 1 and result.output.startswith("devupdate: error: ") and message in result.output


def test_missing_and_binary_key_files(tmp_path, env):
    result = invoke(dns_group, "publish", "--server", "127.0.0.1", "--zone", "contoso.com",
                    "--tsig-key-file", str(tmp_path / "missing.key"))
    assert result.exit_code == 1 and "missing.key: No such file or directory" in result.output
    (tmp_path / "binary.key").write_bytes(b"\xff\xfe\x00key")
    with pytest.raises(PublishError, match="not a text key file"):
        load_tsig_key(tmp_path / "binary.key")


def test_tsig_keygen_output_loads(named):
    key = load_tsig_key(named.key_file)
    assert key.name.to_text() == "devupdate-key." and key.algorithm.to_text() == "hmac-sha256."


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:5300", ("::1", 5300)), ("::1", ("::1", 53)), ("localhost:54", (None, 54)),
])
def test_server_argument_forms(text, expected):
    address, port, _label = parse_server(text)
    assert port == expected[1] and (expected[0] is None or address == expected[0])
    with pytest.raises(PublishError, match="port must be a number"):
        parse_server("ns1:http")
