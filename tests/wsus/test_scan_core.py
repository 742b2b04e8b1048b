"""The pure scan core (spec/wsus.md §3.5–§3.8, §6.3, §6.4, §8.5): synthetic chains, a test WUA
driver that loops like the Windows Update Agent, paging, out-of-scope and changed updates."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime

import pytest

from devupdate.wsus.client import scan
from devupdate.wsus.client.scan import Deployment, Node

DAY = date(2026, 10, 4)


class Catalog:
    """A synthetic catalog: current revisions by UpdateID; counts what ``fetch`` was asked."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.asked: list[list[str]] = []
        self.next_rid = 1000

    def add(self, uid: str, *clauses: Collection[str], bundled: tuple[str, ...] = (), rid: int | None = None,
            change_seq: int = 1, update_type: str = "Software") -> Node:
        if rid is None:
            self.next_rid += 1
            rid = self.next_rid
        node = Node(revision_id=rid, update_id=uid, prerequisites=tuple(frozenset(c) for c in clauses),
                    bundled=bundled, change_seq=change_seq, update_type=update_type)
        self.nodes[uid] = node
        self.relink()
        return node

    def relink(self) -> None:
        """IsLeaf as §6.3: false exactly when some current revision's prerequisites name the UpdateID."""
        named = {uid for node in self.nodes.values() for clause in node.prerequisites for uid in clause}
        for uid, node in list(self.nodes.items()):
            if node.is_leaf != (uid not in named):
                self.nodes[uid] = Node(node.revision_id, uid, node.prerequisites, node.bundled, uid not in named,
                                       node.change_seq, node.update_type)

    def fetch(self, uids: Collection[str]) -> Mapping[str, Node]:
        self.asked.append(sorted(uids))
        return {uid: self.nodes[uid] for uid in uids if uid in self.nodes}


def pdc(change_seq: int = 0) -> Deployment:
    return Deployment(action=scan.PRE_DEPLOYMENT_CHECK, last_change=DAY, change_seq=change_seq)


def install(dep_id: int = 7, change_seq: int = 0) -> Deployment:
    return Deployment(action=scan.INSTALL, last_change=DAY, id=dep_id, change_seq=change_seq)


class Wua:
    """The client rules of [MS-WUSP] §3.1.5.7 with a simple evaluator: a revision is installed when
    the test says so, categories and detectoids always; non-leaf installed revisions go back in
    InstalledNonLeafUpdateIDs, everything else in OtherCachedUpdateIDs. Loops while Truncated or a
    returned update is not a leaf."""

    def __init__(self, catalog: Catalog, roots: Mapping[str, Deployment], *, installed: Collection[str] = (),
                 page_size: int = 30) -> None:
        self.catalog, self.roots, self.page_size = catalog, dict(roots), page_size
        self.installed_uids = set(installed)
        self.cache: dict[int, scan.Offer] = {}
        self.calls: list[scan.ScanResult] = []
        self.high_water = 0

    def is_installed(self, item: scan.Offer) -> bool:
        node = self.catalog.nodes.get(item.update_id)
        return (node is not None and node.update_type in ("Category", "Detectoid")) \
            or item.update_id in self.installed_uids

    def request(self) -> scan.ScanRequest:
        installed = frozenset(rid for rid, item in self.cache.items() if not item.is_leaf and self.is_installed(item))
        return scan.ScanRequest(installed=installed, other_cached=frozenset(self.cache.keys() - installed),
                                page_size=self.page_size, high_water=self.high_water)

    def call(self, high_water: int | None = None) -> scan.ScanResult:
        """One SyncUpdates; the new cookie's high-water mark is ``high_water`` or, by default, the
        highest change sequence of the catalog and the deployments (the server's snapshot)."""
        d = scan.closure(self.roots, self.catalog.fetch, derived_date=DAY)
        result = scan.sync(self.request(), d)
        self.calls.append(result)
        for rid in result.out_of_scope:
            self.cache.pop(rid, None)
        for item in result.new_updates + result.changed_updates:
            self.cache[item.revision_id] = item
        if high_water is None:
            high_water = max([0, *(n.change_seq for n in self.catalog.nodes.values()),
                              *(dep.change_seq for dep in self.roots.values())])
        self.high_water = high_water
        return result

    def scan(self, limit: int = 100) -> int:
        for count in range(1, limit + 1):
            result = self.call()
            if not result.truncated and all(item.is_leaf for item in result.new_updates):
                return count
        raise AssertionError("the scan did not end")


def categories(catalog: Catalog) -> tuple[str, str, str]:
    catalog.add("company", update_type="Category")
    catalog.add("family", ["company"], update_type="Category")
    catalog.add("product", ["family"], update_type="Category")
    return "company", "family", "product"


