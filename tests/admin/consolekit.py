"""Helpers of the web console tests: accounts made with the real CLI, a fleet of simulated phones that
check in over HTTP, a ``requests`` session that signs in like a browser, and the system Chromium.

Playwright drives ``/usr/bin/chromium`` (never a downloaded browser); tests skip with the reason
when it or the ``playwright`` package is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
V_OLD, V_MID, V_NEW = "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372"
CX600 = ("UCPhone", "Polycom", "CX600", "A", "ENU")
AASTRA = ("UCPhone", "Aastra", "6725ip", "A", "ENU")
HP = ("UCPhone", "HP", "4120", "A", "ENU")
#: where ``tools/screenshots.py`` has the browser tests copy their screenshots (docs/screenshots/);
#: unset, they stay in the test run's folder and the tracked tree is left alone
SCREENSHOTS_ENV = "DEVUPDATE_SCREENSHOTS_DIR"


def require_browser():
    """The sync Playwright API, or skip (no package / no system Chromium)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    return sync_playwright


def add_admin(install, name: str, role: str = "admin", password: str = PASSWORD) -> None:
    """``devupdate admins add NAME --role ROLE --password-stdin`` — the real CLI."""
    install.cli("admins", "add", name, "--role", role, "--password-stdin", input=password + "\n")


def setup_install(install) -> None:
    """The repository first on PYTHONPATH (the data dir's ``filestore/`` must not shadow the package)."""
    install.env["PYTHONPATH"] = str(REPO)


def cab_in(directory: Path, updates: list, **kwargs) -> Path:
    """``make_package`` into a directory of its own."""
    from helpers.cabs import make_package

    directory.mkdir(parents=True, exist_ok=True)
    return make_package(directory, updates, **kwargs)


def import_in_process(install, cab: Path, approve: tuple[str, ...] = ()) -> None:
    """Seed data with the service functions (faster than a CLI process per rule)."""
    from devupdate import db
    from devupdate.imports.service import import_cab
    from devupdate.rules import lifecycle

    runtime = install.runtime()
    try:
        import_cab(runtime.store, runtime.settings, cab, actor="test:setup")
        for rule_id in approve:
            lifecycle.approve(rule_id, "test:setup")
    finally:
        db.database.close()


def phones(count: int, family: tuple, installed: str | None, *, seed: int, prefix: str = "00-04-F2") -> list:
    modules = {"CPE.nbt": installed} if installed else {}
    return phonesim.make_fleet(count, families=[family], installed=modules, seed=seed, mac_prefix=prefix)


def check_in(server, fleet: list) -> list:
    """Every phone checks for updates once (internal side); returns the results."""
    results = phonesim.run_checks(phonesim.Client(server.url), fleet, concurrency=4)
    assert all(result.status == 200 for result in results), [r.status for r in results]
    return results


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Browserless:
    """A ``requests`` session that signs in through the form, as a browser would.

    The console's cookie is ``Secure``; ``requests`` would not send it over plain HTTP to
    127.0.0.1 (browsers do: loopback is a secure context), so the cookie jar is replaced by
    the cookie header this class keeps itself.
    """

    def __init__(self, server):
        self.base = server.url + "/console"
        self.http = requests.Session()
        self.cookie = ""

    def _remember(self, response: requests.Response) -> None:
        header = response.headers.get("Set-Cookie", "")
        match = re.match(r"devupdate_console=([^;]*)", header)
        if match:
            self.cookie = match.group(1)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.cookie:
            headers["Cookie"] = f"devupdate_console={self.cookie}"
        response = self.http.request(method, self.base + path, headers=headers, allow_redirects=False,
                                     timeout=30, **kwargs)
        self.http.cookies.clear()
        self._remember(response)
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def csrf(self, path: str = "/") -> str:
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return csrf_of(response.text)

    def sign_in(self, name: str, password: str = PASSWORD) -> requests.Response:
        token = self.csrf("/sign-in")
        response = self.post("/sign-in", data={"csrf_token": token, "name": name, "password": password})
        if response.status_code == 303:
            landing = self.get(response.headers["Location"].replace("/console", "", 1))
            assert landing.status_code == 302, landing.text
        return response


def sign_in(page, server, name: str, password: str = PASSWORD) -> None:
    """Sign in through the form a browser is sent to from the server's root; on the dashboard after."""
    page.goto(server.url + "/")
    assert page.url.endswith("/console/sign-in?next=/console/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(server.url + "/console/")


def go(page, label: str) -> None:
    """Follow a main navigation link by its exact label."""
    page.click(f'nav a:text-is("{label}")')
    page.wait_for_load_state("load")


def save_screenshot(page, name: str, directory: Path) -> Path:
    """Full-page PNG into the test run's folder; a copy into $DEVUPDATE_SCREENSHOTS_DIR when set."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(SCREENSHOTS_ENV):
        target = Path(os.environ[SCREENSHOTS_ENV])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
    return path
