"""``devupdate serve`` says at start where the data is, which URLs phones are handed (warning while
they say localhost), where the console is and how to create the first admin."""

from __future__ import annotations

from pathlib import Path

from devupdate.settings import Settings
from devupdate.startup import is_local, lines


def _banner(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("devupdate: ")]


def test_a_fresh_server_says_where_things_are_and_warns_about_localhost(install, live_server):
    server = live_server(workers=1)
    banner = _banner(server.output())
    home = install.home.resolve()
    assert banner[0].startswith(f"devupdate: data directory {home} (database ")
    assert f"filestore {home / 'filestore'})" in banner[0]
    assert banner[1] == f"devupdate: listening on http://127.0.0.1:{server.port}"
    assert banner[2] == ("devupdate: phones are handed http://localhost:8080/ "
                         "(internal, DEVUPDATE_PUBLIC_INTERNAL_URL) and "
                         "https://localhost:8443/ (external, DEVUPDATE_PUBLIC_EXTERNAL_URL)")
    assert banner[3].startswith("devupdate: warning: DEVUPDATE_PUBLIC_INTERNAL_URL and DEVUPDATE_PUBLIC_EXTERNAL_URL "
                                "still say localhost")
    assert banner[4] == ("devupdate: console http://localhost:8080/console/ (API http://localhost:8080/api/v1/, "
                         "metrics http://localhost:8080/metrics)")
    assert banner[5] == ("devupdate: no console account yet: create the first with "
                         "'devupdate admins add NAME --role admin'")
    # printed before the workers start, so an admin reads them first
    assert server.output().index("devupdate: data directory") < server.output().index("Booting worker")


def test_public_names_silence_the_warning_and_accounts_are_counted(install, live_server):
    install.cli("admins", "add", "alice", "--role", "admin", "--password-stdin", input="correct horse battery\n")
    server = live_server(workers=1, DEVUPDATE_PUBLIC_INTERNAL_URL="http://ucupdates-r2.contoso.test",
                         DEVUPDATE_PUBLIC_EXTERNAL_URL="https://ucupdates-r2.contoso.test")
    banner = _banner(server.output())
    assert not [line for line in banner if "warning" in line], banner
    assert "devupdate: phones are handed http://ucupdates-r2.contoso.test/ (internal" in banner[2]
    assert banner[3].startswith("devupdate: console http://ucupdates-r2.contoso.test/console/")
    assert banner[4] == "devupdate: console accounts: 1 ('devupdate admins list')"


def test_the_lines_hide_a_database_password_and_name_one_localhost_url():
    settings = Settings(home=Path("/srv/devupdate"), database_url="postgresql://dev:s3cret@db.contoso.test/devupdate",
                        public_internal_url="http://updates.contoso.test", public_external_url="https://127.0.0.1:8443",
                        host="::", tls_port=8443)
    out = lines(settings, admins=0, tls=True, dns=True)
    assert "database postgresql://dev:***@db.contoso.test/devupdate" in out[0] and "s3cret" not in "".join(out)
    assert out[1] == "devupdate: listening on http://[::]:8080 and https://[::]:8443, DNS on 0.0.0.0:53"
    assert out[3].startswith("devupdate: warning: DEVUPDATE_PUBLIC_EXTERNAL_URL still says localhost")
    assert is_local("http://localhost") and is_local("https://[::1]:8443") and not is_local("http://10.1.2.3")
