"""Access decisions (internal networks, external credentials), device path spelling, and the
``devupdate users`` commands."""

from __future__ import annotations

import base64
import json

import pytest

from devupdate.devices.access import Access, Refusal, basic_credentials, decide
from devupdate.devices.paths import canonical_path
from devupdate.web.network import NetworkPolicy, parse_networks


class Users:
    def verify(self, name: str, password: str) -> bool:
        return (name, password) == ("phones", "pa:ss wörd")


def policy(proxies=()) -> NetworkPolicy:
    return NetworkPolicy(parse_networks(["10.0.0.0/8", "127.0.0.0/8", "::1/128"], "x"), parse_networks(proxies, "y"))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("remote", "xff", "proxies", "result"), [
    ("10.1.2.3", None, (), Access("10.1.2.3", "", "Int")),
    ("::1", None, (), Access("::1", "", "Int")),
    ("203.0.113.9", None, (), Refusal(403, "NotInternal", "", "203.0.113.9")),
    ("10.1.2.3", "203.0.113.9", (), Access("10.1.2.3", "", "Int")),  # not a trusted proxy: header ignored
    ("127.0.0.1", "203.0.113.9", ("127.0.0.1/32",), Refusal(403, "NotInternal", "", "203.0.113.9")),
    ("127.0.0.1", "10.9.9.9", ("127.0.0.1/32",), Access("10.9.9.9", "", "Int")),
    ("127.0.0.1", "10.9.9.9, 203.0.113.9", ("127.0.0.1/32",), Refusal(403, "NotInternal", "", "203.0.113.9")),
])
def test_internal_side(remote, xff, proxies, result):
    got = decide("Int", remote, xff, None, policy(proxies), Users())
    if isinstance(result, Refusal):
        assert isinstance(got, Refusal) and (got.status, got.code, got.client_address) == (
            result.status, result.code, result.client_address)
    else:
        assert got == result


def https_only(proxies=()) -> NetworkPolicy:
    return NetworkPolicy(policy(proxies).internal, policy(proxies).trusted_proxies, external_https_only=True)


@pytest.mark.parametrize(("remote", "scheme", "proto", "proxies", "allowed"), [
    ("203.0.113.9", "http", None, (), False),
    ("203.0.113.9", "https", None, (), True),  # our own TLS listener
    ("203.0.113.9", "http", "https", (), False),  # anyone can send the header: not from a trusted proxy
    ("127.0.0.1", "http", "https", ("127.0.0.1/32",), True),
    ("127.0.0.1", "http", "HTTPS, http", ("127.0.0.1/32",), True),  # the proxy's own view comes first
    ("127.0.0.1", "http", "http", ("127.0.0.1/32",), False),
    ("127.0.0.1", "http", None, ("127.0.0.1/32",), False),
])
def test_external_side_https_only(remote, scheme, proto, proxies, allowed):
    got = decide("Ext", remote, None, basic("phones", "pa:ss wörd"), https_only(proxies), Users(),
                 url_scheme=scheme, forwarded_proto=proto)
    if allowed:
        assert got == Access(remote, "phones", "Ext")
    else:
        assert isinstance(got, Refusal) and (got.status, got.code) == (403, "HttpsRequired")
        assert "HTTPS only" in got.message


def test_plain_http_external_side_is_refused_before_credentials_are_looked_at():
    class Watching(Users):
        def verify(self, name, password):
            raise AssertionError("credentials checked on plain HTTP")

    got = decide("Ext", "203.0.113.9", None, basic("phones", "x"), https_only(), Watching())
    assert isinstance(got, Refusal) and got.code == "HttpsRequired"
    assert decide("Int", "10.1.2.3", None, None, https_only(), Users()) == Access("10.1.2.3", "", "Int")


@pytest.mark.parametrize(("header", "status", "code", "user"), [
    (None, 401, "AuthenticationRequired", ""),
    ("", 401, "AuthenticationRequired", ""),
    ("Bearer x", 401, "AuthenticationRequired", ""),
    ("Basic", 401, "AuthenticationRequired", ""),
    ("Basic %%%", 401, "AuthenticationRequired", ""),
    ("Basic " + base64.b64encode(b"no-colon").decode(), 401, "AuthenticationRequired", ""),
    (basic("phones", "wrong"), 401, "BadCredentials", "phones"),
    (basic("", "pa:ss wörd"), 401, "BadCredentials", ""),
])
def test_external_side_refusals(header, status, code, user):
    got = decide("Ext", "203.0.113.9", None, header, policy(), Users())
    assert isinstance(got, Refusal)
    assert (got.status, got.code, got.user, got.client_address) == (status, code, user, "203.0.113.9")
    response = got.response()
    assert response.headers["WWW-Authenticate"] == 'Basic realm="devupdate"'
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert f"<Code>{code}</Code>".encode() in response.get_data()


