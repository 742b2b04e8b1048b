"""Update checks end to end: real cabs imported with ``devupdate import``, rules changed with the
real CLI, a fleet of simulated phones asking a real ``devupdate serve`` (2 workers) over HTTP.

Selection per device-protocol.md §4, answers per §5 — every field of every offered file compared.
"""

from __future__ import annotations

import time

import pytest
from fleet import (
    AASTRA,
    CX600,
    V0,
    V1,
    V2,
    V3,
    assert_answer,
    audit_rows,
    client,
    fleet,
    import_release,
    phonesim,
    server_env,
)
from helpers.tools import wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]


def checks(cl, phones, **kwargs):
    return phonesim.run_checks(cl, phones, concurrency=8, **kwargs)


def _answers(result, expected) -> bool:
    try:
        assert_answer(result, expected)
    except AssertionError:
        return False
    return True


def settled(cl, phones, expected, timeout: float = 15.0, steady: float = 1.5):
    """Check the fleet until every phone gets ``expected(index)`` in every round for ``steady``
    seconds, then return the last results; on timeout the last results are returned and the
    caller's asserts show what was still wrong.

    Each round runs on new connections, which land on whichever worker accepts them; a worker
    picks a rule change up on its own snapshot refresh (every 0.5 s), so answers that stay right
    for ``steady`` seconds mean every worker has it — also the one a later keep-alive check hits."""
    last: list = []
    since: list[float] = []

    def attempt():
        last[:] = checks(cl, phones)
        if not all(_answers(result, expected(i)) for i, result in enumerate(last)):
            since.clear()
            return False
        since[:1] = since[:1] or [time.monotonic()]
        return time.monotonic() - since[0] >= steady
    wait_for(attempt, timeout=timeout, interval=0.1)
    return last


def test_fleet_through_the_rule_lifecycle(install, live_server, tmp_path):
    """pending → test devices only; approve → everyone; reset → test devices back to approved;
    restore → everyone to the restore version (a downgrade); restore with none → nothing."""
    r1 = import_release(install, tmp_path, V1)[CX600]
    phones = fleet(20)
    lab_mac, lab_serial = phones[0], phones[1]
    install.cli("test-devices", "add", "lab-mac", "--mac", lab_mac.mac)
    # a test device registered for one site still counts: the check carries no site
    install.cli("test-devices", "add", "lab-serial", "--serial", lab_serial.serial.lower(), "--site", "Berlin")
    server = live_server(workers=2, **server_env())
    cl = client(server)

    # 1. only pending: test devices get it, the fleet gets nothing
    results = checks(cl, phones)
    assert_answer(results[0], r1.expected())
    assert_answer(results[1], r1.expected())
    for result in results[2:]:
        assert_answer(result, [])

    # 2. approve: the fleet gets V1 — the very bytes that were imported
    install.cli("rules", "approve", r1.rule_id)
    for result in settled(cl, phones, lambda i: r1.expected()):
        assert_answer(result, r1.expected())
    applied = phonesim.apply_updates(cl, fleet(3, seed=50), concurrency=3)
    for outcome in applied:
        assert outcome.problems == []
        assert [(f.file_name, digest) for f, digest in outcome.downloaded] == [
            (row["FileName"], row["SHA256"]) for row in r1.expected()]
        assert outcome.second is not None and outcome.second.files == []

    # a phone that runs V1 already is offered nothing; one that runs something newer is sent back
    assert_answer(cl.check(fleet(1, installed=V1, seed=99)[0]), [])
    assert_answer(cl.check(fleet(1, installed=V3, seed=98)[0]), r1.expected())

    # 3. a new pending version: test devices get V2, the fleet stays on V1
    r2 = import_release(install, tmp_path, V2)[CX600]
    results = settled(cl, phones, lambda i: r2.expected() if i < 2 else r1.expected())
    assert_answer(results[0], r2.expected())
    assert_answer(results[1], r2.expected())
    for result in results[2:]:
        assert_answer(result, r1.expected())

    # 4. reset (reject V2): test devices go back to the approved V1
    install.cli("rules", "reset", r1.rule_id)
    results = settled(cl, phones, lambda i: r1.expected())
    for result in results:
        assert_answer(result, r1.expected())
    # a test device that already flashed the rejected V2 is sent back to V1 too
    lab_mac.modules["CPE.nbt"] = V2
    assert_answer(cl.check(lab_mac), r1.expected())

    # 5. V3 approved (V1 becomes the restore version), everyone runs V3
    r3 = import_release(install, tmp_path, V3)[CX600]
    install.cli("rules", "approve", r1.rule_id)
    for phone in phones:
        phone.modules["CPE.nbt"] = V3
    for result in settled(cl, phones, lambda i: []):
        assert_answer(result, [])
    assert_answer(cl.check(fleet(1, installed=V0, seed=97)[0]), r3.expected())

    # 6. restore: everyone is offered V1 — a downgrade — test devices included
    install.cli("rules", "restore", r1.rule_id)
    for result in settled(cl, phones, lambda i: r1.expected()):
        assert_answer(result, r1.expected())

    # 7. restore again with no restore version: no approved version, nobody is offered anything
    shown = install.cli("rules", "restore", r1.rule_id, "--json", "--yes").stdout
    assert '"ApprovedVersion": null' in shown
    for result in settled(cl, phones, lambda i: []):
        assert_answer(result, [])
    assert_answer(cl.check(fleet(1, installed=V0, seed=96)[0]), [])

    rows = audit_rows(install)
    assert all(row["Result"] == "200 OK" for row in rows)


