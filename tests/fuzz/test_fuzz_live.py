"""Hypothesis-generated requests to a running ``devupdate serve``: the update check and the log
upload always answer with the device protocol's XML — ``Response``/``LogUpload`` or an
``Error`` with a code and a message — never a 5xx, never another body; what an accepted upload
stored is exactly what was sent; every check got its audit row; a download answers only the
file's own path, with exactly its bytes; the server logged no traceback.
"""

from __future__ import annotations

import base64
import http.client
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from fuzzkit import (
    EXAMPLES,
    FUZZ,
    check_documents,
    dates,
    etags,
    macs,
    mixed_text,
    mutate,
    nasty_text,
    range_header,
    serials,
    valid_phones,
)
from hypothesis import event, given, note
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "devices"))
from fleet import CX600, V0, V1, audit_rows, import_release, phonesim, server_env  # noqa: E402

pytestmark = pytest.mark.timeout(max(900, EXAMPLES))  # long runs: up to 1 s per example

CHECK_PATHS = ["/RequestHandler/ucdevice.upx", "/requesthandler/UCDEVICE.UPX", "/RequestHandlerExt/ucdevice.upx"]
UPLOAD_PATHS = ["/RequestHandler/Files", "/requesthandler/files/", "/RequestHandlerExt/Files"]
CONTENT_TYPES = [None, "text/xml; charset=utf-8", "application/xml", "text/plain", "application/octet-stream",
                 "text/xml; charset=utf-16", "multipart/form-data", "text/xml; charset=\x7f"]
query_bytes = st.one_of(st.text(max_size=30).map(lambda t: quote(t, safe="")),
                        st.binary(max_size=20).map(lambda b: quote(b, safe="")),
                        st.sampled_from(["%", "%zz", "%ff%fe", "a=b=c", "&&", "%00", "+"]))
forwarded = st.one_of(st.none(), st.sampled_from(["10.1.2.3", "1.2.3.4, 10.0.0.1", "::1", "garbage", "", " , ,",
                                                  "300.1.1.1", "[::1]:80", "unknown"]), mixed_text.map(
    lambda t: t.encode("utf-8", "replace").decode("latin-1")))
authorization = st.one_of(st.none(), st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
                          st.sampled_from(["Basic", "Basic !!!", "Bearer x", "Basic " + "A" * 5000]))


#: What an answer may quote but XML cannot carry, mixed with harmless characters.
unxml_text = st.text(st.sampled_from("\ufffe\uffff\x7f\x85ab."), min_size=1, max_size=8)


def header_safe(value: str) -> str:
    """What http.client may put in a header (it refuses CR, LF and NUL)."""
    return "".join(c for c in value if c not in "\r\n\x00")[:2000]


@st.composite
def check_requests(draw) -> tuple[str, str, bytes | None, dict[str, str]]:
    path = draw(st.sampled_from(CHECK_PATHS))
    headers: dict[str, str] = {}
    for name, strategy in (("X-Forwarded-For", forwarded), ("Authorization", authorization)):
        value = draw(strategy) if path.startswith("/RequestHandlerExt") or name != "Authorization" else None
        if value is not None:
            headers[name] = header_safe(value)
    if draw(st.sampled_from([False, False, True])):  # the GET form
        if draw(st.booleans()):  # a valid phone's query, with one parameter added or replaced
            query = phonesim.Phone(**draw(valid_phones())).query()
            name = draw(st.sampled_from(["Module", "Module", "Model", "UserID", "Locale", "MACAddress"]))
            pair = st.builds(lambda a, b: f"{a};{b}", st.one_of(unxml_text, nasty_text),
                             st.one_of(unxml_text, nasty_text))
            value = draw(draw(st.sampled_from([pair, unxml_text, nasty_text])))
            hostile = f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
            query = hostile + "&" + query if name != "Module" else query + "&" + hostile
        else:
            names = st.sampled_from(["DeviceType", "MACAddress", "macaddress", "SerialNumber", "Vendor", "Model",
                                     "Revision", "Locale", "UserID", "Module", "x", ""])
            query = "&".join(f"{draw(names)}={draw(query_bytes)}" for _ in range(draw(st.integers(0, 10))))
        return "GET", f"{path}?{query}" if query else path, None, headers
    body = draw(st.one_of(check_documents(), st.binary(max_size=500),
                          valid_phones().map(lambda spec: phonesim.Phone(**spec).request_xml()),
                          st.integers(65530, 65540).map(lambda n: b"<Request>" + b" " * (n - 19) + b"</Request>")))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    return "POST", path, body, headers


