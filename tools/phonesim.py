#!/usr/bin/env python3
"""A fleet of simulated IP phones talking to devupdate the way real ones do (device-protocol.md).

Each phone has a MAC address, a serial number, a device family (type, vendor, model, revision,
locale) and installed module versions. Modes:

- ``single``  every phone checks once, one after the other;
- ``storm``   every phone checks at the same moment (boot storm: ``--concurrency`` connections);
- ``apply``   check, download every offered file, verify its size and SHA-256 against the answer,
              install it (the phone now runs the offered version), check again;
- ``rollout`` rounds of ``apply`` over the fleet during a staged rollout, ``--fail-share`` of the
              phones failing (``--fail-mode`` stuck | report | fallback | ignore), ``--json-share`` of them on
              the device API; with ``--rule`` and ``--token`` the server's rollout is read after each
              round (``--advance`` starts the next stage through the API).

Answers are parsed strictly (NumOfFiles must equal the number of File elements). Download URLs
point at the service's public names; ``--map FROM=TO`` rewrites URL prefixes the way DNS and a
TLS-terminating proxy would (``--map https://ucupdates.contoso.com=http://127.0.0.1:8080``).

    python tools/phonesim.py --url http://127.0.0.1:8080 --devices 500 --mode storm --json
    python tools/phonesim.py --url http://127.0.0.1:8080 --family UCPhone/Polycom/CX600/A/ENU \\
        --installed CPE.nbt=4.0.7577.4366 --mode apply --map http://ucupdates-r2.contoso.com=http://127.0.0.1:8080

Standard library only, so it runs on any machine with Python 3.11.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import random
import statistics
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

DEFAULT_FAMILY = ("UCPhone", "Polycom", "CX600", "A", "ENU")


# --- phones ----------------------------------------------------------------------------------------

@dataclass
class Phone:
    mac: str  # 00-04-F2-AA-BB-CC, or '' for a serial-only device
    serial: str
    device_type: str
    vendor: str
    model: str
    revision: str
    locale: str
    modules: dict[str, str] = field(default_factory=dict)  # FileName -> installed Version
    user_id: str = ""
    fallback_to: dict[str, str] | None = None  # rollout mode: the modules it falls back to after its next check
    fell_back: bool = False
    address: str = ""  # the source address it connects from ('' : the system's choice)

    @property
    def device_id(self) -> str:
        return self.mac.replace("-", "").upper() if self.mac else f"SN-{self.serial.upper()}"

    def request_xml(self) -> bytes:
        lines = ['<?xml version="1.0" encoding="utf-8"?>', "<Request>",
                 f"  <DeviceType>{escape(self.device_type)}</DeviceType>",
                 f"  <MACAddress>{escape(self.mac)}</MACAddress>",
                 f"  <SerialNumber>{escape(self.serial)}</SerialNumber>",
                 f"  <Vendor>{escape(self.vendor)}</Vendor>",
                 f"  <Model>{escape(self.model)}</Model>",
                 f"  <Revision>{escape(self.revision)}</Revision>",
                 f"  <Locale>{escape(self.locale)}</Locale>"]
        if self.user_id:
            lines.append(f"  <UserID>{escape(self.user_id)}</UserID>")
        lines.append("  <Modules>")
        for name, version in sorted(self.modules.items()):
            lines += ["    <Module>", f"      <FileName>{escape(name)}</FileName>",
                      f"      <Version>{escape(version)}</Version>",
                      "      <TimeStamp>2026-01-01T00:00:00Z</TimeStamp>", "    </Module>"]
        lines += ["  </Modules>", "</Request>", ""]
        return "\n".join(lines).encode()

    def identity(self) -> dict[str, str]:
        """The device object of the device API (``/api/device/v1``)."""
        return {"type": self.device_type, "brand": self.vendor, "model": self.model, "revision": self.revision,
                "locale": self.locale, "mac": self.mac, "serial": self.serial, "user": self.user_id}

    def request_json(self) -> bytes:
        """The device API's check: identity and installed packages (Lync module names work too)."""
        installed = [{"name": name, "version": version} for name, version in sorted(self.modules.items())]
        return json.dumps({"device": self.identity(), "installed": installed}).encode()

    def query(self) -> str:
        """The GET form of the same check."""
        from urllib.parse import urlencode

        params = [("DeviceType", self.device_type), ("MACAddress", self.mac), ("SerialNumber", self.serial),
                  ("Vendor", self.vendor), ("Model", self.model), ("Revision", self.revision),
                  ("Locale", self.locale)]
        if self.user_id:
            params.append(("UserID", self.user_id))
        params += [("Module", f"{name};{version}") for name, version in sorted(self.modules.items())]
        return urlencode(params)


