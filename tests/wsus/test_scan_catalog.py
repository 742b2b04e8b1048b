"""The scan's database side (spec/wsus.md §3.5, §6.3): roots, closure and pages read from a catalog
seeded with the captured documents plus synthetic chains, in one snapshot, reading only the
closure (never the catalog)."""

from __future__ import annotations

from datetime import date

from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS, LEAF, SMALL, category, docs_dir, software

from devupdate.wsus.catalog import service, store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.catalog.models import Update
from devupdate.wsus.client import catalogview, scan

DAY = date(2026, 10, 4)
CHAIN = [f"c0c0c0c0-0000-4000-8000-{n:012d}" for n in range(6)]
UNRELATED = [f"dddddddd-0000-4000-8000-{n:012d}" for n in range(300)]
OTHER_PRODUCT = "eeeeeeee-0000-4000-8000-000000000001"
#: the detectoids KB2267602 and its leaf name in its prerequisites (not captured: synthetic stand-ins)
DETECTOIDS = ("be4048db-157c-4532-9582-7f05099590c9", "0aac58ee-82a0-4452-a7fa-19f68398f1fa",
              "59653007-e2e9-4f71-8525-2ff588527978")


def detectoid(update_id: str) -> str:
    return software(update_id, title="A detectoid").replace('UpdateType="Software"', 'UpdateType="Detectoid"')


def seed() -> None:
    docs = [parse_update(path.read_bytes()) for path in sorted(docs_dir().glob("*.xml"))]
    extra = [category(DEFENDER, "Microsoft Defender Antivirus", "Product", parent=COMPANY),
             category(DEFINITIONS, "Definition Updates", "UpdateClassification"),
             category(OTHER_PRODUCT, "Another product", "Product", parent=COMPANY),
             *(detectoid(uid) for uid in DETECTOIDS)]
    # a prerequisite chain in the Defender product: each link needs the one before
    extra.append(software(CHAIN[0], categories=(DEFENDER,)))
    extra += [software(CHAIN[n], prerequisites=(CHAIN[n - 1],), categories=(DEFENDER,)) for n in range(1, len(CHAIN))]
    # a catalog the client must never read: many updates of a product nobody selected
    extra += [software(uid, categories=(OTHER_PRODUCT,)) for uid in UNRELATED]
    store.import_documents(docs + [parse_update(text.encode()) for text in extra])


def installed_loop(target: catalogview.Target, *, scope: str, installs: set[str], page_size: int = 30):
    """The agent's loop over the real catalog: categories count as installed, the ids of ``installs``
    too; non-leaf installed revisions go back in InstalledNonLeafUpdateIDs."""
    cache: dict[int, scan.Offer] = {}
    kinds = {row.update_id: row.update_type for row in Update.select(Update.update_id, Update.update_type)}
    pages, reads = [], []
    for _ in range(50):
        with catalogview.snapshot():
            roots = catalogview.roots(target, scope=scope, today=DAY)
            fetcher = catalogview.Fetcher()
            d = scan.closure(roots, fetcher, derived_date=DAY)
            installed = frozenset(rid for rid, item in cache.items() if not item.is_leaf and (
                kinds[item.update_id] in ("Category", "Detectoid") or item.update_id in installs))
            result = scan.sync(scan.ScanRequest(installed=installed, other_cached=frozenset(cache.keys() - installed),
                                                page_size=page_size, high_water=catalogview.high_water()), d)
        reads.append(fetcher.rows_read)
        pages.append(result)
        for rid in result.out_of_scope:
            cache.pop(rid)
        cache.update({i.revision_id: i for i in result.new_updates})
        if not result.truncated and all(i.is_leaf for i in result.new_updates):
            return cache, pages, reads
    raise AssertionError("the scan did not end")


