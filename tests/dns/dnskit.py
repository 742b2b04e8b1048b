"""DNS test kit: ``dig`` with parsed output, free ports, a real ``named``, a clean environment.

Plain functions and context managers; each test module wraps what it needs in fixtures. No
conftest.py here; ``require_tool`` comes from tests/helpers.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner
from helpers.tools import require_tool  # noqa: E402,F401


def clean_environment(home: Path, monkeypatch) -> Path:
    """No DEVUPDATE_* from the developer's shell; DEVUPDATE_HOME=home (created)."""
    for name in list(os.environ):
        if name.startswith("DEVUPDATE_"):
            monkeypatch.delenv(name)
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("DEVUPDATE_HOME", str(home))
    return home


def invoke(group, *args: str, **env: str):
    """Run a click group in-process with extra environment; returns click's Result."""
    return CliRunner().invoke(group, list(args), env=env, catch_exceptions=False)


@dataclass
class Dig:
    text: str
    returncode: int
    status: str = ""
    flags: set[str] = field(default_factory=set)
    question: list[str] = field(default_factory=list)
    sections: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    edns_udp: int | None = None

    def section(self, name: str) -> list[tuple[str, ...]]:
        return self.sections.get(name, [])

    @property
    def answer(self) -> list[tuple[str, ...]]:
        return self.section("ANSWER")

    def values(self, rtype: str, section: str = "ANSWER") -> set[str]:
        return {" ".join(rr[4:]) for rr in self.section(section) if rr[3] == rtype}


def parse_dig(text: str, returncode: int) -> Dig:
    result = Dig(text, returncode)
    headers = list(re.finditer(r"->>HEADER<<- opcode: \w+, status: (\w+)", text))
    if headers:  # after a TC retry dig prints the TCP answer last
        text = text[headers[-1].start():]
        result.status = headers[-1].group(1)
    flags = re.search(r";; flags:([^;]*);", text)
    result.flags = set(flags.group(1).split()) if flags else set()
    edns = re.search(r"; EDNS: version: \d+, flags:[^;]*; udp: (\d+)", text)
    result.edns_udp = int(edns.group(1)) if edns else None
    current = None
    for line in text.splitlines():
        match = re.match(r";; (\w+) SECTION:", line)
        if match:
            current = match.group(1)
            result.sections[current] = []
            continue
        if not line.strip():
            current = None
            continue
        if current == "QUESTION":
            result.question.append(line.lstrip(";").split()[0])
        elif current and not line.startswith(";"):
            result.sections[current].append(tuple(line.split()))
    return result


def make_dig():
    """``dig(port, *args)`` → parsed output; one try, short timeout, so a failure is quick."""
    path = require_tool("dig")

    def run(port: int, *args: str, server: str = "127.0.0.1") -> Dig:
        proc = subprocess.run([path, f"@{server}", "-p", str(port), "+time=2", "+tries=1", *args],
                              capture_output=True, text=True, timeout=20)
        return parse_dig(proc.stdout + proc.stderr, proc.returncode)

    return run


def free_port() -> int:
    """A port free on both UDP and TCP right now (named needs one for both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class Named:
    port: int
    key_file: Path
    other_key_file: Path
    stranger_key_file: Path
    directory: Path
    log: Path


ZONE = """$TTL 300
@   IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300
@   IN NS  ns.{zone}.
ns  IN A   127.0.0.1
"""


@contextlib.contextmanager
def run_named(directory: Path) -> Iterator[Named]:
    """A real BIND on a loopback port: zone contoso.com updatable with ``devupdate.conf``'s key;
    ``other.conf`` is known to the server but may not update; ``stranger.conf`` is unknown to it;
    zone readonly.test accepts no updates at all."""
    named_path, keygen = require_tool("named"), require_tool("tsig-keygen")
    keys = {}
    for name in ("devupdate-key", "other-key", "stranger-key"):
        path = directory / f"{name.split('-')[0]}.conf"
        path.write_text(subprocess.run([keygen, "-a", "hmac-sha256", name], capture_output=True, text=True,
                                       check=True).stdout)
        keys[name] = path
    for zone in ("contoso.com", "readonly.test"):
        (directory / f"db.{zone}").write_text(ZONE.format(zone=zone))
    port = free_port()
    (directory / "named.conf").write_text(f"""
include "{keys['devupdate-key']}";
include "{keys['other-key']}";
options {{
    directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    dnssec-validation no;
}};
controls {{ }};
zone "contoso.com" {{ type primary; file "{directory}/db.contoso.com";
    update-policy {{ grant devupdate-key zonesub ANY; }}; }};
zone "readonly.test" {{ type primary; file "{directory}/db.readonly.test"; allow-update {{ none; }}; }};
""")
    log = directory / "named.log"
    with log.open("w") as out:
        proc = subprocess.Popen([named_path, "-g", "-n", "1", "-c", str(directory / "named.conf")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_named(port, proc, log)
        yield Named(port, keys["devupdate-key"], keys["other-key"], keys["stranger-key"], directory, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_named(port: int, proc: subprocess.Popen, log: Path) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"named exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            dns.query.udp(dns.message.make_query("contoso.com", "SOA"), "127.0.0.1", port=port, timeout=0.3)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"named did not answer within 15 s:\n{log.read_text()[-3000:]}")
