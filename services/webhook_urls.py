"""Where a webhook may point: https (http only with WEBHOOK_ALLOW_HTTP), and never at loopback, private,
link-local or other non-public addresses unless WEBHOOK_ALLOW_PRIVATE. Checked when a webhook is
registered and again before each send, on the addresses resolved then (DNS can change), and the
send connects to the address that was checked."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.settings import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2000


class UnsafeURL(ValueError):
    """The URL may not be used for a webhook; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and the TLS server name)
    port: int
    address: Address  # the checked address the connection goes to


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable webhook URL, without resolving it."""
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 0x21 or ord(c) > 0x7e for c in url):
        raise UnsafeURL(f"The URL must be at most {MAX_URL_LENGTH} printable ASCII characters, without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"Not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeURL("The URL must start with https://")
    if scheme == "http" and not settings.webhook_allow_http:
        raise UnsafeURL("Plain http is not allowed for webhooks; use https://")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("Credentials in the URL are not allowed; verify the signature instead")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def allowed(address: Address) -> bool:
    """A public unicast address (or any, with WEBHOOK_ALLOW_PRIVATE)."""
    if settings.webhook_allow_private:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(url: str) -> Target:
    """Resolve the URL's host and check every address it has; the first is the one to connect to."""
    scheme, host, port = parse_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"The host {host} could not be resolved: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]  # without a zone id
    if not addresses:
        raise UnsafeURL(f"The host {host} has no address")
    refused = [a for a in addresses if not allowed(a)]
    if refused:  # one bad answer is enough: a name that also points inside is not sent to
        raise UnsafeURL(f"The host {host} resolves to {refused[0]}, a loopback, private or link-local address")
    return Target(scheme, host, port, addresses[0])