def make_fleet(count: int, *, families: Iterable[tuple[str, str, str, str, str]] = (DEFAULT_FAMILY,),
               installed: dict[str, str] | Callable[[int], dict[str, str]] | None = None, seed: int = 1,
               mac_prefix: str = "00-04-F2", serial_only_every: int = 0,
               user_domain: str = "contoso.com", source_network: str | None = None) -> list[Phone]:
    """``count`` phones, deterministic for a seed. Families are dealt round-robin; MACs are
    ``<prefix>-XX-XX-XX`` from a shuffled index; ``serial_only_every=n`` makes every n-th phone
    report no MAC (serial only); ``source_network`` (e.g. ``127.0.0.0/8``, all of it on the loopback
    interface) gives each phone an address of its own to connect from, as a real fleet has."""
    families = list(families)
    addresses = source_addresses(source_network, count) if source_network else [""] * count
    rng = random.Random(seed)
    numbers = rng.sample(range(1, 0xFFFFFF), count)
    phones = []
    for i in range(count):
        device_type, vendor, model, revision, locale = families[i % len(families)]
        n = numbers[i]
        mac = f"{mac_prefix}-{n >> 16 & 0xFF:02X}-{n >> 8 & 0xFF:02X}-{n & 0xFF:02X}"
        if serial_only_every and i % serial_only_every == serial_only_every - 1:
            mac = ""
        modules = installed(i) if callable(installed) else dict(installed or {})
        phones.append(Phone(mac=mac, serial=f"{model}-{n:08d}", device_type=device_type, vendor=vendor,
                            model=model, revision=revision, locale=locale, modules=modules,
                            user_id=f"user{i}@{user_domain}", address=addresses[i]))
    return phones


def source_addresses(network: str, count: int) -> list[str]:
    """``count`` host addresses of ``network``, from its 257th on (past 127.0.0.1 and its neighbours)."""
    import ipaddress
    from itertools import islice

    hosts = list(islice(ipaddress.ip_network(network).hosts(), 256, 256 + count))
    if len(hosts) < count:
        raise ValueError(f"{network} has fewer than {count + 256} host addresses")
    return [str(host) for host in hosts]


# --- protocol --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OfferedFile:
    file_name: str
    signature_file_name: str | None
    version: str
    timestamp: str
    url: str
    size: int
    sha256: str


@dataclass
class CheckResult:
    status: int
    files: list[OfferedFile]
    code: str = ""  # <Code> of an error answer
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ProtocolError(Exception):
    pass


@dataclass
class JsonResult:
    """An answer of the device API: status, the decoded JSON body, time taken, headers."""

    status: int
    document: dict
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def packages(self) -> list[dict]:
        return list(self.document.get("packages", [])) if self.status == 200 else []

    @property
    def to_install(self) -> list[dict]:
        """The packages the device does not run yet."""
        return [p for p in self.packages if not p.get("current")]


def api_prefix(external: bool = False) -> str:
    return "/api/device-ext/v1" if external else "/api/device/v1"


def parse_response(body: bytes) -> list[OfferedFile]:
    """Strict parse of an update check answer (device-protocol.md §5)."""
    root = ET.fromstring(body)
    if root.tag != "Response":
        raise ProtocolError(f"root element {root.tag!r}, expected Response")
    count = int(root.findtext("NumOfFiles", "-1"))
    files = []
    for element in root.findall("Files/File"):
        def text(name: str, required: bool = True, element=element) -> str | None:
            value = element.findtext(name)
            if value is None and required:
                raise ProtocolError(f"File without {name}")
            return value
        files.append(OfferedFile(text("FileName"), text("SignatureFileName", False), text("Version"),
                                 text("TimeStamp"), text("Url"), int(text("Size")), text("SHA256")))
    if count != len(files):
        raise ProtocolError(f"NumOfFiles {count} but {len(files)} File elements")
    return files


def parse_error(body: bytes) -> str:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ""
    return root.findtext("Code", "") if root.tag == "Error" else ""