def test_category_chain_comes_in_waves_like_the_captured_scan():
    """cap:wsus-m0-native/scan/000006–000008: Company (non-leaf), then ProductFamily, then the leaf
    product, one wave per call, as the client reports each installed non-leaf id back."""
    catalog = Catalog()
    categories(catalog)
    wua = Wua(catalog, {}, page_size=30)
    wua.high_water = 1  # the catalog's change sequence when the cookie was issued
    d = lambda: scan.closure({}, catalog.fetch, seeds=["product"], derived_date=DAY)  # noqa: E731
    first = scan.sync(wua.request(), d())
    assert [(i.update_id, i.is_leaf, i.deployment.action) for i in first.new_updates] == [
        ("company", False, "Evaluate")]
    wua.cache.update({i.revision_id: i for i in first.new_updates})
    second = scan.sync(wua.request(), d())
    assert [(i.update_id, i.is_leaf) for i in second.new_updates] == [("family", False)]
    assert second.out_of_scope == () and second.changed_updates == ()
    wua.cache.update({i.revision_id: i for i in second.new_updates})
    third = scan.sync(wua.request(), d())
    assert [(i.update_id, i.is_leaf) for i in third.new_updates] == [("product", True)]
    assert not third.truncated


def test_prerequisite_chain_waves_paging_and_one_revision_per_update():
    catalog = Catalog()
    company, family, product = categories(catalog)
    catalog.add("base", ["product"])
    catalog.add("ssu", ["base"])
    leaves = [f"leaf-{n:03d}" for n in range(75)]
    for uid in leaves:
        catalog.add(uid, ["ssu", "nonexistent"], ["product"])
    roots = {uid: pdc() for uid in ["base", "ssu", *leaves]}
    wua = Wua(catalog, roots, installed={"base", "ssu"}, page_size=30)
    calls = wua.scan()
    # waves: company, family, product, base, ssu (each opens the next), then 75 leaves in 3 pages
    waves = [[i.update_id for i in result.new_updates] for result in wua.calls]
    assert waves[:5] == [[company], [family], [product], ["base"], ["ssu"]]
    assert [len(w) for w in waves[5:]] == [30, 30, 15]
    assert [r.truncated for r in wua.calls] == [False] * 5 + [True, True, False]
    assert calls == 8
    assert sorted(i.update_id for i in wua.cache.values()) == sorted([company, family, product, "base", "ssu", *leaves])
    # ascending RevisionID inside a depth; never two revisions of one UpdateID
    assert waves[5] == sorted(waves[5], key=lambda uid: catalog.nodes[uid].revision_id)
    assert len({i.update_id for i in wua.cache.values()}) == len(wua.cache)
    # a page's deployments: roots are PreDeploymentCheck, categories Evaluate
    assert {wua.cache[catalog.nodes[u].revision_id].deployment.action for u in leaves} == {"PreDeploymentCheck"}
    assert wua.cache[catalog.nodes[company].revision_id].deployment.action == "Evaluate"
    # the next scan has nothing new, nothing out of scope, nothing changed
    again = wua.call()
    assert (again.new_updates, again.out_of_scope, again.changed_updates, again.truncated) == ((), (), (), False)


def test_a_clause_needs_one_installed_literal_and_each_clause_counts():
    catalog = Catalog()
    catalog.add("a")
    catalog.add("b")
    catalog.add("x", ["a", "b"])  # a OR b
    catalog.add("y", ["a"], ["b"])  # a AND b
    roots = {"x": pdc(), "y": pdc()}
    d = scan.closure(roots, catalog.fetch)
    rid = {uid: node.revision_id for uid, node in catalog.nodes.items()}
    assert set(scan.needed(d, {rid["a"]})) == {rid["a"], rid["b"], rid["x"]}
    assert set(scan.needed(d, {rid["a"], rid["b"]})) == set(rid.values())
    assert set(scan.needed(d, set())) == {rid["a"], rid["b"]}


def test_unknown_prerequisite_never_satisfied_and_not_in_closure():
    catalog = Catalog()
    catalog.add("x", ["missing"])
    d = scan.closure({"x": pdc()}, catalog.fetch)
    assert set(d.nodes) == {"x"}
    assert scan.needed(d, set(range(5000))) == {}


def test_closure_reads_level_by_level_and_only_what_it_needs():
    catalog = Catalog()
    for n in range(50):
        catalog.add(f"unrelated-{n}")
    catalog.add("c")
    catalog.add("b", ["c"])
    catalog.add("a", ["b"])
    d = scan.closure({"a": pdc()}, catalog.fetch)
    assert set(d.nodes) == {"a", "b", "c"}
    assert catalog.asked == [["a"], ["b"], ["c"]]
    assert d.depth == {"c": 0, "b": 1, "a": 2}


