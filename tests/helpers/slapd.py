"""A real OpenLDAP ``slapd`` for the directory tests: a minimal slapd.conf and an mdb database in a
temporary directory, loaded with ``slapadd``, run as the current user on a free loopback port
(plain LDAP, and LDAPS with a certificate of a private CA when asked)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers.tools import free_port

SUFFIX = "dc=contoso,dc=com"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "admin secret"
SERVICE_DN, SERVICE_PASSWORD = f"cn=devupdate,ou=services,{SUFFIX}", "service secret"
PEOPLE, GROUPS = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
PHONES_GROUP = f"cn=phones,{GROUPS}"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not path:
        pytest.skip(f"{name} is not installed (apt-get install slapd ldap-utils)")
    return path


def _entries(users: dict[str, str], members: list[str]) -> str:
    blocks = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Contoso\ndc: contoso",
              f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
              f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups",
              f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services",
              f"dn: {SERVICE_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: devupdate\n"
              f"sn: devupdate\nuserPassword: {SERVICE_PASSWORD}"]
    for uid, password in users.items():
        blocks.append(f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                      f"userPassword: {password}")
    member_lines = "\n".join(f"member: uid={uid},{PEOPLE}" for uid in members)
    blocks.append(f"dn: {PHONES_GROUP}\nobjectClass: groupOfNames\ncn: phones\n{member_lines}")
    return "\n\n".join(blocks) + "\n"


class Slapd:
    """``Slapd(directory, users={...}, members=[...]).start()``; ``stop()``/``start()`` again keep the
    port and the data."""

    def __init__(self, directory: Path, users: dict[str, str], members: list[str], *,
                 tls: tuple[Path, Path] | None = None):
        self.slapd, self.slapadd = _tool("slapd"), _tool("slapadd")
        if not (SCHEMA / "core.schema").is_file() or not (MODULES / "back_mdb.so").exists():
            pytest.skip("slapd's schema or back_mdb module is missing (apt-get install slapd)")
        self.directory = directory
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}" if tls else ""
        (directory / "db").mkdir(parents=True)
        tls_lines = f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n" if tls else ""
        self.conf = directory / "slapd.conf"
        self.conf.write_text(
            "".join(f"include {SCHEMA / name}.schema\n" for name in ("core", "cosine", "inetorgperson"))
            + f"modulepath {MODULES}\nmoduleload back_mdb\npidfile {directory / 'slapd.pid'}\n{tls_lines}"
            + f'database mdb\nmaxsize 10485760\nsuffix "{SUFFIX}"\nrootdn "{ADMIN_DN}"\n'
            + f"rootpw \"{ADMIN_PASSWORD}\"\ndirectory {directory / 'db'}\n"
            + "access to attrs=userPassword by anonymous auth by self read by * none\n"
            + "access to * by * read\n")
        ldif = directory / "data.ldif"
        ldif.write_text(_entries(users, members))
        loaded = subprocess.run([self.slapadd, "-f", str(self.conf), "-l", str(ldif)], capture_output=True,
                                text=True, timeout=60)
        assert loaded.returncode == 0, loaded.stderr
        self.proc: subprocess.Popen | None = None
        self.log = directory / "slapd.log"

    def start(self, timeout: float = 20) -> Slapd:
        urls = self.url + "/" + (f" {self.ldaps_url}/" if self.ldaps_url else "")
        self.proc = subprocess.Popen([self.slapd, "-f", str(self.conf), "-h", urls, "-d", "0"],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"slapd did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def connections(self) -> int:
        """Established client connections to the plain LDAP port right now (``ss``)."""
        ss = shutil.which("ss")
        if not ss:
            pytest.skip("ss is not installed (apt-get install iproute2)")
        out = subprocess.run([ss, "-Htn", "state", "established", f"( sport = :{self.port} )"],
                             capture_output=True, text=True, timeout=10).stdout
        return len([line for line in out.splitlines() if line.strip()])
