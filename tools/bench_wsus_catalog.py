"""Benchmark of the WSUS catalog: import rate, database size per revision, and the memory of a
``devupdate serve`` worker with N revisions and with 4×N (memory must not follow the catalog).

    python tools/bench_wsus_catalog.py                    # 250,000 revisions (the issue's size)
    python tools/bench_wsus_catalog.py --revisions 20000  # a quicker run

The synthetic catalog is shaped like Microsoft's: one company, product families, products and
classifications chained through IsCategory prerequisites; detectoids; updates with prerequisite
chains (a detectoid or an earlier update), bundles of leaf members, supersedence of earlier
updates, files with SHA-1 and SHA-256, three languages, and ~10 % of the UpdateIDs with a second
revision. Documents go through the real reader (XML text → fragments) and the real store.

Targets (issue 10): worker RSS ≤ 300 MiB, and ≤ 1.05× growth from N to 4×N; /Content ≥ 0.9× nginx.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

NS = ('xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update" '
      'xmlns:bar="http://schemas.microsoft.com/msus/2002/12/BaseApplicabilityRules" '
      'xmlns:lar="http://schemas.microsoft.com/msus/2002/12/LogicalApplicabilityRules" '
      'xmlns:cat="http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category" '
      'xmlns:cmd="http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/CommandLineInstallation" '
      'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')
LANGUAGES = ("en", "de", "fr")


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _localized(title: str) -> str:
    return "<upd:LocalizedPropertiesCollection>" + "".join(
        f"<upd:LocalizedProperties><upd:Language>{lang}</upd:Language><upd:Title>{title} ({lang})</upd:Title>"
        f"<upd:Description>Install this update to resolve issues in {title}.</upd:Description>"
        f"</upd:LocalizedProperties>" for lang in LANGUAGES) + "</upd:LocalizedPropertiesCollection>"


def category(update_id: str, kind: str, title: str, parent: str | None) -> str:
    rel = ("" if parent is None else f'<upd:Relationships><upd:Prerequisites><upd:AtLeastOne IsCategory="true">'
           f'<upd:UpdateIdentity UpdateID="{parent}" /></upd:AtLeastOne></upd:Prerequisites></upd:Relationships>')
    return (f'<upd:Update {NS}><upd:UpdateIdentity UpdateID="{update_id}" RevisionNumber="100" />'
            f'<upd:Properties DefaultPropertiesLanguage="en" UpdateType="Category" PublicationState="Published" '
            f'CreationDate="2020-01-01T00:00:00.000Z" />{_localized(title)}{rel}'
            f'<upd:ApplicabilityRules><upd:IsInstalled><lar:True /></upd:IsInstalled></upd:ApplicabilityRules>'
            f'<upd:HandlerSpecificData xsi:type="cat:Category"><cat:CategoryInformation CategoryType="{kind}" '
            f'ProhibitsSubcategories="false" /></upd:HandlerSpecificData></upd:Update>')


def update(rng: random.Random, update_id: str, revision: int, kind: str, title: str, prerequisites: list[str],
           categories: list[str], bundle: list[tuple[str, int]], supersedes: list[str], files: int) -> str:
    prereq = "".join(f'<upd:UpdateIdentity UpdateID="{p}" />' for p in prerequisites)
    prereq += "".join(f'<upd:AtLeastOne IsCategory="true"><upd:UpdateIdentity UpdateID="{c}" /></upd:AtLeastOne>'
                      for c in categories)
    rel = ""
    if supersedes:
        rel += "<upd:SupersededUpdates>" + "".join(f'<upd:UpdateIdentity UpdateID="{s}" />'
                                                   for s in supersedes) + "</upd:SupersededUpdates>"
    if prereq:
        rel += f"<upd:Prerequisites>{prereq}</upd:Prerequisites>"
    if bundle:
        rel += "<upd:BundledUpdates><upd:AtLeastOne>" + "".join(
            f'<upd:UpdateIdentity UpdateID="{u}" RevisionNumber="{n}" />' for u, n in bundle) + \
            "</upd:AtLeastOne></upd:BundledUpdates>"
    file_xml = ""
    if files:
        file_xml = "<upd:Files>" + "".join(
            f'<upd:File Digest="{base64.b64encode(rng.randbytes(20)).decode()}" DigestAlgorithm="SHA1" '
            f'FileName="{title.split()[0].lower()}-{i}.cab" Size="{rng.randrange(1 << 16, 1 << 28)}" '
            f'Modified="2026-01-01T00:00:00Z"><upd:AdditionalDigest Algorithm="SHA256">'
            f'{base64.b64encode(rng.randbytes(32)).decode()}</upd:AdditionalDigest></upd:File>'
            for i in range(files)) + "</upd:Files>"
    rules = ('<upd:ApplicabilityRules><upd:IsInstalled><lar:And><bar:RegKeyExists Key="HKEY_LOCAL_MACHINE" '
             f'Subkey="SOFTWARE\\Vendor\\{update_id[:8]}" /><bar:WindowsVersion Comparison="GreaterThanOrEqualTo" '
             'MajorVersion="10" /></lar:And></upd:IsInstalled><upd:IsInstallable><lar:True /></upd:IsInstallable>'
             '</upd:ApplicabilityRules>')
    handler = ('<upd:HandlerSpecificData xsi:type="cmd:CommandLineInstallation"><cmd:InstallCommand '
               'Program="setup.exe" Arguments="/q" /></upd:HandlerSpecificData>' if files and kind == "Software"
               else "")
    return (f'<upd:Update {NS}><upd:UpdateIdentity UpdateID="{update_id}" RevisionNumber="{revision}" />'
            f'<upd:Properties UpdateType="{kind}" DefaultPropertiesLanguage="en" PublicationState="Published" '
            f'CreationDate="2026-01-01T00:00:00.000Z" MaxDownloadSize="1000" MinDownloadSize="0">'
            f'<upd:KBArticleID>{rng.randrange(1000000, 9999999)}</upd:KBArticleID></upd:Properties>'
            f'{_localized(title)}' + (f"<upd:Relationships>{rel}</upd:Relationships>" if rel else "")
            + rules + file_xml + handler + "</upd:Update>")


class Catalog:
    """A deterministic synthetic catalog; ``documents(n)`` yields the next ``n`` revisions."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.categories: list[str] = []
        self.products: list[str] = []
        self.classifications: list[str] = []
        self.detectoids: list[str] = []
        self.updates: list[tuple[str, int]] = []
        self.started = False

    def _header(self) -> Iterator[str]:
        company = _id(self.rng)
        yield category(company, "Company", "Contoso", None)
        families = [_id(self.rng) for _ in range(10)]
        for i, family in enumerate(families):
            yield category(family, "ProductFamily", f"Family {i}", company)
        for i in range(200):
            product = _id(self.rng)
            self.products.append(product)
            yield category(product, "Product", f"Product {i}", families[i % len(families)])
        for i in range(12):
            classification = _id(self.rng)
            self.classifications.append(classification)
            yield category(classification, "UpdateClassification", f"Classification {i}", None)

    def documents(self, n: int) -> Iterator[str]:
        rng = self.rng
        emitted = 0
        if not self.started:
            self.started = True
            for text in self._header():
                emitted += 1
                yield text
        while emitted < n:
            roll = rng.random()
            if self.updates and roll < 0.10:  # a new revision of an earlier UpdateID
                index = rng.randrange(len(self.updates))
                update_id, revision = self.updates[index]
                self.updates[index] = (update_id, revision + 1)
                yield update(rng, update_id, revision + 1, "Software", f"Update {update_id[:8]} v{revision + 1}",
                             self._prerequisites(), self._categories(), [], [], 1)
                emitted += 1
                continue
            if roll < 0.15:
                detectoid = _id(rng)
                self.detectoids.append(detectoid)
                yield update(rng, detectoid, 100, "Detectoid", f"Detectoid {detectoid[:8]}",
                             [rng.choice(self.products)], [], [], [], 0)
                emitted += 1
                continue
            if roll < 0.30 and n - emitted > 4:  # a bundle and its leaf members
                members = [(_id(rng), 200) for _ in range(rng.randrange(2, 4))]
                for member_id, number in members:
                    yield update(rng, member_id, number, "Software", f"Member {member_id[:8]}",
                                 self._prerequisites(), [], [], [], rng.randrange(1, 3))
                    emitted += 1
                bundle_id = _id(rng)
                yield update(rng, bundle_id, 200, "Software", f"Bundle {bundle_id[:8]}", self._prerequisites(),
                             self._categories(), members, self._supersedes(), 0)
                self.updates.append((bundle_id, 200))
                emitted += 1
                continue
            update_id = _id(rng)
            yield update(rng, update_id, 100, "Software", f"Update {update_id[:8]}", self._prerequisites(),
                         self._categories(), [], self._supersedes(), rng.randrange(0, 3))
            self.updates.append((update_id, 100))
            emitted += 1

    def _prerequisites(self) -> list[str]:
        chosen = []
        if self.detectoids and self.rng.random() < 0.6:
            chosen.append(self.rng.choice(self.detectoids))
        if self.updates and self.rng.random() < 0.3:  # prerequisite chains between updates
            chosen.append(self.rng.choice(self.updates[-2000:])[0])
        return chosen

    def _categories(self) -> list[str]:
        return [self.rng.choice(self.products), self.rng.choice(self.classifications)]

    def _supersedes(self) -> list[str]:
        if not self.updates or self.rng.random() > 0.3:
            return []
        return [self.rng.choice(self.updates[-5000:])[0] for _ in range(self.rng.randrange(1, 4))]