def test_cycles_end_and_long_chains_do_not_recurse():
    catalog = Catalog()
    catalog.add("p", ["q"])
    catalog.add("q", ["p"])
    d = scan.closure({"p": pdc()}, catalog.fetch)
    assert set(d.nodes) == {"p", "q"}
    assert scan.needed(d, set()) == {}
    chain = Catalog()
    chain.add("n0")
    for n in range(1, 3000):
        chain.add(f"n{n}", [f"n{n - 1}"])
    d = scan.closure({"n2999": pdc()}, chain.fetch)
    assert d.depth["n2999"] == 2999 and len(chain.asked) == 3000


def test_max_nodes_bounds_the_closure():
    catalog = Catalog()
    for n in range(10):
        catalog.add(f"u{n}")
    with pytest.raises(ValueError):
        scan.closure({f"u{n}": pdc() for n in range(10)}, catalog.fetch, max_nodes=5)


def test_bundles_members_get_bundle_and_do_not_become_non_leaf():
    catalog = Catalog()
    catalog.add("member-1")
    catalog.add("member-2")
    catalog.add("pre")
    catalog.add("bundle", ["pre"], bundled=("member-1", "member-2"))
    d = scan.closure({"bundle": install(32158)}, catalog.fetch)
    assert d.deployment("member-1").action == "Bundle"
    assert d.deployment("pre").action == "Evaluate"
    assert d.deployment("bundle") == install(32158)
    assert catalog.nodes["member-1"].is_leaf and not catalog.nodes["pre"].is_leaf
    # a member that is a root itself keeps its own deployment
    d = scan.closure({"bundle": install(1), "member-1": install(2)}, catalog.fetch)
    assert d.deployment("member-1").id == 2
    # members of a bundle that is only a prerequisite ride along as Evaluate
    catalog.add("top", ["bundle"])
    d = scan.closure({"top": pdc()}, catalog.fetch)
    assert d.deployment("member-1").action == "Evaluate"


def test_out_of_scope_has_unknown_ids_and_replaced_revisions():
    catalog = Catalog()
    catalog.add("a", rid=10)
    wua = Wua(catalog, {"a": pdc()})
    wua.cache[10] = scan.offer(scan.closure({"a": pdc()}, catalog.fetch), catalog.nodes["a"])
    request = scan.ScanRequest(installed=frozenset(), other_cached=frozenset({10, 999_999}))
    catalog.add("a", rid=11)  # a new revision of the same UpdateID
    d = scan.closure({"a": pdc()}, catalog.fetch)
    result = scan.sync(request, d)
    assert result.out_of_scope == (10, 999_999)
    assert [i.revision_id for i in result.new_updates] == [11]


def test_driver_loop_drops_revisions_that_left_the_scope():
    catalog = Catalog()
    catalog.add("a")
    catalog.add("b")
    wua = Wua(catalog, {"a": pdc(), "b": pdc()})
    wua.scan()
    assert len(wua.cache) == 2
    del wua.roots["b"]  # declined, or no longer deployed with ClientScope=approved
    result = wua.call()
    assert result.out_of_scope == (catalog.nodes["b"].revision_id,)
    assert set(wua.cache) == {catalog.nodes["a"].revision_id}


def test_changed_updates_after_the_high_water_mark():
    catalog = Catalog()
    catalog.add("pre", change_seq=5)
    catalog.add("a", ["pre"], change_seq=5)
    catalog.add("b", change_seq=5)
    roots = {"a": pdc(change_seq=5), "b": pdc(change_seq=5)}
    wua = Wua(catalog, roots, installed={"pre"})
    wua.scan()
    wua.high_water = 5
    assert wua.call(high_water=5).changed_updates == ()
    # approving b (a deployment change at seq 6) and a IsLeaf flip of pre's neighbour at seq 7
    wua.roots["b"] = install(44, change_seq=6)
    changed = wua.call(high_water=6).changed_updates
    assert [(i.update_id, i.deployment.action, i.deployment.id) for i in changed] == [("b", "Install", 44)]
    assert wua.call(high_water=6).changed_updates == ()
    catalog.add("c", ["b"], change_seq=7)  # b is no leaf any more (its change_seq bumped by the store)
    node = catalog.nodes["b"]
    catalog.nodes["b"] = Node(node.revision_id, "b", node.prerequisites, node.bundled, False, 7, node.update_type)
    changed = wua.call(high_water=7).changed_updates
    assert [(i.update_id, i.is_leaf) for i in changed] == [("b", False)]


