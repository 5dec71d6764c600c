"""Webhooks: Standard Webhooks signatures, the SSRF guard, and durable, retried delivery."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from imagegate.errors import InvalidField
from imagegate.jobs.models import GenerationMeta
from imagegate.jobs.store import JobStore
from imagegate.webhooks import signing
from imagegate.webhooks.guard import WebhookGuard
from imagegate.webhooks.sender import WebhookSender
from tests.conftest import SettingsFactory
from tests.helpers import eventually, spec, wait_for_job

SECRET = "whsec_0Y48PIKZhOtzzAav7NYyFFfw62Bq1VIjZRH5UPdsKfc="
OLD_SECRET = "whsec_5zVy2ifc/ndKW/jp2PLtkQa+WPCgxzSY9elAd3v6a10="


# -- signatures ------------------------------------------------------------------------------


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    body = b'{"type":"job.completed","data":{"id":"j1"}}'
    headers = signing.headers([SECRET], "msg_1", _now(), body)
    assert Webhook(SECRET).verify(body, headers)["data"]["id"] == "j1"
    assert headers["webhook-signature"].startswith("v1,")


def test_a_tampered_body_fails_verification() -> None:
    headers = signing.headers([SECRET], "msg_1", _now(), b'{"a":1}')
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(b'{"a":2}', headers)


def test_two_secrets_give_two_signatures_for_rotation() -> None:
    body = b'{"rotating":true}'
    headers = signing.headers([SECRET, OLD_SECRET], "msg_2", _now(), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OLD_SECRET):
        assert Webhook(secret).verify(body, headers) == {"rotating": True}


def _now() -> int:
    return int(time.time())


# -- the SSRF guard (the resolver is replaced: nothing is looked up or connected) ------------

REFUSED = [
    *("127.0.0.1", "10.1.2.3", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1"),
    *("224.0.0.1", "0.0.0.0", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1"),
    *("::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:7f00:1::1"),
    *("::127.0.0.1", "2001:0:4136:e378:8000:63bf:f5ff:fffe"),  # IPv4-compatible, Teredo
]


def guard_resolving_to(*addresses: str, **options: Any) -> WebhookGuard:
    return WebhookGuard(resolver=lambda host, port: list(addresses), **options)


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidField) as refused:
        guard_resolving_to(address).check("https://hooks.example.com/in")
    assert refused.value.code == "webhook_url_refused"
    assert refused.value.field == "webhook_url"


def test_a_public_address_is_allowed_and_pinned() -> None:
    target = guard_resolving_to("93.184.216.34").check("https://hooks.example.com:8443/in")
    assert (target.host, target.port, target.address) == (
        "hooks.example.com",
        8443,
        "93.184.216.34",
    )


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(InvalidField):
        guard_resolving_to("93.184.216.34", "10.0.0.7").check("http://mixed.example.com/")


def test_private_targets_can_be_allowed_by_setting_or_network() -> None:
    assert guard_resolving_to("10.0.0.7", allow_private=True).check("http://internal/")
    allowed = guard_resolving_to("10.0.0.7", allow_networks=["10.0.0.0/24"])
    assert allowed.check("http://internal/").address == "10.0.0.7"
    with pytest.raises(InvalidField):
        guard_resolving_to("10.0.1.7", allow_networks=["10.0.0.0/24"]).check("http://internal/")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "/relative", "http:///nohost", "file:///etc/passwd"]
)
def test_only_absolute_http_urls_are_taken(url: str) -> None:
    with pytest.raises(InvalidField):
        guard_resolving_to("93.184.216.34").check(url)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(InvalidField, match="does not resolve"):
        WebhookGuard(resolver=fails).check("https://nowhere.example/")


def test_the_api_refuses_a_private_webhook_at_submission(
    server_factory: Callable[..., httpx.Client], settings: Any
) -> None:
    api = server_factory(settings, workers=0)
    response = api.post("/v1/jobs", json={"prompt": "x", "webhook_url": "http://127.0.0.1:9/in"})
    assert response.status_code == 422
    assert (response.json()["code"], response.json()["field"]) == (
        "webhook_url_refused",
        "webhook_url",
    )


def test_delivery_checks_the_address_again_and_never_connects(store: JobStore) -> None:
    job = store.submit(spec(), "local", webhook_url="https://hooks.example.com/in")
    (claim,) = store.claim(lease_s=30)
    store.complete(claim, [], GenerationMeta(1, "sketch-v1", 1))
    requests: list[httpx.Request] = []
    sender = WebhookSender(
        store.engine,
        guard_resolving_to("10.9.8.7"),  # the DNS answer changed since submission
        [SECRET],
        [60.0],
        5.0,
        render=lambda job_id: {"id": job_id},
        transport=httpx.MockTransport(
            lambda request: requests.append(request) or httpx.Response(200)
        ),
    )
    assert sender.run_once() == 1
    sender.stop()
    assert requests == []
    (delivery,) = store.webhook_deliveries(job.id)
    assert delivery["status"] == "pending"  # retried later, in case DNS changes back
    assert delivery["attempts"][0]["error"] == "webhook_url_refused"  # the why is logged


# -- delivery end to end, to a receiver on loopback ----------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers a scripted series of status codes."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.codes[min(len(receiver.requests), len(receiver.codes)) - 1]
                self.send_response(code)
                if code in (301, 302, 307):
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/imagegate"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[list[int]], Receiver]]:
    made: list[Receiver] = []

    def make(codes: list[int]) -> Receiver:
        made.append(Receiver(codes))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def hooked_api(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> httpx.Client:
    settings = make_settings(
        webhook_secret=f"{SECRET},{OLD_SECRET}",
        webhook_allow_networks=["127.0.0.0/8"],
        webhook_retry_schedule_s=[0.2, 0.2, 0.2],
    )
    return server_factory(settings)


def test_a_webhook_is_retried_until_delivered_and_verifies(
    hooked_api: httpx.Client, receiver_factory: Callable[[list[int]], Receiver]
) -> None:
    receiver = receiver_factory([500, 500, 302, 200])
    job = hooked_api.post("/v1/jobs", json={"prompt": "hooked", "webhook_url": receiver.url}).json()
    wait_for_job(hooked_api, job["id"])
    eventually(lambda: len(receiver.requests) >= 4, timeout_s=60)
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    bodies = {body for _, body in receiver.requests}
    assert len(ids) == 1 and len(bodies) == 1  # one message, sent again unchanged
    headers, body = receiver.requests[-1]
    payload = Webhook(OLD_SECRET).verify(body, headers)
    assert payload["type"] == "job.completed"
    assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "completed"
    assert hooked_api.get(payload["data"]["images"][0]["url"]).status_code == 200

    def delivered() -> dict[str, Any] | None:
        (message,) = hooked_api.get(f"/v1/jobs/{job['id']}/webhooks").json()["data"]
        return message if message["status"] == "delivered" else None

    message = eventually(delivered, timeout_s=60)
    assert [a["status_code"] for a in message["attempts"]] == [500, 500, 302, 200]
    assert len(receiver.requests) == 4  # a redirect is a failed attempt, never followed


def test_a_webhook_that_keeps_failing_gives_up_after_the_schedule(
    hooked_api: httpx.Client, receiver_factory: Callable[[list[int]], Receiver]
) -> None:
    receiver = receiver_factory([503])
    job = hooked_api.post("/v1/jobs", json={"prompt": "doomed", "webhook_url": receiver.url}).json()

    def given_up() -> dict[str, Any] | None:
        data = hooked_api.get(f"/v1/jobs/{job['id']}/webhooks").json()["data"]
        return data[0] if data and data[0]["status"] == "failed" else None

    message = eventually(given_up, timeout_s=20)
    assert [a["status_code"] for a in message["attempts"]] == [503] * 4  # first try + 3 retries


def test_canceled_and_failed_jobs_send_webhooks_too(
    server_factory: Callable[..., httpx.Client],
    make_settings: SettingsFactory,
    receiver_factory: Callable[[list[int]], Receiver],
) -> None:
    receiver = receiver_factory([204])
    settings = make_settings(
        webhook_allow_private=True, webhook_secret=SECRET, sketch_delay_ms=3000, job_timeout_s=1
    )
    api = server_factory(settings, workers=1)
    hook = {"webhook_url": receiver.url}
    canceled = api.post("/v1/jobs", json={"prompt": "never mind", "priority": 5} | hook).json()
    timed_out = api.post("/v1/jobs", json={"prompt": "too slow"} | hook).json()
    wait_for_job(api, canceled["id"], {"generating"})
    api.post(f"/v1/jobs/{canceled['id']}/cancel")
    eventually(lambda: len(receiver.requests) == 2, timeout_s=20)
    payloads = [Webhook(SECRET).verify(body, headers) for headers, body in receiver.requests]
    kinds = {p["data"]["id"]: (p["type"], p["data"]["error"]["code"]) for p in payloads}
    assert kinds == {
        canceled["id"]: ("job.canceled", "canceled"),
        timed_out["id"]: ("job.failed", "timeout"),
    }


def test_a_message_that_cannot_even_be_built_is_a_failed_attempt_not_a_stuck_one(
    store: JobStore,
) -> None:
    job = store.submit(spec(), "local", webhook_url="https://bücher.example/in")
    store.cancel(job.id, "local")
    sent: list[httpx.Request] = []

    def broken_render(job_id: str) -> dict[str, Any]:
        raise RuntimeError("cannot render")

    sender = WebhookSender(
        store.engine,
        guard_resolving_to("93.184.216.34"),
        [SECRET],
        [60.0],
        5.0,
        render=broken_render,
        transport=httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(204)),
    )
    assert sender.run_once() == 1
    (message,) = store.webhook_deliveries(job.id)
    assert message["status"] == "pending" and message["attempts"][0]["error"] == "internal_error"
    sender.render = lambda job_id: {"id": job_id}
    store.engine.dispose()
    with store.engine.begin() as conn:  # due again now, rather than in a minute
        conn.exec_driver_sql("UPDATE webhook_deliveries SET next_attempt_at = created_at")
    assert sender.run_once() == 1
    sender.stop()
    assert sent[0].headers["host"] == "xn--bcher-kva.example"  # IDNA, pinned to the address
    assert sent[0].url.host == "93.184.216.34"
    assert store.webhook_deliveries(job.id)[0]["status"] == "delivered"


# -- finding 4: a slow receiver stalled every delivery ----------------------------------------

Answer = Callable[[socket.socket], None]
DRIP_HEAD = b"HTTP/1.1 200 OK\r\nx-drip: " + b"a" * 1000


class RawReceiver:
    """A loopback receiver that reads a request's head, then sends ``answer`` on its own."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = self.open = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks/imagegate"
        self.closing = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self.threads.append(threading.Thread(target=self._handle, args=(conn,), daemon=True))
            self.threads[-1].start()

    def _handle(self, conn: socket.socket) -> None:
        self.open += 1
        with conn, contextlib.suppress(OSError):
            conn.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request and (chunk := conn.recv(65536)):
                request += chunk
            self.answer(conn)
        self.open -= 1

    def close(self) -> None:
        self.closing.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.listener.close()


