#!/usr/bin/env python3
"""devupdate-upload: send a vendor .cab to a devupdate server from an admin's workstation.

    devupdate-upload --server https://updates.contoso.com --token-file ~/.devupdate-token \\
        [--cacert ca.crt] UCUpdates.cab [--approve] [--json]

- The token is an admin token from ``devupdate tokens create NAME --role admin`` (the file holds the
  secret on one line). ``--cacert`` is the CA from ``devupdate cert create`` when the server's
  certificate is not from a CA the workstation trusts.
- The file is streamed (never read into memory) with a progress bar on a terminal.
- A dropped connection, or a server that is briefly unavailable (502/503/504), is retried with
  back-off: the server's import is idempotent, so a retry after a cut ends with one import — if
  the first attempt got through, the retry answers "nothing new".
- ``--approve`` then approves each rule of the cab whose pending version is the uploaded one.
- Prints the rules the import touched (``--json``: the server's answer as JSON). On refusal, exits 1
  with the server's reason; 3 when the server could not be reached; 2 for a usage error.

Standard library only, so it runs on any machine with Python 3.11.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

API = "/api/v1"
BLOCK = 256 * 1024
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class Refused(Exception):
    """The server answered with an error: final, not retried."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"refused (HTTP {status} {code}): {message}")
        self.status, self.code, self.message = status, code, message


class Unreachable(Exception):
    """No answer after every retry."""


