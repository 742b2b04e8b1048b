"""Replica mode against the fake upstream (D2, §5.3 step 5; issue part 3 §3): the upstream's target
groups and deployments are mirrored, the phone image rule's state follows them (approved upstream →
approved here; approval withdrawn and the version deployed to Test → pending here), and local rule
changes and approvals are refused with one line naming the upstream."""

from __future__ import annotations

import pytest
from helpers.cabs import make_package, make_update
from test_dss_content import _upstream

from devupdate.rules.models import Rule
from devupdate.wsus.downstream import service
from devupdate.wsus.targeting.models import ALL_COMPUTERS_ID, TEST_ID, Deployment, TargetGroup

BRANCH = "bbbbbbbb-1111-4222-8333-444444444444"
GUID1 = "d0d0d0d0-0000-4000-8000-000000000001"
GUID2 = "d0d0d0d0-0000-4000-8000-000000000002"


def _groups() -> str:
    def group(gid: str, parent: str, name: str, builtin: bool) -> str:
        return (f"<ServerSyncTargetGroup><TargetGroupID>{gid}</TargetGroupID><ParentGroupId>{parent}</ParentGroupId>"
                f"<Name>{name}</Name><IsBuiltin>{str(builtin).lower()}</IsBuiltin></ServerSyncTargetGroup>")
    zero = "00000000-0000-0000-0000-000000000000"
    return ("<Groups>" + group(ALL_COMPUTERS_ID, zero, "All Computers", True)
            + group(TEST_ID, ALL_COMPUTERS_ID, "Test", True) + group(BRANCH, ALL_COMPUTERS_ID, "Branch", False)
            + "</Groups>")


def _deployment(update_id: str, group: str, guid: str) -> str:
    return (f"<ServerSyncDeployment><UpdateId>{update_id}</UpdateId><RevisionNumber>1</RevisionNumber>"
            f"<Action>0</Action><AdminName>admin</AdminName><Deadline>9999-12-31T23:59:59.9999999</Deadline>"
            f"<IsAssigned>true</IsAssigned><GoLiveTime>2026-11-01T12:00:00Z</GoLiveTime>"
            f"<DeploymentGuid>{guid}</DeploymentGuid><TargetGroupId>{group}</TargetGroupId>"
            f"<DownloadPriority>1</DownloadPriority></ServerSyncDeployment>")


def test_replica_mirrors_groups_and_approvals_and_the_rule_follows(rt, install):
    fake, image = _upstream(b"r" * 4000)
    fake.deployments = (b"<Anchor>9440,2026-11-01 12:00:00.000</Anchor>" + _groups().encode()
                        + b"<Deployments>" + _deployment(image.update_id, ALL_COMPUTERS_ID, GUID1).encode()
                        + b"</Deployments><DeadDeployments /><HiddenUpdates /><AcceptedEulas />")
    try:
        done = service.sync(rt.settings, rt.store, upstream=fake.url, mode="replica", sleep=lambda _s: None)
        assert done["DeploymentsApplied"] == 1
        assert TargetGroup.get_by_id(BRANCH).name == "Branch"
        live = Deployment.get(Deployment.update_id == image.update_id, Deployment.group == ALL_COMPUTERS_ID)
        assert (live.action, live.revoked, live.download_priority) == ("Install", False, 1)
        rule = Rule.get_by_id(image.rule_id)
        assert (rule.approved_version, rule.pending_version) == (image.version, None)
        assert done["PhoneImages"]["Versions"] == 1 and done["Files"]["Fetched"] == 2
        # local changes are refused with one line naming the upstream
        refused = install.cli("rules", "reset", image.rule_id, check=False)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            f"devupdate: error: this server is a replica of {fake.url}: rule states follow the upstream; change "
            "them there (or sync with --mode autonomous to decide here)"]
        folder = install.home.parent / "cab"
        folder.mkdir()
        cab = make_package(folder, [make_update("Polycom", "CX700", "4.0.1.1")], image_sizes=500)
        refused = install.cli("import", str(cab), check=False)
        assert refused.returncode == 1 and "is a replica of" in refused.stderr
        assert not Rule.select().where(Rule.model == "CX700").exists()
        refused = install.cli("wsus", "approve", image.update_id, "--group", "Branch", "--action", "install",
                              check=False)
        assert refused.returncode == 1 and "is a replica of" in refused.stderr
        # upstream: the approval withdrawn, the version deployed to Test instead → pending here
        fake.deployments = (b"<Anchor>9441,2026-11-01 12:00:01.000</Anchor>" + _groups().encode()
                            + b"<Deployments>" + _deployment(image.update_id, TEST_ID, GUID2).encode()
                            + b"</Deployments><DeadDeployments><guid>" + GUID1.encode()
                            + b"</guid></DeadDeployments><HiddenUpdates /><AcceptedEulas />")
        again = service.sync(rt.settings, rt.store, upstream=fake.url, mode="replica", sleep=lambda _s: None)
    finally:
        fake.stop()
    assert again["DeploymentsApplied"] == 2
    rule = Rule.get_by_id(image.rule_id)
    assert (rule.approved_version, rule.pending_version) == (None, image.version)
    assert Deployment.get(Deployment.update_id == image.update_id, Deployment.group == ALL_COMPUTERS_ID).revoked
    assert again["PhoneImages"]["StateChanges"] == 1
    from devupdate.audit.models import AuditEvent

    actors = {e.actor for e in AuditEvent.select().where(AuditEvent.action == "rule.sync")}
    assert actors == {f"sync:{fake.url}"}


@pytest.fixture(autouse=True)
def _shared(request):
    from catalogkit import docs_dir

    docs_dir()
