"""Image downloads over real HTTP (gunicorn via ``devupdate serve``), checked with the real curl:
HEAD, conditionals, single / multi-range, 416, resume of a cut download, external credentials."""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import urllib.error
import urllib.request
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers.cabs import make_image, make_package, make_update
from helpers.curl import Curl, parse_byteranges, require_tool  # noqa: F401 - other tests import them from here

VERSION = "4.0.7577.4372"


def import_image(install, directory: Path, size: int, *, model: str = "CX600") -> tuple[str, bytes]:
    """A real vendor cab through the real ``devupdate import``; returns (download path, image bytes)."""
    update = make_update("Polycom", model, VERSION)
    cab = make_package(directory, [update], image_sizes=size, name=f"{model}.cab")
    install.cli("db", "upgrade")
    install.cli("import", str(cab))
    name = update.files[0].name
    return f"UCPhone/Polycom/{model}/A/ENU/{VERSION}/{name}", make_image(name, size, VERSION)


def cut_download(url: str, keep: int) -> bytes:
    """GET over a raw socket and hang up after ``keep`` body bytes, like a phone losing its link."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        while len(body) < keep:
            body += sock.recv(65536)
    return body[:keep]


@pytest.fixture
def served(install, live_server, tmp_path):
    """One 2 MiB image imported for real, a running server, and curl."""
    path, data = import_image(install, tmp_path, 2 * 1024 * 1024 + 17)
    server = live_server(workers=2)
    return server, f"{server.url}/DeviceUpdateFiles_Int/{path}", data, Curl(tmp_path)


def test_full_download_head_and_validators(served):
    server, url, data, curl = served
    sha = hashlib.sha256(data).hexdigest()

    status, headers, body, _ = curl("-I", url)
    assert status == 200  # (curl -I writes the headers as the body)
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(data))
    assert headers["etag"] == f'"{sha}"'
    assert headers["accept-ranges"] == "bytes"
    modified = parsedate_to_datetime(headers["last-modified"])

    status, headers, body, _ = curl(url)
    assert status == 200 and headers["content-length"] == str(len(data))
    assert hashlib.sha256(body).hexdigest() == sha  # the bytes hash to the advertised SHA-256
    assert body == data

    # paths are matched case-insensitively, prefix included
    status, _, body, _ = curl(url.lower())
    assert status == 200 and body == data

    # If-None-Match: strong, weak, list and * match → 304 without a body; another tag → 200
    for value in (f'"{sha}"', f'W/"{sha}"', f'"abc", "{sha}"', "*"):
        status, headers, body, _ = curl("-H", f"If-None-Match: {value}", url)
        assert (status, body, headers["etag"]) == (304, b"", f'"{sha}"'), value
    status, _, body, _ = curl("-H", 'If-None-Match: "0000"', url)
    assert status == 200 and body == data

    # If-Modified-Since (curl -z): not modified since the import time → 304; an older date → 200
    status, _, body, _ = curl("-z", format_datetime(modified, usegmt=True), url)
    assert (status, body) == (304, b"")
    older = dt.datetime.fromtimestamp(modified.timestamp() - 3600, dt.UTC)
    status, _, body, _ = curl("-z", format_datetime(older, usegmt=True), url)
    assert status == 200 and body == data
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    status, _, _, _ = curl("-H", 'If-None-Match: "0000"', "-z", format_datetime(modified, usegmt=True), url)
    assert status == 200

    # If-Match with another tag → 412; with ours → 200
    status, _, body, _ = curl("-H", 'If-Match: "0000"', url)
    assert (status, body) == (412, b"")
    status, _, _, _ = curl("-H", f'If-Match: "{sha}"', "-I", url)
    assert status == 200

    # unknown files, versions and families → 404
    for bad in (url + "x", url.replace(VERSION, "4.0.7577.9999"), url.replace("CX600", "CX700"),
                url.rsplit("/", 1)[0] + "/", server.url + "/DeviceUpdateFiles_Int/UCPhone"):
        status, _, body, _ = curl(bad)
        assert (status, body) == (404, b'<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>NotFound</Code>'
                                       b"<Message>no such file; the download URL comes from the update check's "
                                       b"answer</Message></Error>\n"), bad


def test_ranges_single_multi_unsatisfiable_and_resume(served, tmp_path):
    server, url, data, curl = served
    size = len(data)

    # single range: exact bytes and Content-Range
    for spec, first, last in (("100-199", 100, 199), ("0-0", 0, 0), (f"{size - 10}-", size - 10, size - 1),
                              ("-500", size - 500, size - 1), (f"2000000-{size * 3}", 2000000, size - 1)):
        status, headers, body, _ = curl("-r", spec, url)
        assert status == 206, spec
        assert headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert headers["content-length"] == str(last - first + 1)
        assert headers["content-type"] == "application/octet-stream"
        assert body == data[first:last + 1]

    # multi-range: multipart/byteranges, every part byte-exact, in request order
    status, headers, body, _ = curl("-r", "0-9,1000-1999,-50,65536-131071", url)
    assert status == 206
    assert headers["content-length"] == str(len(body))
    parts = parse_byteranges(body, headers["content-type"])
    expected = [(0, 9), (1000, 1999), (size - 50, size - 1), (65536, 131071)]
    assert len(parts) == len(expected)
    for (part_headers, part), (first, last) in zip(parts, expected, strict=True):
        assert part_headers == {"Content-Type": "application/octet-stream",
                                "Content-Range": f"bytes {first}-{last}/{size}"}
        assert part == data[first:last + 1]

    # nothing satisfiable → 416 with bytes */size; partly satisfiable → the satisfiable part
    for spec in (f"{size}-", f"{size + 100}-{size + 200}", f"{size}-,{size + 5}-{size + 9}"):
        status, headers, _, _ = curl("-r", spec, url)
        assert (status, headers["content-range"]) == (416, f"bytes */{size}"), spec
    status, headers, body, _ = curl("-r", f"0-3,{size + 5}-", url)
    assert (status, headers["content-range"], body) == (206, f"bytes 0-3/{size}", data[:4])

    # malformed / non-byte ranges are ignored: the whole file
    for value in ("bytes=9-3", "items=0-5", "bytes=abc", "bytes=" + ",".join(f"{i}-{i}" for i in range(40))):
        status, _, body, _ = curl("-H", f"Range: {value}", url)
        assert status == 200 and body == data, value

    # If-Range: the range counts only while the validator matches
    sha = hashlib.sha256(data).hexdigest()
    status, _, body, _ = curl("-r", "10-19", "-H", f'If-Range: "{sha}"', url)
    assert (status, body) == (206, data[10:20])
    status, _, body, _ = curl("-r", "10-19", "-H", 'If-Range: "0000"', url)
    assert status == 200 and body == data

    # HEAD ignores Range (GET is the only method with range semantics)
    status, headers, _, _ = curl("-I", "-r", "0-9", url)
    assert (status, headers["content-length"]) == (200, str(size))

    # resume: a download whose connection dies part-way, then curl -C - finishes it
    partial = tmp_path / "resumed.nbt"
    partial.write_bytes(cut_download(url, 700_001))
    cut = partial.stat().st_size
    assert cut == 700_001
    status, headers, _, _ = curl("-C", "-", url, output=partial)
    assert status == 206 and headers["content-range"] == f"bytes {cut}-{size - 1}/{size}"
    assert hashlib.sha256(partial.read_bytes()).hexdigest() == sha


def test_external_downloads_need_credentials(install, live_server, tmp_path):
    path, data = import_image(install, tmp_path, 50_000)
    install.cli("users", "add", "phone1", "--password-stdin", input="correct horse battery\n")
    server = live_server(workers=1)
    curl = Curl(tmp_path)
    url = f"{server.url}/DeviceUpdateFiles_Ext/{path}"

    status, headers, _, _ = curl(url)
    assert status == 401 and headers["www-authenticate"].startswith('Basic realm="devupdate"')
    status, headers, _, _ = curl("-u", "phone1:wrong password", url)
    assert status == 401
    status, _, _, _ = curl("-u", "nobody:correct horse battery", url)
    assert status == 401
    status, headers, _, _ = curl("-I", url)
    assert status == 401
    status, headers, body, _ = curl("-u", "phone1:correct horse battery", url)
    assert status == 200 and body == data and headers["cache-control"].startswith("private")
    status, headers, body, _ = curl("-u", "phone1:correct horse battery", "-r", "5-9", url)
    assert (status, headers["content-range"], body) == (206, f"bytes 5-9/{len(data)}", data[5:10])
    # an unknown path is not revealed before authentication
    status, _, _, _ = curl(url + "-missing")
    assert status == 401


def test_internal_downloads_refuse_external_addresses(install, live_server, tmp_path):
    path, _ = import_image(install, tmp_path, 10_000)
    server = live_server(workers=1, DEVUPDATE_INTERNAL_NETWORKS="10.0.0.0/8")
    request = urllib.request.Request(f"{server.url}/DeviceUpdateFiles_Int/{path}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
