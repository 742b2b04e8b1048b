"""Which Origin / Referer a console POST may carry (the pure check; the HTTP side is in
test_console_lockout.py)."""

from __future__ import annotations

import pytest

from devupdate.admin.console.origin import foreign_origin


@pytest.mark.parametrize(("origin", "referer", "host", "trusted", "refused"), [
    (None, None, "updates.contoso.com", (), None),  # scripts: left to the CSRF token
    ("https://updates.contoso.com", None, "updates.contoso.com", (), None),
    ("https://Updates.Contoso.com:443", None, "updates.contoso.com", (), None),
    ("http://updates.contoso.com", None, "updates.contoso.com:80", (), None),
    ("http://127.0.0.1:8080", None, "127.0.0.1:8080", (), None),
    ("http://[::1]:8080", None, "[::1]:8080", (), None),
    (None, "https://updates.contoso.com/console/rules", "updates.contoso.com", (), None),
    ("https://updates.contoso.com", "https://evil.example/", "updates.contoso.com", (), None),  # Origin wins
    ("https://evil.example", None, "updates.contoso.com", (), "https://evil.example:443"),
    ("https://updates.contoso.com.evil.example", None, "updates.contoso.com", (), "https://updates.contoso.com.evil.example:443"),
    ("https://updates.contoso.com:8443", None, "updates.contoso.com", (), "https://updates.contoso.com:8443"),
    ("http://127.0.0.1:8081", None, "127.0.0.1:8080", (), "http://127.0.0.1:8081"),
    ("null", None, "updates.contoso.com", (), "null"),
    ("ftp://updates.contoso.com", None, "updates.contoso.com", (), "ftp://updates.contoso.com"),
    ("https://updates.contoso.com:99999", None, "updates.contoso.com", (), "https://updates.contoso.com:99999"),
    (None, "https://evil.example/a?b", "updates.contoso.com", (), "https://evil.example:443"),
    ("https://updates.contoso.com", None, "10.0.0.5:8080", ("https://updates.contoso.com",), None),
    ("https://evil.example", None, "10.0.0.5:8080", ("https://updates.contoso.com",), "https://evil.example:443"),
    ("https://updates.contoso.com", None, "", (), "https://updates.contoso.com:443"),  # no Host: not ours
])
def test_foreign_origin(origin, referer, host, trusted, refused):
    assert foreign_origin(origin, referer, host, trusted) == refused
