"""``tools/phonesim.py`` as an operator runs it: single, boot storm, download-and-apply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fleet import CX600, EXTERNAL, INTERNAL, REPO, V0, V1, V2, import_release, server_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]


def phonesim(*args: str, check: bool = True) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "phonesim.py"), *args, "--json"],
                          capture_output=True, text=True, timeout=240)
    assert proc.stderr == ""
    if check:
        assert proc.returncode == 0, proc.stdout
    return proc.returncode, json.loads(proc.stdout)


def test_modes(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    server = live_server(workers=2, **server_env())

    _, single = phonesim("--url", server.url, "--devices", "20", "--installed", f"CPE.nbt={V0}")
    assert (single["mode"], single["checks"], single["status"], single["offered_files"]) == (
        "single", 20, {"200": 20}, {"2": 20})

    _, storm = phonesim("--url", server.url, "--devices", "1000", "--mode", "storm", "--concurrency", "64",
                        "--installed", f"CPE.nbt={V1}", "--seed", "2")
    assert (storm["checks"], storm["status"], storm["offered_files"], storm["codes"]) == (
        1000, {"200": 1000}, {"0": 1000}, {})
    assert storm["p99_ms"] > 0

    _, get = phonesim("--url", server.url, "--devices", "5", "--get", "--external", "--user", "phones",
                      "--password", "s3cret-pass", "--installed", f"CPE.nbt={V0}")
    assert get["offered_files"] == {"2": 5}

    code, refused = phonesim("--url", server.url, "--devices", "3", "--external", check=False)
    assert (code, refused["status"], refused["codes"]) == (1, {"401": 3}, {"AuthenticationRequired": 3})

    _, applied = phonesim("--url", server.url, "--devices", "10", "--mode", "apply", "--concurrency", "4",
                          "--installed", f"CPE.nbt={V0}", "--seed", "3",
                          "--map", f"{INTERNAL}={server.url}", "--map", f"{EXTERNAL}={server.url}")
    assert (applied["downloaded_files"], applied["verified_files"], applied["phones_updated"],
            applied["problems"]) == (20, 20, 10, [])


def test_rollout_mode(install, live_server, tmp_path):
    """``--mode rollout``: a fleet (a quarter on the device API, 5 % failing) through the stages, the
    next one started through the API after each round, the server's rollout read after each."""
    from devupdate.selection import bucket

    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    import_release(install, tmp_path, V2)
    install.cli("rules", "approve", release.rule_id, "--rollout", "10%,50%,100%", "--halt-at", "50%")
    token = install.cli("tokens", "create", "fleet", "--role", "admin").stdout.strip()
    server = live_server(workers=2, **server_env(DEVUPDATE_ROLLOUT_CHECK_SECONDS="0"))
    _, report = phonesim("--url", server.url, "--devices", "200", "--mode", "rollout", "--rounds", "4",
                         "--installed", f"CPE.nbt={V1}", "--fail-share", "0.05", "--json-share", "0.25",
                         "--rule", release.rule_id, "--token", token, "--advance", "--seed", "4",
                         "--concurrency", "8", "--map", f"{INTERNAL}={server.url}")
    assert (report["phones"], report["failing"], report["json_phones"], report["problems"]) == (200, 10, 50, [])
    phones = phonesim_fleet(200, seed=4)
    import random

    rng = random.Random(4)
    failing = {p.device_id for p in rng.sample(phones, 10)}
    place = {p.device_id: bucket(release.rule_id, p.device_id) for p in phones}
    shares = (1000, 5000, 10000, 10000)
    took, expected = set(), []
    for share in shares:
        offered = {i for i, b in place.items() if b < share and i not in took}
        expected.append((len(offered), len(offered - failing)))
        took |= offered - failing
    assert [(r["offered"], r["installed"]) for r in report["rounds"]] == expected
    assert [r["server"]["Share"] for r in report["rounds"]] == ["10%", "50%", "100%", "100%"]
    assert report["rounds"][-1]["versions"] == {V1: 10, V2: 190}


def phonesim_fleet(count: int, seed: int):
    from fleet import phonesim as tool

    return tool.make_fleet(count, families=[CX600], installed={"CPE.nbt": V1}, seed=seed)
