"""Real-time feedback over a real uvicorn server: WebSocket, SSE, queue position, timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job
from tests.processes import imagegate_process, serve

Server = Callable[..., httpx.Client]


def ws_url(client: httpx.Client, path: str) -> str:
    return str(client.base_url).replace("http", "ws", 1) + path


def read_sse(
    client: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every event of a stream until the server closes it, as {event, id, data}."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", path, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif line.startswith(":"):
                events.append({"comment": line[1:].strip()})
            else:
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
    return events


async def ws_exchange(url: str, prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send each prompt on one socket, collecting messages until that prompt's outcome."""
    received: list[dict[str, Any]] = []
    async with websockets.connect(url) as socket:
        for prompt in prompts:
            await socket.send(json.dumps(prompt))
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                received.append(message)
                if message["status"] in ("completed", "error", "canceled"):
                    break
    return received


@pytest.fixture
def paced(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    """One worker; each sketch takes 1 s over 30 steps, with a preview every 10 steps."""
    return server_factory(make_settings(sketch_delay_ms=1000, preview_every=10))


def test_the_original_websocket_protocol_takes_many_prompts(paced: httpx.Client) -> None:
    prompts = [
        {"prompt": "a lighthouse at dusk"},
        {"prompt": ""},
        {"prompt": "a forest", "style": "noir"},
    ]
    messages = asyncio.run(ws_exchange(ws_url(paced, "/ws/generate"), prompts))
    statuses = [m["status"] for m in messages]
    first_done = statuses.index("completed")
    assert statuses[0] == "generating" and "job_id" in messages[0]
    assert set(statuses[1:first_done]) == {"progress"}
    steps = [m["step"] for m in messages[1:first_done]]
    assert steps == sorted(steps) and steps[-1] == 30
    assert any(m["preview_url"] for m in messages[1:first_done])
    completed = messages[first_done]
    assert set(completed["metadata"]) == {"seed", "model", "generation_time"}
    assert paced.get(completed["image_url"]).headers["content-type"] == "image/png"
    assert messages[first_done + 1] == {
        "status": "error",
        "message": "The prompt must not be empty.",
    }
    assert statuses[first_done + 2] == "generating"  # the socket stayed usable
    assert statuses[-1] == "completed"
    second_job = paced.get(f"/v1/jobs/{messages[first_done + 2]['job_id']}").json()
    assert second_job["style"] == "noir"


def test_a_websocket_client_that_leaves_does_not_lose_its_job(paced: httpx.Client) -> None:
    async def submit_and_leave() -> str:
        async with websockets.connect(ws_url(paced, "/ws/generate")) as socket:
            await socket.send(json.dumps({"prompt": "leave early"}))
            first = json.loads(await socket.recv())
        return str(first["job_id"])

    job_id = asyncio.run(submit_and_leave())
    assert wait_for_job(paced, job_id)["status"] == "completed"


def test_the_job_websocket_follows_and_cancels(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(sketch_delay_ms=20_000))
    job = api.post("/v1/jobs", json={"prompt": "stop me", "steps": 100}).json()

    async def follow_and_cancel() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with websockets.connect(ws_url(api, f"/v1/jobs/{job['id']}/ws")) as socket:
            async for raw in socket:
                message = json.loads(raw)
                seen.append(message)
                if message["event"] == "progress" and len(seen) == 3:
                    await socket.send(json.dumps({"action": "cancel"}))
        return seen

    seen = asyncio.run(asyncio.wait_for(follow_and_cancel(), 30))
    events = [m["event"] for m in seen]
    assert events[:2] == ["queued", "started"] and events[-1] == "canceled"
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"


def test_sse_streams_ordered_events_then_closes(paced: httpx.Client) -> None:
    job = paced.post("/v1/jobs", json={"prompt": "a boat", "seed": 5}).json()
    events = [e for e in read_sse(paced, f"/v1/jobs/{job['id']}/events") if "event" in e]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "completed"
    assert set(kinds[2:-1]) == {"progress"}
    ids = [int(e["id"]) for e in events if "id" in e]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    completed = events[-1]["data"]
    assert completed["metadata"]["seed"] == 5
    assert paced.get(completed["images"][0]["url"]).status_code == 200
    previews = [e["data"]["preview_url"] for e in events if e["event"] == "progress"]
    assert paced.get(next(p for p in previews if p)).headers["content-type"] == "image/png"


def test_sse_resumes_after_the_last_event_id(paced: httpx.Client) -> None:
    job = paced.post("/v1/jobs", json={"prompt": "resume"}).json()
    wait_for_job(paced, job["id"])
    everything = [e for e in read_sse(paced, f"/v1/jobs/{job['id']}/events") if "id" in e]
    middle = everything[2]["id"]
    rest = [
        e
        for e in read_sse(paced, f"/v1/jobs/{job['id']}/events", {"Last-Event-ID": middle})
        if "id" in e
    ]
    assert [e["id"] for e in rest] == [e["id"] for e in everything[3:]]


def test_sse_sends_keep_alives_and_queue_updates_while_waiting(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    settings = make_settings(sse_keepalive_s=0.2)
    api = server_factory(settings, workers=0)
    job = api.post("/v1/jobs", json={"prompt": "waiting"}).json()
    seen: list[str] = []
    with api.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        for line in response.iter_lines():
            seen.append(line)
            if line == ": keep-alive":
                break
    assert "event: queued" in seen


def test_unknown_jobs_are_404_for_sse(api: httpx.Client) -> None:
    response = api.get("/v1/jobs/nope/events")
    assert response.status_code == 404
    assert response.json()["code"] == "job_not_found"


def test_queue_position_falls_as_jobs_finish(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(sketch_delay_ms=400))
    ids = [api.post("/v1/jobs", json={"prompt": f"job {i}"}).json()["id"] for i in range(4)]
    positions: list[int] = []

    def last_job_started() -> bool:
        job = api.get(f"/v1/jobs/{ids[-1]}").json()
        if job["status"] == "queued":
            positions.append(job["queue_position"])
            return False
        return True

    eventually(last_job_started, timeout_s=30, every_s=0.05)
    assert positions == sorted(positions, reverse=True)
    assert positions[0] >= 2 and positions[-1] == 0
    later = api.post("/v1/jobs", json={"prompt": "with an eta"}).json()
    assert later["queue_position"] is not None
    assert later["eta_s"] is not None and later["eta_s"] > 0  # from finished jobs' times


def test_unfinished_jobs_suggest_a_poll_interval(server_factory: Server, settings: Any) -> None:
    api = server_factory(settings, workers=0)
    job = api.post("/generate", json={"prompt": "later"}).json()
    assert api.get(f"/status/{job['job_id']}").headers["retry-after"] == "2"
    assert api.get(f"/v1/jobs/{job['job_id']}").headers["retry-after"] == "2"


def test_a_finished_job_suggests_no_poll(server_factory: Server, settings: Any) -> None:
    api = server_factory(settings)
    job_id = api.post("/generate", json={"prompt": "soon done"}).json()["job_id"]
    wait_for_job(api, job_id)
    for path in (f"/status/{job_id}", f"/v1/jobs/{job_id}"):
        answer = api.get(path)
        assert answer.status_code == 200 and answer.json()["status"] == "completed"
        assert answer.headers["content-type"] == "application/json", path
        assert "retry-after" not in answer.headers, path
        assert answer.headers["x-request-id"], path


def test_a_job_past_the_timeout_fails_as_retryable(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(sketch_delay_ms=20_000, job_timeout_s=0.5))
    job = api.post("/v1/jobs", json={"prompt": "too slow"}).json()
    events = [e for e in read_sse(api, f"/v1/jobs/{job['id']}/events") if "event" in e]
    failed = events[-1]
    assert failed["event"] == "failed"
    assert failed["data"]["code"] == "timeout" and failed["data"]["retryable"] is True
    done = api.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "failed" and done["error"]["code"] == "timeout"


@pytest.mark.slow
def test_events_of_a_job_run_by_another_process(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("cross-process events use PostgreSQL LISTEN/NOTIFY")
    env = {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_SKETCH_DELAY_MS": "800",
        "IMAGEGATE_PREVIEW_EVERY": "10",
        # No keep-alive wake-ups: only LISTEN/NOTIFY can move the stream (the client's
        # 30 s read timeout would fail the test otherwise).
        "IMAGEGATE_SSE_KEEPALIVE_S": "120",
    }
    with serve(env, tmp_path / "api.log", workers=0) as api:
        job = api.post("/v1/jobs", json={"prompt": "elsewhere"}).json()
        with imagegate_process(["worker"], env, tmp_path / "worker.log"):
            events = [e for e in read_sse(api, f"/v1/jobs/{job['id']}/events") if "event" in e]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "completed"
    assert "progress" in kinds and "started" in kinds


def test_a_refused_prompt_on_the_original_socket_leaves_it_usable(api: httpx.Client) -> None:
    prompts = [{"prompt": "a g.o.r.e soaked corpse"}, {"prompt": "a calm lake"}]
    messages = asyncio.run(ws_exchange(ws_url(api, "/ws/generate"), prompts))
    assert messages[0]["status"] == "error" and "content policy" in messages[0]["message"]
    assert messages[1]["status"] == "generating" and messages[-1]["status"] == "completed"


def test_the_job_websocket_gives_fetchable_image_links(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "links"}).json()

    async def follow() -> list[dict[str, Any]]:
        async with websockets.connect(ws_url(api, f"/v1/jobs/{job['id']}/ws")) as socket:
            await socket.send("not json")  # ignored, the socket stays up
            return [json.loads(raw) async for raw in socket]

    completed = asyncio.run(asyncio.wait_for(follow(), 30))[-1]
    assert completed["event"] == "completed"
    url = completed["data"]["images"][0]["url"]
    assert url.startswith("http://") and api.get(url).status_code == 200
