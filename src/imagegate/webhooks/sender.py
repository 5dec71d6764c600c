"""Delivers the outbox: signed POSTs to vetted addresses, retried on a schedule with jitter.

Runs as one background thread next to the workers. Redirects are never followed; any
answer but a 2xx, and any timeout or connection error, is a failed attempt.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import Engine

from imagegate.errors import InvalidField
from imagegate.jobs.database import WRITE
from imagegate.webhooks import outbox, signing
from imagegate.webhooks.guard import Target, WebhookGuard

log = structlog.get_logger(__name__)
LEASE_S = 60.0
BATCH = 10

Render = Callable[[str], dict[str, Any]]  # job id -> the job resource, with image links


class WebhookSender:
    def __init__(
        self,
        engine: Engine,
        guard: WebhookGuard,
        secrets: list[str],
        schedule_s: Sequence[float],
        timeout_s: float,
        render: Render,
        poll_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Every transaction here writes: begin them as writers (SQLite's BEGIN IMMEDIATE),
        # which wait for the lock, rather than upgrade a read and fail as "locked".
        self.engine = engine.execution_options(**WRITE)
        self.guard, self.secrets = guard, secrets
        self.schedule_s, self.render, self.poll_s = list(schedule_s), render, poll_s
        self._http = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._http.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = self.run_once()
            except Exception:
                log.exception("webhooks.loop_failed")
                sent = 0
            if not sent:
                self._stopping.wait(self.poll_s)

    def run_once(self) -> int:
        """Claim due messages, one at a time so none waits under a lease, and try each
        once; returns how many were tried."""
        tried = 0
        while tried < BATCH and not self._stopping.is_set():
            with self.engine.begin() as conn:
                due = outbox.claim_due(conn, _now(), LEASE_S, 1)
            if not due:
                break
            self._deliver(due[0])
            tried += 1
        return tried

    def _deliver(self, delivery: outbox.Delivery) -> None:
        started, at = time.monotonic(), _now()
        payload: dict[str, Any] = delivery.payload or {}
        try:
            if not payload and delivery.job_id is not None:
                payload = {
                    "type": delivery.event_type,
                    "timestamp": at.isoformat(),
                    "data": self.render(delivery.job_id),
                }
            body = json.dumps(payload, separators=(",", ":"), default=str).encode()
            outcome = self._attempt(delivery, body)
        except Exception:  # whatever fails is a failed attempt, never a stuck message
            log.exception("webhook.attempt_failed", message=delivery.id)
            outcome = outbox.Attempt(at, _ms(started), error="internal_error")
        next_at = self._next_attempt(delivery.attempts, outcome)
        with self.engine.begin() as conn:
            outbox.record_attempt(conn, delivery, payload, outcome, next_at)
        log.info(
            "webhook.attempt",
            message=delivery.id,
            status=outcome.status_code,
            ok=outcome.ok,
            error=outcome.error,
        )

    def _attempt(self, delivery: outbox.Delivery, body: bytes) -> outbox.Attempt:
        started, at = time.monotonic(), _now()
        try:
            target = self.guard.check(delivery.url)
            response = self._post(target, delivery.id, body)
        except InvalidField as exc:
            log.info("webhook.refused", message=delivery.id, reason=exc.message)
            return outbox.Attempt(at, _ms(started), error=exc.code)
        except httpx.HTTPError as exc:
            # A stable class of failure, never the network's own words: those would tell a
            # tenant which internal ports are open. The details go to the log.
            log.info("webhook.failed", message=delivery.id, error=f"{type(exc).__name__}: {exc}")
            return outbox.Attempt(at, _ms(started), error=_failure_code(exc))
        return outbox.Attempt(at, _ms(started), status_code=response.status_code)

    def _post(self, target: Target, message_id: str, body: bytes) -> httpx.Response:
        """POST to the vetted address itself, naming the host in Host (and SNI for https)."""
        parts = urlsplit(target.url)
        ip = f"[{target.address}]" if ":" in target.address else target.address
        pinned = parts._replace(netloc=f"{ip}:{target.port}").geturl()
        headers = signing.headers(self.secrets, message_id, int(time.time()), body)
        host = target.host.encode("idna").decode("ascii")
        default_port = {"http": 80, "https": 443}[parts.scheme]
        headers["host"] = host if target.port == default_port else f"{host}:{target.port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self._http.build_request(
            "POST", pinned, content=body, headers=headers, extensions=extensions
        )
        # The status is all we need: the body is never read, so a slow one cannot stall us.
        response = self._http.send(request, stream=True)
        response.close()
        return response

    def _next_attempt(self, attempts: int, outcome: outbox.Attempt) -> datetime | None:
        if outcome.ok or attempts >= len(self.schedule_s):
            return None
        delay = self.schedule_s[attempts] * random.uniform(0.8, 1.2)
        return outcome.at + timedelta(seconds=delay)


def _failure_code(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol_error"
    return "http_error"


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
