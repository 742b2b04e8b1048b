"""``devupdate tokens create|list|revoke`` through the real CLI, and the tokens at work on the API."""

from __future__ import annotations

import hashlib
import json

from apikit import API


def test_tokens_cli_create_list_revoke(install):
    """The first command runs as a real process (the secret alone on stdout); the rest in-process."""
    created = install.cli("tokens", "create", "uploader", "--role", "admin")
    secret = created.stdout.strip()
    assert secret.startswith("dut_") and len(secret) > 40 and "\n" not in secret
    assert "shown only now" in created.stderr
    cli = install.invoke
    assert cli("tokens", "create", "grafana", "--role", "operator").exit_code == 0

    listed = json.loads(cli("tokens", "list", "--json").stdout)
    assert [(t["Name"], t["Role"], t["Revoked"]) for t in listed] == [("grafana", "operator", None),
                                                                      ("uploader", "admin", None)]
    text = cli("tokens", "list").stdout
    assert "uploader" in text and "grafana" in text
    assert secret not in text + json.dumps(listed)
    assert hashlib.sha256(secret.encode()).hexdigest() not in text + json.dumps(listed)

    duplicate = cli("tokens", "create", "uploader", "--role", "operator")
    assert duplicate.exit_code == 1
    assert duplicate.stderr.startswith("devupdate: error: a token named 'uploader' exists already")
    bad_role = cli("tokens", "create", "x", "--role", "root")
    assert bad_role.exit_code == 2 and "admin" in bad_role.stderr

    from devupdate.app import create_app

    app = create_app(install.runtime(), background=False)
    client = app.test_client()
    assert client.get(f"{API}/rules", headers={"Authorization": f"Bearer {secret}"}).status_code == 200

    assert cli("tokens", "revoke", "uploader").stdout == "revoked token uploader\n"
    assert client.get(f"{API}/rules", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    again = cli("tokens", "revoke", "uploader")
    assert again.exit_code == 1 and "revoked already" in again.stderr
    missing = cli("tokens", "revoke", "nobody")
    assert missing.exit_code == 1 and "no token named 'nobody'" in missing.stderr
    listed = json.loads(cli("tokens", "list", "--json").stdout)
    assert [t["Name"] for t in listed if t["Revoked"]] == ["uploader"]
    trail = json.loads(cli("audit", "list", "--action", "token.", "--json").stdout)
    assert [(e["Action"], e["Target"], e["Actor"]) for e in trail] == [
        ("token.revoke", "uploader", "test:admin"), ("token.create", "grafana", "test:admin"),
        ("token.create", "uploader", "test:admin")]
