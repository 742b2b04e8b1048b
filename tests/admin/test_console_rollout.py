"""The rule page shows a rule's staged rollout (stage, share, devices offered / updated / failed) and
lets an admin approve in stages, advance, resume and abort — the CLI's service functions behind the
CSRF token and the admin role; an operator sees the rollout and no buttons."""

from __future__ import annotations

import json
import re

import pytest
from apikit import RULE_ID_CX600, cab_for
from consolekit import Browserless, add_admin, csrf_of, setup_install

V1, V2 = "4.0.7577.4366", "4.0.7577.4372"
pytestmark = pytest.mark.timeout(120)


def test_rule_page_rollout(install, live_server, tmp_path):
    setup_install(install)
    install.cli("db", "upgrade")
    install.cli("import", str(cab_for(tmp_path / "a", V1)))
    install.cli("rules", "approve", RULE_ID_CX600)
    install.cli("import", str(cab_for(tmp_path / "b", V2)))
    add_admin(install, "alice", "admin")
    add_admin(install, "otto", "operator")
    server = live_server(workers=1, DEVUPDATE_ROLLOUT_CHECK_SECONDS="0")
    alice = Browserless(server)
    assert alice.sign_in("alice").status_code == 303
    page = alice.get(f"/rules/{RULE_ID_CX600}")
    assert page.status_code == 200 and "Approve in stages" in page.text and 'id="rollout"' not in page.text
    token = csrf_of(page.text)

    # refused without the token; a bad plan is refused with the fix and changes nothing
    assert alice.post(f"/rules/{RULE_ID_CX600}/rollout", data={"stages": "5%,100%"}).status_code == 400
    refused = alice.post(f"/rules/{RULE_ID_CX600}/rollout", data={"csrf_token": token, "stages": "5%,25%"})
    assert refused.status_code == 303
    page = alice.get(f"/rules/{RULE_ID_CX600}")
    assert "must end at 100%" in page.text
    assert json.loads(install.cli("rules", "show", RULE_ID_CX600, "--json").stdout)["Rollout"] is None

    started = alice.post(f"/rules/{RULE_ID_CX600}/rollout", data={"csrf_token": token, "stages": "10%,50%,100%",
                                                                  "every": "24h", "halt_at": "3%"})
    assert started.status_code == 303
    page = alice.get(f"/rules/{RULE_ID_CX600}").text
    assert 'id="rollout"' in page and "<strong>10%</strong> of the fleet" in page
    assert re.search(r"offered <strong>0</strong> · updated <strong>0</strong> · failed <strong>0</strong>", page)
    assert "Next stage now" in page and "Abort (roll back)" in page and ">Resume<" not in page
    shown = json.loads(install.cli("rules", "rollout", "show", RULE_ID_CX600, "--json").stdout)
    assert (shown["Share"], shown["HaltAt"], shown["StartedBy"]) == ("10%", "3%", "console:alice")

    assert alice.post(f"/rules/{RULE_ID_CX600}/rollout/advance", data={"csrf_token": token}).status_code == 303
    assert "<strong>50%</strong> of the fleet" in alice.get(f"/rules/{RULE_ID_CX600}").text
    assert alice.post(f"/rules/{RULE_ID_CX600}/rollout/resume", data={"csrf_token": token}).status_code == 303
    assert "not halted: nothing to resume" in alice.get(f"/rules/{RULE_ID_CX600}").text

    otto = Browserless(server)
    assert otto.sign_in("otto").status_code == 303
    seen = otto.get(f"/rules/{RULE_ID_CX600}").text
    assert 'id="rollout"' in seen and "Next stage now" not in seen and "Approve in stages" not in seen
    assert otto.post(f"/rules/{RULE_ID_CX600}/rollout/abort",
                     data={"csrf_token": csrf_of(seen)}).status_code == 403

    assert alice.post(f"/rules/{RULE_ID_CX600}/rollout/abort", data={"csrf_token": token}).status_code == 303
    page = alice.get(f"/rules/{RULE_ID_CX600}").text
    assert 'id="rollout"' not in page and "Aborted (rolled back) the rollout." in page
    rule = json.loads(install.cli("rules", "show", RULE_ID_CX600, "--json").stdout)
    assert (rule["ApprovedVersion"], rule["Rollout"]) == (V1, None)