def test_approved_bundle_gives_its_closure_in_waves(install, database):
    seed()
    approved = scan.Deployment(action=scan.INSTALL, id=32158, last_change=DAY, change_seq=1)
    target = catalogview.Target(deployments={BUNDLE: approved})
    cache, pages, reads = installed_loop(target, scope="approved", installs=set())
    by_uid = {item.update_id: item for item in cache.values()}
    # Company → product (→ KB2267602 with its bundle members): one wave per non-leaf level
    assert [sorted(i.update_id for i in p.new_updates) for p in pages][:2] == [
        sorted([COMPANY, DEFINITIONS, *DETECTOIDS]), [DEFENDER]]
    assert by_uid[BUNDLE].deployment == approved
    assert by_uid[LEAF].deployment.action == "Bundle" and by_uid[SMALL].deployment.action == "Bundle"
    assert by_uid[COMPANY].deployment.action == "Evaluate" and not by_uid[COMPANY].is_leaf
    assert by_uid[BUNDLE].is_leaf and by_uid[LEAF].is_leaf
    assert not set(by_uid) & set(UNRELATED) and not set(by_uid) & set(CHAIN)
    # the working set: the closure's rows, not the 300 unrelated updates
    assert max(reads) < 200, reads  # the bundle row of each member, its prerequisites: ~150


def test_client_scope_all_offers_the_selected_products_with_prerequisite_waves(install, database):
    seed()
    service.select_product(DEFENDER, actor="test")
    target = catalogview.Target(deployments={})
    cache, pages, reads = installed_loop(target, scope="all", installs=set(CHAIN), page_size=3)
    by_uid = {item.update_id: item for item in cache.values()}
    assert set(CHAIN) <= set(by_uid) and BUNDLE in by_uid
    assert not set(by_uid) & set(UNRELATED)
    assert {by_uid[uid].deployment.action for uid in CHAIN} == {"PreDeploymentCheck"}
    assert by_uid[LEAF].deployment.action == "Bundle"  # a bundle member is never a root of its own
    chain_pages = [n for n, p in enumerate(pages) for i in p.new_updates if i.update_id in CHAIN]
    assert chain_pages == sorted(chain_pages) and len(set(chain_pages)) == len(CHAIN)  # one link per wave
    assert any(p.truncated for p in pages)  # pages of 3
    assert max(reads) < 200, reads  # the 300 unrelated updates would be 600 rows alone


def test_declined_and_deleted_roots_leave_and_new_revisions_replace(install, database):
    seed()
    service.select_product(DEFENDER, actor="test")
    target = catalogview.Target(deployments={})
    cache, _, _ = installed_loop(target, scope="all", installs=set(CHAIN))
    rid = next(i.revision_id for i in cache.values() if i.update_id == CHAIN[-1])
    store.set_declined(CHAIN[-1], True)
    with catalogview.snapshot():
        d = scan.closure(catalogview.roots(target, scope="all", today=DAY), catalogview.Fetcher())
    installed = frozenset(r for r, i in cache.items() if not i.is_leaf)
    result = scan.sync(scan.ScanRequest(installed=installed, other_cached=frozenset(cache) - installed), d)
    assert result.out_of_scope == (rid,)
    store.set_declined(CHAIN[-1], False)
    store.import_documents([parse_update(software(CHAIN[-1], 101, prerequisites=(CHAIN[-2],),
                                                  categories=(DEFENDER,)).encode())])
    with catalogview.snapshot():
        d = scan.closure(catalogview.roots(target, scope="all", today=DAY), catalogview.Fetcher())
    result = scan.sync(scan.ScanRequest(installed=installed, other_cached=frozenset(cache) - installed), d)
    assert result.out_of_scope == (rid,)
    assert [i.update_id for i in result.new_updates] == [CHAIN[-1]] and result.new_updates[0].revision_id != rid


def test_filter_categories_and_descendants(install, database):
    seed()
    service.select_product(COMPANY, actor="test")  # a company selects every product below it
    with catalogview.snapshot():
        assert {DEFENDER, OTHER_PRODUCT} <= catalogview.descendants([COMPANY])
        everything = catalogview.roots(catalogview.Target(deployments={}), scope="all", today=DAY)
        filtered = catalogview.roots(catalogview.Target(deployments={}), scope="all", today=DAY,
                                     filter_categories=[DEFENDER])
    assert set(UNRELATED) <= set(everything)
    assert set(CHAIN) <= set(filtered) and not set(filtered) & set(UNRELATED)
    with catalogview.snapshot():
        kinds = catalogview.known_categories([DEFENDER, DEFINITIONS, UNRELATED[0]])
    assert kinds == {DEFENDER: "Product", DEFINITIONS: "UpdateClassification"}
