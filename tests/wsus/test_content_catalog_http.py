"""WSUS ``/Content`` for catalog files over real HTTP (``devupdate serve``), driven with the real
curl: a present catalog file by SHA-1 under its FileName's extension with every case of
spec/wsus.md §2.4, and the four captured Delivery Optimization requests replayed unchanged against
files of the recorded sizes."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import random
import socket
import urllib.request
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import pytest
from catalogkit import NATIVE, NS
from helpers.curl import Curl, parse_byteranges
from prometheus_client.parser import text_string_to_metric_families

HEADERS = NATIVE / "content-headers"
UPDATE = "11111111-2222-4333-8444-555555555555"


def document(files: list[tuple[str, bytes | tuple[str, str, int]]]) -> str:
    items = ""
    for name, data in files:
        sha1, sha256, size = data if isinstance(data, tuple) else (
            hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))
        items += (f'<upd:File Digest="{base64.b64encode(bytes.fromhex(sha1)).decode()}" DigestAlgorithm="SHA1" '
                  f'FileName="{name}" Size="{size}"><upd:AdditionalDigest Algorithm="SHA256">'
                  f'{base64.b64encode(bytes.fromhex(sha256)).decode()}</upd:AdditionalDigest></upd:File>')
    return (f'<upd:Update {NS}><upd:UpdateIdentity UpdateID="{UPDATE}" RevisionNumber="100" />'
            f'<upd:Properties UpdateType="Software" DefaultPropertiesLanguage="en" PublicationState="Published" />'
            f'<upd:LocalizedPropertiesCollection><upd:LocalizedProperties><upd:Language>en</upd:Language>'
            f'<upd:Title>Content</upd:Title></upd:LocalizedProperties></upd:LocalizedPropertiesCollection>'
            f'<upd:Files>{items}</upd:Files></upd:Update>')


def add_content(install, tmp_path: Path, files: dict[str, Path | bytes]) -> None:
    """Import a document naming ``files``, then store their bytes and mark them present."""
    digests = {}
    for name, source in files.items():
        sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
        stream = open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)
        with stream:
            for block in iter(lambda s=stream: s.read(1 << 20), b""):
                sha1.update(block), sha256.update(block)
                size += len(block)
        digests[name] = (sha1.hexdigest(), sha256.hexdigest(), size)
    doc = tmp_path / "update.xml"
    doc.write_text(document(list(digests.items())))
    install.cli("db", "upgrade")
    install.cli("wsus", "import", str(doc))
    from devupdate.content.areas import IMAGES
    from devupdate.content.models import StoredObject
    from devupdate.wsus.catalog.models import CatalogFile

    runtime = install.runtime()
    for name, source in files.items():
        sha1, sha256, size = digests[name]
        stream = open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)
        with stream:
            runtime.store.put(IMAGES, stream, size=size)
        StoredObject.get_or_create(sha256=sha256, defaults={"sha1": sha1, "size": size})
        CatalogFile.update(present=True).where(CatalogFile.sha1 == sha1).execute()


def url_of(server, sha1: str, ext: str) -> str:
    return f"{server.url}/Content/{sha1[-2:].upper()}/{sha1.upper()}.{ext}"


@pytest.fixture
def served(install, live_server, tmp_path):
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4
    add_content(install, tmp_path, {"windows-kb1-x64.cab": data})
    server = live_server(workers=2)
    return server, data, hashlib.sha1(data).hexdigest(), Curl(tmp_path)


def test_full_head_and_validators(served):
    server, data, sha1, curl = served
    url = url_of(server, sha1, "cab")
    status, headers, body, _ = curl(url)
    assert status == 200 and body == data
    assert headers["content-length"] == str(len(data))
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"] == f'"{sha1}"'
    assert headers["content-type"] == "application/octet-stream"
    assert headers["cache-control"] == "public, max-age=86400"
    assert "last-modified" in headers and "content-encoding" not in headers
    status, head, body, _ = curl("-I", url)
    assert status == 200 and {k: v for k, v in head.items() if k != "date"} == \
        {k: v for k, v in headers.items() if k != "date"}
    status, _, body, _ = curl("-H", "Accept-Encoding: gzip, xpress", url)
    assert status == 200 and body == data
    # any case: lower-case digest and folder, upper-case extension, the path prefix too (IIS matches so)
    for path in (f"/Content/{sha1[-2:]}/{sha1}.CAB", f"/content/{sha1[-2:]}/{sha1}.cab",
                 f"/CONTENT/{sha1[-2:].upper()}/{sha1.upper()}.Cab"):
        status, _, body, _ = curl(server.url + path)
        assert status == 200 and body == data, path
    status, _, body, _ = curl("-H", f'If-None-Match: "{sha1}"', url)
    assert status == 304 and body == b""
    status, _, body, _ = curl("-H", 'If-None-Match: "other"', url)
    assert status == 200 and body == data


def test_refusals(served):
    server, data, sha1, curl = served
    other = "0" * 38 + "ab"
    for path in (f"/Content/{other[-2:]}/{other}.cab", f"/Content/00/{sha1}.cab",
                 f"/Content/{sha1[-2:]}/{sha1}.exe", f"/Content/{sha1[-2:]}/{sha1}",
                 f"/Content/{sha1[-2:]}/{sha1}.", f"/Content/{sha1[-2:]}/{sha1[:-1]}.cab",
                 f"/Content/{sha1}.cab", f"/Content/{sha1[-2:]}/{sha1}.cab/", f"/Content/{sha1[-2:]}/",
                 "/Content", "/Content/",
                 "/SelfUpdate/wuident.cab", "/SelfUpdate"):
        status, headers, body, _ = curl(server.url + path)
        assert status == 404, path
        assert headers["content-type"] == "text/plain; charset=utf-8" and body.startswith(b"404 Not Found")


def test_ranges(served):
    server, data, sha1, curl = served
    url, size = url_of(server, sha1, "cab"), len(data)
    for spec, (first, last) in {"0-99": (0, 99), "1000-": (1000, size - 1), "-10": (size - 10, size - 1),
                                "5-99999999": (5, size - 1)}.items():
        status, headers, body, _ = curl("-r", spec, url)
        assert status == 206, spec
        assert headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert headers["content-length"] == str(last - first + 1) and body == data[first:last + 1]
        assert headers["etag"] == f'"{sha1}"'
    status, headers, body, _ = curl("-r", "0-9,100-109", url)
    assert status == 206
    parts = parse_byteranges(body, headers["content-type"])
    assert [(p[0]["Content-Range"], p[1]) for p in parts] == [
        (f"bytes 0-9/{size}", data[0:10]), (f"bytes 100-109/{size}", data[100:110])]
    assert headers["content-length"] == str(len(body))
    for ignored in ("bytes=abc", "bytes=9-3", "items=0-9", "bytes=0-9,x"):
        status, headers, body, _ = curl("-H", f"Range: {ignored}", url)
        assert status == 200 and body == data and "content-range" not in headers, ignored
    status, headers, body, _ = curl("-H", f"Range: bytes={size}-", url)
    assert status == 416 and headers["content-range"] == f"bytes */{size}"
    status, _, body, _ = curl("-r", "0-9", "-H", 'If-Range: "other"', url)
    assert status == 200 and body == data
    status, _, body, _ = curl("-r", "0-9", "-H", f'If-Range: "{sha1}"', url)
    assert status == 206 and body == data[:10]


def _captured(name: str) -> tuple[dict[str, str], str, dict[str, str]]:
    request = (HEADERS / name / "request.headers").read_text().splitlines()
    response = (HEADERS / name / "response.headers").read_text().splitlines()
    req = dict(line.split(": ", 1) for line in request[1:] if line)
    resp = dict(line.split(": ", 1) for line in response[1:] if line)
    return req, response[0], resp


def test_captured_delivery_optimization_requests(install, live_server, tmp_path):
    if not HEADERS.is_dir():
        pytest.skip(f"captured content headers not found at {HEADERS}")
    sizes = {}
    files: dict[str, Path | bytes] = {}
    for name in ("whole-file-single-range", "final-range"):
        _, _, resp = _captured(name)
        size = int(resp["Content-Range"].rsplit("/", 1)[1])
        path = tmp_path / f"{name}.exe"
        with open(path, "wb") as out:
            if name == "whole-file-single-range":  # 918,944 bytes: distinct content, compared exactly
                out.write(random.Random(11).randbytes(size))
            else:
                out.truncate(size)  # zeros of the recorded size (195 MiB, sparse)
        sizes[name], files[f"{name}.exe"] = size, path
    add_content(install, tmp_path, files)
    server = live_server(workers=2)
    sha_of = {name: hashlib.sha1(open(files[f"{name}.exe"], "rb").read()).hexdigest() for name in sizes}
    for name in ("whole-file-single-range", "first-range-by-offset", "middle-range", "final-range"):
        req, status_line, resp = _captured(name)
        sha1 = sha_of["whole-file-single-range" if name == "whole-file-single-range" else "final-range"]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("GET", f"/Content/{sha1[-2:].upper()}/{sha1.upper()}.exe", headers=req)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == int(status_line.split()[1]) == 206, name  # reason phrase: any case
        assert response.getheader("Content-Range") == resp["Content-Range"], name
        assert response.getheader("Content-Length") == resp["Content-Length"] == str(len(body)), name
        first, last = map(int, resp["Content-Range"].split()[1].split("/")[0].split("-"))
        with open(files["whole-file-single-range.exe" if name == "whole-file-single-range" else "final-range.exe"],
                  "rb") as stored:
            stored.seek(first)
            assert body == stored.read(last - first + 1), name


def test_if_range_with_a_date(served):
    server, data, sha1, curl = served
    url = url_of(server, sha1, "cab")
    modified = curl("-I", url)[1]["last-modified"]
    status, headers, body, _ = curl("-r", "0-9", "-H", f"If-Range: {modified}", url)
    assert (status, headers["content-range"], body) == (206, f"bytes 0-9/{len(data)}", data[:10])
    stamp = parsedate_to_datetime(modified).timestamp()
    for other in (stamp - 1, stamp + 1, stamp - 86400):  # an If-Range date matches exactly or not at all
        status, headers, body, _ = curl("-r", "0-9", "-H", f"If-Range: {formatdate(other, usegmt=True)}", url)
        assert (status, body) == (200, data) and "content-range" not in headers, other
    status, _, body, _ = curl("-r", "0-9", "-H", "If-Range: not a date", url)
    assert (status, body) == (200, data)


def test_if_match_and_if_none_match_star(served):
    server, data, sha1, curl = served
    url = url_of(server, sha1, "cab")
    for value in (f'"{sha1}"', f'"other", "{sha1}"', "*"):
        status, _, body, _ = curl("-H", f"If-Match: {value}", url)
        assert (status, body) == (200, data), value
    for value in ('"other"', f'W/"{sha1}"', f'"{sha1.upper()}"'):  # If-Match compares strongly and exactly
        status, headers, body, _ = curl("-H", f"If-Match: {value}", url)
        assert (status, body, headers["etag"]) == (412, b"", f'"{sha1}"'), value
    status, _, body, _ = curl("-r", "0-9", "-H", 'If-Match: "other"', url)
    assert (status, body) == (412, b"")  # the precondition before the range
    status, _, body, _ = curl("-r", "0-9", "-H", f'If-Match: "{sha1}"', url)
    assert (status, body) == (206, data[:10])
    status, headers, body, _ = curl("-H", "If-None-Match: *", url)
    assert (status, body, headers["etag"]) == (304, b"", f'"{sha1}"')
    status, _, body, _ = curl("-H", f'If-None-Match: W/"{sha1}"', url)
    assert (status, body) == (304, b"")  # If-None-Match compares weakly


def test_other_methods_are_405_with_allow(served):
    server, data, sha1, curl = served
    url = url_of(server, sha1, "cab")
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, body, _ = curl("-X", method, "--data-binary", "x", url)
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD" and body.startswith(b"405 Method Not Allowed"), method
    status, headers, _, _ = curl("-X", "DELETE", f"{server.url}/Content/00/{'0' * 40}.cab")
    assert (status, headers["allow"]) == (405, "GET, HEAD")  # whatever the path names
    assert curl(url)[2] == data  # still there


def _raw_request(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_hostile_paths_never_reach_a_file(served, install):
    """Paths are never mapped to files: a stored object is found by its SHA-1 in the database, so no
    spelling of a path reaches a file outside the store. Only the canonical path (in any case, with
    percent-encoded letters and digits, which are the same URL) reaches the stored file; dot
    segments, doubled or encoded separators (which a proxy in front would split differently), NUL
    and overlong names are 404, malformed request lines 400 or 414."""
    server, data, sha1, curl = served
    secret = install.home / "secret.cab"
    secret.write_bytes(b"outside the store")
    xx = sha1[-2:]
    hostile = [
        f"/Content/{xx}/../{xx}/{sha1}.cab", f"/Content/../Content/{xx}/{sha1}.cab", "/Content/../secret.cab",
        "/Content/../../../../etc/passwd", f"/Content/{xx}/%2e%2e/%2E%2E/secret.cab",
        f"/Content/{xx}/%2e%2e%2f%2e%2e%2fsecret.cab", f"/Content/{xx}/..%2F..%2Fsecret.cab",
        f"/Content/{xx}/..%5c..%5Csecret.cab", f"/Content/%2e%2e/{xx}/{sha1}.cab",
        f"/Content/{xx}%2F{sha1}.cab", f"/Content/{xx}%2f{sha1}.cab", f"/Content%2F{xx}/{sha1}.cab",
        f"/Content/{xx}%5C{sha1}.cab", f"/Content/{xx}\\{sha1}.cab", f"/Content/{xx}//{sha1}.cab",
        f"/Content/{xx}/./{sha1}.cab", f"/Content/{xx}/{sha1}.cab/.", f"/Content/{xx}/{sha1}.cab%00.txt",
        f"/Content/{xx}/{sha1}%00.cab", f"/Content/{xx}/{sha1}.cab%00", f"/Content/%C3%A9{xx}/{sha1}.cab",
        f"/Content/{xx}/%{ord(sha1[0]):02X}{sha1[1:]}.cab%ff",
        f"/Content/{xx}/{sha1}.cab{'a' * 2000}", f"/Content/{xx}/{sha1 * 40}.cab",
    ]
    for path in hostile:
        status, headers, body, _ = curl("--path-as-is", server.url + path)
        assert status == 404 and body.startswith(b"404 Not Found"), path
        assert headers["content-type"] == "text/plain; charset=utf-8", path
    same = [f"/Content/{xx}/{sha1}.%63ab", f"/Content/{xx}/{sha1}.%43AB", f"/%43ontent/{xx}/{sha1}.cab",
            f"/Content/%{ord(xx[0]):02x}{xx[1]}/{sha1}.cab", f"/Content/{xx}/%{ord(sha1[0]):02X}{sha1[1:]}.cab",
            f"/Content/{xx}/{sha1}.cab?x=/../secret.cab"]  # the query string is not part of the path
    for path in same:
        status, _, body, _ = curl("--path-as-is", server.url + path)
        assert (status, body) == (200, data), path
    # what no client library sends: a raw NUL, a raw space and a request line of 10,000 bytes
    assert _raw_request(server.port, f"/Content/{xx}/{sha1}.cab\0".encode()).startswith(b"HTTP/1.1 400 ")
    assert _raw_request(server.port, f"/Content/{xx}/{sha1} .cab".encode()).startswith(b"HTTP/1.1 400 ")
    answer = _raw_request(server.port, f"/Content/{xx}/{sha1}.{'a' * 10_000}".encode())
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert data not in answer and b"outside the store" not in answer


def scrape(server) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_content_metrics(served):
    server, data, sha1, curl = served
    url = url_of(server, sha1, "cab")

    def counts() -> tuple[dict[str, float], float]:
        samples = scrape(server)
        by_status = {dict(labels)["status"]: value for (name, labels), value in samples.items()
                     if name == "devupdate_wsus_content_requests_total"}
        return by_status, samples.get(("devupdate_wsus_content_bytes_total", ()), 0.0)

    before, sent = counts()
    assert curl(url)[0] == 200
    assert curl("-r", "0-9", url)[0] == 206
    assert curl("-r", "0-9,100-109", url)[0] == 206
    assert curl("-I", url)[0] == 200
    assert curl("-H", f'If-None-Match: "{sha1}"', url)[0] == 304
    assert curl("-r", f"{len(data)}-", url)[0] == 416
    assert curl(f"{server.url}/Content/00/{sha1}.cab")[0] == 404
    assert curl("-X", "POST", url)[0] == 405
    multipart = int(curl("-r", "0-9,100-109", url)[1]["content-length"])
    after, sent_after = counts()
    delta = {status: after.get(status, 0) - before.get(status, 0) for status in after}
    assert {k: v for k, v in delta.items() if v} == {"200": 2, "206": 3, "304": 1, "416": 1, "404": 1, "405": 1}
    # file bytes: the whole file once (HEAD sends none), one 10-byte range, two multipart answers
    assert sent_after - sent == len(data) + 10 + 2 * multipart
