"""Device log upload over real HTTP with the real curl (device-protocol.md §6)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest

MAX = 4096


class Uploader:
    def __init__(self, base: str, scratch: Path):
        self.curl = shutil.which("curl") or pytest.skip("curl is not installed")
        self.base = base
        self.scratch = scratch
        self.count = 0

    def __call__(self, params: dict[str, str] | None, data: bytes | None = None, *, side: str = "",
                 chunked: bool = False, form: list[tuple[str, bytes, str | None]] | None = None,
                 method: str = "POST", user: str | None = None) -> tuple[int, str]:
        """Upload with curl; ``form`` is [(field, bytes, filename or None)] for multipart."""
        self.count += 1
        url = f"{self.base}/RequestHandler{side}/Files" + (f"?{urlencode(params)}" if params else "")
        args = [self.curl, "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method]
        if user:
            args += ["-u", user]
        if form is not None:
            for index, (field, content, filename) in enumerate(form):
                if filename is None:  # a plain form field
                    args += ["--form-string", f"{field}={content.decode()}"]
                    continue
                part = self.scratch / f"part-{self.count}-{index}"
                part.write_bytes(content)
                args += ["-F", f"{field}=@{part};filename={filename}"]
        elif data is not None:
            body = self.scratch / f"body-{self.count}"
            body.write_bytes(data)
            args += ["--data-binary", f"@{body}", "-H", "Content-Type: application/octet-stream"]
            if chunked:
                args += ["-H", "Transfer-Encoding: chunked"]
        proc = subprocess.run([*args, url], capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        text, _, status = proc.stdout.decode().rpartition("\n")
        return int(status), text


def error(code: str, message: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>\n'


def created(log_type: str, device: str, name: str, size: int) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f"<LogUpload><Type>{log_type}</Type><DeviceId>{device}</DeviceId><FileName>{name}</FileName>"
            f"<Path>Logs/Client/{log_type}/{device}/{name}</Path><Size>{size}</Size></LogUpload>\n")


def stored_files(home: Path) -> dict[str, bytes]:
    """Everything in the log area (temp files included, so leftovers would show)."""
    area = home / "filestore" / "logs" / "client"
    return {str(p.relative_to(area)): p.read_bytes() for p in sorted(area.rglob("*")) if p.is_file()}


MAC = "00-04-F2-AA-BB-CC"
DEV = "0004F2AABBCC"


@pytest.fixture
def uploads(install, live_server, tmp_path):
    install.cli("db", "upgrade")
    install.cli("config", "set", "MaxLogFileSize", str(MAX))
    install.cli("users", "add", "phone1", "--password-stdin", input="correct horse battery\n")
    server = live_server(workers=2)
    return Uploader(server.url, tmp_path)


def test_raw_and_multipart_uploads_are_stored_exactly_and_never_overwritten(install, uploads):
    crash = os.urandom(3000)
    status, body = uploads({"type": "Watson", "mac": MAC, "name": "crash.dmp"}, crash)
    assert (status, body) == (201, created("Watson", DEV, "crash.dmp", 3000))
    other = os.urandom(1000)
    status, body = uploads({"type": "Watson", "mac": MAC.lower().replace("-", ":"), "name": "crash.dmp"}, other)
    assert (status, body) == (201, created("Watson", DEV, "crash_1.dmp", 1000))
    status, body = uploads({"TYPE": "watson", "MAC": "0004.f2aa.bbcc", "Name": "crash.dmp"}, b"third",
                           method="PUT")
    assert (status, body) == (201, created("Watson", DEV, "crash_2.dmp", 5))

    # serial-only devices; chunked bodies; exactly MaxLogFileSize is fine
    limit = os.urandom(MAX)
    status, body = uploads({"type": "DiagLog", "serial": "cx600-0042", "name": "diag.clg2"}, limit, chunked=True)
    assert (status, body) == (201, created("DiagLog", "SN-CX600-0042", "diag.clg2", MAX))

    # multipart/form-data: the file part's name is used unless ?name= is given; other fields ignored
    cfg = b"<config>\r\n--not-a-boundary\r\n</config>"
    status, body = uploads({"type": "Config", "mac": MAC}, form=[("note", b"hello", None),
                                                                 ("file", cfg, "phone.xml")])
    assert (status, body) == (201, created("Config", DEV, "phone.xml", len(cfg)))
    status, body = uploads({"type": "Config", "mac": MAC, "name": "named.xml"}, form=[("upload", cfg, "x.bin")])
    assert (status, body) == (201, created("Config", DEV, "named.xml", len(cfg)))

    # names are reduced to a safe base name inside the area
    for raw, safe in (("../../x.txt", "x.txt"), ("C:\\x.txt", "x_1.txt"), ("x/..\\y.txt", "y.txt"),
                      ("/etc/passwd.txt", "passwd.txt"), (".hidden.txt", "hidden.txt"),
                      ("a b;c$(id).txt", "a_b_c_id_.txt")):
        status, body = uploads({"type": "CELog", "mac": MAC, "name": raw}, b"log")
        assert (status, body) == (201, created("CELog", DEV, safe, 3)), raw
    status, body = uploads({"type": "CELog", "mac": MAC}, form=[("file", b"abc", "..\\..\\evil.txt")])
    assert (status, body) == (201, created("CELog", DEV, "evil.txt", 3))

    # external side: credentials required
    status, body = uploads({"type": "Watson", "mac": MAC, "name": "ext.dmp"}, b"e", side="Ext")
    assert status == 401 and "<Code>AuthenticationRequired</Code>" in body
    status, body = uploads({"type": "Watson", "mac": MAC, "name": "ext.dmp"}, b"e", side="Ext",
                           user="phone1:wrong")
    assert status == 401
    status, body = uploads({"type": "Watson", "mac": MAC, "name": "ext.dmp"}, b"e", side="Ext",
                           user="phone1:correct horse battery")
    assert (status, body) == (201, created("Watson", DEV, "ext.dmp", 1))

    assert stored_files(install.home) == {
        f"CELog/{DEV}/a_b_c_id_.txt": b"log", f"CELog/{DEV}/evil.txt": b"abc", f"CELog/{DEV}/hidden.txt": b"log",
        f"CELog/{DEV}/passwd.txt": b"log", f"CELog/{DEV}/x.txt": b"log", f"CELog/{DEV}/x_1.txt": b"log",
        f"CELog/{DEV}/y.txt": b"log",
        f"Config/{DEV}/named.xml": cfg, f"Config/{DEV}/phone.xml": cfg,
        "DiagLog/SN-CX600-0042/diag.clg2": limit,
        f"Watson/{DEV}/crash.dmp": crash, f"Watson/{DEV}/crash_1.dmp": other, f"Watson/{DEV}/crash_2.dmp": b"third",
        f"Watson/{DEV}/ext.dmp": b"e",
    }
    # nothing escaped the area
    names = {"x.txt", "x_1.txt", "y.txt", "passwd.txt", "evil.txt", "hidden.txt", ".hidden.txt"}
    outside = [p for p in install.home.parent.rglob("*") if p.name in names and "logs/client/CELog/" not in
               p.as_posix()]
    assert outside == []


def test_every_refusal_is_a_clear_4xx_and_leaves_nothing(install, uploads):
    types = "Watson, Config, DiagLog, CELog"
    exts = ".dmp .clg .clg2 .bak .kdmp .dat .bin .cat .xml .txt .hex"
    cases = [
        ({"type": "Bogus", "mac": MAC, "name": "a.dmp"}, b"x", 400,
         error("BadLogType", f"log type 'Bogus' is not accepted; valid types: {types}")),
        ({"mac": MAC, "name": "a.dmp"}, b"x", 400, error("MissingLogType", f"type is required; one of {types}")),
        ({"type": "Watson", "mac": MAC, "name": "a.exe"}, b"x", 400,
         error("BadExtension", f"file extension '.exe' is not accepted; valid extensions: {exts}")),
        ({"type": "Watson", "mac": MAC, "name": "dmp"}, b"x", 400,
         error("BadExtension", f"file extension 'none' is not accepted; valid extensions: {exts}")),
        ({"type": "Watson", "mac": MAC, "name": "a.txt.exe"}, b"x", 400,
         error("BadExtension", f"file extension '.exe' is not accepted; valid extensions: {exts}")),
        ({"type": "Watson", "name": "a.dmp"}, b"x", 400,
         error("MissingIdentity", "mac or serial is required to know which device the log belongs to")),
        ({"type": "Watson", "mac": "00-04-F2-AA-BB", "name": "a.dmp"}, b"x", 400,
         error("BadMacAddress", "mac must be 12 hex digits (separators - : . allowed)")),
        ({"type": "Watson", "serial": "../../etc", "name": "a.dmp"}, b"x", 400,
         error("BadSerialNumber", "serial may contain letters, digits, '-' and '_' only (at most 64)")),
        ({"type": "Watson", "mac": MAC}, b"x", 400,
         error("MissingFileName", "the file name is required: ?name=&lt;file&gt;.&lt;ext&gt;")),
        ({"type": "Watson", "mac": MAC, "name": ".."}, b"x", 400,
         error("BadFileName", "file name '..' has no usable characters; send name=&lt;file&gt;.&lt;ext&gt;")),
        ({"type": "Watson", "mac": MAC, "name": "a.dmp"}, b"", 400,
         error("EmptyBody", "the body is empty; send the log file as the request body")),
        ({"type": "Watson", "mac": MAC, "name": "big.dmp"}, os.urandom(MAX + 1), 413,
         error("TooLarge", f"the log is {MAX + 1} bytes; MaxLogFileSize is {MAX} bytes")),
    ]
    for params, data, status, expected in cases:
        assert uploads(params, data) == (status, expected), params

    # oversize without Content-Length (chunked): stopped while streaming
    for size in (MAX + 1, 10 * MAX, 300_000):
        assert uploads({"type": "Watson", "mac": MAC, "name": "big.dmp"}, os.urandom(size), chunked=True) == (
            413, error("TooLarge", f"the log is larger than MaxLogFileSize ({MAX} bytes)"))
    # multipart: oversize file part, two file parts, no file part, empty file part
    status, body = uploads({"type": "Watson", "mac": MAC}, form=[("file", os.urandom(MAX + 1), "big.dmp")])
    assert (status, body) == (413, error("TooLarge", f"the log is larger than MaxLogFileSize ({MAX} bytes)"))
    status, body = uploads({"type": "Watson", "mac": MAC}, form=[("a", b"one", "a.dmp"), ("b", b"two", "b.dmp")])
    assert (status, body) == (400, error("BadMultipart", "send exactly one file part per upload"))
    status, body = uploads({"type": "Watson", "mac": MAC}, form=[("note", b"just a field", None)])
    assert (status, body) == (400, error("BadMultipart", "the multipart/form-data body has no file part"))
    status, body = uploads({"type": "Watson", "mac": MAC}, form=[("file", b"", "empty.dmp")])
    assert (status, body) == (400, error("EmptyBody", "the file part is empty"))
    status, body = uploads({"type": "Watson", "mac": MAC}, form=[("file", b"x", "evil.exe")])
    assert status == 400 and "<Code>BadExtension</Code>" in body

    # broken framing, sent raw: a bad chunk size, a body shorter than its Content-Length, a cut chunked body
    port = int(uploads.base.rsplit(":", 1)[1])
    target = b"/RequestHandler/Files?type=Watson&mac=0004f2aabbcc&name=raw.txt"
    for head, body, code in ((b"Transfer-Encoding: chunked", b"5\r\nhello\r\nZZ\r\nbad\r\n0\r\n\r\n", "BadChunkedBody"),
                             (b"Content-Length: 100", b"only-some", "IncompleteBody"),
                             (b"Transfer-Encoding: chunked", b"5\r\nhello\r\n", "IncompleteBody")):
        status, text = raw_post(port, target, head, body)
        assert status == 400 and f"<Code>{code}</Code>" in text, (head, body, text)

    assert stored_files(install.home) == {}

    # paths are case-insensitive, as on the original IIS service
    status, text = raw_post(port, target.replace(b"RequestHandler/Files", b"requesthandler/FILES"),
                            b"Content-Length: 2", b"ok")
    assert (status, text) == (201, created("Watson", DEV, "raw.txt", 2))


def raw_post(port: int, target: bytes, header: bytes, body: bytes) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header +
                     b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, text = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), text.decode()


def test_full_log_quota_is_507_and_nothing_partial_is_left(install, live_server, tmp_path):
    install.cli("db", "upgrade")
    server = live_server(workers=2, DEVUPDATE_QUOTA_LOGS_CLIENT="10000")
    upload = Uploader(server.url, tmp_path)
    first = os.urandom(6000)
    assert upload({"type": "Watson", "mac": MAC, "name": "a.dmp"}, first)[0] == 201
    full = error("QuotaExceeded", "the device log area is full; try again after the logs are cleaned up")
    # size known in advance: refused before writing; chunked: stopped as it passes the quota
    assert upload({"type": "Watson", "mac": MAC, "name": "b.dmp"}, os.urandom(6000)) == (507, full)
    assert upload({"type": "Watson", "mac": MAC, "name": "b.dmp"}, os.urandom(6000), chunked=True) == (507, full)
    assert upload({"type": "Watson", "mac": MAC}, form=[("file", os.urandom(6000), "b.dmp")]) == (507, full)
    assert upload({"type": "Watson", "mac": MAC, "name": "c.dmp"}, b"z" * 3000, chunked=True)[0] == 201
    assert stored_files(install.home) == {f"Watson/{DEV}/a.dmp": first, f"Watson/{DEV}/c.dmp": b"z" * 3000}
    usage = {row["Area"]: row for row in json.loads(install.cli("filestore", "usage", "--json").stdout)}
    assert (usage["logs/client"]["UsedBytes"], usage["logs/client"]["Objects"]) == (9000, 2)