class Client:
    """One keep-alive HTTP connection per thread and host (phones reuse their connection)."""

    def __init__(self, base_url: str, *, user: str | None = None, password: str | None = None,
                 url_map: dict[str, str] | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.auth = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.auth = f"Basic {token}"
        self.url_map = dict(url_map or {})
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self, scheme: str, netloc: str, source: str = "") -> http.client.HTTPConnection:
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        key = (scheme, netloc, source)
        conn = connections.get(key)
        if conn is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            conn = connections[key] = cls(netloc, timeout=self.timeout,
                                          source_address=(source, 0) if source else None)
        return conn

    def map_url(self, url: str) -> str:
        for prefix, target in self.url_map.items():
            if url.startswith(prefix):
                return target.rstrip("/") + url[len(prefix):]
        return url

    def request(self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                source: str = "") -> tuple[int, dict[str, str], bytes]:
        """One request on this thread's keep-alive connection from ``source`` (a phone's address)."""
        parts = urlsplit(self.map_url(url))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Connection": "keep-alive", **(headers or {})}
        if self.auth and "Authorization" not in sent:
            sent["Authorization"] = self.auth
        for attempt in (1, 2):
            conn = self._connection(parts.scheme, parts.netloc, source)
            try:
                conn.request(method, path, body=body, headers=sent)
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()  # a keep-alive connection the server closed: retry once on a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def check(self, phone: Phone, *, path: str = "/RequestHandler/ucdevice.upx", get: bool = False) -> CheckResult:
        started = time.perf_counter()
        if get:
            status, headers, body = self.request("GET", f"{self.base_url}{path}?{phone.query()}",
                                                 source=phone.address)
        else:
            status, headers, body = self.request("POST", self.base_url + path, phone.request_xml(),
                                                 {"Content-Type": "text/xml; charset=utf-8"}, phone.address)
        seconds = time.perf_counter() - started
        if status == 200:
            return CheckResult(status, parse_response(body), seconds=seconds, headers=headers, body=body)
        return CheckResult(status, [], parse_error(body), seconds=seconds, headers=headers, body=body)

    def check_json(self, phone: Phone, *, external: bool = False) -> JsonResult:
        """The device API's check (``POST /api/device/v1/check``, or ``/api/device-ext/v1/check``)."""
        started = time.perf_counter()
        status, headers, body = self.request("POST", f"{self.base_url}{api_prefix(external)}/check",
                                             phone.request_json(), {"Content-Type": "application/json"},
                                             phone.address)
        document = json.loads(body) if body else {}
        return JsonResult(status, document, time.perf_counter() - started, headers)

    def report(self, phone: Phone, package: str, version: str, state: str, *, code: str | int | None = None,
               message: str | None = None, external: bool = False) -> JsonResult:
        """A status report (``POST …/status``): downloading | downloaded | installed | failed."""
        started = time.perf_counter()
        payload = {"device": phone.identity(), "package": package, "version": version, "state": state,
                   "code": code, "message": message}
        status, headers, body = self.request("POST", f"{self.base_url}{api_prefix(external)}/status",
                                             json.dumps(payload).encode(), {"Content-Type": "application/json"},
                                             phone.address)
        return JsonResult(status, json.loads(body) if body else {}, time.perf_counter() - started, headers)

    def download(self, offered: OfferedFile, source: str = "") -> bytes:
        status, _, data = self.request("GET", offered.url, source=source)
        if status != 200:
            raise ProtocolError(f"GET {offered.url}: HTTP {status}")
        return data


# --- modes -----------------------------------------------------------------------------------------

@dataclass
class ApplyResult:
    phone: Phone
    first: CheckResult
    downloaded: list[tuple[OfferedFile, str]]  # (file, sha256 of the bytes received)
    second: CheckResult | None
    problems: list[str]


def run_checks(client: Client, phones: list[Phone], *, concurrency: int = 1, path: str = "/RequestHandler/ucdevice.upx",
               get: bool = False) -> list[CheckResult]:
    """``concurrency`` 1 is the single mode; more is a boot storm (all phones at once, that many
    connections). Results are in the order of ``phones``."""
    if concurrency <= 1:
        return [client.check(phone, path=path, get=get) for phone in phones]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda phone: client.check(phone, path=path, get=get), phones))


def install(phone: Phone, image: OfferedFile) -> None:
    """"Flash" an image: the phone then reports it under the image's file name, in place of the
    module it replaces (same name, or the update type the image name ends with: CPE.nbt is
    replaced by CX600_A_ENU_CPE.nbt)."""
    stem = image.file_name.rsplit(".", 1)[0].lower()
    for name in list(phone.modules):
        module_stem = name.rsplit(".", 1)[0].lower()
        if name.lower() == image.file_name.lower() or stem == module_stem or stem.endswith("_" + module_stem):
            del phone.modules[name]
    phone.modules[image.file_name] = image.version


