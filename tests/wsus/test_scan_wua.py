"""A test Windows Update Agent (spec/wsus.md §8.5): zeep, built from the Client WSDL, runs the
prerequisite-wave loop of [MS-WUSP] §3.1.5.7 against ``devupdate serve`` in SOAP 1.1 and 1.2, with
a simple evaluator (categories and detectoids count as installed, read from the Core fragment the
server sent). Paging, Truncated, IsLeaf waves, OutOfScopeRevisionIDs, ChangedUpdates, RefreshCache
and GetExtendedUpdateInfo are exercised end to end over a catalog of the captured documents plus
synthetic chains."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS, LEAF, SMALL, category, docs_dir, software

from devupdate.wsus.catalog import service, store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.client import cookies, keys
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.targeting import service as targeting

zeep = pytest.importorskip("zeep", reason="zeep is a test dependency: pip install -e '.[test]'")

WSDL = Path(__file__).resolve().parents[2] / "devupdate" / "wsus" / "soap" / "wsdl" / "ClientWebService.fixed.wsdl"
CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
CLIENT_ID = "0d1e2f3a-0000-4000-8000-00000000a9e7"
DETECTOIDS = ("be4048db-157c-4532-9582-7f05099590c9", "0aac58ee-82a0-4452-a7fa-19f68398f1fa",
              "59653007-e2e9-4f71-8525-2ff588527978")
CHAIN = [f"c1c1c1c1-0000-4000-8000-{n:012d}" for n in range(4)]
LEAVES = [f"1eaf1eaf-0000-4000-8000-{n:012d}" for n in range(70)]
UPDATE_TYPE = re.compile(r'<Properties UpdateType="(\w+)"')


def seed() -> None:
    docs = [parse_update(path.read_bytes()) for path in sorted(docs_dir().glob("*.xml"))]
    extra = [category(DEFENDER, "Microsoft Defender Antivirus", "Product", parent=COMPANY),
             category(DEFINITIONS, "Definition Updates", "UpdateClassification"),
             *(software(uid, title="A detectoid").replace('UpdateType="Software"', 'UpdateType="Detectoid"')
               for uid in DETECTOIDS),
             software(CHAIN[0], title="Servicing stack", categories=(DEFENDER,)),
             *(software(CHAIN[n], title=f"Chain {n}", prerequisites=(CHAIN[n - 1],), categories=(DEFENDER,))
               for n in range(1, len(CHAIN))),
             *(software(uid, title=f"Leaf {n}", prerequisites=(CHAIN[-1],), categories=(DEFENDER, DEFINITIONS))
               for n, uid in enumerate(LEAVES))]
    store.import_documents(docs + [parse_update(text.encode()) for text in extra])
    service.select_product(DEFENDER, actor="test")


class Agent:
    """The client side: its cache of UpdateInfo by RevisionID and the loop rules."""

    def __init__(self, client, url: str, binding: str, installed: set[str]):
        self.service = client.create_service(f"{{{CLIENT_NS}}}{binding}", url)
        state = cookies.new_state(cookies.CLIENT, CLIENT_ID, now=datetime.now(UTC), lifetime=3600, protocol="2.90",
                                  config=config_stamp())
        self.cookie = {"Expiration": state.expires_at, "EncryptedData": keys.seal(state)}
        self.installed = installed
        self.cache: dict[int, dict] = {}  # RevisionID → {update_id, is_leaf, action, type}
        self.pages: list = []

    def evaluate(self, entry: dict) -> bool:
        return entry["type"] in ("Category", "Detectoid") or entry["update_id"] in self.installed

    def sync(self):
        installed = [rid for rid, e in self.cache.items() if not e["is_leaf"] and self.evaluate(e)]
        other = [rid for rid in self.cache if rid not in installed]
        result = self.service.SyncUpdates(cookie=self.cookie, parameters={
            "ExpressQuery": False, "InstalledNonLeafUpdateIDs": {"int": installed} if installed else None,
            "OtherCachedUpdateIDs": {"int": other} if other else None, "SkipSoftwareSync": False,
            "NeedTwoGroupOutOfScopeUpdates": True})
        self.cookie = {"Expiration": result.NewCookie.Expiration, "EncryptedData": result.NewCookie.EncryptedData}
        self.pages.append(result)
        for rid in (result.OutOfScopeRevisionIDs.int if result.OutOfScopeRevisionIDs else []):
            self.cache.pop(rid, None)
        for info in (result.NewUpdates.UpdateInfo if result.NewUpdates else []):
            assert info.Deployment is not None and info.Deployment.ID > 0
            core = info.Xml
            identity = re.search(r'UpdateID="([0-9a-fA-F-]{36})" RevisionNumber="(\d+)"', core)
            self.cache[info.ID] = {"update_id": identity.group(1).lower(), "revision": int(identity.group(2)),
                                   "is_leaf": info.IsLeaf, "action": info.Deployment.Action,
                                   "type": UPDATE_TYPE.search(core).group(1)}
        for info in (result.ChangedUpdates.UpdateInfo if result.ChangedUpdates else []):
            assert info.Xml is None
            self.cache[info.ID].update(is_leaf=info.IsLeaf, action=info.Deployment.Action)
        return result

    def scan(self, limit: int = 40) -> list:
        start = len(self.pages)
        for _ in range(limit):
            result = self.sync()
            new = result.NewUpdates.UpdateInfo if result.NewUpdates else []
            if not result.Truncated and all(info.IsLeaf for info in new):
                return self.pages[start:]
        raise AssertionError("the scan did not end")

    def by_update(self) -> dict[str, tuple[int, dict]]:
        return {e["update_id"]: (rid, e) for rid, e in self.cache.items()}


@pytest.fixture(scope="module")
def client():
    return zeep.Client(str(WSDL))


@pytest.mark.parametrize("binding", ["ClientSoap", "ClientSoap12"])
def test_the_agent_loop_end_to_end(live_server, rt, client, binding):
    seed()
    targeting.register_computer(CLIENT_ID, {"OSMajorVersion": 10, "OSBuildNumber": 26200})
    server = live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")
    agent = Agent(client, server.url + "/ClientWebService/client.asmx", binding, installed=set(CHAIN))
    pages = agent.scan()
    waves = [[agent.cache[i.ID]["update_id"] if i.ID in agent.cache else i.ID
              for i in (p.NewUpdates.UpdateInfo if p.NewUpdates else [])] for p in pages]
    # wave 1: what needs nothing (Company, classification, detectoids, the chain's start), then one
    # link of the chain per wave, then the 70 leaves, the bundle and its members in pages of 30
    assert set(waves[0]) == {COMPANY, DEFINITIONS, *DETECTOIDS}
    chain_wave = {uid: n for n, wave in enumerate(waves) for uid in wave if uid in CHAIN}
    assert [chain_wave[uid] for uid in CHAIN] == sorted(chain_wave.values())
    assert len(set(chain_wave.values())) == len(CHAIN)
    truncated = [p.Truncated for p in pages]
    assert truncated.count(True) >= 2 and truncated[-1] is False
    assert all(len(w) <= 30 for w in waves)
    assert all(p.DriverSyncNotNeeded == "true" for p in pages)
    found = agent.by_update()
    assert len(found) == len(agent.cache)  # one revision per UpdateID
    assert set(LEAVES) | set(CHAIN) | {BUNDLE, LEAF, SMALL} <= set(found)
    assert found[LEAVES[0]][1]["action"] == "PreDeploymentCheck" and found[LEAF][1]["action"] == "Bundle"
    assert found[COMPANY][1]["action"] == "Evaluate" and not found[COMPANY][1]["is_leaf"]
    assert not found[CHAIN[-1]][1]["is_leaf"] and found[LEAVES[0]][1]["is_leaf"]

    # nothing new on a rescan
    again = agent.sync()
    assert again.NewUpdates is None and again.OutOfScopeRevisionIDs is None and again.ChangedUpdates is None

    # an approval reaches the cached client as a ChangedUpdates entry, once
    targeting.approve(LEAVES[5], "All Computers", "install", actor="test")
    changed = agent.sync()
    assert [(i.ID, i.Deployment.Action, i.IsLeaf) for i in changed.ChangedUpdates.UpdateInfo] == [
        (found[LEAVES[5]][0], "Install", True)]
    assert agent.sync().ChangedUpdates is None

    # a new revision replaces the cached one; a declined update leaves the scope
    store.import_documents([parse_update(software(LEAVES[7], 101, title="Leaf 7 v2", prerequisites=(CHAIN[-1],),
                                                  categories=(DEFENDER,)).encode())])
    service.decline(LEAVES[8], actor="test")
    old7, old8 = found[LEAVES[7]][0], found[LEAVES[8]][0]
    result = agent.sync()
    assert sorted(result.OutOfScopeRevisionIDs.int) == sorted([old7, old8])
    assert [agent.cache[i.ID]["revision"] for i in result.NewUpdates.UpdateInfo] == [101]

    # a prerequisite that is no longer a leaf: IsLeaf flips for the cached client
    store.import_documents([parse_update(software("f1f1f1f1-0000-4000-8000-000000000001", title="Needs leaf 9",
                                                  prerequisites=(LEAVES[9],), categories=(DEFENDER,)).encode())])
    changed = agent.sync()
    assert (found[LEAVES[9]][0], False) in [(i.ID, i.IsLeaf) for i in changed.ChangedUpdates.UpdateInfo]

    # RefreshCache (after ServerChanged): the cached identities give their RevisionIDs, IsLeaf, deployments
    identities = [{"UpdateID": e["update_id"], "RevisionNumber": e["revision"]} for e in agent.cache.values()]
    refreshed = agent.service.RefreshCache(cookie=agent.cookie, globalIDs={"UpdateIdentity": identities})
    answers = {r.RevisionID: (r.IsLeaf, r.Deployment.Action) for r in refreshed}
    expected = {rid: (e["is_leaf"], e["action"]) for rid, e in agent.cache.items() if e["action"] != "Bundle"}
    assert answers == expected

    # GetExtendedUpdateInfo: Extended and localized fragments of the cached revisions, 50 at a time
    rids = sorted(agent.cache)[:50]
    info = agent.service.GetExtendedUpdateInfo(cookie=agent.cookie, revisionIDs={"int": rids}, infoTypes={
        "XmlUpdateFragmentType": ["Extended", "LocalizedProperties"]}, locales={"string": ["en-US", "en"]})
    ids = [u.ID for u in info.Updates.Update]
    assert sorted(set(ids)) == rids and info.OutOfScopeRevisionIDs is None
    titles = [u.Xml for u in info.Updates.Update if u.Xml.startswith("<LocalizedProperties>")]
    assert len(titles) == len(rids)
