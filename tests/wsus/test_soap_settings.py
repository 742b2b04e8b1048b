"""The ``[wsus]`` settings: read from a ``[wsus]`` section of devupdate.toml or DEVUPDATE_WSUS_*,
ranges refused by name, and the content base URL default of H2 (never the request's Host)."""

from __future__ import annotations

import pytest

from devupdate.errors import SettingsError
from devupdate.settings import Settings


def test_section_and_environment(tmp_path):
    (tmp_path / "devupdate.toml").write_text("[wsus]\npage_size = 50\nallow_http_soap = true\n"
                                             'max_body_client = "2MiB"\n')
    settings = Settings.load({"DEVUPDATE_HOME": str(tmp_path), "DEVUPDATE_WSUS_MAX_XML_DEPTH": "32"})
    assert (settings.wsus_page_size, settings.wsus_allow_http_soap, settings.wsus_max_body_client,
            settings.wsus_max_xml_depth) == (50, True, 2 * 1024**2, 32)
    assert Settings.load({"DEVUPDATE_HOME": str(tmp_path), "DEVUPDATE_WSUS_PAGE_SIZE": "10"}).wsus_page_size == 10


@pytest.mark.parametrize("toml, env, message", [
    ("[wsus]\npage_size = 500\n", {}, "DEVUPDATE_WSUS_PAGE_SIZE=500: out of range 10–200"),
    ("[wsus]\npage_sise = 50\n", {}, "unknown setting(s) [wsus] page_sise"),
    ("wsus = 3\n", {}, "wsus must be a [wsus] section"),
    ("", {"DEVUPDATE_WSUS_CONTENT_BASE_URL": "ftp://x"}, "DEVUPDATE_WSUS_CONTENT_BASE_URL='ftp://x': expected an"),
    ("", {"DEVUPDATE_WSUS_ALLOW_HTTP_SOAP": "maybe"}, "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP='maybe': expected true"),
])
def test_refusals_name_the_setting(tmp_path, toml, env, message):
    (tmp_path / "devupdate.toml").write_text(toml)
    with pytest.raises(SettingsError) as refused:
        Settings.load({"DEVUPDATE_HOME": str(tmp_path), **env})
    assert message in str(refused.value)


def test_content_base_url_default_is_the_public_host_on_8530(tmp_path):
    home = {"DEVUPDATE_HOME": str(tmp_path)}
    assert Settings.load({**home, "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://updates.example.test:8080/x"}
                         ).effective_wsus_content_base_url == "http://updates.example.test:8530"
    assert Settings.load({**home, "DEVUPDATE_WSUS_CONTENT_BASE_URL": "https://cdn.example.test/wsus/"}
                         ).effective_wsus_content_base_url == "https://cdn.example.test/wsus"
    assert Settings.load({**home, "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://[2001:db8::1]:8080"}
                         ).effective_wsus_content_base_url == "http://[2001:db8::1]:8530"
