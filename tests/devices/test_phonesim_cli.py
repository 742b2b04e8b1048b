"""``tools/phonesim.py`` as an operator runs it: single, boot storm, download-and-apply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fleet import CX600, EXTERNAL, INTERNAL, REPO, V0, V1, import_release, server_env

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
