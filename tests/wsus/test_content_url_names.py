"""One content URL per stored file ([wsus] §2.4): what SyncUpdates offers a client, what the downstream
sync asks its upstream for, and what /Content resolves all take the extension of the file name the same
way: what follows the last dot of its last path part, none for a name without one (never ``bin``, never
a ``/`` from a dotted directory)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devupdate.content import names
from devupdate.wsus.client.sync_ops import content_url
from devupdate.wsus.downstream.files import Wanted

SHA1 = "0123456789abcdef0123456789abcdef012345ab"
BASE = "http://wsus.example.invalid:8530"


@pytest.mark.parametrize(("file_name", "path"), [
    ("payload.cab", f"Content/AB/{SHA1.upper()}.cab"),
    ("Windows10.0-KB1.MSU", f"Content/AB/{SHA1.upper()}.msu"),
    ("README", f"Content/AB/{SHA1.upper()}"),
    ("dir.v2/file", f"Content/AB/{SHA1.upper()}"),
    ("dir.v2/file.exe", f"Content/AB/{SHA1.upper()}.exe"),
    (".hidden", f"Content/AB/{SHA1.upper()}"),
])
def test_every_reader_of_a_file_name_gives_the_one_content_path(file_name, path):
    assert names.content_path(SHA1, file_name) == path
    assert content_url(SimpleNamespace(effective_wsus_content_base_url=BASE), SHA1, file_name) == f"{BASE}/{path}"
    assert Wanted(SHA1, None, 1, file_name, None).content_path == path
    # /Content finds the object by the extension the path carries
    assert names.extension(file_name).lower() == (path.rpartition("/")[2].partition(".")[2])