@st.composite
def upload_requests(draw) -> tuple[str, str, bytes, dict[str, str], bytes | None]:
    """(method, target, body, headers, the file bytes a 201 must have stored — None if unknown)."""
    path = draw(st.sampled_from(UPLOAD_PATHS))
    params = []
    for name, strategy in (("type", st.one_of(st.sampled_from(["Watson", "watson", "DiagLog", "Bogus"]), mixed_text)),
                           ("mac", macs), ("serial", serials),
                           ("name", st.one_of(st.sampled_from(["crash.dmp", "../../x.txt", "C:\\a.txt", "a.exe",
                                                               ".txt", "log.clg2"]), nasty_text))):
        if draw(st.sampled_from([True, True, True, False])):
            key = draw(st.sampled_from([name, name.upper(), {"type": "LogType", "mac": "MACAddress",
                                                            "serial": "SerialNumber", "name": "FileName"}[name]]))
            params.append(f"{key}={quote(draw(strategy), safe='')}")
    target = path + ("?" + "&".join(params) if params else "")
    headers: dict[str, str] = {}
    value = draw(forwarded)
    if value is not None:
        headers["X-Forwarded-For"] = header_safe(value)
    content = draw(st.binary(max_size=3000))
    expected: bytes | None = content
    if draw(st.booleans()):  # multipart/form-data, well formed or not
        boundary = draw(st.sampled_from(["b0undary", "x" * 70, "-", "a b"]))
        filename = draw(st.one_of(st.sampled_from(["crash.dmp", "", "../x.txt"]), nasty_text)).replace('"', "")
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode("utf-8", "replace") + content]
        if draw(st.booleans()):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello'.encode())
        body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
        if draw(st.sampled_from([False, False, True])):
            body = mutate(draw, body)
            expected = None
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    else:
        body = content
        content_type = draw(st.sampled_from(CONTENT_TYPES[:6]))
        if content_type:
            headers["Content-Type"] = content_type
    return draw(st.sampled_from(["POST", "PUT"])), target, body, headers, expected


class Http:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, method: str, target: str, body: bytes | None, headers: dict[str, str]):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, target, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")


def device_answer(status: int, headers: dict[str, str], body: bytes, ok: int, ok_root: str) -> ET.Element:
    """The answer is the device protocol's XML: ``ok_root`` with status ``ok``, else an Error."""
    assert status < 500, (status, body[:300])
    assert headers.get("content-type") == "text/xml; charset=utf-8", (status, headers, body[:200])
    root = ET.fromstring(body)  # well-formed XML, whatever was sent
    if status == ok:
        assert root.tag == ok_root, body[:300]
    else:
        assert root.tag == "Error" and root.findtext("Code") and root.findtext("Message"), body[:300]
        event(f"{status} {root.findtext('Code')}")
    return root


