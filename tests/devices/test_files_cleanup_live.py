"""``devupdate files cleanup`` end to end: real cabs imported and rules moved on with the real CLI,
a real ``devupdate serve`` downloading the images. An image no rule version references stays
downloadable for DEVUPDATE_FILE_CLEANUP_GRACE seconds and is deleted by the first cleanup after
that; images still referenced — by the approved or restore version, or by another rule that
shares the same bytes — survive and keep downloading.

Time is driven by the grace setting, not by waiting: the versions became unreferenced a few
seconds ago, so a grace of an hour keeps them and a grace of 0 s has expired."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fleet import AASTRA, CX600, V1, V2, V3, import_release, server_env
from helpers.cabs import FIXED_TIME, FileRef, make_update, package_files, rule_guid
from helpers.tools import wait_for

from devupdate.packages import build_package

pytestmark = pytest.mark.timeout(300)

HP = ("UCPhone", "HP", "4110", "A", "ENU")
SHARED = FileRef("UC_SHARED_CPE.nbt", "UC_SHARED_CPE.cat")


def _import_shared(install, directory: Path, version: str) -> tuple[str, str, dict[str, bytes]]:
    """One cab whose two updates (Aastra, HP) ship the very same image and catalog."""
    updates = [make_update(brand, model, version, locale=locale, revision=revision, device_type=device_type,
                           files=(SHARED,)) for device_type, brand, model, revision, locale in (AASTRA, HP)]
    images, catalogs = package_files(updates[:1], 20_000)
    cab = directory / f"UCUpdates-shared-{version}.cab"
    build_package(cab, updates, images, catalogs, description_name="UCUpdates.xml", compress=True, mtime=FIXED_TIME)
    install.cli("import", str(cab), "--json")
    return rule_guid(*AASTRA, "CPE"), rule_guid(*HP, "CPE"), {**images, **catalogs}


def _objects(install) -> set[str]:
    """SHA-256 of every object in the images area."""
    root = install.home / "filestore" / "images"
    return {p.name for p in root.rglob("*") if p.is_file() and re.fullmatch(r"[0-9a-f]{64}", p.name)}


def _get(server, family, version: str, name: str) -> tuple[int, bytes]:
    url = f"{server.url}/DeviceUpdateFiles_Int/{'/'.join(family)}/{version}/{name}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _cleanup(install, grace: int) -> dict:
    return json.loads(install.cli("files", "cleanup", "--json", DEVUPDATE_FILE_CLEANUP_GRACE=str(grace)).stdout)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_files_cleanup_deletes_after_the_grace_period_and_keeps_what_is_referenced(install, live_server, tmp_path):
    # CX600: V1, V2, V3 approved in turn → V3 approved, V2 the restore version, V1 referenced by nothing
    releases = {}
    for version in (V1, V2, V3):
        releases[version] = import_release(install, tmp_path, version)[CX600]
        install.cli("rules", "approve", releases[version].rule_id)
    cx600 = releases[V1].rule_id
    # Aastra and HP share one image; the Aastra rule is deleted, the HP one keeps the bytes referenced
    aastra, hp, shared = _import_shared(install, tmp_path, V2)
    install.cli("rules", "approve", hp)
    install.cli("rules", "remove", aastra)

    shown = json.loads(install.cli("rules", "show", cx600, "--json").stdout)
    since = {v["Version"]: v["UnreferencedSince"] for v in shown["Versions"]}
    assert since[V1] is not None and since[V2] is None and since[V3] is None
    age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(since[V1].replace("Z", "+00:00"))).total_seconds()
    assert 0 <= age < 600

    v1 = releases[V1].files
    before = _objects(install)
    assert {_sha(data) for data in v1.values()} <= before

    server = live_server(workers=1, **server_env())
    # within the grace period: nothing is deleted, and a phone can still fetch V1
    kept = _cleanup(install, grace=int(age) + 3600)
    assert (kept["VersionsRemoved"], kept["ObjectsRemoved"], kept["BytesFreed"]) == ([], 0, 0)
    assert _objects(install) == before
    assert _get(server, CX600, V1, releases[V1].image) == (200, v1[releases[V1].image])

    # after it: V1 of CX600 and the deleted Aastra rule's version go; only V1's own bytes leave
    report = _cleanup(install, grace=0)
    assert sorted(report["VersionsRemoved"]) == sorted([f"{cx600}/{V1}", f"{aastra}/{V2}"])
    assert report["ObjectsRemoved"] == 2 and report["BytesFreed"] == sum(len(data) for data in v1.values())
    assert report["GraceSeconds"] == 0
    assert _objects(install) == before - {_sha(data) for data in v1.values()}

    assert _get(server, CX600, V1, releases[V1].image)[0] == 404
    for version in (V2, V3):  # the restore and the approved version
        release = releases[version]
        for name, data in release.files.items():
            assert _get(server, CX600, version, name) == (200, data), (version, name)
    for name, data in shared.items():  # the bytes the deleted Aastra rule shared with HP
        assert _sha(data) in _objects(install)
        assert _get(server, HP, V2, name) == (200, data), name
    # the deleted rule's download path goes too, though its bytes stay for HP (workers refresh on the
    # generation the cleanup bumped)
    assert wait_for(lambda: _get(server, AASTRA, V2, SHARED.name)[0] == 404, timeout=10)

    versions = [v["Version"] for v in json.loads(install.cli("rules", "show", cx600, "--json").stdout)["Versions"]]
    assert sorted(versions) == [V2, V3]
    assert install.cli("filestore", "verify").returncode == 0
    events = json.loads(install.cli("audit", "list", "--json").stdout)
    cleanups = [e for e in events if e["Action"] == "files.cleanup"]
    assert len(cleanups) == 1 and sorted(cleanups[0]["After"]["VersionsRemoved"]) == sorted(report["VersionsRemoved"])

    # a second run finds nothing more to do
    again = _cleanup(install, grace=0)
    assert (again["VersionsRemoved"], again["ObjectsRemoved"], again["OrphansRemoved"]) == ([], 0, 0)
