"""The synchronous SDK against the live app: a real uvicorn server on a loopback port (the
``server_factory`` fixture), on SQLite and PostgreSQL, sometimes behind a proxy that
drops connections. httpx's ASGITransport is async-only, and no WSGI bridge is installed,
so real HTTP it is. The async twin is tested in test_sdk_async.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from imagegate import sdk
from imagegate.webhooks import signing
from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job
from tests.test_sdk_helpers import (
    ADMIN_TOKEN,
    SMALL,
    Proxy,
    Recording,
    bearer,
    new_key,
    proxy_factory,
    required_settings,
)
from tests.test_webhooks import OLD_SECRET, SECRET, Receiver, receiver_factory

__all__ = ["proxy_factory", "receiver_factory"]  # fixtures, for pytest
Server = Callable[..., httpx.Client]

PUBLIC_SURFACE = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CanceledEvent",
    "Client",
    "ClientToken",
    "CompletedEvent",
    "ConflictError",
    "ContentPolicyError",
    "Cost",
    "Event",
    "FailedEvent",
    "Failure",
    "GalleryImage",
    "GenerationTimeoutError",
    "IdempotencyKeyReusedError",
    "Image",
    "ImageGateError",
    "ImagePage",
    "Job",
    "JobCanceledError",
    "JobError",
    "JobFailedError",
    "JobPage",
    "JobParams",
    "Metadata",
    "NotFoundError",
    "PendingReviewEvent",
    "PermissionDeniedError",
    "Placeholder",
    "Progress",
    "ProgressEvent",
    "QueuedEvent",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "StartedEvent",
    "Usage",
    "UsageBucket",
    "ValidationError",
    "WebhookVerificationError",
    "webhooks",
]


def sdk_client(api: httpx.Client, **options: Any) -> sdk.Client:
    return sdk.Client(str(api.base_url), **options)


# -- the package -----------------------------------------------------------------------------


def test_the_public_surface_is_exactly_this() -> None:
    assert sdk.__all__ == PUBLIC_SURFACE
    assert all(getattr(sdk, name) is not None for name in sdk.__all__)


def modules_after(statement: str) -> set[str]:
    probe = f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ
    )
    return set(json.loads(done.stdout))


def test_importing_the_sdk_imports_nothing_of_the_server() -> None:
    loaded = modules_after("import imagegate.sdk")
    ours = {name for name in loaded if name.startswith("imagegate.")}
    assert ours and all(name.startswith("imagegate.sdk") for name in ours), sorted(ours)
    # httpx itself pulls in its command line's helpers (rich, click) when they are
    # installed; beyond what httpx loads, the SDK adds itself, pydantic and the stdlib only.
    added = loaded - modules_after("import httpx, pydantic, anyio")
    server = {"fastapi", "starlette", "sqlalchemy", "uvicorn", "PIL", "typer", "limits", "redis"}
    assert not server & {name.split(".")[0] for name in loaded}
    allowed = {"imagegate", "pydantic", "pydantic_core", "annotated_types", "typing_extensions"}
    allowed |= {"typing_inspection", "httpx", "httpcore", "anyio", *sys.stdlib_module_names}
    foreign = {n for n in added if n.split(".")[0] not in allowed and not n.startswith("_sysconf")}
    assert not foreign, sorted(foreign)


# -- jobs: create, get, list, cancel ------------------------------------------------------------


@pytest.fixture
def idle(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    """No workers: jobs stay queued until canceled."""
    return server_factory(make_settings(), workers=0)


def test_create_get_list_and_cancel(idle: httpx.Client) -> None:
    with sdk_client(idle) as client:
        made = [client.jobs.create(f"boat {i}", seed=i, **SMALL) for i in range(3)]
        assert [job.status for job in made] == ["queued"] * 3
        assert made[0].seed == 0 and made[0].width == 64 and made[0].cost is not None
        got = client.jobs.get(made[1].id)
        assert (got.id, got.prompt, got.status, got.seed) == (made[1].id, "boat 1", "queued", 1)
        listed = list(client.jobs.list(limit=2))  # two pages
        assert [job.id for job in listed] == [job.id for job in reversed(made)]
        assert client.jobs.page(limit=2).next_cursor is not None
        canceled = client.jobs.cancel(made[0].id)
        assert canceled.status == "canceled" and canceled.is_final
        assert [job.id for job in client.jobs.list(status="canceled")] == [made[0].id]
        with pytest.raises(sdk.ConflictError) as again:
            client.jobs.cancel(made[0].id)
        assert again.value.status == 409 and again.value.code == "illegal_transition"
        with pytest.raises(sdk.NotFoundError) as missing:
            client.jobs.get("no-such-job")
        assert missing.value.code == "job_not_found"


# -- generate and its deadline -----------------------------------------------------------------


@pytest.fixture
def slow(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    """A job takes 2 s, however many steps: long enough to watch, and cut, in the middle."""
    return server_factory(make_settings(sketch_delay_ms=2000, preview_every=2))


def test_generate_follows_the_job_and_returns_it_finished(slow: httpx.Client) -> None:
    seen: list[sdk.Event] = []
    with sdk_client(slow) as client:
        job = client.generate("a lighthouse", steps=4, on_event=seen.append, **SMALL)
        png = client.images.download(job.images[0])
        (gallery,) = list(client.images.list())
    assert job.status == "completed" and job.metadata is not None
    types = [event.type for event in seen]
    assert types[0] == "queued" and types[-1] == "completed" and "started" in types
    progress = [event for event in seen if isinstance(event, sdk.ProgressEvent)]
    steps = [event.step for event in progress]
    assert steps == sorted(set(steps)) and steps[-1] == 4 and progress[0].total == 4
    assert any(event.preview_url for event in progress)
    assert isinstance(seen[-1], sdk.CompletedEvent)
    assert [(i.id, i.url) for i in seen[-1].images] == [(i.id, i.url) for i in job.images]
    placeholder = job.images[0].placeholder
    assert placeholder is not None and placeholder.data_url.startswith("data:image/")
    assert job.images[0].content_type == "image/png"
    assert png.startswith(b"\x89PNG") and len(png) > 100
    assert gallery.job_id == job.id and gallery.prompt == "a lighthouse"


def test_generate_past_its_deadline_cancels_the_job_on_the_server(slow: httpx.Client) -> None:
    with sdk_client(slow) as client:
        started = time.monotonic()
        with pytest.raises(sdk.GenerationTimeoutError) as timed_out:
            client.generate("a long one", steps=20, timeout=1.0, **SMALL)
        waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0, waited  # loose: this machine is shared
    job_id, job = timed_out.value.job_id, timed_out.value.job
    assert job_id is not None and job is not None
    assert job.cancel_requested or job.status == "canceled"
    assert isinstance(timed_out.value, TimeoutError)
    final = wait_for_job(slow, job_id)
    assert final["status"] == "canceled" and final["progress"]["step"] < 20


def test_a_deadline_that_passes_during_submission_still_cancels_the_job(
    idle: httpx.Client, proxy_factory: Callable[[str], Proxy]
) -> None:
    proxy = proxy_factory(str(idle.base_url))
    proxy.stall_next = 1  # the submission reaches the server; its answer never comes back
    with sdk.Client(proxy.url) as client, pytest.raises(sdk.GenerationTimeoutError) as timed_out:
        client.generate("stalled", timeout=1.0, **SMALL)
    (job,) = idle.get("/v1/jobs").json()["data"]  # one job: the resent submission replayed it
    assert job["status"] == "canceled" and timed_out.value.job_id == job["id"]
    (first, again) = proxy.requests(b"POST /v1/jobs HTTP")
    assert key_of(first) == key_of(again)


def key_of(request: bytes) -> str:
    head = request.split(b"\r\n\r\n")[0].decode()
    lines = [line for line in head.split("\r\n") if line.lower().startswith("idempotency-key:")]
    return lines[0].split(":", 1)[1].strip()


def test_a_failed_job_raises_job_failed_error(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(sketch_delay_ms=4000, job_timeout_s=0.5))
    with sdk_client(api) as client, pytest.raises(sdk.JobFailedError) as failed:
        client.generate("too slow", steps=4, **SMALL)
    assert failed.value.job.status == "failed" and failed.value.code == "timeout"
    assert failed.value.retryable


# -- the event stream, resumed -------------------------------------------------------------------


def test_a_dropped_stream_resumes_after_the_last_event_seen(
    slow: httpx.Client, proxy_factory: Callable[[str], Proxy]
) -> None:
    proxy = proxy_factory(str(slow.base_url))
    with sdk.Client(proxy.url) as client:
        job = client.jobs.create("cut me off", steps=8, **SMALL)
        seen: list[sdk.Event] = []
        for event in client.jobs.stream(job.id):
            seen.append(event)
            if event.type == "progress" and len(proxy.requests(b"/events")) == 1:
                proxy.sever()
        whole = list(client.jobs.stream(job.id))  # afresh, from the first event
    stored = [(event.id, event.type) for event in whole if event.id]
    assert [(event.id, event.type) for event in seen if event.id] == stored  # no loss, no repeat
    assert seen[-1].type == "completed"
    first_progress = next(event for event in seen if event.type == "progress")
    (_, resumed, _) = proxy.requests(b"/events")
    assert f"last-event-id: {first_progress.id}\r\n".encode() in resumed.lower()


# -- retries and idempotency ---------------------------------------------------------------------


@pytest.fixture
def capped(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    """One unfinished job at a time, each taking 1.5 s; a second is refused 429 with
    Retry-After: 1 meanwhile."""
    settings = make_settings(limit_concurrent_jobs=1, poll_hint_s=1, sketch_delay_ms=1500)
    return server_factory(settings)


def test_a_rate_limit_is_retried_after_its_retry_after(capped: httpx.Client) -> None:
    first = capped.post("/v1/jobs", json={"prompt": "first"} | SMALL).json()
    recording = Recording()
    with sdk_client(capped, transport=recording) as client:
        second = client.jobs.create("second", **SMALL)
    posts = [a for a in recording.attempts if a.method == "POST"]
    assert [a.status for a in posts][-1] == 202 and 429 in [a.status for a in posts]
    assert all(b.at - a.at >= 1.0 for a, b in pairwise(posts))
    assert len({a.headers["idempotency-key"] for a in posts}) == 1
    assert wait_for_job(capped, first["id"])["status"] == "completed"
    assert second.id != first["id"] and len(capped.get("/v1/jobs").json()["data"]) == 2


def test_a_retry_after_past_the_bound_is_raised_at_once(capped: httpx.Client) -> None:
    capped.post("/v1/jobs", json={"prompt": "first"} | SMALL)
    recording = Recording()
    policy = sdk.RetryPolicy(max_retry_after_s=0.5)
    with (
        sdk_client(capped, transport=recording, retry=policy) as client,
        pytest.raises(sdk.RateLimitError) as limited,
    ):
        client.jobs.create("second", **SMALL)
    assert limited.value.retry_after == 1.0 and limited.value.code == "rate_limited"
    assert [a.status for a in recording.attempts] == [429]


def test_a_lost_answer_is_retried_and_makes_one_job(
    idle: httpx.Client, proxy_factory: Callable[[str], Proxy]
) -> None:
    proxy = proxy_factory(str(idle.base_url))
    proxy.drop_next = 1
    with sdk.Client(proxy.url) as client:
        job = client.jobs.create("once only", **SMALL)
    posts = proxy.requests(b"POST /v1/jobs HTTP")
    assert len(posts) == 2 and key_of(posts[0]) == key_of(posts[1])
    assert [j["id"] for j in idle.get("/v1/jobs").json()["data"]] == [job.id]


def test_a_network_error_past_the_retries_is_raised_typed() -> None:
    policy = sdk.RetryPolicy(max_retries=2, backoff_s=0.01)
    with (
        sdk.Client("http://127.0.0.1:9", retry=policy) as client,  # the discard port: refused
        pytest.raises(sdk.APIConnectionError) as refused,
    ):
        client.jobs.get("any")
    assert refused.value.status is None and refused.value.code == "network"


def test_one_key_with_another_body_is_refused(idle: httpx.Client) -> None:
    with sdk_client(idle) as client:
        first = client.jobs.create("a", idempotency_key="key-1", **SMALL)
        again = client.jobs.create("a", idempotency_key="key-1", **SMALL)
        with pytest.raises(sdk.IdempotencyKeyReusedError) as reused:
            client.jobs.create("b", idempotency_key="key-1", **SMALL)
    assert again.id == first.id
    assert isinstance(reused.value, sdk.ValidationError) and reused.value.status == 422
    assert reused.value.field == "Idempotency-Key"


# -- typed errors ---------------------------------------------------------------------------------


def test_refusals_are_typed_from_their_code(idle: httpx.Client) -> None:
    with sdk_client(idle) as client:
        with pytest.raises(sdk.ContentPolicyError) as refused:
            client.jobs.create("how to build a pipe bomb")
        with pytest.raises(sdk.ValidationError) as invalid:
            client.jobs.create("a boat", width=100)
    assert refused.value.status == 400 and refused.value.field == "prompt"
    assert refused.value.code == "content_policy_violation"
    assert refused.value.categories == ["weapons"]
    assert invalid.value.code == "invalid_dimensions" and invalid.value.field == "width"
    assert "multiple of 8" in invalid.value.detail
    assert idle.get("/v1/jobs").json()["data"] == []


# -- tenants and browser tokens ------------------------------------------------------------------


@pytest.fixture
def gate(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    return server_factory(required_settings(make_settings))


def test_another_tenants_job_is_not_found(gate: httpx.Client) -> None:
    acme, globex = new_key(gate, "acme"), new_key(gate, "globex")
    with sdk_client(gate, api_key=acme) as mine, sdk_client(gate, api_key=globex) as theirs:
        job = mine.generate("acme's boat", steps=2, **SMALL)
        for attempt in (theirs.jobs.get, theirs.jobs.cancel, lambda i: list(theirs.jobs.stream(i))):
            with pytest.raises(sdk.NotFoundError) as hidden:
                attempt(job.id)
            assert hidden.value.code == "job_not_found"
        assert list(theirs.jobs.list()) == [] and list(theirs.images.list()) == []
        assert [j.id for j in mine.jobs.list()] == [job.id]
    with sdk_client(gate) as nobody, pytest.raises(sdk.AuthenticationError) as anonymous:
        next(iter(nobody.jobs.list()))
    assert anonymous.value.status == 401


def test_a_budget_refusal_is_typed(gate: httpx.Client) -> None:
    key = new_key(gate, "thrifty")
    budget = {"budget": {"amount": 0.000001, "currency": "USD", "period": "day"}}
    answer = gate.put("/v1/admin/tenants/thrifty", json=budget, headers=bearer(ADMIN_TOKEN))
    assert answer.status_code == 200, answer.text
    with sdk_client(gate, api_key=key) as client, pytest.raises(sdk.BudgetExceededError) as over:
        client.jobs.create("too dear", **SMALL)
    assert over.value.status == 402 and over.value.code == "budget_exceeded"


def test_a_token_provider_is_asked_once_and_again_after_a_401(gate: httpx.Client) -> None:
    key = new_key(gate, "acme")
    calls: list[str] = []
    with sdk_client(gate, api_key=key) as backend:

        def provider() -> str:
            calls.append("asked")
            if len(calls) == 1:
                return "not-a-token"  # refused: the SDK should ask again
            return backend.create_client_token("user-7", ttl_s=600).token

        with sdk_client(gate, token_provider=provider) as browser:
            job = browser.jobs.create("for user 7", **SMALL)
            assert browser.jobs.get(job.id).user == "user-7"
            assert [j.id for j in browser.jobs.list()] == [job.id]
            with pytest.raises(sdk.PermissionDeniedError) as other_user:
                list(browser.jobs.list(user="user-8"))
    assert len(calls) == 2  # the bad token, then one good token for every request after
    assert other_user.value.status == 403 and other_user.value.code == "forbidden"


def test_usage_is_typed(gate: httpx.Client) -> None:
    key = new_key(gate, "acme", scopes=["jobs:write", "jobs:read", "usage:read"])
    with sdk_client(gate, api_key=key) as client:
        client.generate("a priced boat", steps=2, **SMALL)
        (bucket,) = client.usage(group_by=["model"], bucket="1d").data
    assert bucket.model == "sketch-v1" and bucket.jobs == 1 and bucket.cost > 0


# -- webhooks --------------------------------------------------------------------------------------

BODY = b'{"type": "job.completed", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": "j1"}}'


def signed(secrets: list[str], at: int, body: bytes = BODY) -> dict[str, str]:
    return signing.headers(secrets, "msg_1", at, body)


def test_webhooks_verify_what_the_server_signs() -> None:
    now = int(time.time())
    payload = sdk.webhooks.verify(BODY, signed([SECRET], now), SECRET)
    assert payload["data"]["id"] == "j1"
    rotated = signed([SECRET, OLD_SECRET], now)  # the server signs with each secret
    assert sdk.webhooks.verify(BODY, rotated, OLD_SECRET) == payload
    assert sdk.webhooks.verify(BODY.decode(), rotated, ["whsec_AAAA", SECRET]) == payload
    upper = {name.title(): value for name, value in rotated.items()}
    assert sdk.webhooks.verify(BODY, upper, SECRET) == payload  # header names: any case
    # the reference implementation agrees on the same message
    assert Webhook(SECRET).verify(BODY, signed([SECRET], now)) == payload


@pytest.mark.parametrize(
    ("body", "headers", "secret", "code"),
    [
        (BODY + b" ", None, SECRET, "invalid_signature"),
        (BODY, None, "whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ==", "invalid_signature"),
        (BODY, {"webhook-id": "msg_2"}, SECRET, "invalid_signature"),
        (BODY, {"webhook-timestamp": "1"}, SECRET, "timestamp_out_of_tolerance"),
        (BODY, {"webhook-timestamp": "soon"}, SECRET, "invalid_timestamp"),
        (BODY, {"webhook-signature": "v2,abc"}, SECRET, "invalid_signature"),
        (BODY, {"webhook-signature": "v1,!!!"}, SECRET, "invalid_signature"),
        (BODY, None, "whsec_%%%", "invalid_secret"),
    ],
)
def test_webhooks_refuse_what_does_not_verify(
    body: bytes, headers: dict[str, str] | None, secret: str, code: str
) -> None:
    sent = signed([SECRET], int(time.time())) | (headers or {})
    with pytest.raises(sdk.WebhookVerificationError) as refused:
        sdk.webhooks.verify(body, sent, secret)
    assert refused.value.code == code


def test_webhooks_hold_to_the_tolerance_both_ways() -> None:
    sent_at = 1_800_000_000
    headers = signed([SECRET], sent_at)
    for now in (sent_at - 300, sent_at + 300):
        assert sdk.webhooks.verify(BODY, headers, SECRET, now=now)
    for now in (sent_at - 301, sent_at + 301):
        with pytest.raises(sdk.WebhookVerificationError):
            sdk.webhooks.verify(BODY, headers, SECRET, now=now)
    assert sdk.webhooks.verify(BODY, headers, SECRET, now=sent_at + 3000, tolerance_s=3600)
    missing = {k: v for k, v in headers.items() if k != "webhook-id"}
    with pytest.raises(sdk.WebhookVerificationError) as no_id:
        sdk.webhooks.verify(BODY, missing, SECRET, now=sent_at)
    assert no_id.value.code == "missing_header"


def test_a_delivered_webhook_verifies_with_the_sdk(
    server_factory: Server,
    make_settings: SettingsFactory,
    receiver_factory: Callable[[list[int]], Receiver],
) -> None:
    receiver = receiver_factory([200])
    settings = make_settings(webhook_secret=SECRET, webhook_allow_networks=["127.0.0.0/8"])
    api = server_factory(settings)
    with sdk_client(api) as client:
        job = client.generate("hooked", webhook_url=receiver.url, steps=2, **SMALL)
    eventually(lambda: receiver.requests, timeout_s=30)
    headers, body = receiver.requests[0]
    payload = sdk.webhooks.verify(body, headers, SECRET)
    assert payload["type"] == "job.completed" and payload["data"]["id"] == job.id
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.webhooks.verify(body.replace(b"completed", b"canceled"), headers, SECRET)
