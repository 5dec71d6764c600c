"""Security findings (issue 16) reproduced against a real server, each fixed."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
from PIL import Image
from websockets.exceptions import ConnectionClosed

from imagegate.generators import GenerationRequest, StepCallback, StepInfo
from imagegate.jobs.database import create_db_engine, upgrade
from imagegate.jobs.store import JobStore
from imagegate.safety.output import OutputModerator
from imagegate.settings import load_settings
from imagegate.storage.local import LocalStorage
from imagegate.storage.signing import UrlSigner
from imagegate.worker.leases import LeaseKeeper
from imagegate.worker.output_gate import OutputGate
from imagegate.worker.runner import Worker, WorkerContext
from tests.conftest import SettingsFactory
from tests.helpers import eventually, spec, wait_for_job
from tests.processes import free_port, serve
from tests.test_output_moderation import skin_toned_figure


def ws_url(client: httpx.Client, path: str) -> str:
    return str(client.base_url).replace("http", "ws", 1) + path


async def send_then_read(socket: Any, frames: list[str]) -> None:
    """Send the frames, then wait for an answer: raises ConnectionClosed once closed."""
    for frame in frames:
        await socket.send(frame)
    await asyncio.wait_for(socket.recv(), 10)


def test_an_oversized_last_event_id_is_a_422_not_a_broken_stream(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "a kite"}).json()
    for headers, params in (({"Last-Event-ID": str(2**64)}, {}), ({}, {"after": str(2**63)})):
        response = api.get(f"/v1/jobs/{job['id']}/events", headers=headers, params=params)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
    # The largest event id there can be is still a valid place to resume from.
    path = f"/v1/jobs/{job['id']}/events"
    with api.stream("GET", path, params={"after": str(2**63 - 1)}) as resumed:
        assert resumed.status_code == 200


def test_images_are_served_with_hardening_headers(api: httpx.Client) -> None:
    job = wait_for_job(api, api.post("/v1/jobs", json={"prompt": "a kite"}).json()["id"])
    image = api.get(job["images"][0]["url"])
    assert image.status_code == 200
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert (
        image.headers["content-disposition"] == f'inline; filename="{job["images"][0]["id"]}.png"'
    )


async def test_a_binary_frame_closes_the_original_socket_with_1003(api: httpx.Client) -> None:
    async with websockets.connect(ws_url(api, "/ws/generate"), open_timeout=10) as socket:
        await socket.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)  # before the fix: no close, ever
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    # The server is unharmed: the next socket works as before.
    async with websockets.connect(ws_url(api, "/ws/generate"), open_timeout=10) as socket:
        await socket.send('{"prompt": "a kite"}')
        assert '"generating"' in str(await socket.recv())


async def test_a_binary_frame_closes_the_job_socket_with_1003(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "a kite"}).json()
    wait_for_job(api, job["id"])
    url = ws_url(api, f"/v1/jobs/{job['id']}/ws")
    async with websockets.connect(url, open_timeout=10) as socket:
        await socket.send(b"\xff")
        codes = []
        try:
            while True:
                await asyncio.wait_for(socket.recv(), 10)
        except ConnectionClosed as closed:
            codes.append(closed.rcvd.code if closed.rcvd else None)
    # A finished job's socket sends its events and closes normally (1000); the binary
    # frame, read first, closes it with 1003. Either way it closes: never a crash.
    assert codes and codes[0] in (1000, 1003)


def test_a_forwarded_for_header_is_ignored_unless_the_proxy_is_trusted(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    """Forging X-Forwarded-For from a local peer must not buy a fresh per-address allowance
    (the same address feeds the audit log); from a configured proxy it is honoured."""
    limited = {"limit_requests_per_minute": 2}
    direct = server_factory(make_settings(**limited), workers=0)
    codes = [
        direct.post(
            "/generate", json={"prompt": "a kite"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}
        ).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]

    proxied = server_factory(make_settings(**limited, trusted_proxies=["127.0.0.1"]), workers=0)
    codes = [
        proxied.post(
            "/generate", json={"prompt": "a kite"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}
        ).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 200]  # three clients behind the proxy, one request each


def test_the_data_dir_the_secret_key_and_the_database_are_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, under which files default to 0644
    try:
        data = tmp_path / "fresh"
        settings = load_settings(data_dir=data)
        engine = create_db_engine(settings)
        upgrade(engine)
        engine.dispose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("secret_key", "imagegate.db"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert [p.name for p in data.iterdir() if p.name.startswith(".secret_key")] == []


def test_a_short_or_empty_secret_key_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for content in ("", "short"):
        (data / "secret_key").write_text(content)
        with pytest.raises(ValueError, match="shorter than 32"):
            load_settings(data_dir=data)


def test_answers_carry_stable_codes_not_internal_details(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Finding 9: no storage keys or paths in a 404, no network error text in webhook
    logs (a port-scan oracle), no raw exception text from /ready."""
    settings = make_settings(webhook_allow_private=True, webhook_retry_schedule_s=[60.0])
    api = server_factory(settings)
    closed_port = free_port()  # nothing listens here: the attempt is refused
    job = api.post(
        "/v1/jobs",
        json={"prompt": "a kite", "webhook_url": f"http://127.0.0.1:{closed_port}/hook"},
    ).json()
    done = wait_for_job(api, job["id"])
    attempts = eventually(
        lambda: api.get(f"/v1/jobs/{job['id']}/webhooks").json()["data"][0]["attempts"]
    )
    assert attempts[0]["error"] == "connect_error"

    for png in settings.data_dir.rglob("*.png"):
        png.unlink()  # the record stays, the file is gone
    missing = api.get(done["images"][0]["url"])
    assert missing.status_code == 404
    body = missing.text
    assert job["id"] not in body and str(settings.data_dir) not in body  # the storage key
    assert set(missing.json()) <= {"type", "title", "status", "detail", "code", "instance"}


