"""Who may talk to us from a browser: the trusted hosts, the allowed origins, and the
guard that enforces both before any route runs.

- **Host.** A request whose ``Host`` is not ours is refused (400 ``host_untrusted``):
  that is how DNS rebinding reaches a service on a private address, and how links get
  built on an attacker's host. Ours are the loopback names, the host of
  ``IMAGEGATE_PUBLIC_URL`` and ``IMAGEGATE_TRUSTED_HOSTS``. The probes (``/health``,
  ``/ready``, ``/metrics``) are exempt: kubelets and Prometheus name a pod by its address,
  and those routes build no links and show no tenant's data.
- **Origin.** A browser names the page that sent a request. On every state-changing
  request and on every WebSocket, a page of another origin must be in
  ``IMAGEGATE_CORS_ORIGINS``, or it is refused (403 ``origin_forbidden``, or the socket is
  closed with 1008 before it opens). A request with no ``Origin`` is refused only when
  ``Sec-Fetch-Site`` says another site sent it. Clients that are not browsers send
  neither header, so the original query-string ``POST /generate`` keeps working for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from imagegate.api.problems import problem_response
from imagegate.errors import CrossOriginRefused, UntrustedHost

log = structlog.get_logger(__name__)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PROBES = frozenset({"/health", "/ready", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})  # "none": the user's own navigation
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class OriginPolicy:
    def __init__(
        self, trusted_hosts: Iterable[str], cors_origins: Iterable[str], public_url: str | None
    ) -> None:
        hosts = [*LOOPBACK_NAMES, *(h.lower() for h in trusted_hosts)]
        origins = [o.rstrip("/").lower() for o in cors_origins]
        if public_url:
            hosts.append((urlsplit(public_url).hostname or "").lower())
            origins.append(_origin_of(public_url))
        self.any_host, self.any_origin = "*" in hosts, "*" in origins
        self.hosts = frozenset(h for h in hosts if not h.startswith("*."))
        self.host_suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))
        self.origins = frozenset(origins)

    def trusts_host(self, host_header: str) -> bool:
        host = _hostname(host_header)
        return self.any_host or host in self.hosts or host.endswith(self.host_suffixes)

    def allows_origin(self, origin: str, host_header: str) -> bool:
        """Our own origin (the page came from us), or one on the allow-list."""
        origin = origin.rstrip("/").lower()
        return self.any_origin or origin in self.origins or _same_origin(origin, host_header)

    def cross_site(self, headers: Headers) -> str | None:
        """What shows a request came from another site's page: the header to blame, if any."""
        origin = headers.get("origin")
        if origin is not None:
            return None if self.allows_origin(origin, headers.get("host", "")) else "Origin"
        site = headers.get("sec-fetch-site")
        return None if site is None or site in SAME_SITE_FETCHES else "Sec-Fetch-Site"


class BrowserGuard:
    """ASGI middleware: the host check on everything, the origin check on WebSockets and on
    every method but GET, HEAD and OPTIONS (which change nothing)."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":  # closed before accept: the handshake gets a 403
            log.info("origin.refused", path=scope["path"], why=refusal.code)
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.message})
        else:
            log.info("origin.refused", path=scope["path"], why=refusal.code)
            await problem_response(refusal, scope["path"])(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> UntrustedHost | CrossOriginRefused | None:
        host = headers.get("host", "")
        if not self.policy.trusts_host(host):
            return UntrustedHost(
                f"The Host {host[:100]!r} is not one of ours; add it to "
                "IMAGEGATE_TRUSTED_HOSTS or set IMAGEGATE_PUBLIC_URL.",
                field="Host",
            )
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        blamed = self.policy.cross_site(headers)
        if blamed is None:
            return None
        return CrossOriginRefused(
            f"A page on another site may not send this request ({blamed}: "
            f"{headers.get(blamed.lower(), '')[:100]!r}); allow its origin in "
            "IMAGEGATE_CORS_ORIGINS.",
            field=blamed,
        )


def _hostname(host_header: str) -> str:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin_of(url: str) -> str:
    parts = urlsplit(url.lower())
    return f"{parts.scheme}://{parts.netloc}"


def _same_origin(origin: str, host_header: str) -> bool:
    try:
        parts = urlsplit(origin)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if parts.hostname is None or port is None:
        return False  # "null" (a sandboxed page, a file) is nobody's origin
    ours = urlsplit(f"//{host_header.strip().lower()}")
    try:
        our_port = ours.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return False
    return (parts.hostname, port) == (ours.hostname, our_port)
