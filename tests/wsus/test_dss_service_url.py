"""GetAuthConfig's ``ServiceUrl`` is followed only on the upstream itself ([MS-WSUSSS] §3.2.4.2): an
absolute URL naming another host (or port, or scheme) gets neither the account nor the sync's
Authorization header; the run uses the default DssAuth path of the upstream instead, and one on the
upstream itself is followed."""

from __future__ import annotations

import dataclasses
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from catalogkit import docs_dir
from fakeupstream import FakeUpstream

from devupdate.wsus.downstream import service

TOKEN = "s3cret-token"


class _Thief(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Thief.seen.append(dict(self.headers))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def thief():
    _Thief.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Thief)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _with_service_url(fake: FakeUpstream, url: str) -> None:
    answer = fake.soap

    def soap(operation: str, body: bytes) -> tuple[int, bytes]:
        status, found = answer(operation, body)
        if operation == "GetAuthConfig":
            found = re.sub(rb"<ServiceUrl>[^<]*</ServiceUrl>", f"<ServiceUrl>{url}</ServiceUrl>".encode(), found)
        return status, found

    fake.soap = soap  # type: ignore[method-assign]


@pytest.mark.parametrize("where", ["http://127.0.0.1:{thief}/DssAuthWebService/DssAuthWebService.asmx",
                                   "https://127.0.0.1:{upstream}/DssAuthWebService/DssAuthWebService.asmx"])
def test_a_service_url_on_another_host_gets_no_credentials(rt, thief, where):
    docs_dir()
    fake = FakeUpstream(updates=[]).start()
    try:
        _with_service_url(fake, where.format(thief=thief.server_address[1], upstream=fake.server.server_address[1]))
        settings = dataclasses.replace(rt.settings, wsus_upstream_token=TOKEN)
        service.sync(settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
        assert _Thief.seen == []
        (auth,) = [r for r in fake.requests if r["operation"] == "GetAuthorizationCookie"]
        assert (auth["path"], auth["headers"]["Authorization"]) == (
            "/DssAuthWebService/DssAuthWebService.asmx", f"Bearer {TOKEN}")
    finally:
        fake.stop()


def test_a_service_url_on_the_upstream_itself_is_followed(rt):
    docs_dir()
    fake = FakeUpstream(updates=[]).start()
    try:
        _with_service_url(fake, f"{fake.url}/DssAuthWebService/DssAuthWebService.asmx?from=config")
        service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None)
        (auth,) = [r for r in fake.requests if r["operation"] == "GetAuthorizationCookie"]
        assert auth["path"] == "/DssAuthWebService/DssAuthWebService.asmx?from=config"
    finally:
        fake.stop()