def test_families_locales_and_sides(install, live_server, tmp_path):
    """Two families in one cab; internal answers carry _Int URLs, external ones _Ext https URLs,
    both from the configured public names, never the Host header; GET form answers as POST."""
    releases = import_release(install, tmp_path, V1, families=(CX600, AASTRA))
    for release in releases.values():
        install.cli("rules", "approve", release.rule_id)
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    server = live_server(workers=2, **server_env())
    cx, aastra = fleet(1)[0], fleet(1, family=AASTRA, seed=3)[0]
    internal, external = client(server), client(server, user="phones", password="s3cret-pass")

    assert_answer(internal.check(cx), releases[CX600].expected("Int"))
    assert_answer(internal.check(aastra), releases[AASTRA].expected("Int"))
    assert_answer(internal.check(cx, get=True), releases[CX600].expected("Int"))
    ext = external.check(aastra, path="/RequestHandlerExt/ucdevice.upx")
    assert_answer(ext, releases[AASTRA].expected("Ext"))
    assert all(row["Url"].startswith("https://ucupdates.contoso.com/DeviceUpdateFiles_Ext/") for row in
               releases[AASTRA].expected("Ext"))
    assert_answer(external.check(cx, path="/RequestHandlerExt/ucdevice.upx", get=True),
                  releases[CX600].expected("Ext"))

    # the Host header does not leak into URLs
    status, _, body = internal.request("POST", server.url + "/RequestHandler/ucdevice.upx", cx.request_xml(),
                                       {"Host": "evil.example"})
    assert status == 200 and b"evil.example" not in body and b"http://ucupdates-r2.contoso.com/" in body

    # a family nobody has rules for, and a locale with no rule: nothing
    other = phonesim.make_fleet(1, families=[("UCPhone", "Polycom", "CX600", "A", "FRA")],
                                installed={"CPE.nbt": V0})[0]
    assert_answer(internal.check(other), [])

    # the image's own file name identifies the module, as well as the UpdateType stem
    named = fleet(1, installed=None, seed=5)[0]
    named.modules[releases[CX600].image] = V1
    assert_answer(internal.check(named), [])
    named.modules[releases[CX600].image] = V0
    assert_answer(internal.check(named), releases[CX600].expected())
    # a device that reports no module at all gets the approved files
    assert_answer(internal.check(fleet(1, installed=None, seed=6)[0]), releases[CX600].expected())


@pytest.mark.parametrize("path", ["/RequestHandler/ucdevice.upx", "/requesthandler/UCDEVICE.UPX",
                                  "/REQUESTHANDLER/ucdevice.upx", "/RequestHandler/UcDevice.Upx/"])
def test_paths_are_case_insensitive(install, live_server, tmp_path, path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    server = live_server(workers=1, **server_env())
    assert_answer(client(server).check(fleet(1)[0], path=path), release.expected())


def test_external_path_case_insensitive_and_storm(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    server = live_server(workers=2, **server_env())
    cl = client(server, user="phones", password="s3cret-pass")
    phones = fleet(300, seed=11, serial_only_every=10)
    results = phonesim.run_checks(cl, phones, concurrency=32, path="/requesthandlerEXT/UCDevice.upx")
    for result in results:
        assert_answer(result, release.expected("Ext"))
    rows = audit_rows(install)
    assert len(rows) == 300
    assert sum(1 for row in rows if row["Mac Address"] == "") == 30
    assert {row["User ID"] for row in rows} == {p.user_id for p in phones}
