"""A fake upstream WSUS for the downstream tests: a loopback HTTP server that answers with the captured
``wsus-m0-wsusss/exchanges/`` responses of a real Windows Server 2025 WSUS.

What it answers, each from the recorded bytes:
- GetAuthConfig, DssAuth GetAuthorizationCookie, GetCookie: 000001–000003;
- GetConfigData: 000005 (000004 when a ``configAnchor`` is sent); ``lazy=False`` flips ``LazySync``;
- GetRevisionIdList: no cookie → 000019 (InvalidCookie); a malformed anchor → 000018 (InvalidParameters,
  ``filter``); ``GetConfig`` true → 000006 (the 30 captured categories) unless ``categories`` is given;
  ``GetConfig`` false → the 000009 envelope with ``updates`` as its identities, and with an anchor
  and ``Delta`` true after the first run, 000011 (nothing new);
- GetUpdateData: the recorded ``ServerSyncUpdateData`` elements of 000013–000016 (plain and LZX
  compressed blobs, file digests, the ``MUUrl``), plus synthetic ``documents`` as plain blobs in the
  same envelope; a batch with any identity it does not hold → 000017 (InternalServerError), as real
  WSUS does;
- ``/Content/XX/SHA1.ext`` from ``files``, with ``Range``/``If-Range`` and an ETag; ``drop_after``
  closes the connection after that many bytes once per file, ``corrupt`` serves wrong bytes;
- ``busy`` answers ServerBusy (the captured fault layout) that many times before a real answer.
Every request is recorded (path, operation, headers) for the assertions.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from catalogkit import EXCHANGES

IDENTITY = re.compile(rb"<UpdateID>([^<]+)</UpdateID>\s*<RevisionNumber>(\d+)</RevisionNumber>")


def exchange(number: int) -> dict:
    folder = EXCHANGES / f"{number:06d}"
    meta = json.loads((folder / "meta.json").read_text())
    return {"body": (folder / "response.body").read_bytes(), "status": meta["status"],
            "request": (folder / "request.body").read_bytes(), "action": meta["soap_action"]}


def _between(data: bytes, start: bytes, end: bytes) -> list[bytes]:
    found, at = [], 0
    while (begin := data.find(start, at)) >= 0:
        stop = data.index(end, begin) + len(end)
        found.append(data[begin:stop])
        at = stop
    return found


def _identities_xml(identities: list[tuple[str, int]]) -> bytes:
    return b"".join(f"<UpdateIdentity><UpdateID>{u}</UpdateID><RevisionNumber>{n}</RevisionNumber></UpdateIdentity>"
                    .encode() for u, n in identities)


def _with_list(template: bytes, identities: list[tuple[str, int]]) -> bytes:
    """A recorded GetRevisionIdList answer with other identities in ``NewRevisions``."""
    head, _, rest = template.partition(b"<NewRevisions>")
    _, _, tail = rest.partition(b"</NewRevisions>")
    if not identities:
        return head + b"<NewRevisions />" + tail
    return head + b"<NewRevisions>" + _identities_xml(identities) + b"</NewRevisions>" + tail


def fault(code: str, message: str = "", operation: str = "GetUpdateData") -> bytes:
    """A fault in the recorded layout (000017), with another ErrorCode."""
    body = exchange(17)["body"]
    body = re.sub(rb"<ErrorCode>[^<]*</ErrorCode>", f"<ErrorCode>{code}</ErrorCode>".encode(), body)
    body = re.sub(rb"<Message>[^<]*</Message>|<Message />", f"<Message>{escape(message)}</Message>".encode(), body)
    if code in ("ServerBusy", "ServerChanged", "InternalServerError"):
        return body
    return body.replace(b"<faultcode>soap:Server</faultcode>", b"<faultcode>soap:Client</faultcode>")


@dataclass
class FakeUpstream:
    lazy: bool = True
    categories: list[tuple[str, int]] | None = None  # None: the captured 000006 list
    updates: list[tuple[str, int]] = field(default_factory=list)
    documents: dict[tuple[str, int], str] = field(default_factory=dict)  # synthetic, served as XmlUpdateBlob
    files: dict[str, bytes] = field(default_factory=dict)  # sha1 hex → bytes
    drop_after: int | None = None
    corrupt: set[str] = field(default_factory=set)
    busy: dict[str, int] = field(default_factory=dict)  # operation → ServerBusy answers still to give
    faults: dict[str, list[bytes]] = field(default_factory=dict)  # operation → fault bodies to give first
    gone: set[str] = field(default_factory=set)  # sha1s answered 404
    requests: list[dict] = field(default_factory=list)
    anchor_seen: bool = False
    dropped: set[str] = field(default_factory=set)
    deployments: bytes | None = None  # the inside of GetDeploymentsResult (not recorded: synthetic)

    def __post_init__(self) -> None:
        self.recorded: dict[tuple[str, int], bytes] = {}
        self.urls: dict[tuple[str, int], bytes] = {}
        for number in (13, 14, 15, 16):
            body = exchange(number)["body"]
            for item in _between(body, b"<ServerSyncUpdateData>", b"</ServerSyncUpdateData>"):
                match = IDENTITY.search(item)
                assert match is not None
                identity = (match.group(1).decode().lower(), int(match.group(2)))
                self.recorded[identity] = item
                self.urls[identity] = b"".join(_between(body, b"<ServerSyncUrlData>", b"</ServerSyncUrlData>"))
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeUpstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def operations(self) -> list[str]:
        return [r["operation"] for r in self.requests if r["operation"]]

    def content_requests(self, sha1: str) -> list[dict]:
        return [r for r in self.requests if sha1.upper() in r["path"].upper()]

    # -- answers -------------------------------------------------------------------------------------

    def soap(self, operation: str, body: bytes) -> tuple[int, bytes]:
        with self.lock:
            if self.busy.get(operation, 0) > 0:
                self.busy[operation] -= 1
                return 500, fault("ServerBusy", operation=operation)
            queued = self.faults.get(operation)
            if queued:
                return 500, queued.pop(0)
        if operation == "GetAuthConfig":
            return 200, exchange(1)["body"]
        if operation == "GetAuthorizationCookie":
            return 200, exchange(2)["body"]
        if operation == "GetCookie":
            return 200, exchange(3)["body"]
        if operation == "GetConfigData":
            answer = exchange(4 if b"<configAnchor>" in body else 5)["body"]
            if not self.lazy:
                answer = answer.replace(b"<LazySync>true</LazySync>", b"<LazySync>false</LazySync>")
            return 200, answer
        if operation == "GetRevisionIdList":
            if b"<EncryptedData>" not in body:
                return 500, exchange(19)["body"]
            anchor = re.search(rb"<Anchor>([^<]*)</Anchor>", body)
            if anchor and not re.fullmatch(rb"\d+,\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", anchor.group(1)):
                return 500, exchange(18)["body"]
            if b"<GetConfig>true</GetConfig>" in body:
                if self.categories is None and not anchor:
                    return 200, exchange(6)["body"]
                return 200, _with_list(exchange(6)["body"], [] if anchor else self.categories or [])
            if anchor and b"<Delta>false</Delta>" not in body:
                return 200, exchange(11)["body"]
            return 200, _with_list(exchange(9)["body"], self.updates)
        if operation == "GetUpdateData":
            wanted = [(u.decode().lower(), int(n)) for u, n in IDENTITY.findall(body.split(b"<updateIds>", 1)[1])]
            if any(w not in self.recorded and w not in self.documents for w in wanted):
                return 500, exchange(17)["body"]
            template = exchange(15)["body"]
            head = template[:template.index(b"<updates>") + len(b"<updates>")]
            tail = template[template.index(b"</updates>"):]
            items, urls = [], []
            for identity in wanted:
                if identity in self.recorded:
                    items.append(self.recorded[identity])
                    urls.append(self.urls[identity])
                else:
                    items.append(self._synthetic(identity))
            tail = tail.replace(b"<fileUrls />", b"<fileUrls>" + b"".join(urls) + b"</fileUrls>") if any(urls) \
                else tail
            return 200, head + b"".join(items) + tail
        if operation == "GetDeployments" and self.deployments is not None:
            return 200, (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap='
                         b'"http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetDeploymentsResponse xmlns='
                         b'"http://www.microsoft.com/SoftwareDistribution"><GetDeploymentsResult>' + self.deployments
                         + b"</GetDeploymentsResult></GetDeploymentsResponse></soap:Body></soap:Envelope>")
        if operation == "DownloadFiles":
            return 200, (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap='
                         b'"http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><DownloadFilesResponse xmlns='
                         b'"http://www.microsoft.com/SoftwareDistribution" /></soap:Body></soap:Envelope>')
        return 404, b"not recorded"

    def _synthetic(self, identity: tuple[str, int]) -> bytes:
        text = self.documents[identity]
        digests = "".join(f"<base64Binary>{d}</base64Binary>" for d in re.findall(r'Digest="([^"]+)"', text))
        return (f"<ServerSyncUpdateData><Id><UpdateID>{identity[0]}</UpdateID><RevisionNumber>{identity[1]}"
                f"</RevisionNumber></Id>" + (f"<FileDigestList>{digests}</FileDigestList>" if digests else "")
                + f"<XmlUpdateBlob>{escape(text)}</XmlUpdateBlob></ServerSyncUpdateData>").encode()


def _handler(fake: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _record(self, operation: str) -> None:
            with fake.lock:
                fake.requests.append({"path": self.path, "operation": operation, "headers": dict(self.headers),
                                      "method": self.command})

        def _send(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            action = (self.headers.get("SOAPAction") or "").strip('"')
            operation = action.rsplit("/", 1)[-1]
            self._record(operation)
            status, answer = fake.soap(operation, body)
            self._send(status, answer)

        def do_GET(self) -> None:  # noqa: N802
            self._record("")
            match = re.fullmatch(r"/Content/([0-9A-Fa-f]{2})/([0-9A-Fa-f]{40})(\.[^/]*)?", self.path)
            sha1 = match.group(2).lower() if match else ""
            if not match or sha1 not in fake.files or sha1 in fake.gone:
                self._send(404, b"no such file", "text/plain")
                return
            data = fake.files[sha1]
            if sha1 in fake.corrupt:
                data = bytes(b ^ 0x5A for b in data[:16]) + data[16:]
            etag = f'"{hashlib.sha1(fake.files[sha1]).hexdigest()}"'
            start = 0
            ranged = self.headers.get("Range")
            if ranged and self.headers.get("If-Range", etag) == etag:
                start = int(ranged.split("=", 1)[1].split("-", 1)[0])
            part = data[start:]
            headers = {"ETag": etag, "Accept-Ranges": "bytes"}
            status = 200
            if start:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(part)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            with fake.lock:
                drop = fake.drop_after is not None and sha1 not in fake.dropped and not start
                if drop:
                    fake.dropped.add(sha1)
            if drop:
                assert fake.drop_after is not None
                self.wfile.write(part[:fake.drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(part)

    return Handler


def document_path(update_id: str) -> Path:
    from catalogkit import docs_dir

    return next(docs_dir().glob(f"{update_id}-r*.xml"))