def test_two_group_out_of_scope_split():
    catalog = Catalog()
    catalog.add("in-filter", rid=1)
    request = scan.ScanRequest(installed=frozenset(), other_cached=frozenset({1, 2, 3}), split_deployed=True)
    d = scan.closure({"in-filter": pdc()}, catalog.fetch)
    result = scan.sync(request, d, still_deployed=lambda rids: {2} & set(rids))
    assert result.out_of_scope == (3,) and result.deployed_out_of_scope == (2,)
    plain = scan.sync(scan.ScanRequest(installed=frozenset(), other_cached=frozenset({1, 2, 3})), d,
                      still_deployed=lambda rids: {2})
    assert plain.out_of_scope == (2, 3) and plain.deployed_out_of_scope == ()


def test_page_size_exact_boundary():
    catalog = Catalog()
    for n in range(30):
        catalog.add(f"u{n}")
    roots = {f"u{n}": pdc() for n in range(30)}
    d = scan.closure(roots, catalog.fetch)
    result = scan.sync(scan.ScanRequest(installed=frozenset(), page_size=30), d)
    assert len(result.new_updates) == 30 and not result.truncated
    result = scan.sync(scan.ScanRequest(installed=frozenset(), page_size=29), d)
    assert len(result.new_updates) == 29 and result.truncated


def test_refresh_and_in_scope():
    catalog = Catalog()
    catalog.add("a", rid=1)
    catalog.add("b", ["a"], rid=2)
    catalog.add("other", rid=3)
    d = scan.closure({"b": install(9)}, catalog.fetch)
    assert [(o.revision_id, o.deployment.action, o.is_leaf) for o in scan.refresh(d, [2, 3, 1, 2, 77])] == [
        (2, "Install", True), (1, "Evaluate", False)]
    assert scan.in_scope(d, [3, 1, 1, 2, 88]) == ([1, 2], [3, 88])


def test_wire_deployment_rules():
    base = dict(last_change=DAY, id=3, deadline=datetime(2026, 11, 1, tzinfo=UTC))
    assert scan.wire(Deployment(action="Block", **base), os_build=26200).action == "PreDeploymentCheck"
    optional_new = scan.wire(Deployment(action="OptionalInstall", **base), os_build=18362)
    assert (optional_new.action, optional_new.is_assigned) == ("OptionalInstall", False)
    optional_old = scan.wire(Deployment(action="OptionalInstall", **base), os_build=17763)
    assert (optional_old.action, optional_old.is_assigned) == ("Install", False)
    assert scan.wire(Deployment(action="OptionalInstall", **base), os_build=None).action == "Install"
    assert scan.wire(Deployment(action="Install", download_priority=2, **base), os_build=1).download_priority is None
    assert scan.wire(Deployment(action="Install", download_priority=3, **base), os_build=1).download_priority == 3
    assert scan.wire(Deployment(action="Uninstall", **base), os_build=1).is_assigned
    with pytest.raises(ValueError):
        Deployment(action="Remove", last_change=DAY)


def test_category_scan_shapes():
    kinds = {"p1": "Product", "p2": "Product", "c1": "UpdateClassification", "f": "ProductFamily"}
    assert scan.category_scan([(0, "p1")], kinds) == scan.CategoryScan(("p1",), ())
    assert scan.category_scan([(0, "p1"), (0, "c1"), (1, "p2")], kinds) == scan.CategoryScan(("p1", "p2"), ())
    assert scan.category_scan([(0, "p1"), (1, "nope"), (1, "p2")], kinds) == scan.CategoryScan(("p1",), ("nope",))
    assert scan.category_scan([(0, "p1"), (1, "f")], kinds) == scan.CategoryScan((), ())
    assert scan.category_scan([(0, "p1"), (0, "p2")], kinds) == scan.CategoryScan((), ())
    assert scan.category_scan([(0, "c1")], kinds) == scan.CategoryScan((), ())


def test_driver_sync_not_needed_by_protocol_version():
    assert scan.driver_sync_not_needed("2.90") is True
    assert scan.driver_sync_not_needed("1.7") is True
    assert scan.driver_sync_not_needed("1.6") is None
    assert scan.driver_sync_not_needed("2.90", drivers_in_scope=True) is False
    assert scan.at_least("1.8", (1, 8)) and not scan.at_least("1.10", (1, 11)) and scan.at_least("1.10", (1, 9))


def test_a_regrouping_after_the_mark_marks_every_cached_revision_changed():
    catalog = Catalog()
    catalog.add("a", change_seq=3)
    catalog.add("b", change_seq=3)
    d = scan.closure({"a": pdc(change_seq=2), "b": pdc(change_seq=2)}, catalog.fetch)
    cached = frozenset(node.revision_id for node in catalog.nodes.values())
    quiet = scan.sync(scan.ScanRequest(installed=frozenset(), other_cached=cached, high_water=5, regrouped_seq=4), d)
    assert quiet.changed_updates == ()
    moved = scan.sync(scan.ScanRequest(installed=frozenset(), other_cached=cached, high_water=5, regrouped_seq=6), d)
    assert sorted(i.update_id for i in moved.changed_updates) == ["a", "b"]