def test_external_side_accepts_right_credentials_from_anywhere():
    assert decide("external", "203.0.113.9", None, basic("phones", "pa:ss wörd"), policy(), Users()) == \
        Access("203.0.113.9", "phones", "Ext")
    assert basic_credentials("basic " + base64.b64encode(b"a:b:c").decode()) == ("a", "b:c")
    with pytest.raises(ValueError):
        decide("sideways", "1.2.3.4", None, None, policy(), Users())


@pytest.mark.parametrize(("path", "canonical"), [
    ("/requesthandler/ucdevice.upx", "/RequestHandler/ucdevice.upx"),
    ("/REQUESTHANDLEREXT/UCDEVICE.UPX", "/RequestHandlerExt/ucdevice.upx"),
    ("/RequestHandler/ucdevice.upx/", "/RequestHandler/ucdevice.upx"),
    ("/requesthandler/files", "/RequestHandler/Files"),
    ("/RequestHandlerExt/FILES", "/RequestHandlerExt/Files"),
    ("/deviceupdatefiles_int/UCPhone/Polycom/CX600/A/ENU/1.0/CPE.nbt",
     "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX600/A/ENU/1.0/CPE.nbt"),
    ("/DEVICEUPDATEFILES_EXT/x", "/DeviceUpdateFiles_Ext/x"),
    ("/requesthandler/ucdevice.upxx", "/requesthandler/ucdevice.upxx"),
    ("/requesthandlerx/ucdevice.upx", "/requesthandlerx/ucdevice.upx"),
    ("/deviceupdatefiles_intx/a", "/deviceupdatefiles_intx/a"),
    ("/healthz", "/healthz"),
    ("", ""),
])
def test_canonical_paths(path, canonical):
    assert canonical_path(path) == canonical


def test_users_commands(site):
    install = site
    assert json.loads(install.cli("users", "list", "--json").stdout) == []
    assert install.cli("users", "add", "phones", "--password-stdin", input="correct horse\n").stdout == \
        "added user phones\n"
    install.cli("users", "add", "branch-7@contoso.com", "--password-stdin", input="battery staple\n")
    duplicate = install.cli("users", "add", "phones", "--password-stdin", input="another one\n", check=False)
    assert duplicate.returncode == 1
    assert duplicate.stderr == "devupdate: error: user 'phones' exists; remove it first or use --replace\n"
    assert install.cli("users", "add", "phones", "--replace", "--password-stdin", input="another one\n").stdout == \
        "changed password of user phones\n"
    short = install.cli("users", "add", "x", "--password-stdin", input="short\n", check=False)
    assert (short.returncode, short.stderr) == (1, "devupdate: error: password too short: use at least 8 characters\n")
    empty = install.cli("users", "add", "x", "--password-stdin", input="", check=False)
    assert (empty.returncode, empty.stderr) == (1, "devupdate: error: no password on standard input\n")
    assert json.loads(install.cli("users", "list", "--json").stdout) == [
        {"Name": "branch-7@contoso.com", "NTLM": True}, {"Name": "phones", "NTLM": True}]
    from devupdate.devices.users import ExternalUser

    install.runtime()
    stored = list(ExternalUser.select().order_by(ExternalUser.name).tuples())
    assert [row[0] for row in stored] == ["branch-7@contoso.com", "phones"]
    assert all(row[1].startswith("scrypt$") and "horse" not in row[1] and "another" not in row[1] for row in stored)
    assert not (install.home / "users").exists()  # nothing on disk: every node reads the database
    assert install.cli("users", "remove", "phones").stdout == "removed user phones\n"
    missing = install.cli("users", "remove", "phones", check=False)
    assert (missing.returncode, missing.stderr) == (
        1, "devupdate: error: no user 'phones'; see 'devupdate users list'\n")
    assert install.cli("users", "list").stdout == "Name                  NTLM\nbranch-7@contoso.com  True\n"
    trail = json.loads(install.cli("audit", "list", "--action", "user.", "--json").stdout)
    assert [(e["Action"], e["Target"], e["Actor"]) for e in trail] == [
        ("user.remove", "user:phones", "test:admin"), ("user.add", "user:phones", "test:admin"),
        ("user.add", "user:branch-7@contoso.com", "test:admin"), ("user.add", "user:phones", "test:admin")]
    assert trail[1]["Before"] == {"Name": "phones"} and trail[3]["Before"] is None
    assert all("password" not in json.dumps(e).lower().replace("passwordchanged", "") for e in trail)