class Progress:
    """``uploading UCUpdates.cab  42%  12.0/28.5 MiB  9.1 MiB/s`` on a terminal, nothing otherwise."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.started = time.monotonic()
        self.shown = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.shown < 0.1):
            return
        self.shown = now
        mib = 1024 * 1024
        rate = done / max(now - self.started, 1e-6) / mib
        percent = 100 * done // self.total if self.total else 100
        sys.stderr.write(f"\ruploading {self.label}  {percent:3d}%  {done / mib:.1f}/{self.total / mib:.1f} MiB  "
                         f"{rate:.1f} MiB/s ")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def restart(self) -> None:
        self.started = time.monotonic()


class Client:
    """One HTTP(S) connection per request to ``<server>/api/v1``, with the bearer token."""

    def __init__(self, server: str, token: str, *, cacert: str | None = None, timeout: float = 900):
        parts = urlsplit(server if "://" in server else f"https://{server}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--server {server!r}: use https://HOST[:PORT]")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        if self.base.endswith(API):
            self.base = self.base[: -len(API)]
        self.token, self.timeout = token, timeout
        self.context = ssl.create_default_context(cafile=cacert) if self.scheme == "https" else None

    def connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                "User-Agent": "devupdate-upload/1", **extra}

    def url(self, path: str) -> str:
        return f"{self.base}{API}{path}"

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        conn = self.connection()
        try:
            extra = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, self.url(path), body=body, headers=self.headers(**extra))
            response = conn.getresponse()
            return response.status, _decode(response.read())
        finally:
            conn.close()

    def upload(self, cab: Path, name: str, progress: Progress) -> tuple[int, Any]:
        """POST the file as a streamed body; returns (status, JSON answer)."""
        size = cab.stat().st_size
        conn = self.connection()
        try:
            conn.putrequest("POST", self.url(f"/imports?filename={quote(name)}"))
            for key, value in self.headers(**{"Content-Type": "application/octet-stream",
                                              "Content-Length": str(size)}).items():
                conn.putheader(key, value)
            conn.endheaders()
            sent = 0
            progress.restart()
            try:
                with open(cab, "rb") as handle:
                    while chunk := handle.read(BLOCK):
                        conn.send(chunk)
                        sent += len(chunk)
                        progress.update(sent)
            except OSError as exc:
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise
                # The server may have refused early (size, quota, token) and closed: read its reason.
                try:
                    response = conn.getresponse()
                    return response.status, _decode(response.read())
                except (OSError, http.client.HTTPException):
                    raise ConnectionError(f"connection lost after {sent} of {size} bytes ({exc})") from exc
            progress.update(sent, final=True)
            response = conn.getresponse()
            return response.status, _decode(response.read())
        finally:
            conn.close()


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8")) if data.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"error": {"code": "not-json", "message": data[:300].decode("utf-8", "replace").strip()}}


def _refusal(status: int, answer: Any) -> Refused:
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        return Refused(status, str(error.get("code", "error")), str(error.get("message", "")))
    return Refused(status, "error", f"unexpected answer {str(answer)[:300]!r}")


RETRY_STATUSES = (502, 503, 504)


def _retryable(status: int, answer: Any) -> bool:
    if status in RETRY_STATUSES:
        return True
    # another attempt of this very upload is committing right now: asking again gives its result
    return status == 409 and isinstance(answer, dict) and (answer.get("error") or {}).get("code") == "concurrent-import"


def with_retries(action, *, retries: int, delay: float, what: str) -> tuple[int, Any]:
    """Run ``action`` until it gets a final answer; transport errors and 502/503/504 are retried."""
    attempt = 0
    while True:
        try:
            status, answer = action()
            if not _retryable(status, answer):
                return status, answer
            reason = f"HTTP {status}"
        except ssl.SSLCertVerificationError as exc:
            raise Unreachable(f"TLS certificate not trusted ({exc.verify_message}); pass the server's CA with "
                              "--cacert (devupdate cert create wrote it as ca.crt)") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        attempt += 1
        if attempt > retries:
            raise Unreachable(f"{what} failed after {retries} retries: {reason}")
        print(f"devupdate-upload: {what}: {reason}; retrying in {delay:g} s (attempt {attempt + 1} of "
              f"{retries + 1}; the import is idempotent)", file=sys.stderr)
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def approve_rules(client: Client, rules: list[dict[str, Any]], *, retries: int, delay: float) -> list[dict]:
    """Approve each rule whose pending version is the one just uploaded; safe to repeat."""
    done = []
    for entry in rules:
        rule_id, version = entry["Id"], entry["Version"]
        for _ in range(3):
            status, rule = with_retries(lambda rule_id=rule_id: client.call("GET", f"/rules/{rule_id}"),
                                        retries=retries, delay=delay, what=f"reading rule {rule_id}")
            if status != 200:
                raise _refusal(status, rule)
            if rule.get("ApprovedVersion") == version:
                done.append({"Id": rule_id, "Version": version, "Result": "approved"})
                break
            if rule.get("PendingVersion") != version:
                done.append({"Id": rule_id, "Version": version,
                             "Result": f"not pending (pending: {rule.get('PendingVersion') or 'none'})"})
                break
            status, answer = with_retries(lambda rule_id=rule_id: client.call("POST", f"/rules/{rule_id}/approve"),
                                          retries=retries, delay=delay, what=f"approving rule {rule_id}")
            if status == 200:
                done.append({"Id": rule_id, "Version": version, "Result": "approved"})
                break
            if status != 409:
                raise _refusal(status, answer)
            # 409: an earlier attempt (whose answer was lost) or another admin acted first: look again
    return done


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(no rules)"
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def read_token(path: str) -> str:
    text = Path(path).expanduser().read_text("utf-8").strip()
    token = text.splitlines()[0].strip() if text else ""
    if not token:
        raise ValueError(f"{path} is empty; it should hold the secret printed by 'devupdate tokens create'")
    return token


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devupdate-upload", description="Upload a vendor .cab to a devupdate server.")
    p.add_argument("cab", type=Path, help="the .cab file (e.g. UCUpdates.cab)")
    p.add_argument("--server", required=True, help="server URL, e.g. https://updates.contoso.com")
    p.add_argument("--token-file", required=True, help="file holding an admin API token")
    p.add_argument("--cacert", help="CA certificate (PEM) to trust for the server, e.g. ca.crt from "
                                    "'devupdate cert create'")
    p.add_argument("--approve", action="store_true", help="approve the uploaded versions after the import")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--retries", type=int, default=5, help="retries after a dropped connection (default 5)")
    p.add_argument("--retry-delay", type=float, default=2.0, help="first back-off in seconds (doubles; default 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds without progress before giving up")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.cab.is_file():
        print(f"devupdate-upload: {args.cab}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        token = read_token(args.token_file)
        client = Client(args.server, token, cacert=args.cacert, timeout=args.timeout)
    except (OSError, ValueError, ssl.SSLError) as exc:
        print(f"devupdate-upload: {exc}", file=sys.stderr)
        return EXIT_USAGE
    retry = {"retries": max(0, args.retries), "delay": max(0.0, args.retry_delay)}
    size = args.cab.stat().st_size
    try:
        # check the token and the size limit before sending a large file
        status, limits = with_retries(lambda: client.call("GET", "/imports/limits"), what="contacting the server",
                                      **retry)
        if status != 200:
            raise _refusal(status, limits)
        if isinstance(limits, dict) and isinstance(limits.get("MaxCabSize"), int) and size > limits["MaxCabSize"]:
            raise Refused(413, "cab-too-large", f"{args.cab.name} is {size} bytes, above the server's limit of "
                                                f"{limits['MaxCabSize']} (DEVUPDATE_MAX_CAB_SIZE on the server)")
        show = sys.stderr.isatty() if args.progress is None else args.progress
        progress = Progress(args.cab.name, size, show and size > 0)
        status, result = with_retries(lambda: client.upload(args.cab, args.cab.name, progress),
                                      what=f"uploading {args.cab.name}", **retry)
        if status not in (200, 201):
            raise _refusal(status, result)
        approved = approve_rules(client, result.get("Rules", []), **retry) if args.approve else None
    except Refused as exc:
        print(f"devupdate-upload: {args.cab.name}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Unreachable as exc:
        print(f"devupdate-upload: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps({**result, **({"Approved": approved} if approved is not None else {})}, indent=2))
        return 0
    if result.get("Outcome") == "nothing-new":
        print(f"{args.cab.name}: nothing new (every update in it is already pending or approved)")
    else:
        print(f"{args.cab.name}: imported (import {result.get('ImportId')}, {result.get('Size')} bytes)")
    print(_table(result.get("Rules", []), ["Id", "Version", "Change"]))
    for finding in result.get("Findings", []):
        print(f"warning: {finding}")
    for entry in approved or []:
        print(f"rule {entry['Id']} {entry['Version']}: {entry['Result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
