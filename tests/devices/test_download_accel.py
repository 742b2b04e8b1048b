"""X-Accel-Redirect mode: devupdate authorizes and looks up, nginx (the configuration of
docs/nginx.md) sends the bytes — validators, ranges and resume behave as without nginx."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from test_download_http import Curl, import_image, parse_byteranges

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream devupdate {{ server 127.0.0.1:{upstream}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://devupdate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_request_buffering off;
        }}
        location /_devupdate_images/ {{
            internal;
            alias {images}/;
            types {{ }}
            default_type application/octet-stream;
            sendfile on;
            max_ranges 32;
            etag off;
            add_header ETag $upstream_http_etag always;
            add_header Last-Modified $upstream_http_last_modified always;
            if_modified_since off;
            add_header Accept-Ranges bytes always;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx(tmp_path):
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if exe is None:
        pytest.skip("nginx is not installed")
    procs = []

    def start(upstream: int, images) -> str:
        work = tmp_path / "nginx"
        work.mkdir()
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=work, port=port, upstream=upstream, images=images,
                                          user="user root;" if os.geteuid() == 0 else ""))
        proc = subprocess.Popen([exe, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).close()
                return url
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError("nginx did not start:\n" + (work / "error.log").read_text())

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_nginx_sends_the_bytes_with_devupdate_validators(install, live_server, nginx, tmp_path):
    path, data = import_image(install, tmp_path, 1_000_003)
    sha, size = hashlib.sha256(data).hexdigest(), len(data)
    server = live_server(workers=1, DEVUPDATE_ACCEL_REDIRECT_PREFIX="/_devupdate_images",
                         DEVUPDATE_TRUSTED_PROXIES="127.0.0.1/32")
    curl = Curl(tmp_path)

    # straight to devupdate: an empty answer that names the object for nginx
    status, headers, body, _ = curl(f"{server.url}/DeviceUpdateFiles_Int/{path}")
    assert (status, body) == (200, b"")
    assert headers["x-accel-redirect"] == f"/_devupdate_images/{sha[:2]}/{sha}"
    assert headers["etag"] == f'"{sha}"'

    front = nginx(server.port, install.home / "filestore" / "images")
    url = f"{front}/DeviceUpdateFiles_Int/{path}"
    status, headers, body, _ = curl(url)
    assert status == 200 and body == data
    assert headers["content-type"] == "application/octet-stream"
    assert headers["etag"] == f'"{sha}"'
    assert "x-accel-redirect" not in headers
    modified = headers["last-modified"]
    status, headers, _, _ = curl("-I", url)
    assert (status, headers["content-length"], headers["etag"]) == (200, str(size), f'"{sha}"')

    status, headers, body, _ = curl("-r", "100-199", url)
    assert (status, headers["content-range"], body) == (206, f"bytes 100-199/{size}", data[100:200])
    status, headers, body, _ = curl("-r", "0-9,500000-500099", url)
    assert status == 206
    parts = parse_byteranges(body, headers["content-type"], preamble=b"\r\n")
    assert [(h["Content-Range"], part) for h, part in parts] == [
        (f"bytes 0-9/{size}", data[:10]), (f"bytes 500000-500099/{size}", data[500000:500100])]
    status, headers, _, _ = curl("-r", f"{size}-", url)
    assert (status, headers["content-range"]) == (416, f"bytes */{size}")

    # validators are devupdate's: If-None-Match / If-Modified-Since answered before the redirect,
    # If-Range compared by nginx against the restored ETag
    status, _, body, _ = curl("-H", f'If-None-Match: "{sha}"', url)
    assert (status, body) == (304, b"")
    status, _, body, _ = curl("-H", f"If-Modified-Since: {modified}", url)
    assert (status, body) == (304, b"")
    status, _, body, _ = curl("-r", "10-19", "-H", f'If-Range: "{sha}"', url)
    assert (status, body) == (206, data[10:20])

    # resume with curl -C - through nginx
    partial = tmp_path / "partial.nbt"
    partial.write_bytes(data[:123_457])
    status, headers, _, _ = curl("-C", "-", url, output=partial)
    assert status == 206 and partial.read_bytes() == data

    # the internal location is not reachable from outside; unknown paths still 404 from devupdate
    status, _, _, _ = curl(f"{front}/_devupdate_images/{sha[:2]}/{sha}")
    assert status == 404
    status, _, _, _ = curl(f"{front}/DeviceUpdateFiles_Int/{path}.missing")
    assert status == 404
    status, _, _, _ = curl(f"{front}/DeviceUpdateFiles_Ext/{path}")
    assert status == 401
