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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused("The webhook URL must be an absolute http or https URL.")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
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
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if _is_internal(mapped or ip):
            raise _refused(
                f"The webhook host {host!r} resolves to a non-public address ({ip}); set "
                "IMAGEGATE_WEBHOOK_ALLOW_PRIVATE or IMAGEGATE_WEBHOOK_ALLOW_NETWORKS to allow it."
            )


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