PROGRESS = 50_000  # revisions between two lines of the rate curve


def _import(catalog: Catalog, n: int, before: int = 0) -> tuple[int, float]:
    """Import the next ``n`` revisions; prints the rate of every PROGRESS revisions (the curve)."""
    from devupdate.wsus.catalog.document import parse_update
    from devupdate.wsus.catalog.store import import_documents

    started = time.perf_counter()
    mark = [0, started]

    def progress(_document: object, _outcome: str) -> None:
        mark[0] += 1
        if mark[0] % PROGRESS == 0:
            now = time.perf_counter()
            print(f"  {before + mark[0]:>9} revisions stored: {PROGRESS / (now - mark[1]):.0f} revisions/s over the "
                  f"last {PROGRESS}", flush=True)
            mark[1] = now

    counts = import_documents((parse_update(text) for text in catalog.documents(n)), on_document=progress)
    return counts.new + counts.updated, time.perf_counter() - started


def _db_bytes(home: Path) -> int:
    from devupdate.db import database, is_sqlite

    if not is_sqlite():
        return int(database.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0])
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in home.glob("*.db*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(x) for x in text)
    return found


def worker_rss(env: dict[str, str]) -> int:
    """RSS of the one worker of ``devupdate serve`` once it answers (after a first request)."""
    port = _free_port()
    env = {**env, "DEVUPDATE_PORT": str(port), "DEVUPDATE_HOST": "127.0.0.1", "DEVUPDATE_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("devupdate serve did not answer /healthz within 60 s")
        workers = _children(proc.pid)
        return max(_rss(pid) for pid in workers) if workers else _rss(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=250_000, help="N (default 250000); the second "
                        "catalog has 4×N")
    parser.add_argument("--keep", action="store_true", help="Keep the data directory (printed).")
    parser.add_argument("--database-url", help="An empty PostgreSQL database (postgresql://USER@HOST/DB) "
                        "instead of SQLite in the data directory.")
    parser.add_argument("--no-content", action="store_true", help="Skip the /Content throughput part "
                        "(tools/bench_content.py: devupdate vs nginx serving the same file, target >= 0.9x).")
    args = parser.parse_args()
    n = args.revisions
    home = Path(tempfile.mkdtemp(prefix="bench-wsus-catalog-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}, "DEVUPDATE_HOME": str(home)}
    if args.database_url:
        env["DEVUPDATE_DATABASE_URL"] = args.database_url
    os.environ.update(env)
    from devupdate import db, schema
    from devupdate.settings import Settings

    db.open_database(Settings.load(env).effective_database_url).connect()
    schema.upgrade()
    try:
        baseline = worker_rss(env)
        print(f"worker RSS, empty catalog: {baseline / 2**20:.1f} MiB")
        catalog = Catalog()
        stored, elapsed = _import(catalog, n)
        size = _db_bytes(home)
        print(f"import of {stored} revisions: {elapsed:.1f} s = {stored / elapsed:.0f} revisions/s; "
              f"database {size / 2**20:.1f} MiB = {size / stored / 1024:.2f} KiB per revision")
        with_n = worker_rss(env)
        print(f"worker RSS with {n} revisions: {with_n / 2**20:.1f} MiB (target <= 300 MiB)")
        more, elapsed4 = _import(catalog, 3 * n, stored)
        size4 = _db_bytes(home)
        total = stored + more
        print(f"import of {more} more revisions (total {total}): {elapsed4:.1f} s = {more / elapsed4:.0f} "
              f"revisions/s; database {size4 / 2**20:.1f} MiB = {size4 / total / 1024:.2f} KiB per revision")
        with_4n = worker_rss(env)
        print(f"worker RSS with {4 * n} revisions: {with_4n / 2**20:.1f} MiB = {with_4n / with_n:.3f}x the N "
              f"catalog (target <= 1.05x); {with_4n / baseline:.3f}x the empty catalog")
        if not args.no_content:
            print("/Content throughput, devupdate vs nginx serving the same file in this run:", flush=True)
            subprocess.run([sys.executable, str(Path(__file__).with_name("bench_content.py"))], env=env, check=False)
    finally:
        db.database.close()
        if args.keep:
            print(f"data kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
