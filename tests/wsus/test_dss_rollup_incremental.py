"""The downstream's rollup sends only the computers changed since the last rollup the upstream took
(spec/wsus.md §5.1, §5.3 step 7), proven on what the upstream received: A (its own SQLite database,
``devupdate serve``) behind a recording proxy, B (this test's installation, PostgreSQL when the suite
runs on it) reporting its computers. A second rollup without news sends no computer; a changed
computer goes alone; a batch the upstream did not take leaves the high-water mark where it was, so
it is sent again, while a batch taken before it in the same run is not."""

from __future__ import annotations

import http.client
import re
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from helpers.installation import Installation, LiveServer
from wsus.reportkit import PATH as REPORTING_PATH
from wsus.reportkit import SD, batch, event
from wsus.wuskit import mint_cookie

from devupdate.wsus.downstream import service
from devupdate.wsus.downstream.models import UpstreamState
from devupdate.wsus.soap.envelope import SoapFault, render_fault

PC1 = "0b5e2d9a-1111-4c2c-a42b-000000000001"
PC2 = "0b5e2d9a-2222-4c2c-a42b-000000000002"
KB = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"
OTHER = "0daf8592-9e3f-4a8a-9141-d83fafebd09f"
THIRD = "266f6222-c89d-43f2-9f8a-69340271e677"


class RecordingProxy:
    """In front of A: records the computers of every ``RollupComputers`` request, can shrink the
    upstream's ``RollupComputersMaxBatchSize``, and can fail chosen ``RollupComputers`` requests
    (after A took them: the answer is lost, as when a connection breaks) with an
    ``InternalServerError`` fault, which B does not retry."""

    def __init__(self, target: str):
        self.batches: list[list[str]] = []  # computer ids of each RollupComputers request, in order
        self.batch_size: int | None = None
        self.fail: set[int] = set()  # 0-based numbers of RollupComputers requests (since reset) to fail
        self.seen = 0
        proxy = self
        host, port = urlsplit(target).hostname, urlsplit(target).port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                action = (self.headers.get("SOAPAction") or "").strip('"').rsplit("/", 1)[-1]
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data, status = answer.read(), answer.status
                upstream.close()
                if action == "RollupComputers":
                    number = proxy.seen
                    proxy.seen += 1
                    proxy.batches.append(sorted(item.get("ComputerId") for item in ET.fromstring(body).iter()
                                                if item.tag.endswith("ComputerRollupInfo")))
                    if number in proxy.fail:
                        data, status = render_fault("1.1", SoapFault("InternalServerError", "answer lost"),
                                                    "proxy"), 500
                if action == "GetRollupConfiguration" and proxy.batch_size is not None:
                    data = re.sub(rb"<RollupComputersMaxBatchSize>\d+<", b"<RollupComputersMaxBatchSize>%d<"
                                  % proxy.batch_size, data)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        self.batches, self.seen, self.fail = [], 0, set()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream(tmp_path):
    home = tmp_path / "a"
    home.mkdir()
    a = Installation(home, "")
    a.cli("db", "upgrade")
    server = LiveServer(a, workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true").start()
    proxy = RecordingProxy(server.url)
    yield proxy
    proxy.stop()
    server.stop()


def _report(server: LiveServer, computer: str, *events_xml: str) -> None:
    cookie = mint_cookie(server, computer, dns_name=f"{computer[-4:]}.branch.example.invalid")
    response = requests.post(server.url + REPORTING_PATH, data=batch(*events_xml, cookie=cookie.xml()), timeout=30,
                             headers={"Content-Type": "text/xml; charset=utf-8",
                                      "SOAPAction": f'"{SD}/ReportEventBatch"'})
    assert response.status_code == 200, response.text


def _rollup(rt, proxy: RecordingProxy) -> dict:
    proxy.reset()
    done = service.sync(rt.settings, rt.store, upstream=proxy.url, sleep=lambda seconds: time.sleep(0.05))
    assert "Error" not in done["Rollup"], done
    return done["Rollup"]


def _mark(url: str):
    return UpstreamState.get_by_id(url).rollup_mark


def test_a_rollup_sends_only_the_computers_changed_since_the_last_one_a_took(install, live_server, upstream):
    b = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    _report(b, PC1, event(183, update=KB, target=PC1))
    _report(b, PC2, event(183, update=KB, target=PC2))
    rt = install.runtime()

    first = _rollup(rt, upstream)
    assert upstream.batches == [[PC1, PC2]]
    assert first == {"Servers": 1, "Computers": 2, "StatusesSent": 2, "NewParent": 0}

    # nothing changed on B: A receives no computer at all (and no status)
    again = _rollup(rt, upstream)
    assert upstream.batches == []
    assert again == {"Servers": 1, "Computers": 0, "StatusesSent": 0, "NewParent": 0}

    # one computer changed: it goes alone, with its status
    _report(b, PC2, event(182, update=OTHER, target=PC2, hresult=-5, time="2026-10-04T16:00:00Z"))
    third = _rollup(rt, upstream)
    assert upstream.batches == [[PC2]]
    assert third == {"Servers": 1, "Computers": 1, "StatusesSent": 1, "NewParent": 0}
    assert _rollup(rt, upstream)["Computers"] == 0 and upstream.batches == []


def test_a_batch_a_did_not_take_leaves_the_mark_and_is_sent_again(install, live_server, upstream):
    b = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    _report(b, PC1, event(183, update=KB, target=PC1))
    _report(b, PC2, event(183, update=KB, target=PC2))
    rt = install.runtime()
    _rollup(rt, upstream)
    before = _mark(upstream.url)
    assert before is not None

    # the only batch fails: the mark stays, and the next run sends that computer again
    _report(b, PC1, event(182, update=OTHER, target=PC1, hresult=-5, time="2026-10-04T16:00:00Z"))
    upstream.reset()
    upstream.fail = {0}
    failed = service.sync(rt.settings, rt.store, upstream=upstream.url, sleep=lambda seconds: None)
    assert upstream.batches == [[PC1]]
    assert "InternalServerError" in failed["Rollup"]["Error"], failed["Rollup"]
    assert _mark(upstream.url) == before
    assert _rollup(rt, upstream)["Computers"] == 1 and upstream.batches == [[PC1]]
    assert _mark(upstream.url) > before
    assert _rollup(rt, upstream)["Computers"] == 0 and upstream.batches == []

    # batches of one (A's RollupComputersMaxBatchSize), in change order: the first is taken, the
    # second fails; only the second is sent again
    _report(b, PC2, event(182, update=THIRD, target=PC2, hresult=-7, time="2026-10-04T16:00:00Z"))
    _report(b, PC1, event(182, update=THIRD, target=PC1, hresult=-7, time="2026-10-04T16:00:00Z"))
    upstream.batch_size = 1
    upstream.reset()
    upstream.fail = {1}
    failed = service.sync(rt.settings, rt.store, upstream=upstream.url, sleep=lambda seconds: None)
    assert upstream.batches == [[PC2], [PC1]]
    assert "Error" in failed["Rollup"], failed["Rollup"]
    assert _rollup(rt, upstream)["Computers"] == 1 and upstream.batches == [[PC1]]
    assert _rollup(rt, upstream)["Computers"] == 0 and upstream.batches == []