def apply_updates(client: Client, phones: list[Phone], *, concurrency: int = 8,
                  path: str = "/RequestHandler/ucdevice.upx") -> list[ApplyResult]:
    """Check, download and verify each offered file, install, check again (expect nothing)."""

    def one(phone: Phone) -> ApplyResult:
        first = client.check(phone, path=path)
        problems: list[str] = []
        downloaded = []
        if first.status != 200:
            return ApplyResult(phone, first, [], None, [f"check answered {first.status} {first.code}"])
        for offered in first.files:
            try:
                data = client.download(offered, phone.address)
            except (ProtocolError, OSError) as exc:
                problems.append(str(exc))
                continue
            digest = hashlib.sha256(data).hexdigest()
            downloaded.append((offered, digest))
            if digest != offered.sha256:
                problems.append(f"{offered.file_name}: SHA-256 {digest} != advertised {offered.sha256}")
            if len(data) != offered.size:
                problems.append(f"{offered.file_name}: {len(data)} bytes != advertised Size {offered.size}")
        if problems:
            return ApplyResult(phone, first, downloaded, None, problems)
        for offered in first.files:
            if offered.signature_file_name:
                install(phone, offered)
        second = client.check(phone, path=path)
        if second.status != 200 or second.files:
            problems.append(f"after applying, the check answered {second.status} with {len(second.files)} file(s)")
        return ApplyResult(phone, first, downloaded, second, problems)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, phones))


@dataclass
class RolloutRound:
    """One round of a rollout as the fleet saw it."""

    checked: int = 0
    offered: int = 0  # phones offered a version other than what they ran
    installed: int = 0  # phones that took it this round
    failed: int = 0  # phones that failed this round (stayed, reported failure, or fell back)
    versions: dict[str, int] = field(default_factory=dict)  # version of the module -> phones running it
    problems: list[str] = field(default_factory=list)


#: how a failing phone fails: downloads the image and keeps the old version (the image never boots),
#: says so through the device API, or boots the new one and falls back to the old at its next check;
#: ``ignore`` never downloads what it is offered (not a failure of the image: the server must not count it)
FAIL_MODES = ("stuck", "report", "fallback", "ignore")


def rollout_round(client: Client, phones: list[Phone], *, module: str = "CPE.nbt",
                  failing: dict[str, str] | None = None, use_json: bool = False, external: bool = False,
                  concurrency: int = 8) -> RolloutRound:
    """Every phone checks (the Lync XML check, or the device API with ``use_json``), downloads and
    verifies what it is offered and installs it — except the phones in ``failing`` (device id → one
    of :data:`FAIL_MODES`). Phones are changed in place; the round's counts come back."""
    failing = failing or {}
    result = RolloutRound()
    lock = threading.Lock()
    path = "/RequestHandlerExt/ucdevice.upx" if external else "/RequestHandler/ucdevice.upx"

    def fetch(url: str, sha256: str, source: str) -> bool:
        try:
            status, _, data = client.request("GET", url, source=source)
        except OSError as exc:
            result.problems.append(f"GET {url}: {exc}")
            return False
        ok = status == 200 and hashlib.sha256(data).hexdigest() == sha256
        if not ok:
            result.problems.append(f"GET {url}: HTTP {status}, or SHA-256 differs from the one advertised")
        return ok

    def one(phone: Phone) -> None:
        mode = failing.get(phone.device_id)
        offers: list[tuple[str, str, list[tuple[str, str]], str | None]] = []  # (version, package, files, image)
        if use_json:
            answer = client.check_json(phone, external=external)
            if answer.status != 200:
                result.problems.append(f"{phone.device_id}: check answered {answer.status}")
                return
            for package in answer.to_install:
                files = [(f["url"], f["sha256"]) for f in package["files"]]
                image = next((f["name"] for f in package["files"] if f.get("signature")), None)
                offers.append((package["version"], package["name"], files, image))
        else:
            checked = client.check(phone, path=path)
            if checked.status != 200:
                result.problems.append(f"{phone.device_id}: check answered {checked.status} {checked.code}")
                return
            if checked.files:
                image_file = next((f for f in checked.files if f.signature_file_name), checked.files[0])
                offers.append((image_file.version, "CPE", [(f.url, f.sha256) for f in checked.files],
                               image_file.file_name))
        took = failed = False
        was_offered = bool(offers)
        if phone.fallback_to is not None:  # this check reported the new image; now it falls back to the old
            phone.modules, phone.fallback_to, phone.fell_back = phone.fallback_to, None, True
            failed = True
            offers = []
        elif phone.fell_back:
            offers = []  # it does not try again
        for version, package, files, image in offers:
            if mode == "ignore":
                continue  # offered, and never fetches it (no signal of a bad image)
            if use_json:
                client.report(phone, package, version, "downloading", external=external)
            if not all(fetch(url, sha, phone.address) for url, sha in files):
                continue
            if use_json:
                client.report(phone, package, version, "downloaded", external=external)
            if mode == "stuck":
                failed = True
                continue
            if mode == "report":
                client.report(phone, package, version, "failed", code=-2147024784, message="image did not boot",
                              external=external)
                failed = True
                continue
            before = dict(phone.modules)
            install(phone, OfferedFile(image or module, "x", version, "", "", 0, ""))
            if use_json:
                client.report(phone, package, version, "installed", external=external)
            if mode == "fallback":
                phone.fallback_to = before
            took = True
        with lock:
            result.checked += 1
            result.offered += was_offered
            result.installed += took
            result.failed += failed

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, phones))
    for phone in phones:
        for version in phone.modules.values():
            result.versions[version] = result.versions.get(version, 0) + 1
    return result


