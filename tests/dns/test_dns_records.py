"""The record set: settings → names and addresses, defaults, validation, zone lines."""

from __future__ import annotations

import json

import dns.rrset
import pytest
from dnskit import clean_environment, invoke

from devupdate.dns.cli import group as dns_group
from devupdate.dns.records import RecordSet
from devupdate.errors import DevupdateError
from devupdate.settings import Settings


def settings(**values) -> Settings:
    return Settings(**values)


def test_configured_domains_and_addresses_give_both_names_per_domain():
    records = RecordSet.from_settings(settings(dns_domains=("Contoso.COM.", "fabrikam.local", "contoso.com"),
                                               dns_addresses=("10.0.0.5", "[2001:DB8::5]")))
    assert records.domains == ("contoso.com", "fabrikam.local") and records.addresses == ("10.0.0.5", "2001:db8::5")
    assert records.discovery_names() == ["ucupdates-r2.contoso.com.", "ucupdates.contoso.com.",
                                         "ucupdates-r2.fabrikam.local.", "ucupdates.fabrikam.local."]
    assert [(r.name, r.rtype, r.value) for r in records.address_records()][:2] == [
        ("ucupdates-r2.contoso.com.", "A", "10.0.0.5"), ("ucupdates-r2.contoso.com.", "AAAA", "2001:db8::5")]
    assert records.notes == ()


def test_defaults_come_from_the_public_urls():
    records = RecordSet.from_settings(settings(public_internal_url="http://pool.contoso.com:8080",
                                               public_external_url="https://updates.ext.contoso.com"))
    assert records.domains == ("contoso.com", "ext.contoso.com")
    assert records.addresses == ("127.0.0.1",) and any("DEVUPDATE_DNS_ADDRESSES" in n for n in records.notes)
    by_ip = RecordSet.from_settings(settings(public_internal_url="http://10.1.2.3", public_external_url="https://[2001:db8::9]"))
    assert by_ip.domains == () and by_ip.addresses == ("10.1.2.3", "2001:db8::9")
    for host in ("localhost", "contoso.com"):  # no safe guess: 'com' or the host itself would be wrong
        assert RecordSet.from_settings(settings(public_internal_url=f"http://{host}",
                                                public_external_url=f"https://{host}")).domains == ()
    with pytest.raises(DevupdateError, match="no DNS domain to answer for: set DEVUPDATE_DNS_DOMAINS"):
        RecordSet.from_settings(settings()).require_domains()


@pytest.mark.parametrize("field, value, message", [
    ("dns_domains", ("contoso..com",), "DEVUPDATE_DNS_DOMAINS: 'contoso..com' is not a DNS domain name"),
    ("dns_domains", ("-bad.com",), "is not a DNS domain name"),
    ("dns_domains", ("a" * 64 + ".com",), "is not a DNS domain name"),
    ("dns_addresses", ("ucupdates.contoso.com",), "DEVUPDATE_DNS_ADDRESSES: 'ucupdates.contoso.com' is not an IP"),
    ("dns_addresses", ("fe80::1%eth0",), "is not an IP address"),
])
def test_bad_values_name_the_setting(field, value, message):
    with pytest.raises(DevupdateError, match=message):
        RecordSet.from_settings(settings(**{"dns_domains": ("contoso.com",), field: value}))


def test_zone_lines_parse_as_records_and_zone_records_add_soa_ns():
    records = RecordSet(("contoso.com",), ("10.0.0.5", "2001:db8::5"), ttl=600)
    for line in records.zone_lines():
        name, ttl, klass, rtype, value = line.split()
        rrset = dns.rrset.from_text(name, int(ttl), klass, rtype, value)
        assert rrset.ttl == 600 and rrset.name.to_text().startswith("ucupdates")
    zone = records.zone_records(serial=42)
    assert [(r.name, r.rtype) for r in zone[:2]] == [("contoso.com.", "SOA"), ("contoso.com.", "NS")]
    assert " 42 " in zone[0].value and zone[1].value == "ucupdates-r2.contoso.com."


def test_equality_ignores_notes_so_reload_only_rebuilds_on_real_change():
    assert RecordSet(("a.test",), ("10.0.0.1",), notes=("x",)) == RecordSet(("a.test",), ("10.0.0.1",))
    assert RecordSet(("a.test",), ("10.0.0.1",)) != RecordSet(("a.test",), ("10.0.0.2",))


def test_records_command(tmp_path, monkeypatch):
    clean_environment(tmp_path / "home", monkeypatch)
    result = invoke(dns_group, "records", DEVUPDATE_DNS_DOMAINS="contoso.com", DEVUPDATE_DNS_ADDRESSES="10.0.0.5")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "ucupdates-r2.contoso.com.                300    IN A     10.0.0.5",
        "ucupdates.contoso.com.                   300    IN A     10.0.0.5"]
    derived = invoke(dns_group, "records", "--json", DEVUPDATE_PUBLIC_INTERNAL_URL="http://pool.contoso.com")
    data = json.loads(derived.output)
    assert data["domains"] == ["contoso.com"] and len(data["records"]) == 2 and len(data["notes"]) == 2
    empty = invoke(dns_group, "records")
    assert empty.exit_code == 1 and empty.output.startswith("devupdate: error: no DNS domain to answer for")
    bad = invoke(dns_group, "records", DEVUPDATE_DNS_DOMAINS="contoso.com", DEVUPDATE_DNS_ADDRESSES="nowhere")
    assert bad.exit_code == 1 and bad.output == (
        "devupdate: error: DEVUPDATE_DNS_ADDRESSES: 'nowhere' is not an IP address (examples: 10.0.0.5, 2001:db8::5)\n")