def drip(seconds: float) -> Answer:
    """A status line and headers, one byte every 0.2 s for ``seconds``, never finished."""

    def answer(conn: socket.socket) -> None:
        ends = time.monotonic() + seconds
        for byte in DRIP_HEAD:
            if time.monotonic() > ends:
                return
            conn.sendall(bytes([byte]))
            time.sleep(0.2)

    return answer


def answer_at_once(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")


def flood_of_headers(conn: socket.socket) -> None:
    """64 KiB of headers, sent at once: under h11's 100 KiB, over the sender's cap."""
    headers = b"".join(b"x-pad-%04d: %s\r\n" % (i, b"a" * 50) for i in range(1060))
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + headers + b"content-length: 0\r\n\r\n")


@pytest.fixture
def raw_receiver() -> Iterator[Callable[[Answer], RawReceiver]]:
    made: list[RawReceiver] = []

    def make(answer: Answer) -> RawReceiver:
        made.append(RawReceiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def loopback_sender(store: JobStore, timeout_s: float, **options: Any) -> WebhookSender:
    return WebhookSender(
        store.engine,
        WebhookGuard(allow_networks=["127.0.0.0/8"]),
        [SECRET],
        options.pop("schedule_s", [60.0]),
        timeout_s,
        render=lambda job_id: {"id": job_id},
        poll_s=0.1,
        **options,
    )


def queue_webhook(store: JobStore, url: str) -> str:
    job = store.submit(spec(), "local", webhook_url=url)
    store.cancel(job.id, "local")  # a queued job ends at once, and its message is due
    return job.id


def only_attempt(store: JobStore, job_id: str) -> dict[str, Any]:
    (message,) = store.webhook_deliveries(job_id)
    (attempt,) = message["attempts"]
    return attempt | {"next_attempt_at": message["next_attempt_at"]}


def delivered(store: JobStore, job_id: str) -> bool:
    return bool(store.webhook_deliveries(job_id)[0]["status"] == "delivered")


def test_a_receiver_that_drips_its_headers_times_out_at_the_deadline(
    store: JobStore, raw_receiver: Callable[[Answer], RawReceiver]
) -> None:
    job_id = queue_webhook(store, raw_receiver(drip(seconds=8)).url)
    sender = loopback_sender(store, timeout_s=1.0)
    assert sender.run_once() == 1
    sender.stop()
    attempt = only_attempt(store, job_id)
    assert attempt["error"] == "timeout"  # before: 8 s of bytes passed each read's timeout
    assert 900 <= attempt["duration_ms"] < 3000


def test_the_next_attempt_counts_from_the_end_of_a_slow_one(
    store: JobStore, raw_receiver: Callable[[Answer], RawReceiver]
) -> None:
    job_id = queue_webhook(store, raw_receiver(drip(seconds=8)).url)
    sender = loopback_sender(store, timeout_s=1.0, schedule_s=[0.5, 0.5])
    assert sender.run_once() == 1
    sender.stop()
    attempt = only_attempt(store, job_id)
    ended = attempt["at"] + timedelta(milliseconds=attempt["duration_ms"])
    assert attempt["next_attempt_at"] >= ended + timedelta(seconds=0.3)  # 0.5 s, ±20%


def test_a_slow_receiver_holds_up_no_other_delivery(
    store: JobStore, raw_receiver: Callable[[Answer], RawReceiver]
) -> None:
    slow, fast = raw_receiver(drip(seconds=30)), raw_receiver(answer_at_once)
    slow_job = queue_webhook(store, slow.url)
    sender = loopback_sender(store, timeout_s=20.0)
    sender.start()
    try:
        eventually(lambda: slow.open == 1)  # the slow attempt has begun, and holds on
        fast_job = queue_webhook(store, fast.url)
        eventually(lambda: delivered(store, fast_job), timeout_s=10)
        assert slow.open == 1 and store.webhook_deliveries(slow_job)[0]["attempts"] == []
    finally:
        sender.stop()


def test_one_host_cannot_take_every_slot(
    store: JobStore, raw_receiver: Callable[[Answer], RawReceiver]
) -> None:
    slow, fast = raw_receiver(drip(seconds=30)), raw_receiver(answer_at_once)
    for _ in range(20):  # more than the sender looks at, so those past the cap are set aside
        queue_webhook(store, slow.url)
    fast_job = queue_webhook(store, fast.url)  # due after all of them
    sender = loopback_sender(store, timeout_s=20.0, concurrency=4)  # one a host
    sender.start()
    try:
        eventually(lambda: delivered(store, fast_job), timeout_s=10)
        assert slow.connections == 1
    finally:
        sender.stop()


def test_headers_past_the_cap_fail_the_attempt(
    store: JobStore, raw_receiver: Callable[[Answer], RawReceiver]
) -> None:
    job_id = queue_webhook(store, raw_receiver(flood_of_headers).url)
    sender = loopback_sender(store, timeout_s=5.0)
    assert sender.run_once() == 1
    sender.stop()
    assert only_attempt(store, job_id)["error"] == "headers_too_large"


def test_the_lease_outlasts_the_deadline(
    store: JobStore, raw_receiver: Callable[[Answer], RawReceiver]
) -> None:
    """Leased for a fixed 60 s, an attempt with a longer deadline could be claimed and sent
    again by a second sender while the first still waited on it."""
    slow = raw_receiver(drip(seconds=30))
    job_id = queue_webhook(store, slow.url)
    sender = loopback_sender(store, timeout_s=90.0)
    sender.start()
    try:
        eventually(lambda: slow.open == 1)
        (message,) = store.webhook_deliveries(job_id)
        assert message["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=90)
        assert loopback_sender(store, timeout_s=90.0).run_once() == 0  # nothing to claim
        assert slow.connections == 1
    finally:
        sender.stop()