def served_generation(client: Client) -> int:
    """The rules generation the worker answering a new connection serves (``/healthz``)."""
    parts = urlsplit(client.base_url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.netloc, timeout=client.timeout)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        return int(response.getheader("X-Snapshot-Generation", "-1"))
    finally:
        conn.close()


def wait_generation(client: Client, before: int, timeout: float = 15.0, steady: float = 1.5) -> bool:
    """Until new connections are served a newer generation than ``before`` for ``steady`` seconds in a
    row (every worker has the change: a busy one may accept none for a while, but each refreshes its
    snapshot every 0.5 s), or ``timeout``."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while time.monotonic() < deadline:
        if served_generation(client) > before:
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= steady:
                return True
        else:
            since = None
        time.sleep(0.05)
    return False


def rollout_mode(client: Client, phones: list[Phone], args: argparse.Namespace) -> dict:
    """Rounds of checks and updates over a fleet, some of it failing, and the server's view of the rollout."""
    rng = random.Random(args.seed)
    failing = {p.device_id: args.fail_mode for p in rng.sample(phones, round(args.fail_share * len(phones)))}
    json_ids = {p.device_id for p in rng.sample(phones, round(args.json_share * len(phones)))}
    xml_phones = [p for p in phones if p.device_id not in json_ids]
    json_phones = [p for p in phones if p.device_id in json_ids]

    def api(method: str, path: str) -> dict | None:
        if not (args.token and args.rule):
            return None
        status, _, body = client.request(method, f"{client.base_url}/api/v1{path}",
                                         headers={"Authorization": f"Bearer {args.token}"})
        return json.loads(body) if body else {"status": status}

    rounds, problems = [], []
    for number in range(1, args.rounds + 1):
        began = time.perf_counter()
        a = rollout_round(client, xml_phones, failing=failing, concurrency=args.concurrency)
        b = rollout_round(client, json_phones, failing=failing, use_json=True, concurrency=args.concurrency)
        versions = Counter(a.versions) + Counter(b.versions)
        problems += a.problems + b.problems
        row = {"round": number, "seconds": round(time.perf_counter() - began, 3), "checked": a.checked + b.checked,
               "offered": a.offered + b.offered, "installed": a.installed + b.installed,
               "failed": a.failed + b.failed, "versions": dict(sorted(versions.items()))}
        server = api("GET", f"/rules/{args.rule}/rollout")
        if server is not None:
            row["server"] = {k: server.get(k) for k in ("State", "Stage", "Share", "Offered", "Updated", "Failed")}
        rounds.append(row)
        if args.advance and number < args.rounds:
            before = max(served_generation(client) for _ in range(4))  # the newest any worker serves
            moved = api("POST", f"/rules/{args.rule}/rollout/advance")
            if moved is not None and "Stage" in moved:
                wait_generation(client, before)
        if args.round_interval and number < args.rounds:
            time.sleep(args.round_interval)  # a tool pacing a fleet, not a test waiting for a condition
    return {"mode": "rollout", "phones": len(phones), "failing": len(failing), "json_phones": len(json_phones),
            "rounds": rounds, "problems": problems[:50]}


