"""The async SDK against the live app, in-process through ``httpx.ASGITransport`` (the app's
own lifespan runs: its runtime, its workers), on SQLite and PostgreSQL. ASGITransport hands
a response over only once it is complete, so the one test that cuts a stream in the middle
goes over real HTTP, through a proxy, to a uvicorn server on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import pairwise
from typing import Any

import anyio
import httpx
import pytest

from imagegate import sdk
from imagegate.api.app import create_app
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.test_sdk_helpers import (
    ADMIN_TOKEN,
    SMALL,
    AsyncRecording,
    Proxy,
    proxy_factory,
    required_settings,
)

__all__ = ["proxy_factory"]  # a fixture, for pytest


@asynccontextmanager
async def in_process(
    settings: Settings, workers: int = 1, **options: Any
) -> AsyncIterator[tuple[sdk.AsyncClient, AsyncRecording]]:
    """The app with its lifespan, and an AsyncClient that reaches it through ASGITransport."""
    app = create_app(settings, workers)
    async with app.router.lifespan_context(app):
        transport = AsyncRecording(httpx.ASGITransport(app=app))
        async with sdk.AsyncClient("http://127.0.0.1", transport=transport, **options) as client:
            yield client, transport


async def until(probe: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    with anyio.fail_after(timeout_s):
        while not (value := await probe()):
            await anyio.sleep(0.05)
    return value


async def test_create_get_list_and_cancel(make_settings: SettingsFactory) -> None:
    async with in_process(make_settings(), workers=0) as (client, _):
        made = [await client.jobs.create(f"boat {i}", **SMALL) for i in range(3)]
        assert (await client.jobs.get(made[2].id)).queue_position == 2
        listed = [job.id async for job in client.jobs.list(limit=2)]
        assert listed == [job.id for job in reversed(made)]
        assert (await client.jobs.cancel(made[1].id)).status == "canceled"
        with pytest.raises(sdk.ConflictError):
            await client.jobs.cancel(made[1].id)
        with pytest.raises(sdk.NotFoundError):
            await client.jobs.get("no-such-job")


async def test_generate_follows_the_job_and_returns_it_finished(
    make_settings: SettingsFactory,
) -> None:
    seen: list[str] = []

    async def on_event(event: sdk.Event) -> None:  # a handler may be async
        seen.append(event.type)

    async with in_process(make_settings(preview_every=1)) as (client, _):
        job = await client.generate("a lighthouse", steps=3, on_event=on_event, **SMALL)
        png = await client.images.download(job.images[0])
        gallery = [image async for image in client.images.list()]
    assert job.status == "completed" and png.startswith(b"\x89PNG")
    assert seen[0] == "queued" and seen[-1] == "completed" and "progress" in seen
    assert [image.id for image in gallery] == [job.images[0].id]


async def test_generate_past_its_deadline_cancels_the_job_on_the_server(
    make_settings: SettingsFactory,
) -> None:
    async with in_process(make_settings(sketch_delay_ms=2000)) as (client, _):
        started = time.monotonic()
        with pytest.raises(sdk.GenerationTimeoutError) as timed_out:
            await client.generate("a long one", steps=20, timeout=1.0, **SMALL)
        waited = time.monotonic() - started
        job_id = timed_out.value.job_id
        assert job_id is not None and 1.0 <= waited < 3.0, waited

        async def canceled() -> bool:
            return (await client.jobs.get(job_id)).status == "canceled"

        await until(canceled)


async def test_canceling_the_awaiting_task_cancels_the_job(make_settings: SettingsFactory) -> None:
    async with in_process(make_settings(sketch_delay_ms=5000)) as (client, _):
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: client.generate("abandoned", steps=20, **SMALL))

            async def started() -> list[sdk.Job]:
                return [job async for job in client.jobs.list(status="generating")]

            (job,) = await until(started)
            group.cancel_scope.cancel()
        final = await client.jobs.get(job.id)
        assert final.cancel_requested or final.status == "canceled"


async def test_a_failed_job_raises_job_failed_error(make_settings: SettingsFactory) -> None:
    settings = make_settings(sketch_delay_ms=4000, job_timeout_s=0.5)
    async with in_process(settings) as (client, _):
        with pytest.raises(sdk.JobFailedError) as failed:
            await client.generate("too slow", steps=4, **SMALL)
    assert failed.value.code == "timeout" and failed.value.job.status == "failed"


async def test_a_dropped_stream_resumes_after_the_last_event_seen(
    server_factory: Callable[..., httpx.Client],
    make_settings: SettingsFactory,
    proxy_factory: Callable[[str], Proxy],
) -> None:
    api = server_factory(make_settings(sketch_delay_ms=2000))
    proxy = proxy_factory(str(api.base_url))
    async with sdk.AsyncClient(proxy.url) as client:
        job = await client.jobs.create("cut me off", steps=8, **SMALL)
        seen: list[sdk.Event] = []
        async for event in client.jobs.stream(job.id):
            seen.append(event)
            if event.type == "progress" and len(proxy.requests(b"/events")) == 1:
                proxy.sever()
        whole = [event async for event in client.jobs.stream(job.id)]
    stored = [(event.id, event.type) for event in whole if event.id]
    assert [(event.id, event.type) for event in seen if event.id] == stored
    assert len(proxy.requests(b"/events")) == 3 and seen[-1].type == "completed"


async def test_a_rate_limit_is_retried_after_its_retry_after(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(limit_concurrent_jobs=1, poll_hint_s=1, sketch_delay_ms=1500)
    async with in_process(settings) as (client, transport):
        first = await client.jobs.create("first", **SMALL)
        second = await client.jobs.create("second", **SMALL)
    posts = [a for a in transport.attempts if a.method == "POST"][1:]
    assert 429 in [a.status for a in posts] and posts[-1].status == 202
    assert all(b.at - a.at >= 1.0 for a, b in pairwise(posts))
    assert first.id != second.id


async def test_a_lost_answer_is_retried_and_makes_one_job(make_settings: SettingsFactory) -> None:
    async with in_process(make_settings(), workers=0) as (client, transport):
        transport.lose_next = 1  # the app makes the job; its answer is lost on the way
        job = await client.jobs.create("once only", **SMALL)
        assert [j.id async for j in client.jobs.list()] == [job.id]
    lost, replayed = transport.attempts[:2]
    assert lost.status is None and replayed.status == 202
    assert lost.headers["idempotency-key"] == replayed.headers["idempotency-key"]


async def test_refusals_are_typed_from_their_code(make_settings: SettingsFactory) -> None:
    async with in_process(make_settings(), workers=0) as (client, _):
        with pytest.raises(sdk.ContentPolicyError) as refused:
            await client.jobs.create("how to build a pipe bomb")
        with pytest.raises(sdk.ValidationError) as invalid:
            await client.jobs.create("a boat", height=30)
    assert refused.value.field == "prompt" and refused.value.status == 400
    assert invalid.value.field == "height" and invalid.value.code == "invalid_dimensions"


async def test_tenants_and_an_async_token_provider(make_settings: SettingsFactory) -> None:
    async with in_process(required_settings(make_settings), api_key=ADMIN_TOKEN) as (admin, t):
        keys = {}
        for tenant in ("acme", "globex"):
            body = {"tenant": tenant, "name": "sdk"}
            keys[tenant] = (await admin.request("POST", "/v1/admin/keys", json=body)).json()["key"]
        async with AsyncExitStack() as stack:

            async def client(**credential: Any) -> sdk.AsyncClient:
                made = sdk.AsyncClient("http://127.0.0.1", transport=t.inner, **credential)
                return await stack.enter_async_context(made)

            acme, globex = await client(api_key=keys["acme"]), await client(api_key=keys["globex"])

            async def provider() -> str:  # a provider may be async
                return (await acme.create_client_token("user-3")).token

            browser = await client(token_provider=provider)
            job = await browser.jobs.create("for user 3", **SMALL)
            assert (await acme.jobs.get(job.id)).user == "user-3"
            with pytest.raises(sdk.NotFoundError) as hidden:
                await globex.jobs.get(job.id)
            assert hidden.value.code == "job_not_found"
            with pytest.raises(sdk.NotFoundError):
                [event async for event in globex.jobs.stream(job.id)]
            with pytest.raises(sdk.AuthenticationError):
                await (await client()).jobs.get(job.id)
