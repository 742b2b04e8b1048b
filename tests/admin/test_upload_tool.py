"""``devupdate-upload`` against a real ``devupdate serve --tls`` over HTTPS, trusting the CA from
``devupdate cert create``: a normal upload with ``--approve``, an untrusted certificate, refusals
with the server's reason, and connections cut midway — the retry ends with one import, not two."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from apikit import RULE_ID_CX600, cab_for
from helpers.tools import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
V1, V2 = "4.0.7577.4366", "4.0.7577.4372"


@dataclass
class TlsServer:
    url: str  # https://localhost:<tls port>
    port: int
    ca: Path
    token_file: Path
    server: object


@pytest.fixture
def tls_server(install, live_server) -> TlsServer:
    port = free_port()
    env = {"DEVUPDATE_TLS_PORT": str(port), "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://localhost"}
    install.cli("cert", "create", **env)
    server = live_server(args=("--tls",), **env)
    wait_port(port)
    token_file = install.home / "uploader.token"
    token_file.write_text(install.cli("tokens", "create", "uploader", "--role", "admin").stdout)
    token_file.chmod(0o600)
    return TlsServer(f"https://localhost:{port}", port, install.home / "tls" / "ca.crt", token_file, server)


def upload(*args: str, check: bool | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script (``python -m tools.upload`` where it is not installed)."""
    script = shutil.which("devupdate-upload")
    command = [script] if script else [sys.executable, "-m", "tools.upload"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def imports(install) -> list[tuple[str, str]]:
    """(outcome, file name) of every import the audit trail records, oldest first."""
    events = json.loads(install.cli("audit", "list", "--action", "import", "--json").stdout)
    return [(e["Detail"].get("Outcome", e["Outcome"]), e["Target"]) for e in reversed(events)]


def test_upload_over_https_approve_and_refusals(install, tls_server, tmp_path):
    cab = cab_for(tmp_path / "v1", V1)
    common = ("--server", tls_server.url, "--token-file", str(tls_server.token_file))

    untrusted = upload(*common, str(cab))
    assert untrusted.returncode == 3
    assert "certificate not trusted" in untrusted.stderr and "--cacert" in untrusted.stderr

    done = upload(*common, "--cacert", str(tls_server.ca), str(cab), "--approve", "--json", "--progress", check=True)
    result = json.loads(done.stdout)
    assert result["Outcome"] == "imported"
    assert result["Rules"] == [{"Id": RULE_ID_CX600, "Version": V1, "Change": "created"}]
    assert result["Approved"] == [{"Id": RULE_ID_CX600, "Version": V1, "Result": "approved"}]
    assert "uploading UCUpdates.cab" in done.stderr and "100%" in done.stderr
    rules = json.loads(install.cli("rules", "list", "--json").stdout)
    assert [(r["ApprovedVersion"], r["PendingVersion"], r["ApprovedBy"]) for r in rules] == [
        (V1, None, "token:uploader")]

    again = upload(*common, "--cacert", str(tls_server.ca), str(cab), check=True)
    assert "UCUpdates.cab: nothing new" in again.stdout
    assert RULE_ID_CX600 in again.stdout

    junk = tmp_path / "Broken.cab"
    junk.write_bytes(b"MSCF" + os.urandom(5000))
    refused = upload(*common, "--cacert", str(tls_server.ca), str(junk))
    assert refused.returncode == 1
    assert refused.stderr.startswith("devupdate-upload: Broken.cab: refused (HTTP 400 ")
    assert "Broken.cab" in refused.stderr.split("):", 1)[1]  # the server's reason names the upload

    reader = tls_server.token_file.with_name("reader.token")
    reader.write_text(install.cli("tokens", "create", "reader", "--role", "operator").stdout)
    forbidden = upload("--server", tls_server.url, "--token-file", str(reader), "--cacert", str(tls_server.ca),
                       str(cab_for(tmp_path / "v2", V2)))
    assert forbidden.returncode == 1 and "HTTP 403 forbidden" in forbidden.stderr

    install.cli("tokens", "revoke", "uploader")
    revoked = upload(*common, "--cacert", str(tls_server.ca), str(cab))
    assert revoked.returncode == 1 and "HTTP 401 unauthenticated" in revoked.stderr

    assert [outcome for outcome, _ in imports(install)] == ["imported", "nothing-new", "refused"]


class CuttingProxy:
    """A TCP relay to the server that breaks the first upload once: ``mode="request"`` cuts the
    connection after ``at`` bytes of the request; ``mode="response"`` lets the whole request
    through and drops the server's answer instead (the import happened; the client cannot know).

    Under TLS the relay cannot read the answer, and the server also sends other records (session
    tickets) at times of its own; so "the answer" is the first server data once ``answered()``
    says the import is committed — which the server does before it answers."""

    def __init__(self, target: int, mode: str, at: int, answered=lambda: True):
        self.target, self.mode, self.at, self.answered = target, mode, at, answered
        self.armed = True
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            state = {"sent": 0}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _cut(self, *socks: socket.socket) -> None:
        self.armed = False
        self.cuts += 1
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _pump(self, source: socket.socket, sink: socket.socket, state: dict, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if upstream:
                    state["sent"] += len(data)
                    if self.armed and self.mode == "request" and state["sent"] > self.at:
                        return self._cut(source, sink)
                elif self.armed and self.mode == "response" and state["sent"] >= self.at and self.answered():
                    return self._cut(source, sink)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def test_a_connection_cut_midway_ends_with_one_import(install, tls_server, tmp_path):
    from devupdate import db
    from devupdate.imports.models import ImportRecord

    install.runtime()  # the database, bound in this process for answered()

    def answered(version: str):
        def done() -> bool:
            db.database.connect(reuse_if_open=True)
            return ImportRecord.select().where((ImportRecord.outcome == "imported") &
                                               ImportRecord.rules.contains(version)).exists()
        return done

    # cut while sending: nothing was imported, the retry imports; answer lost: the retry finds it done
    for mode, version, outcome, trail in (("request", V1, "imported", ["imported"]),
                                          ("response", V2, "nothing-new", ["imported", "imported", "nothing-new"])):
        cab = cab_for(tmp_path / mode, version, size=3_000_000)
        size = cab.stat().st_size
        proxy = CuttingProxy(tls_server.port, mode, at=size // 3 if mode == "request" else size,
                             answered=answered(version))
        try:
            proc = upload("--server", f"https://localhost:{proxy.port}", "--token-file", str(tls_server.token_file),
                          "--cacert", str(tls_server.ca), str(cab), "--retry-delay", "0.3", "--json")
        finally:
            proxy.close()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proxy.cuts == 1, mode
        assert "retrying in 0.3 s" in proc.stderr
        assert json.loads(proc.stdout)["Outcome"] == outcome, mode
        assert [outcome for outcome, _ in imports(install) if outcome != "refused"] == trail, mode
        rules = json.loads(install.cli("rules", "list", "--json").stdout)
        assert [(r["Id"], r["PendingVersion"]) for r in rules] == [(RULE_ID_CX600, version)]

    deadline = time.monotonic() + 10
    while True:  # the cut upload's staged bytes are gone (the server noticed the cut and discarded them)
        usage = {u["Area"]: u for u in json.loads(install.cli("filestore", "usage", "--json").stdout)}
        if usage["incoming"]["UsedBytes"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert usage["incoming"]["UsedBytes"] == 0
    assert not [p for p in (install.home / "filestore" / "incoming").iterdir()]
    # the cut transfer is in the audit trail as what it was: an upload that ended early
    events = json.loads(install.cli("audit", "list", "--action", "import", "--json").stdout)
    assert [e["Detail"]["code"] for e in events if e["Outcome"] == "refused"] == ["incomplete-body"]