def test_ready_names_no_hosts_or_paths(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-terms.yaml"  # the safety stage cannot load
    api = server_factory(make_settings(safety_terms_file=missing), workers=0)
    ready = eventually(
        lambda: (r := api.get("/ready")).json()["checks"]["safety"] != "loading" and r
    )
    assert ready.status_code == 503
    assert ready.json()["checks"]["safety"] == "failed"
    assert str(tmp_path) not in ready.text


async def test_a_flood_of_frames_closes_the_original_socket_with_1008(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    """Finding 1: frames sent while a job waits were buffered without limit."""
    api = server_factory(make_settings(), workers=0)  # the prompt stays queued
    async with websockets.connect(ws_url(api, "/ws/generate"), open_timeout=10) as socket:
        await socket.send('{"prompt": "a kite"}')
        assert '"generating"' in str(await asyncio.wait_for(socket.recv(), 10))
        with pytest.raises(ConnectionClosed) as closed:
            await send_then_read(socket, ['{"prompt": "another kite"}'] * 200)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_message_over_the_body_limit_closes_the_socket_with_1009(
    api: httpx.Client,
) -> None:
    async with websockets.connect(
        ws_url(api, "/ws/generate"), open_timeout=10, max_size=None
    ) as socket:
        with pytest.raises(ConnectionClosed) as closed:  # a frame over the 64 KiB limit
            await send_then_read(socket, ['{"prompt": "' + "k" * 70_000 + '"}'])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_rotated_secret_key_keeps_its_urls_working_until_it_is_retired(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    """Finding 12: signatures name their key, so a key can be retired on its own."""
    old, new = "o" * 40, "n" * 40
    first = server_factory(make_settings(secret_key=old))
    url = wait_for_job(first, first.post("/v1/jobs", json={"prompt": "a kite"}).json()["id"])[
        "images"
    ][0]["url"]
    assert first.get(url).status_code == 200

    rotated = server_factory(make_settings(secret_key=new, secret_key_previous=[old]), workers=0)
    path = url.split("/v1/", 1)[1]
    assert rotated.get(f"/v1/{path}").status_code == 200  # signed by the previous key
    job_id = first.get("/v1/jobs").json()["data"][0]["id"]
    fresh = rotated.get(f"/v1/jobs/{job_id}").json()["images"][0]["url"]
    assert parse_qs(urlsplit(fresh).query)["kid"] != parse_qs(urlsplit(url).query)["kid"]

    retired = server_factory(make_settings(secret_key=new), workers=0)
    assert retired.get(f"/v1/{path}").status_code == 403
    assert (
        retired.get(fresh.replace(str(rotated.base_url), str(retired.base_url))).status_code == 200
    )


@pytest.mark.slow
def test_the_access_log_never_holds_a_signature(tmp_path: Path) -> None:
    env = {"IMAGEGATE_DATA_DIR": str(tmp_path / "data"), "IMAGEGATE_LOG_LEVEL": "info"}
    log = tmp_path / "serve.log"
    with serve(env, log, workers=1) as client:
        job = client.post("/v1/jobs", json={"prompt": "a kite"}).json()
        url = wait_for_job(client, job["id"])["images"][0]["url"]
        assert client.get(url).status_code == 200
    signature = parse_qs(urlsplit(url).query)["sig"][0]
    written = log.read_text()
    assert f"/v1/images/{urlsplit(url).path.rsplit('/', 1)[1]}" in written  # it was logged
    assert signature not in written and "sig=[redacted]" in written


def test_moderations_are_capped_rounded_audited_and_keep_terms_for_the_operator(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    """Finding 5: the route multiplied CPU, and exact scores and matched terms made it an
    oracle for prompts just under the thresholds."""
    admin = {"Authorization": "Bearer " + "a" * 40}
    api = server_factory(make_settings(auth="required", admin_token="a" * 40), workers=0)
    made = api.post("/v1/admin/keys", json={"tenant": "acme", "name": "t"}, headers=admin)
    key = {"Authorization": f"Bearer {made.json()['key']}"}

    too_many = api.post("/v1/moderations", json={"input": ["a"] * 33}, headers=key)
    assert (too_many.status_code, too_many.json()["code"]) == (422, "too_many_inputs")
    too_long = api.post("/v1/moderations", json={"input": ["k" * 1999] * 17}, headers=key)
    assert (too_long.status_code, too_long.json()["code"]) == (422, "input_too_long")

    bomb = {"input": "how to build a pipe bomb"}
    seen = api.post("/v1/moderations", json=bomb, headers=key).json()["results"][0]
    assert seen["action"] == "block"
    assert all(round(score, 2) == score for score in seen["category_scores"].values())
    assert seen["reasons"] and all(reason.count(":") <= 1 for reason in seen["reasons"])
    full = api.post("/v1/moderations", json=bomb, headers=admin).json()["results"][0]
    assert any(reason.count(":") >= 2 for reason in full["reasons"])  # the matched term

    audit = api.get("/v1/admin/audit", params={"stage": "moderation"}, headers=admin).json()
    assert [(e["owner"], e["action"]) for e in audit["data"]] == [
        ("local", "block"),
        ("acme", "block"),
    ]


def test_moderations_count_in_the_callers_rate_limit(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    """Finding 5: each moderation request is one of the caller's requests."""
    admin = {"Authorization": "Bearer " + "a" * 40}
    api = server_factory(make_settings(auth="required", admin_token="a" * 40), workers=0)
    limits = {"limits": {"requests_per_minute": 2}}
    api.put("/v1/admin/tenants/acme", json=limits, headers=admin).raise_for_status()
    made = api.post("/v1/admin/keys", json={"tenant": "acme", "name": "t"}, headers=admin)
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    answers = [
        api.post("/v1/moderations", json={"input": "a calm lake"}, headers=key) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "rate_limited" and "Retry-After" in answers[2].headers


def test_an_address_that_keeps_failing_to_authenticate_is_throttled(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    """Finding 7: nothing slowed down guessing the admin token."""
    token = "t" * 40
    api = server_factory(
        make_settings(auth="required", admin_token=token, auth_failures_per_minute=5), workers=0
    )
    guesses = [
        api.get("/v1/admin/keys", headers={"Authorization": f"Bearer guess-{i}"}).status_code
        for i in range(7)
    ]
    assert guesses == [401] * 5 + [429] * 2
    # While throttled, even the right token is refused: a guess cannot be told apart.
    right = api.get("/v1/admin/keys", headers={"Authorization": f"Bearer {token}"})
    assert right.status_code == 429 and right.json()["policy"] == "ip.failed_auth"
    assert int(right.headers["retry-after"]) >= 1


class Overcounting:
    """A backend whose scheduler counts past the job's steps (as Heun's and KDPM2's do,
    to 2N - 1), with an innocuous preview at each, and whose final image is flagged."""

    model_name = "overcounting"

    def load(self) -> None:
        return None

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image.Image]]:
        total = 2 * batch[0].steps - 1
        for step in range(1, total + 1):
            on_step(StepInfo(step, total, [Image.new("RGB", (32, 32), "gray")] * len(batch)))
        return [[skin_toned_figure()] * request.n for request in batch]


def test_previews_of_a_withheld_image_are_gone_and_refused(
    store: JobStore, make_settings: SettingsFactory, server_factory: Callable[..., httpx.Client]
) -> None:
    """Finding 2: previews past step N survived the clean-up and stayed public."""
    settings = make_settings()
    storage = LocalStorage(settings.data_dir / "images")
    gate = OutputGate(OutputModerator().check, storage, hold_for_review=False)
    context = WorkerContext(
        settings, store, storage, Overcounting(), LeaseKeeper(store, 30), threading.Event(), gate
    )
    job = store.submit(spec(steps=4), "local")
    worker = Worker(context)
    assert worker.run_once()
    worker.flush()
    assert store.get(job.id).error.code == "output_blocked"  # type: ignore[union-attr]
    assert list((settings.data_dir / "images").rglob("previews/**/*.png")) == []

    api = server_factory(settings, workers=0)
    signer = UrlSigner(settings.signing_key, 3600)
    for step in (1, 4, 7):
        signed = signer.query(f"preview/{job.id}/{step}")
        assert api.get(f"/v1/jobs/{job.id}/previews/{step}?{signed}").status_code == 404
