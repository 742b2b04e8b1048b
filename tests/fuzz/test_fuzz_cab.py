"""Properties of the cab reader (devupdate/packages/cab.py) and the package checks (package.py).

Every input either reads or is refused with PackageError — never another exception, never a
hang — and what we accept is byte for byte what cabextract (libmspack) extracts from it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fuzzkit import FUZZ, cab_members, damaged_cab, updates
from helpers.cabs import make_image, raw_cab
from hypothesis import event, given
from hypothesis import strategies as st

from devupdate.packages import (
    CODES,
    Cabinet,
    Limits,
    PackageError,
    build_package,
    open_package,
    read_cab,
    scan_package,
    write_cab,
)

CABEXTRACT = shutil.which("cabextract")
ROOMY = Limits(max_ratio=1e9)  # damaged sizes often look like bombs; let the reader go further


def read_or_refuse(path: Path, limits: Limits = ROOMY) -> dict[str, bytes] | PackageError:
    try:
        got = {member.name: member.read_bytes() for member in read_cab(path, limits)}
    except PackageError as error:
        assert error.code in CODES and error.message
        event(f"refused: {error.code}")
        return error
    event("read")
    return got


def cabextract(path: Path, size: int) -> dict[str, bytes] | None:
    """What cabextract extracts from the first ``size`` bytes of ``path`` (None: it refused)."""
    with tempfile.TemporaryDirectory() as tmp:
        cab = Path(tmp) / "in.cab"
        cab.write_bytes(path.read_bytes()[:size])
        out = Path(tmp) / "out"
        proc = subprocess.run([CABEXTRACT, "-q", "-d", str(out), str(cab)], capture_output=True, timeout=60)
        if proc.returncode != 0:
            return None
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def scratch():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


raw_options = st.fixed_dictionaries({
    "compression": st.sampled_from([0, 1, 1]),
    "block_size": st.sampled_from([32768, 32768, 4096, 1000]),
}, optional={"header_reserve": st.binary(max_size=20), "data_reserve": st.integers(0, 8),
             "folder_reserve": st.integers(0, 8), "trailing": st.binary(max_size=64)})


@FUZZ
@given(st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b"MSCF" + b)))
def test_any_bytes_are_read_or_refused(scratch, data):
    path = scratch / "x.cab"
    path.write_bytes(data)
    read_or_refuse(path)


@st.composite
def damaged_cabs(draw) -> tuple[bytes, dict[str, bytes]]:
    members = draw(cab_members)
    blob = raw_cab([(name.replace("/", "\\"), data) for name, data in members.items()], **draw(raw_options))
    return draw(damaged_cab(blob)), members


@FUZZ
@given(damaged_cabs())
def test_damaged_cabs_are_read_or_refused_and_agree_with_cabextract(scratch, case):
    blob, _ = case
    path = scratch / "x.cab"
    path.write_bytes(blob)
    got = read_or_refuse(path)
    if isinstance(got, PackageError) or CABEXTRACT is None:
        return
    with Cabinet(path, ROOMY) as cabinet:
        size = cabinet.cab_size
    assert cabextract(path, size) == got, "we read something cabextract reads differently (or refuses)"


@FUZZ
@given(cab_members, st.booleans())
def test_written_cabs_read_back_exactly(scratch, members, compress):
    path = scratch / "w.cab"
    write_cab(path, members, compress)
    assert read_or_refuse(path, Limits()) == members
    if CABEXTRACT is not None:
        assert cabextract(path, path.stat().st_size) == members


@st.composite
def packages(draw, scratch: Path) -> Path:
    written = draw(st.lists(updates(), min_size=1, max_size=3, unique_by=lambda u: u.id))
    images, catalogs = {}, {}
    for update in written:
        for ref in update.files:
            images[ref.name] = make_image(ref.name, draw(st.sampled_from([10, 3000, 40000])), update.version)
            catalogs[ref.name.rsplit(".", 1)[0] + ".cat"] = b"catalog of " + ref.name.encode()
    path = scratch / "p.cab"
    path.unlink(missing_ok=True)
    try:
        build_package(path, written, images, catalogs, compress=draw(st.booleans()))
    except PackageError as error:  # drawn updates that share a file name, or a rule
        assert error.code in ("duplicate-name", "bad-description")
        return path
    if draw(st.booleans()):
        path.write_bytes(draw(damaged_cab(path.read_bytes())))
    return path


def open_or_refuse(path: Path):
    try:
        with open_package(path, ROOMY) as package:
            return package.updates, {name: m.read_bytes() for name, m in package.members.items()}
    except PackageError as error:
        return error.code


def scan_or_refuse(path: Path):
    try:
        found, staged = scan_package(path, ROOMY, stage=lambda member, stream: stream.read())
    except PackageError as error:
        return error.code
    return found, staged


@FUZZ
@given(st.data())
def test_the_two_package_readers_agree(scratch, data):
    """open_package (decode all, then check) and scan_package (the importer's single pass) accept
    the same packages with the same updates and member bytes, and refuse the same ones."""
    path = data.draw(packages(scratch))
    if not path.exists():
        return
    opened, scanned = open_or_refuse(path), scan_or_refuse(path)
    event(f"package: {opened if isinstance(opened, str) else 'accepted'}")
    if isinstance(opened, str) or isinstance(scanned, str):
        assert isinstance(opened, str) and isinstance(scanned, str), (opened, scanned)
        return
    assert opened[0] == scanned[0]
    descriptions = {name for name in opened[1] if name.endswith(".xml")}
    assert {k: v for k, v in opened[1].items() if k not in descriptions} == scanned[1]