def summarize(results: list[CheckResult], seconds: float) -> dict:
    latencies = sorted(r.seconds for r in results)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {"checks": len(results), "seconds": round(seconds, 3),
            "checks_per_second": round(len(results) / seconds, 1) if seconds else None,
            "status": dict(Counter(str(r.status) for r in results)),
            "codes": dict(Counter(r.code for r in results if r.code)),
            "offered_files": dict(Counter(str(len(r.files)) for r in results if r.status == 200)),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0.0}


# --- command line ----------------------------------------------------------------------------------

def _family(text: str) -> tuple[str, str, str, str, str]:
    parts = text.split("/")
    if len(parts) != 5:
        raise argparse.ArgumentTypeError("family is DeviceType/Vendor/Model/Revision/Locale")
    return tuple(parts)  # type: ignore[return-value]


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="Base URL of the service, e.g. http://127.0.0.1:8080")
    parser.add_argument("--mode", choices=("single", "storm", "apply", "rollout"), default="single")
    parser.add_argument("--rounds", type=int, default=5, help="rollout: rounds of checks (each phone once a round).")
    parser.add_argument("--round-interval", type=float, default=0.0,
                        help="rollout: seconds between rounds (the server's stages and watch run on its clock).")
    parser.add_argument("--fail-share", type=float, default=0.0,
                        help="rollout: share of the phones whose update fails (0-1).")
    parser.add_argument("--fail-mode", choices=FAIL_MODES, default="stuck",
                        help="rollout: stuck (stays on the old image), report (device API 'failed'), fallback.")
    parser.add_argument("--json-share", type=float, default=0.0,
                        help="rollout: share of the phones that use the device API instead of ucdevice.upx.")
    parser.add_argument("--rule", help="rollout: the rule GUID; with --token, its rollout is read after each round.")
    parser.add_argument("--token", help="rollout: an API token (operator) to read the rollout with.")
    parser.add_argument("--advance", action="store_true",
                        help="rollout: start the next stage after each round (needs an admin --token).")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64, help="Connections for storm/apply (default 64).")
    parser.add_argument("--family", action="append", type=_family,
                        help="DeviceType/Vendor/Model/Revision/Locale; repeatable; default UCPhone/Polycom/CX600/A/ENU")
    parser.add_argument("--installed", type=_pair, action="append", default=[],
                        help="FileName=Version every phone reports installed (repeatable)")
    parser.add_argument("--external", action="store_true", help="Use /RequestHandlerExt (with --user/--password).")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--get", action="store_true", help="Use the GET form of the check.")
    parser.add_argument("--map", type=_pair, action="append", default=[],
                        help="FROM=TO: rewrite URLs starting with FROM (public names → where the server listens)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mac-prefix", default="00-04-F2")
    parser.add_argument("--source-network", help="Give each phone an address of this network to connect from "
                        "(e.g. 127.0.0.0/8 against a server on loopback), as a real fleet has.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    phones = make_fleet(args.devices, families=args.family or [DEFAULT_FAMILY], installed=dict(args.installed),
                        seed=args.seed, mac_prefix=args.mac_prefix, source_network=args.source_network)
    client = Client(args.url, user=args.user, password=args.password, url_map=dict(args.map))
    path = "/RequestHandlerExt/ucdevice.upx" if args.external else "/RequestHandler/ucdevice.upx"
    started = time.perf_counter()
    if args.mode == "rollout":
        report = rollout_mode(client, phones, args)
        failed = bool(report["problems"])
    elif args.mode == "apply":
        applied = apply_updates(client, phones, concurrency=args.concurrency, path=path)
        seconds = time.perf_counter() - started
        report = summarize([a.first for a in applied], seconds)
        report.update(mode="apply", downloaded_files=sum(len(a.downloaded) for a in applied),
                      verified_files=sum(1 for a in applied for f, d in a.downloaded if f.sha256 == d),
                      phones_updated=sum(1 for a in applied if a.first.files and not a.problems),
                      problems=[f"{a.phone.device_id}: {p}" for a in applied for p in a.problems][:50])
        failed = bool(report["problems"])
    else:
        results = run_checks(client, phones, concurrency=1 if args.mode == "single" else args.concurrency,
                             path=path, get=args.get)
        report = summarize(results, time.perf_counter() - started)
        report["mode"] = args.mode
        failed = any(r.status != 200 for r in results)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:18} {value}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