@st.composite
def download_requests(draw, release) -> tuple[str, str, dict[str, str]]:
    """A file's own path, or one bent: letter case, a segment replaced or inserted (traversal,
    encoded separators, anything), a doubled slash; with Range and conditional headers."""
    real = draw(st.sampled_from([row["Url"].split("/", 3)[3] for row in release.expected("Int")]))
    segments = real.split("/")
    edit = draw(st.sampled_from(["none", "case", "replace", "insert", "double-slash", "ext-side"]))
    if edit == "case":
        segments = [draw(st.sampled_from([seg, seg.lower(), seg.upper()])) for seg in segments]
    elif edit in ("replace", "insert"):
        hostile = st.one_of(st.sampled_from(["..", ".", "", "%2e%2e", "%2F", "%5c", "%00", "a%2Fb", "%ff", "~"]),
                            nasty_text.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")))
        at = draw(st.integers(1, len(segments) - 1))
        segments[at:at + (edit == "replace")] = [draw(hostile)]
    elif edit == "double-slash":
        at = draw(st.integers(1, len(segments) - 1))
        segments.insert(at, "")
    elif edit == "ext-side":
        segments[0] = "DeviceUpdateFiles_Ext"
    headers: dict[str, str] = {}
    for name, strategy in (("Range", range_header), ("If-Range", st.one_of(dates, etags)),
                           ("If-None-Match", etags), ("If-Modified-Since", dates), ("If-Match", etags),
                           ("If-Unmodified-Since", dates)):
        if draw(st.sampled_from([False, False, False, True] if name != "Range" else [False, True])):
            headers[name] = header_safe(draw(strategy).encode("utf-8", "replace").decode("latin-1"))
    return draw(st.sampled_from(["GET", "GET", "HEAD"])), "/" + "/".join(segments), headers


@pytest.fixture
def release(install, tmp_path):
    install.cli("db", "upgrade")
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    return release


@pytest.fixture
def server(release, live_server):
    return live_server(workers=2, **server_env())


def test_generated_checks_get_xml_answers_and_audit_rows(install, server):
    client = Http(server.port)
    sent = []

    @FUZZ
    @given(check_requests())
    def check(request):
        method, target, body, headers = request
        note(f"{method} {target} {headers} {body[:500] if body else b''!r}")
        status, answer_headers, data = client.send(method, target, body, headers)
        sent.append(status)
        root = device_answer(status, answer_headers, data, 200, "Response")
        assert answer_headers.get("cache-control") == "no-store"
        if status == 200:
            files = root.findall("Files/File")
            assert root.findtext("NumOfFiles") == str(len(files)) and len(files) in (0, 2)
            event(f"200 with {len(files)} files")

    check()
    # a phone the generator never sends, to be sure the answers above were not all refusals
    phone = phonesim.Phone(mac="00-04-F2-00-00-01", serial="", device_type=CX600[0], vendor=CX600[1],
                           model=CX600[2], revision=CX600[3], locale=CX600[4], modules={"CPE.nbt": V0})
    status, headers, data = client.send("POST", CHECK_PATHS[0], phone.request_xml(), {})
    assert len(device_answer(status, headers, data, 200, "Response").findall("Files/File")) == 2
    sent.append(status)
    assert server.stop() == 0
    output = server.output()
    assert "Traceback" not in output and "Internal Server Error" not in output, output[-3000:]
    assert len(audit_rows(install)) == len(sent)  # every check, answered or refused, has its row


def test_generated_log_uploads_get_xml_answers_and_store_what_was_sent(install, server):
    client = Http(server.port)
    store = install.home / "filestore" / "logs" / "client"

    @FUZZ
    @given(upload_requests())
    def upload(request):
        method, target, body, headers, expected = request
        note(f"{method} {target} {headers} {body[:500]!r}")
        status, answer_headers, data = client.send(method, target, body, headers)
        root = device_answer(status, answer_headers, data, 201, "LogUpload")
        if status == 201:
            stored = store / root.findtext("Path").removeprefix("Logs/Client/")
            assert stored.is_file() and stored.stat().st_size == int(root.findtext("Size"))
            if expected is not None:
                assert stored.read_bytes() == expected
            event("201 stored")

    upload()
    assert server.stop() == 0
    output = server.output()
    assert "Traceback" not in output and "Internal Server Error" not in output, output[-3000:]


def test_generated_downloads_answer_only_the_files_own_path_with_its_bytes(install, server, release):
    client = Http(server.port)
    files = {f"/DeviceUpdateFiles_Int/{'/'.join((*release.family, release.version))}/{name}".lower(): data
             for name, data in release.files.items()}

    @FUZZ
    @given(download_requests(release))
    def download(request):
        method, target, headers = request
        note(f"{method} {target} {headers}")
        status, answer_headers, data = client.send(method, target, None, headers)
        assert status < 500, (status, data[:300])
        if status in (200, 206, 304, 412):
            assert unquote(target).lower() in files, f"{target} answered {status}"
            whole = files[unquote(target).lower()]
            event(f"{status}")
            if method == "HEAD" or status in (304, 412):
                assert data == b""
            elif status == 200:
                assert data == whole
            elif answer_headers["content-type"] == "application/octet-stream":
                first, last = map(int, answer_headers["content-range"].split(" ")[1].split("/")[0].split("-"))
                assert data == whole[first:last + 1]
            else:
                assert answer_headers["content-type"].startswith("multipart/byteranges; boundary=")
            return
        if method == "HEAD":  # the refusal's headers, without its body
            assert answer_headers.get("content-type") == "text/xml; charset=utf-8" and data == b""
            event(f"HEAD {status}")
            return
        device_answer(status, answer_headers, data, -1, "")

    download()
    path, data = next(iter(files.items()))  # and the plain request the property bends is answered
    status, _, body = client.send("GET", path, None, {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert server.stop() == 0
    output = server.output()
    assert "Traceback" not in output and "Internal Server Error" not in output, output[-3000:]
