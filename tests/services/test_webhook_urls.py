"""Where a webhook may point, checked without sending anything."""

from __future__ import annotations

import ipaddress

import pytest

from services.webhook_urls import UnsafeURL, allowed, parse_url, resolve


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "fc00::1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1",
                                     "224.0.0.1"])
def test_internal_addresses_are_not_allowed(address: str) -> None:
    assert not allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert allowed(ipaddress.ip_address(address))


def test_private_addresses_are_allowed_where_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings

    monkeypatch.setattr(settings, "webhook_allow_private", True)
    monkeypatch.setattr(settings, "webhook_allow_http", True)
    target = resolve("http://127.0.0.1:8080/x")
    assert (target.scheme, target.host, target.port, str(target.address)) == ("http", "127.0.0.1", 8080, "127.0.0.1")


@pytest.mark.parametrize(("url", "why"), [
    ("http://example.org/", "Plain http"), ("gopher://example.org/", "https"), ("https:///x", "no host"),
    ("https://a b.example/", "printable"), ("https://u:p@example.org/", "Credentials"),
    ("https://example.org:99999/", "valid URL"), ("https://" + "a" * 2000 + ".example/", "2000"),
])
def test_malformed_urls_are_refused_before_any_lookup(url: str, why: str) -> None:
    with pytest.raises(UnsafeURL, match=why):
        parse_url(url)


def test_a_name_resolving_inside_is_refused() -> None:
    with pytest.raises(UnsafeURL, match="loopback, private or link-local"):
        resolve("https://localhost/hooks")
