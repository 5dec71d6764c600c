"""Delivers the outbox: signed POSTs to vetted addresses, retried on a schedule with jitter.

Runs an asyncio loop in one background thread next to the workers, with up to
``concurrency`` attempts in flight and no more than a quarter of them to any one host, so a
slow receiver holds up no one else. A message is claimed only when a slot is free, under a
lease that outlasts the attempt's total deadline (``timeout_s`` for the guard's lookup,
connecting, sending and the answer's headers together). Redirects are never followed and
bodies never read; any answer but a 2xx, and any timeout or connection error, is a failed
attempt, tried again on the schedule counted from the attempt's end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import Engine

from imagegate.errors import InvalidField
from imagegate.jobs.database import WRITE
from imagegate.webhooks import outbox, signing
from imagegate.webhooks.guard import Target, WebhookGuard
from imagegate.webhooks.transport import CappedTransport, HeadersTooLarge

log = structlog.get_logger(__name__)
WINDOW_PER_SLOT = 4  # due messages looked at per free slot, to pass over hosts at their cap

T = TypeVar("T")
Render = Callable[[str], dict[str, Any]]  # job id -> the job resource, with image links


def lease_for(timeout_s: float) -> float:
    """Room for the render, an attempt of at most ``timeout_s``, and its record."""
    return 2 * timeout_s + 30.0


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
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = 16,
    ) -> None:
        # Every transaction here writes: begin them as writers (SQLite's BEGIN IMMEDIATE),
        # which wait for the lock, rather than upgrade a read and fail as "locked".
        self.engine = engine.execution_options(**WRITE)
        self.guard, self.secrets = guard, secrets
        self.schedule_s, self.render, self.poll_s = list(schedule_s), render, poll_s
        self.timeout_s, self.lease_s = timeout_s, lease_for(timeout_s)
        self.concurrency, self.per_host = concurrency, max(1, concurrency // 4)
        self._transport = transport
        self._in_flight: dict[asyncio.Task[None], str] = {}  # each attempt, and its host
        self._changed: asyncio.Event | None = None  # an attempt ended, or stop() was called
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming and abandon the attempts in flight: their leases run out and their
        messages come back, to be tried again."""
        self._stopping.set()
        if self._loop and self._changed:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                self._loop.call_soon_threadsafe(self._changed.set)
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def run_once(self) -> int:
        """Claim what is due (up to the concurrency) and try each once, together; returns
        how many were tried."""
        return asyncio.run(self._round())

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _round(self) -> int:
        self._changed = asyncio.Event()
        async with self._client() as http:
            started = await self._fill(http)
            await asyncio.gather(*self._in_flight)
        return started

    async def _serve(self) -> None:
        self._loop, self._changed = asyncio.get_running_loop(), asyncio.Event()
        async with self._client() as http:
            while not self._stopping.is_set():
                self._changed.clear()
                if not await self._fill(http):
                    await self._idle(self._changed)
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _idle(self, changed: asyncio.Event) -> None:
        """Wait until an attempt ends, stop() is called, or the poll interval passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_s):
                await changed.wait()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s)),
            transport=self._transport or CappedTransport(),
        )

    async def _fill(self, http: httpx.AsyncClient) -> int:
        """Claim due messages into the free slots and start their attempts."""
        free = self.concurrency - len(self._in_flight)
        if free <= 0 or self._stopping.is_set():
            return 0
        load = Counter(self._in_flight.values())
        try:
            claimed = await asyncio.to_thread(self._claim, free, load)
        except Exception:  # the database may be away for a while: try again later
            log.exception("webhooks.claim_failed")
            return 0
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(http, delivery))
            self._in_flight[task] = _host_of(delivery.url)
            task.add_done_callback(self._ended)
        return len(claimed)

    def _claim(self, free: int, load: Counter[str]) -> list[outbox.Delivery]:
        """The oldest due messages whose hosts have room, leased from now, as they start."""
        window = free * WINDOW_PER_SLOT
        with self.engine.begin() as conn:
            now = _now()
            due = outbox.due(conn, now, window)
            chosen, passed = _pick(due, free, load, self.per_host)
            if len(chosen) < free and len(due) == window:
                # Hosts at their cap fill the window: set their messages aside for a lease
                # (untried, they come back then), so that the others behind them can go.
                outbox.claim(conn, passed, now, self.lease_s)
            return outbox.claim(conn, chosen, now, self.lease_s)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("webhooks.delivery_failed", exc_info=error)
        if self._changed:
            self._changed.set()

    async def _deliver(self, http: httpx.AsyncClient, delivery: outbox.Delivery) -> None:
        started, at = time.monotonic(), _now()
        payload: dict[str, Any] = delivery.payload or {}
        try:
            payload = await self._payload(delivery, at)
            body = json.dumps(payload, separators=(",", ":"), default=str).encode()
            outcome = await self._attempt(http, delivery, body)
        except Exception:  # whatever fails is a failed attempt, never a stuck message
            log.exception("webhook.attempt_failed", message=delivery.id)
            outcome = outbox.Attempt(at, _ms(started), error="internal_error")
        next_at = self._next_attempt(delivery.attempts, outcome, ended=_now())
        await asyncio.to_thread(self._record, delivery, payload, outcome, next_at)
        log.info(
            "webhook.attempt",
            message=delivery.id,
            status=outcome.status_code,
            ok=outcome.ok,
            error=outcome.error,
        )

    async def _payload(self, delivery: outbox.Delivery, at: datetime) -> dict[str, Any]:
        if delivery.payload or delivery.job_id is None:
            return delivery.payload or {}
        data = await asyncio.to_thread(self.render, delivery.job_id)
        return {"type": delivery.event_type, "timestamp": at.isoformat(), "data": data}

    def _record(
        self,
        delivery: outbox.Delivery,
        payload: dict[str, Any],
        outcome: outbox.Attempt,
        next_at: datetime | None,
    ) -> None:
        with self.engine.begin() as conn:
            outbox.record_attempt(conn, delivery, payload, outcome, next_at)

    async def _attempt(
        self, http: httpx.AsyncClient, delivery: outbox.Delivery, body: bytes
    ) -> outbox.Attempt:
        started, at = time.monotonic(), _now()
        try:
            # The deadline of the whole attempt: httpx's timeouts bound each read, and a
            # receiver that drips its headers a byte at a time would pass every one of them.
            async with asyncio.timeout(self.timeout_s):
                target = await _on_own_thread(self.guard.check, delivery.url)
                status = await self._post(http, target, delivery.id, body)
        except InvalidField as exc:
            log.info("webhook.refused", message=delivery.id, reason=exc.message)
            return outbox.Attempt(at, _ms(started), error=exc.code)
        except TimeoutError:
            log.info("webhook.failed", message=delivery.id, error="the deadline passed")
            return outbox.Attempt(at, _ms(started), error="timeout")
        except httpx.HTTPError as exc:
            # A stable class of failure, never the network's own words: those would tell a
            # tenant which internal ports are open. The details go to the log.
            log.info("webhook.failed", message=delivery.id, error=f"{type(exc).__name__}: {exc}")
            return outbox.Attempt(at, _ms(started), error=_failure_code(exc))
        return outbox.Attempt(at, _ms(started), status_code=status)

    async def _post(
        self, http: httpx.AsyncClient, target: Target, message_id: str, body: bytes
    ) -> int:
        """POST to the vetted address itself, naming the host in Host (and SNI for https)."""
        parts = urlsplit(target.url)
        ip = f"[{target.address}]" if ":" in target.address else target.address
        pinned = parts._replace(netloc=f"{ip}:{target.port}").geturl()
        headers = signing.headers(self.secrets, message_id, int(time.time()), body)
        host = target.host.encode("idna").decode("ascii")
        default_port = {"http": 80, "https": 443}[parts.scheme]
        headers["host"] = host if target.port == default_port else f"{host}:{target.port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = http.build_request(
            "POST", pinned, content=body, headers=headers, extensions=extensions
        )
        # The status is all we need: the body is never read, so a slow one cannot stall us.
        response = await http.send(request, stream=True)
        await response.aclose()
        return response.status_code

    def _next_attempt(
        self, attempts: int, outcome: outbox.Attempt, ended: datetime
    ) -> datetime | None:
        """Counted from the attempt's end, so a slow attempt is not followed by an
        immediate one."""
        if outcome.ok or attempts >= len(self.schedule_s):
            return None
        delay = self.schedule_s[attempts] * random.uniform(0.8, 1.2)
        return ended + timedelta(seconds=delay)


def _pick(
    due: list[tuple[str, str]], free: int, load: Counter[str], per_host: int
) -> tuple[list[str], list[str]]:
    """Up to ``free`` of the due messages, oldest first, none to a host that would go past
    ``per_host`` attempts in flight; and those passed over because their host was full."""
    load = Counter(load)
    chosen: list[str] = []
    passed: list[str] = []
    for message_id, url in due:
        host = _host_of(url)
        if load[host] >= per_host:
            passed.append(message_id)
        elif len(chosen) < free:
            chosen.append(message_id)
            load[host] += 1
    return chosen, passed


def _host_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}"
    except ValueError:
        return url


async def _on_own_thread(function: Callable[[str], T], argument: str) -> T:
    """Run a blocking call (the guard's DNS lookup) on a daemon thread of its own: one that
    a tenant's name server holds past the deadline ties up no shared pool of threads, and
    cannot delay the process's exit."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return  # the attempt gave up before the thread began
        try:
            done.set_result(function(argument))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name="webhook-lookup", daemon=True).start()
    return await asyncio.wrap_future(done)


def _failure_code(exc: httpx.HTTPError) -> str:
    if isinstance(exc.__cause__, HeadersTooLarge):
        return "headers_too_large"
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
