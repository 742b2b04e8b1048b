"""Which revisions a scan gives a client (spec/wsus.md §3.5–§3.8, §6.3, §6.4): plain data in,
plain data out, no web framework, database or settings.

The database side hands in the client's cached RevisionIDs, the roots (the updates with an
effective deployment for the computer's groups, or every update of the synced products with
``ClientScope=all``) and a ``fetch`` that reads the current revisions of a set of UpdateIDs with
their prerequisite CNF, bundled UpdateIDs, IsLeaf and change sequence. From these the core
computes the closure D, the needed set N (each prerequisite clause satisfied by an installed
non-leaf RevisionID), the page of new updates in (prerequisite depth, RevisionID) order with
``Truncated``, the out-of-scope ids and the changed updates after the cookie's high-water mark.
``fetch`` is called once per level of the closure, so the working set is the closure and the
client's cache, never the catalog.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime

# --- deployment actions (§6.4) -------------------------------------------------------------------
INSTALL = "Install"
UNINSTALL = "Uninstall"
OPTIONAL_INSTALL = "OptionalInstall"
BLOCK = "Block"
EXPLICIT_ACTIONS = (INSTALL, UNINSTALL, OPTIONAL_INSTALL, BLOCK)
EVALUATE = "Evaluate"
BUNDLE = "Bundle"
PRE_DEPLOYMENT_CHECK = "PreDeploymentCheck"
DERIVED_ACTIONS = (EVALUATE, BUNDLE, PRE_DEPLOYMENT_CHECK)
#: Windows 10 1903: the first build that knows OptionalInstall ([MS-WUSP] note 22)
OPTIONAL_INSTALL_MIN_BUILD = 18362


@dataclass(frozen=True)
class Node:
    """The current revision of one UpdateID as the scan needs it."""

    revision_id: int
    update_id: str
    #: CNF: the revision is needed once every clause has one UpdateID whose current revision is installed
    prerequisites: tuple[frozenset[str], ...] = ()
    bundled: tuple[str, ...] = ()  # UpdateIDs of its bundle members
    is_leaf: bool = True
    change_seq: int = 0  # the update's last change (IsLeaf flips and declines bump it, §6.3)
    update_type: str = "Software"


@dataclass(frozen=True)
class Deployment:
    """An explicit deployment (``id`` set, ``action`` one of EXPLICIT_ACTIONS) or the implicit
    ``PreDeploymentCheck`` of an unapproved root (``id`` None: the database allocates it)."""

    action: str
    last_change: date
    id: int | None = None
    deadline: datetime | None = None
    download_priority: int | None = None  # 1 low, 2 normal, 3 high
    change_seq: int = 0  # when it last changed (a removal too: the caller keeps that stamp)

    def __post_init__(self) -> None:
        if self.action not in EXPLICIT_ACTIONS + DERIVED_ACTIONS:
            raise ValueError(f"no deployment action {self.action!r}")


@dataclass(frozen=True)
class WireDeployment:
    """The ``Deployment`` element as sent (§6.4); ``id`` None = a derived one whose stable id the
    database allocates per (revision, action)."""

    action: str
    is_assigned: bool
    last_change: date
    id: int | None = None
    deadline: datetime | None = None
    download_priority: int | None = None


def wire(deployment: Deployment, *, os_build: int | None) -> WireDeployment:
    """§6.4: Block goes out as PreDeploymentCheck; OptionalInstall only to builds ≥ 18362, others get
    Install with IsAssigned=false; the priority only when not normal."""
    action, assigned = deployment.action, True
    if action == BLOCK:
        action = PRE_DEPLOYMENT_CHECK
    elif action == OPTIONAL_INSTALL:
        assigned = False
        if not knows_optional_install(os_build):
            action = INSTALL
    priority = deployment.download_priority if deployment.download_priority in (1, 3) else None
    return WireDeployment(action=action, is_assigned=assigned, last_change=deployment.last_change,
                          id=deployment.id, deadline=deployment.deadline, download_priority=priority)


def knows_optional_install(os_build: int | None) -> bool:
    """Whether a computer of this OS build is sent ``OptionalInstall`` as it is (§6.4, note 22)."""
    return os_build is not None and os_build >= OPTIONAL_INSTALL_MIN_BUILD


@dataclass(frozen=True)
class Offer:
    """One ``UpdateInfo``: a revision, its deployment and IsLeaf."""

    revision_id: int
    update_id: str
    deployment: Deployment
    is_leaf: bool
    depth: int


Fetch = Callable[[Collection[str]], Mapping[str, Node]]


@dataclass
class Closure:
    """D: the current revisions reachable from the roots through prerequisites and bundles."""

    nodes: dict[str, Node] = field(default_factory=dict)  # by UpdateID
    roots: dict[str, Deployment] = field(default_factory=dict)
    bundle_members: set[str] = field(default_factory=set)  # UpdateIDs bundled by a root
    depth: dict[str, int] = field(default_factory=dict)
    derived_date: date = date(2000, 1, 1)  # LastChangeTime of the derived deployments
    #: N by installed set, and the revisions without prerequisites (see :func:`needed`)
    memo: dict[frozenset[int], dict[int, Node]] = field(default_factory=dict, repr=False, compare=False)
    free: dict[int, Node] | None = field(default=None, repr=False, compare=False)
    #: worked out once per closure, shared by every page of every client of it (see :meth:`prepare`)
    cnf: list[tuple[Node, tuple[frozenset[int], ...]]] | None = field(default=None, repr=False, compare=False)
    ordered: list[Node] | None = field(default=None, repr=False, compare=False)
    #: the offer of each node as pages give it (by UpdateID): the same for every client of the closure
    offers: dict[str, Offer] = field(default_factory=dict, repr=False, compare=False)
    max_seq: int = field(default=0, repr=False, compare=False)

    @property
    def revision_ids(self) -> dict[int, Node]:
        return {node.revision_id: node for node in self.nodes.values()}

    def prepare(self) -> None:
        """What every page asks again, worked out once: the prerequisite clauses as sets of
        RevisionIDs (a clause is satisfied when it meets the installed set: one C-level set test),
        the nodes in page order (prerequisite depth, RevisionID), and the highest change sequence
        of a node or a root's deployment (no client whose high-water mark is above it has a
        changed update). Idempotent, so threads sharing a closure may race on it harmlessly."""
        if self.ordered is not None:
            return
        nodes = self.nodes
        rid_of = {uid: node.revision_id for uid, node in nodes.items()}
        self.cnf = [(node, tuple(frozenset(rid_of[uid] for uid in clause if uid in rid_of)
                                 for clause in node.prerequisites))
                    for node in nodes.values() if node.prerequisites]
        self.free = {node.revision_id: node for node in nodes.values() if not node.prerequisites}
        self.max_seq = max([0, *(node.change_seq for node in nodes.values()),
                            *(dep.change_seq for dep in self.roots.values())])
        depth = self.depth
        self.ordered = sorted(nodes.values(), key=lambda node: (depth.get(node.update_id, 0), node.revision_id))

    def deployment(self, update_id: str) -> Deployment:
        """The root's own deployment; else ``Bundle`` for a member of a root bundle; else ``Evaluate``
        (a prerequisite, category or detectoid riding along)."""
        found = self.roots.get(update_id)
        if found is not None:
            return found
        action = BUNDLE if update_id in self.bundle_members else EVALUATE
        return Deployment(action=action, last_change=self.derived_date)


def closure(roots: Mapping[str, Deployment], fetch: Fetch, *, seeds: Iterable[str] = (),
            derived_date: date = date(2000, 1, 1), max_nodes: int | None = None) -> Closure:
    """D = the roots plus, level by level, the current revision of every prerequisite UpdateID and
    every bundled UpdateID (``seeds``: further UpdateIDs that ride along as Evaluate, e.g. the
    categories of a category filter). UpdateIDs without a current revision are left out. ``fetch``
    is called once per level with the UpdateIDs not yet read; cycles end because nothing is read
    twice. ``max_nodes`` bounds the closure (ValueError beyond)."""
    result = Closure(roots=dict(roots), derived_date=derived_date)
    frontier = set(roots) | set(seeds)
    asked: set[str] = set()
    while frontier:
        asked |= frontier
        found = fetch(sorted(frontier))
        following: set[str] = set()
        for update_id, node in found.items():
            if update_id not in frontier or update_id in result.nodes:
                continue
            result.nodes[update_id] = node
            for clause in node.prerequisites:
                following |= clause
            following.update(node.bundled)
            if update_id in roots:
                result.bundle_members.update(node.bundled)
        if max_nodes is not None and len(result.nodes) > max_nodes:
            raise ValueError(f"the closure has more than {max_nodes} revisions")
        frontier = following - asked
    # a root that fetch did not return (no current revision) is no root
    result.roots = {uid: dep for uid, dep in result.roots.items() if uid in result.nodes}
    result.bundle_members = {uid for uid in result.bundle_members if uid in result.nodes}
    result.depth = depths(result.nodes)
    return result


def depths(nodes: Mapping[str, Node]) -> dict[str, int]:
    """Prerequisite depth: 0 without prerequisites in ``nodes``, else 1 + the deepest one named
    (a cycle counts its closing edge as 0). Iterative, so long chains do not hit the recursion limit."""
    depth: dict[str, int] = {}
    for start in sorted(nodes):
        if start in depth:
            continue
        stack: list[tuple[str, bool]] = [(start, False)]
        on_path: set[str] = set()
        while stack:
            update_id, expanded = stack.pop()
            if expanded:
                on_path.discard(update_id)
                named = [p for clause in nodes[update_id].prerequisites for p in clause if p in nodes]
                depth[update_id] = 1 + max((depth.get(p, 0) for p in named if p in depth), default=-1) \
                    if named else 0
                continue
            if update_id in depth or update_id in on_path:
                continue
            on_path.add(update_id)
            stack.append((update_id, True))
            for clause in nodes[update_id].prerequisites:
                for p in sorted(clause):
                    if p in nodes and p not in depth and p not in on_path:
                        stack.append((p, False))
    return depth


def satisfied(node: Node, nodes: Mapping[str, Node], installed: Collection[int]) -> bool:
    """Every clause has an UpdateID whose current revision's RevisionID the client reports installed;
    a revision without prerequisites is always satisfied (§3.5 step 3)."""
    for clause in node.prerequisites:
        if not any(uid in nodes and nodes[uid].revision_id in installed for uid in clause):
            return False
    return True


def needed(d: Closure, installed: Collection[int]) -> dict[int, Node]:
    """N by RevisionID. A closure shared by many clients keeps the last answers by installed set (the
    clients of one wave report the same ids) and checks only the revisions that have prerequisites,
    each clause as one set test; the answer is shared, never to be changed by the caller."""
    key = frozenset(installed)
    found = d.memo.get(key)
    if found is not None:
        return found
    d.prepare()
    assert d.free is not None and d.cnf is not None, "prepare() fills them"
    result = dict(d.free)
    for node, clauses in d.cnf:
        for clause in clauses:
            if clause.isdisjoint(key):
                break
        else:
            result[node.revision_id] = node
    if len(d.memo) >= MEMO_ENTRIES:
        d.memo.pop(next(iter(d.memo)), None)
    d.memo[key] = result
    return result


MEMO_ENTRIES = 32


@dataclass(frozen=True)
class ScanRequest:
    installed: frozenset[int]  # InstalledNonLeafUpdateIDs (I)
    other_cached: frozenset[int] = frozenset()  # OtherCachedUpdateIDs
    page_size: int = 30
    high_water: int = 0  # the cookie's deployment high-water mark
    split_deployed: bool = False  # NeedTwoGroupOutOfScopeUpdates with a non-empty filter
    #: the change sequence of the computer's last regrouping: after it, every cached revision's
    #: deployment may have changed (a closure can then be shared by the computers of the same groups)
    regrouped_seq: int = 0

    @property
    def cached(self) -> frozenset[int]:
        return self.installed | self.other_cached


@dataclass(frozen=True)
class ScanResult:
    new_updates: tuple[Offer, ...]
    truncated: bool
    out_of_scope: tuple[int, ...]
    changed_updates: tuple[Offer, ...]
    deployed_out_of_scope: tuple[int, ...] = ()
    needed: int = 0  # |N|, for logs and metrics


def offer(d: Closure, node: Node) -> Offer:
    """The ``UpdateInfo`` of a node of ``d`` (made once per closure, then shared: it is immutable)."""
    found = d.offers.get(node.update_id)
    if found is None:
        found = d.offers[node.update_id] = Offer(
            revision_id=node.revision_id, update_id=node.update_id, deployment=d.deployment(node.update_id),
            is_leaf=node.is_leaf, depth=d.depth.get(node.update_id, 0))
    return found


def sync(request: ScanRequest, d: Closure, *,
         still_deployed: Callable[[Collection[int]], Collection[int]] | None = None) -> ScanResult:
    """SyncUpdates' answer (§3.5 steps 3–6) for a client whose cache is ``request`` and whose
    closure is ``d``. ``still_deployed``: of the given out-of-scope ids, those deployed to the
    computer outside the category filter (asked only with ``request.split_deployed``)."""
    cached = request.cached
    n = needed(d, request.installed)
    assert d.ordered is not None, "needed() prepared the closure"
    # the page: the first needed, uncached nodes in (depth, RevisionID) order; one more says Truncated
    page: list[Offer] = []
    truncated = False
    for node in d.ordered:
        rid = node.revision_id
        if rid in n and rid not in cached:
            if len(page) == request.page_size:
                truncated = True
                break
            page.append(offer(d, node))
    out = sorted(cached - n.keys())
    deployed: list[int] = []
    if request.split_deployed and still_deployed is not None and out:
        elsewhere = set(still_deployed(out))
        deployed = [rid for rid in out if rid in elsewhere]
        out = [rid for rid in out if rid not in elsewhere]
    changed = []
    if max(d.max_seq, request.regrouped_seq) > request.high_water:  # else nothing changed after the mark
        everything = request.regrouped_seq > request.high_water
        for rid in sorted(cached & n.keys()):
            node = n[rid]
            root = d.roots.get(node.update_id)  # derived deployments carry no change of their own
            if everything or max(node.change_seq, root.change_seq if root is not None else 0) > request.high_water:
                changed.append(offer(d, node))
    return ScanResult(new_updates=tuple(page), truncated=truncated, out_of_scope=tuple(out),
                      changed_updates=tuple(changed), deployed_out_of_scope=tuple(deployed), needed=len(n))


def refresh(d: Closure, revision_ids: Iterable[int]) -> list[Offer]:
    """RefreshCache (§3.7): an entry for each given RevisionID that is a revision in D, whatever its
    action (in the order asked, each once)."""
    by_rid = d.revision_ids
    return [offer(d, by_rid[rid]) for rid in dict.fromkeys(revision_ids) if rid in by_rid]


def in_scope(d: Closure, revision_ids: Iterable[int]) -> tuple[list[int], list[int]]:
    """GetExtendedUpdateInfo (§3.8): the asked ids split into (in D, out of scope), in the order
    asked, each once."""
    by_rid = d.revision_ids
    inside: list[int] = []
    outside: list[int] = []
    for rid in dict.fromkeys(revision_ids):
        (inside if rid in by_rid else outside).append(rid)
    return inside, outside


def with_deployment(item: Offer, deployment: Deployment) -> Offer:
    return replace(item, deployment=deployment)


# --- StartCategoryScan (§3.6) ----------------------------------------------------------------------

@dataclass(frozen=True)
class CategoryScan:
    preferred: tuple[str, ...]
    in_error: tuple[str, ...]


def category_scan(requested: Iterable[tuple[int, str]], kinds: Mapping[str, str]) -> CategoryScan:
    """``requested``: (IndexOfAndGroup, CategoryId) in DNF; ``kinds``: CategoryType of every known
    category. Unknown ids go to ``in_error`` and drop their AND-group. Each remaining group must be
    exactly one product, or one product and one classification (→ the product); any other shape
    clears the preferred ids."""
    groups: dict[int, list[str]] = {}
    in_error: list[str] = []
    for index, category_id in requested:
        groups.setdefault(index, []).append(category_id)
        if category_id not in kinds and category_id not in in_error:
            in_error.append(category_id)
    preferred: list[str] = []
    for index in sorted(groups):
        members = list(dict.fromkeys(groups[index]))
        if any(m not in kinds for m in members):
            continue
        products = [m for m in members if kinds[m] == "Product"]
        classifications = [m for m in members if kinds[m] == "UpdateClassification"]
        if len(products) == 1 and len(members) == 1 + len(classifications) and len(classifications) <= 1:
            if products[0] not in preferred:
                preferred.append(products[0])
            continue
        return CategoryScan(preferred=(), in_error=tuple(in_error))
    return CategoryScan(preferred=tuple(preferred), in_error=tuple(in_error))


def driver_sync_not_needed(protocol_version: str | None, *, drivers_in_scope: bool = False) -> bool | None:
    """§3.5 step 8: ``True`` when no driver is in scope, sent only to clients ≥ 1.7 (``None``: leave
    the element out)."""
    if not at_least(protocol_version, (1, 7)):
        return None
    return not drivers_in_scope


def content_generation(content_base_url: str) -> int:
    """The generation of the content base URL a cookie records (§3.8): a client whose cookie names
    another generation gets ``FileLocationChanged`` and asks GetFileLocations again. 0 means "not
    recorded" and is never issued (a 31-bit CRC of the URL, at least 1)."""
    return (zlib.crc32(content_base_url.rstrip("/").encode()) & 0x7FFFFFFF) or 1


def at_least(protocol_version: str | None, minimum: tuple[int, int]) -> bool:
    """``x.y`` ≥ ``minimum``; an absent or unreadable version counts as current (native WUA sends 2.90)."""
    if not protocol_version:
        return True
    major, _, minor = protocol_version.partition(".")
    try:
        return (int(major), int(minor or 0)) >= minimum
    except ValueError:
        return True
