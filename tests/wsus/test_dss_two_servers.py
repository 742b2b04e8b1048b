"""Two devupdate installations on loopback (spec/wsus.md §8.4): A serves the upstream role with
``devupdate serve``, B syncs from it with ``devupdate wsus sync`` — separate databases and
filestores (B on PostgreSQL in one run). A phone image imported on A becomes the same rule and
version on B, its files fetched and verified; a phone asking B is offered it and the bytes hash
right; B's catalog equals A's current revisions under B's own RevisionIDs; a second run transfers
nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from catalogkit import docs_dir
from helpers.cabs import cabextract_tree, make_package, make_update
from helpers.installation import Installation, LiveServer
from helpers.tools import require_tool

V1 = "4.0.7577.4366"
PG_URL = os.environ.get("DEVUPDATE_TEST_DATABASE", "") or "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def upstream(install, tmp_path, live_server):
    """A: a phone cab imported, serving."""
    docs_dir()
    require_tool("cabextract")
    update = make_update("Polycom", "CX600", V1)
    folder = tmp_path / "cab"
    folder.mkdir()
    path = make_package(folder, [update], image_sizes=300_000)
    install.cli("import", str(path))
    into = tmp_path / "x"
    into.mkdir()
    files = cabextract_tree(path, into)
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    return server, update, files


def _postgres_database() -> str:
    import psycopg2

    name = f"devupdate_dss_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))


def _drop(url: str) -> None:
    import psycopg2

    name = urlsplit(url).path.lstrip("/")
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def downstream(request, tmp_path):
    """B: its own home, filestore and database."""
    home = tmp_path / "b"
    home.mkdir()
    url = ""
    if request.param == "postgresql":
        pytest.importorskip("psycopg2")
        try:
            url = _postgres_database()
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    b = Installation(home, url)
    b.cli("db", "upgrade")
    yield b
    if url:
        _drop(url)


def _json(installation, *args: str, **env: str) -> dict:
    return json.loads(installation.cli(*args, "--json", **env).stdout)


def _catalog(installation) -> dict[tuple[str, int], str]:
    """(UpdateID, RevisionNumber) → title of every current update and category."""
    rows = _json(installation, "wsus", "updates", "list")
    found = {(row["UpdateID"], row["RevisionNumber"]): row["Title"] for row in rows}
    for row in _json(installation, "wsus", "categories", "list"):
        found[(row["UpdateID"], row.get("RevisionNumber", 0))] = row["Title"]
    return found


def test_a_phone_image_imported_on_a_is_offered_by_b(upstream, downstream):
    server, update, files = upstream
    a_install = server.install
    done = _json(downstream, "wsus", "sync", "--upstream", server.url)
    assert done["Outcome"] == "ok", done
    assert done["HeldRevisions"] == 0 and done["FailedRevisions"] == 0
    assert done["Retries"] == 0, done
    assert done["Files"]["Fetched"] == 2 and done["Files"]["Corrupt"] == 0
    assert done["PhoneImages"]["Versions"] == 1 and done["PhoneImages"]["Rules"] == 1
    # B's catalog: A's current revisions, character for character, RevisionIDs B's own
    assert _catalog(a_install) == _catalog(downstream)
    a_doc = _json(a_install, "wsus", "updates", "show", _image_id(update.id))
    b_doc = _json(downstream, "wsus", "updates", "show", _image_id(update.id))
    assert [f["SHA256"] for f in a_doc["Files"]] == [f["SHA256"] for f in b_doc["Files"]]
    assert all(f["Present"] for f in b_doc["Files"])
    # B republished the rule's document: the same text, so still revision 1 (no new revision on B)
    assert [r["RevisionNumber"] for r in a_doc["Revisions"]] == [r["RevisionNumber"] for r in b_doc["Revisions"]] \
        == [1]
    assert a_doc["Revisions"][0]["CreationDate"] == b_doc["Revisions"][0]["CreationDate"]
    # the same rule on B, the synced version pending there (autonomous), the sync as the actor
    rules = _json(downstream, "rules", "list")
    assert [(r["Id"], r["PendingVersion"]) for r in rules] == [(update.id.lower(), V1)]
    trail = _json(downstream, "audit", "list")
    assert any(row["Actor"].startswith("sync:") and row["Action"] == "rule.sync" for row in trail)
    # approved on B, a phone asking B gets it, and the bytes hash right
    downstream.cli("rules", "approve", update.id)
    b_server = LiveServer(downstream, workers=1).start()
    try:
        answer = _check(b_server.url)
        urls = re.findall(r"https?://[^\s<\"']+\.nbt", answer)
        assert urls, answer
        # the offered URL names B's public host; fetched from B's own port, path as offered
        with urllib.request.urlopen(b_server.url + urlsplit(urls[0]).path) as got:
            body = got.read()
    finally:
        b_server.stop()
    nbt = files["CX600_A_ENU_CPE.nbt"]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(nbt).hexdigest()
    # a second run transfers nothing
    again = _json(downstream, "wsus", "sync", "--upstream", server.url)
    assert again["NewRevisions"] == 0 and again["UpdatedRevisions"] == 0
    assert again["Files"]["Fetched"] == 0 and again["Files"]["Bytes"] == 0
    assert "GetUpdateData" not in again["Operations"]


def _image_id(rule_id: str) -> str:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:devupdate")
    return str(uuid.uuid5(namespace, f"image/{rule_id.lower()}/{V1}"))


def _check(url: str) -> str:
    query = "?MACAddress=0004F2AABBCC&DeviceType=UCPhone&Vendor=Polycom&Model=CX600&Revision=A&Locale=ENU"
    with urllib.request.urlopen(url + "/RequestHandler/ucdevice.upx" + query) as answer:
        return answer.read().decode("utf-8", "replace")


V2 = "4.0.7577.4372"


def test_replica_b_follows_the_rule_state_of_a(upstream, tmp_path):
    server, update, _files = upstream
    a = server.install
    home = tmp_path / "replica"
    home.mkdir()
    b = Installation(home, "")
    b.cli("db", "upgrade")
    a.cli("rules", "approve", update.id)  # A: V1 approved (All Computers)
    folder = tmp_path / "cab2"
    folder.mkdir()
    a.cli("import", str(make_package(folder, [make_update("Polycom", "CX600", V2)], image_sizes=1000)))  # V2 pending
    done = _json(b, "wsus", "sync", "--upstream", server.url, "--mode", "replica")
    assert done["Outcome"] == "ok" and done["DeploymentsApplied"] >= 2, done
    rule = _json(b, "rules", "list")[0]
    assert (rule["ApprovedVersion"], rule["PendingVersion"]) == (V1, V2)
    refused = b.cli("rules", "approve", update.id, check=False)
    assert refused.returncode == 1 and f"is a replica of {server.url}" in refused.stderr
    a.cli("rules", "approve", update.id)  # A: V2 approved, V1 kept to restore
    again = _json(b, "wsus", "sync", "--upstream", server.url, "--mode", "replica")
    assert again["PhoneImages"]["StateChanges"] == 1
    rule = _json(b, "rules", "list")[0]
    assert (rule["ApprovedVersion"], rule["PendingVersion"]) == (V2, None)


class CuttingProxy:
    """An HTTP proxy in front of A that records every request and cuts the first answer for one
    path after ``cut`` bytes (the connection closes mid-file)."""

    def __init__(self, target: str, path_part: str, cut: int):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        proxy = self
        host, port = urlsplit(target).hostname, urlsplit(target).port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                proxy.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                cut = path_part in self.path and not getattr(proxy, "done", False)
                if cut:
                    proxy.done = True
                    self.wfile.write(data[:proxy_cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = _forward

        proxy_cut = cut
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_content_from_a_is_resumed_after_a_drop_mid_file(upstream, tmp_path):
    server, _update, files = upstream
    nbt = files["CX600_A_ENU_CPE.nbt"]
    sha1 = hashlib.sha1(nbt).hexdigest()
    proxy = CuttingProxy(server.url, sha1.upper(), 100_000)
    home = tmp_path / "resume"
    home.mkdir()
    b = Installation(home, "")
    b.cli("db", "upgrade")
    try:
        done = _json(b, "wsus", "sync", "--upstream", proxy.url, DEVUPDATE_WSUS_SYNC_RETRY_BASE="0.05")
    finally:
        proxy.stop()
    assert done["Outcome"] == "ok" and done["Files"]["Resumed"] == 1 and done["Files"]["Fetched"] == 2, done
    seen = [r for r in proxy.requests if sha1.upper() in r["path"].upper()]
    assert [r["headers"].get("Range") for r in seen] == [None, "bytes=100000-"]
    assert seen[1]["headers"]["If-Range"] == f'"{sha1}"'  # A's ETag, from the first answer
    shown = _json(b, "wsus", "updates", "show", _image_id(_update.id))
    assert all(f["Present"] for f in shown["Files"])
    stored = home / "filestore" / "images" / hashlib.sha256(nbt).hexdigest()[:2] / hashlib.sha256(nbt).hexdigest()
    assert stored.read_bytes() == nbt


def test_a_chain_a_b_c_carries_the_phone_image_to_c(upstream, tmp_path):
    server, update, files = upstream
    b, c = (Installation(tmp_path / name, "") for name in ("chain-b", "chain-c"))
    for installation in (b, c):
        installation.home.mkdir()
        installation.cli("db", "upgrade")
    assert _json(b, "wsus", "sync", "--upstream", server.url)["PhoneImages"]["Versions"] == 1
    b_server = LiveServer(b, workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true").start()
    try:
        done = _json(c, "wsus", "sync", "--upstream", b_server.url)
    finally:
        b_server.stop()
    assert done["Outcome"] == "ok" and done["PhoneImages"]["Versions"] == 1 and done["Files"]["Fetched"] == 2
    assert _catalog(c) == _catalog(server.install)
    rule = _json(c, "rules", "list")[0]
    assert (rule["Id"], rule["PendingVersion"]) == (update.id.lower(), V1)
    shown = _json(c, "wsus", "updates", "show", _image_id(update.id))
    nbt = files["CX600_A_ENU_CPE.nbt"]
    assert hashlib.sha256(nbt).hexdigest() in [f["SHA256"] for f in shown["Files"]]
    assert [r["RevisionNumber"] for r in shown["Revisions"]] == [1]


def test_an_upstream_asking_for_a_token_gets_it(install, live_server, tmp_path):
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_SYNC_TOKEN="s3cret-token")
    home = tmp_path / "token"
    home.mkdir()
    b = Installation(home, "")
    b.cli("db", "upgrade")
    refused = b.cli("wsus", "sync", "--upstream", server.url, check=False)
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr and "s3cret" not in refused.stderr
    done = _json(b, "wsus", "sync", "--upstream", server.url, DEVUPDATE_WSUS_UPSTREAM_TOKEN="s3cret-token")
    assert done["Outcome"] == "ok" and done["NewRevisions"] >= 0
