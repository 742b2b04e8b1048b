"""AGENT_STATUS_30 (156) over real HTTP, exactly as the §3.9 table says: the MiscData lists set needed /
installed / installed-pending-reboot / failed / downloaded, and every other root (§3.5 step 1) of the
reporting computer becomes not applicable — the updates of the selected products (``ClientScope=all``)
and its effective explicit deployments, following its groups; under ``ClientScope=approved`` only
the explicit deployments. Declined updates, updates of no selected product and another group's
deployments are no roots and get no state. The reports and the counters follow."""

from __future__ import annotations

import requests
from catalogkit import category, software
from reportkit import ACTION, PATH, batch, event

from devupdate.wsus.catalog import service as catalog
from devupdate.wsus.catalog import store as catalog_store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.client import cookies, keys
from devupdate.wsus.compliance import reports
from devupdate.wsus.compliance.models import COUNTERS, ComplianceState, ComputerStatus, counters_of
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.targeting import service as targeting

PRODUCT = "c0c0c0c0-0000-4000-8000-0000000000c1"
R1, R2, R3, R4 = (f"a1a1a1a1-0000-4000-8000-00000000000{n}" for n in range(1, 5))
DECLINED = "dddddddd-0000-4000-8000-000000000001"
ELSEWHERE = "eeeeeeee-0000-4000-8000-000000000001"  # of no selected product, approved for All Computers
PILOT_ONLY = "eeeeeeee-0000-4000-8000-000000000002"  # of no selected product, approved for Pilot only
STALE = "5a5a5a5a-0000-4000-8000-000000000001"  # reported once, no root: the status no longer lists it
PC1 = "11111111-2222-4333-8444-555555555501"  # in Pilot
PC2 = "11111111-2222-4333-8444-555555555502"  # unassigned


def cookie_xml(client: str) -> str:
    from datetime import UTC, datetime

    state = cookies.new_state(cookies.CLIENT, client, now=datetime.now(UTC), lifetime=3600, config=config_stamp())
    return (f"<cookie><Expiration>{state.expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
            f"<EncryptedData>{cookies.to_text(keys.seal(state))}</EncryptedData></cookie>")


def post(server, client: str, *events: str) -> None:
    response = requests.post(server.url + PATH, data=batch(*events, cookie=cookie_xml(client)), timeout=30,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION})
    assert response.status_code == 200 and b"<ReportEventBatchResult>true</ReportEventBatchResult>" in \
        response.content, response.text


def states(client: str) -> dict[str, str]:
    return {row.update_id: row.state for row in ComplianceState.select().where(ComplianceState.client_id == client)}


def counters(client: str) -> dict[str, int]:
    status = ComputerStatus.get_by_id(client)
    kept = {name: getattr(status, name) for name in COUNTERS}
    recount = dict.fromkeys(COUNTERS, 0)
    for state in states(client).values():
        for name in counters_of(state):
            recount[name] += 1
    assert kept == recount
    return kept


def seed() -> None:
    catalog_store.import_documents(parse_update(text.encode()) for text in [
        category(PRODUCT, "A product", "Product"),
        *(software(uid, categories=(PRODUCT,)) for uid in (R1, R2, R3, R4, DECLINED)),
        software(ELSEWHERE), software(PILOT_ONLY)])
    catalog.select_product(PRODUCT, actor="test")
    catalog.decline(DECLINED, actor="test")
    targeting.add_group("Pilot", actor="test")
    pc1 = targeting.register_computer(PC1, {"DnsName": "pc1.corp.example"})
    targeting.register_computer(PC2, {"DnsName": "pc2.corp.example"})
    targeting.assign_computer(str(pc1.id), ["Pilot"], actor="test")
    targeting.approve(ELSEWHERE, "All Computers", "install", actor="test")
    targeting.approve(PILOT_ONLY, "Pilot", "install", actor="test")


def test_every_other_root_of_the_computer_becomes_not_applicable(rt, live_server):
    keys.forget_cache()
    seed()
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    post(server, PC1, event(183, update=STALE, target=PC1, time="2026-10-04T14:00:00Z"))
    post(server, PC1, event(156, target=PC1, time="2026-10-04T15:00:00Z", misc=(
        f"U={R1.upper()}", f"V={{{R2}}}", f"W={R3}", "B=1234")))
    assert states(PC1) == {R1: "needed", R2: "installed", R3: "installed-pending-reboot",
                           R4: "not-applicable", ELSEWHERE: "not-applicable", PILOT_ONLY: "not-applicable",
                           STALE: "not-applicable"}
    assert counters(PC1) == {"needed": 1, "installed": 2, "pending_reboot": 1, "failed": 0, "not_applicable": 4}
    # the other computer is not in Pilot: that group's deployment is no root of it
    post(server, PC2, event(156, target=PC2, time="2026-10-04T15:00:00Z", misc=(f"g={R4}", f"h={R1}")))
    assert states(PC2) == {R4: "failed", R1: "downloaded", R2: "not-applicable", R3: "not-applicable",
                           ELSEWHERE: "not-applicable"}
    # a later status: the newer lists win, an install reported after it wins over it for its update
    post(server, PC1, event(156, target=PC1, time="2026-10-04T16:00:00Z", misc=(f"g={R4}",)),
         event(183, update=R4, target=PC1, time="2026-10-04T16:00:05Z"))
    assert states(PC1) == {R1: "not-applicable", R2: "not-applicable", R3: "not-applicable", R4: "installed",
                           ELSEWHERE: "not-applicable", PILOT_ONLY: "not-applicable", STALE: "not-applicable"}
    # an older status arriving late changes nothing
    post(server, PC1, event(156, target=PC1, time="2026-10-04T15:30:00Z", misc=(f"U={R1};{R2}",)))
    assert states(PC1)[R1] == "not-applicable" and states(PC1)[R4] == "installed"
    assert DECLINED not in states(PC1) and DECLINED not in states(PC2)
    by_update = {row["UpdateID"]: row for row in reports.updates()}
    assert {k: by_update[R4][k] for k in ("Needed", "Installed", "Failed", "NotApplicable", "Unknown")} == {
        "Needed": 0, "Installed": 1, "Failed": 1, "NotApplicable": 0, "Unknown": 0}
    assert {k: by_update[PILOT_ONLY][k] for k in ("Installed", "NotApplicable", "Unknown")} == {
        "Installed": 0, "NotApplicable": 1, "Unknown": 1}


def test_client_scope_approved_counts_only_explicit_deployments(rt, live_server):
    keys.forget_cache()
    seed()
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true", DEVUPDATE_WSUS_CLIENT_SCOPE="approved")
    post(server, PC1, event(156, target=PC1, time="2026-10-04T15:00:00Z", misc=(f"U={R1}",)))
    assert states(PC1) == {R1: "needed", ELSEWHERE: "not-applicable", PILOT_ONLY: "not-applicable"}
    post(server, PC2, event(156, target=PC2, time="2026-10-04T15:00:00Z"))
    assert states(PC2) == {ELSEWHERE: "not-applicable"}
    # a computer this server never issued a cookie for has no roots: only what it lists
    ghost = "99999999-2222-4333-8444-555555555599"
    post(server, ghost, event(156, target=ghost, time="2026-10-04T15:00:00Z", misc=(f"V={R2}",)))
    assert states(ghost) == {R2: "installed"}
