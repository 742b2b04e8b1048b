"""WSUS /Content over real HTTP (``devupdate serve``) with the real curl for phone images: an
imported image and its catalog reached by their SHA-1 under ``.nbt`` / ``.cat``, with the
validators of spec/wsus.md §2.4. Ranges, conditionals, methods, hostile paths and the captured
Delivery Optimization requests are exercised on catalog files (test_content_catalog_http.py):
both owners go through the same answer."""

from __future__ import annotations

import hashlib

from helpers.cabs import make_image, make_package, make_update
from helpers.curl import Curl

from devupdate.packages.cab import read_cab

SIZE = 918944  # the recorded file of content-headers/whole-file-single-range


def test_phone_image_and_its_catalog_at_content_by_sha1(install, live_server, tmp_path):
    update = make_update("Polycom", "CX600", "4.0.7577.4372")
    cab = make_package(tmp_path, [update], image_sizes=SIZE)
    install.cli("db", "upgrade")
    install.cli("import", str(cab))
    (ref,) = update.files
    data = make_image(ref.name, SIZE, "4.0.7577.4372")
    catalog = next(member.read_bytes() for member in read_cab(cab) if member.name == ref.catalog)
    sha1 = hashlib.sha1(data).hexdigest()
    server = live_server(workers=1)
    curl = Curl(tmp_path)
    url = f"{server.url}/Content/{sha1[-2:].upper()}/{sha1.upper()}.nbt"

    status, headers, body, _ = curl(url)
    assert (status, body) == (200, data)
    assert headers["content-length"] == str(SIZE) and headers["accept-ranges"] == "bytes"
    assert headers["etag"] == f'"{sha1}"' and headers["content-type"] == "application/octet-stream"
    assert headers["cache-control"] == "public, max-age=86400" and "content-encoding" not in headers
    assert "last-modified" in headers
    status, head, _, _ = curl("-I", url)
    assert status == 200
    assert {k: v for k, v in head.items() if k != "date"} == {k: v for k, v in headers.items() if k != "date"}
    status, headers, body, _ = curl("-r", "100-199", url)
    assert (status, headers["content-range"], body) == (206, f"bytes 100-199/{SIZE}", data[100:200])

    cat_sha1 = hashlib.sha1(catalog).hexdigest()
    status, headers, body, _ = curl(f"{server.url}/Content/{cat_sha1[-2:]}/{cat_sha1}.cat")
    assert (status, body, headers["etag"]) == (200, catalog, f'"{cat_sha1}"')

    # an image is not reachable under its catalog's extension, nor its catalog under the image's
    for bad in (f"/Content/{sha1[-2:]}/{sha1}.cat", f"/Content/{cat_sha1[-2:]}/{cat_sha1}.nbt"):
        status, _, body, _ = curl(server.url + bad)
        assert status == 404 and body.startswith(b"404 Not Found"), bad
