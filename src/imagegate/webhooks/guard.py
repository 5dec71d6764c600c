"""The SSRF guard: a webhook may only reach public http(s) addresses, unless allowed.

The host is resolved and refused when any of its addresses is loopback, private,
link-local, multicast, reserved or unspecified (an IPv4-mapped IPv6 address counts as its
IPv4 address), unless ``IMAGEGATE_WEBHOOK_ALLOW_PRIVATE`` or an allowed network says
otherwise. The check runs at submission and again before every delivery, and the delivery
connects to the address that was checked, so a DNS answer that changes in between cannot
redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from imagegate.errors import InvalidField

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str
    port: int
    address: str  # the vetted address to connect to


class WebhookGuard:
    def __init__(
        self,
        allow_private: bool = False,
        allow_networks: Sequence[str] = (),
        resolver: Resolver = resolve,
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks: list[Network] = [
            ipaddress.ip_network(net, strict=False) for net in allow_networks
        ]
        self.resolver = resolver

    def check(self, url: str) -> Target:
        if any(ord(ch) < 32 for ch in url):
            raise _refused("The webhook URL contains control characters.")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise _refused("The webhook URL is not a valid URL.") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused("The webhook URL must be an absolute http or https URL.")
        try:
            addresses = self.resolver(parts.hostname, port)
        except (OSError, ValueError) as exc:
            raise _refused(f"The webhook host {parts.hostname!r} does not resolve.") from exc
        if not addresses:
            raise _refused(f"The webhook host {parts.hostname!r} does not resolve.")
        for address in addresses:
            self._vet(ipaddress.ip_address(address), parts.hostname)
        return Target(url, parts.hostname, port, addresses[0])

    def _vet(self, ip: IPAddress, host: str) -> None:
        if self.allow_private or any(ip in net for net in self.allow_networks):
            return
        if any(_is_internal(address) for address in (ip, *_embedded_ipv4(ip))):
            raise _refused(
                f"The webhook host {host!r} resolves to a non-public address ({ip}); set "
                "IMAGEGATE_WEBHOOK_ALLOW_PRIVATE or IMAGEGATE_WEBHOOK_ALLOW_NETWORKS to allow it."
            )


# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (well-known and
# local-use) and the deprecated IPv4-compatible form.
_IPV4_CARRIERS = [
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("::/96"),
]


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to (mapped, 6to4, Teredo, NAT64…)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if any(ip in net for net in _IPV4_CARRIERS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def _is_internal(ip: IPAddress) -> bool:
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _refused(message: str) -> InvalidField:
    return InvalidField("webhook_url", "webhook_url_refused", message)
