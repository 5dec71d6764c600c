"""Never generate the same image twice (issue 10): the result cache, single-flight and
idempotency keys, through the real API and, for the leader's fates, the store itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.cache.keys import CacheMode, CacheRequest, model_identity, request_key
from imagegate.jobs.models import ErrorInfo, GenerationMeta, ImageRecord
from imagegate.jobs.states import Status
from imagegate.jobs.store import JobStore
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import eventually, spec, wait_for_job
from tests.processes import serve

ServerFactory = Callable[..., httpx.Client]
ADMIN_TOKEN = "cache-admin-token-0123456789abcdef-xyz"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEEDED = {"prompt": "a lighthouse at dusk", "seed": 42, "width": 256, "height": 256}


def finished(api: httpx.Client, body: dict[str, Any], **headers: str) -> tuple[Any, dict[str, Any]]:
    response = api.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in ("completed", "failed", "canceled") else None

    return response, eventually(done)


def png(api: httpx.Client, job: dict[str, Any]) -> bytes:
    return api.get(job["images"][0]["url"]).raise_for_status().content


# -- the result cache ------------------------------------------------------------------------


def test_a_seeded_repeat_is_answered_from_the_cache_at_once(api: httpx.Client) -> None:
    first, made = finished(api, SEEDED)
    assert first.headers["Cache-Status"] == "ImageGate; fwd=miss; stored"
    assert made["metadata"]["cache"] == "miss"
    again = api.post("/v1/jobs", json=SEEDED)
    assert again.headers["Cache-Status"] == "ImageGate; hit"
    hit = again.json()
    assert hit["status"] == "completed" and hit["id"] != made["id"]  # at once, a job of its own
    assert hit["metadata"]["cache"] == "hit"
    assert hit["cost"]["amount"] == 0 and hit["cost"]["estimated"] is False
    assert hit["images"][0]["id"] != made["images"][0]["id"]
    assert png(api, hit) == png(api, made)
    with api.stream("GET", f"/v1/jobs/{hit['id']}/events") as stream:
        kinds = [line[7:] for line in stream.iter_lines() if line.startswith("event: ")]
    assert kinds == ["queued", "completed"]
    legacy = api.get(f"/status/{hit['id']}").json()
    assert legacy["status"] == "completed" and legacy["result_url"]


def test_unseeded_requests_always_generate_afresh(api: httpx.Client) -> None:
    body = {"prompt": "a lighthouse at dusk"}
    jobs = [finished(api, body)[1] for _ in range(2)]
    assert [job["metadata"]["cache"] for job in jobs] == ["bypass", "bypass"]
    assert jobs[0]["seed"] != jobs[1]["seed"] or png(api, jobs[0]) != png(api, jobs[1])
    assert api.post("/generate", json=body).headers["Cache-Status"] == "ImageGate; fwd=bypass"


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a lighthouse at dawn"},
        {"style": "watercolor"},
        {"negative_prompt": "fog"},
        {"width": 264},
        {"height": 264},
        {"steps": 29},
        {"guidance": 7.0},
        {"seed": 43},
        {"n": 2},
        {"output_format": "webp"},
        {"output_format": "jpeg", "output_compression": 80},
    ],
    ids=lambda change: "+".join(change),
)
def test_any_change_that_decides_the_pixels_misses(
    api: httpx.Client, change: dict[str, Any]
) -> None:
    finished(api, SEEDED)
    _, other = finished(api, SEEDED | change)
    assert other["metadata"]["cache"] == "miss"


def test_the_key_covers_the_model_and_its_settings(settings: Settings) -> None:
    base = spec(seed=7)
    key = request_key(base, "acme", settings)
    changes: list[dict[str, Any]] = [
        {"model": "another-model"},
        {"backend": "diffusers"},
        {"backend": "diffusers", "diffusers_scheduler": "EulerScheduler"},
        {"backend": "diffusers", "diffusers_dtype": "float16"},
    ]
    variants = [settings.model_copy(update=change) for change in changes]
    keys = {request_key(base, "acme", variant) for variant in variants}
    assert key not in keys and len(keys) == len(variants)
    assert request_key(base, "other-tenant", settings) != key
    assert model_identity(settings) == {"backend": "sketch", "model": "sketch-v1"}


def test_no_cache_regenerates_and_stores_and_no_store_keeps_nothing(api: httpx.Client) -> None:
    _, first = finished(api, SEEDED)
    _, fresh = finished(api, SEEDED, **{"Cache-Control": "no-cache"})
    assert fresh["metadata"]["cache"] == "bypass"
    assert api.post("/v1/jobs", json=SEEDED).json()["metadata"]["cache"] == "hit"
    unkept = SEEDED | {"seed": 7}
    _, private = finished(api, unkept | {"cache": "no-store"})
    assert private["metadata"]["cache"] == "bypass"
    _, after = finished(api, unkept)
    assert after["metadata"]["cache"] == "miss"  # the no-store result was never kept
    bad = api.post("/v1/jobs", json=SEEDED | {"cache": "sometimes"})
    assert (bad.status_code, bad.json()["field"]) == (422, "cache")
    assert first["id"] != fresh["id"]


def test_the_cache_is_per_tenant_unless_it_is_global(
    make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    for scope, shared in (("tenant", False), ("global", True)):
        api = server_factory(
            make_settings(auth="required", admin_token=ADMIN_TOKEN, cache_scope=scope)
        )
        acme, umbrella = (new_key(api, tenant) for tenant in ("acme", "umbrella"))
        finished(api, SEEDED, **acme)
        theirs = api.post("/v1/jobs", json=SEEDED, headers=umbrella).json()
        assert (theirs["metadata"] or {}).get("cache") == ("hit" if shared else None)


def new_key(api: httpx.Client, tenant: str) -> dict[str, str]:
    made = api.post("/v1/admin/keys", json={"tenant": tenant, "name": "t"}, headers=ADMIN)
    return {"Authorization": f"Bearer {made.raise_for_status().json()['key']}"}


# -- single-flight ---------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_identical_requests_on_two_apis_generate_once(
    database_url: str, tmp_path: Path
) -> None:
    env = {
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_SECRET_KEY": "s" * 40,
        "IMAGEGATE_SKETCH_DELAY_MS": "1500",
        "IMAGEGATE_LOG_LEVEL": "warning",
    }
    with (
        serve(env, tmp_path / "a.log", workers=1) as one,
        serve(env, tmp_path / "b.log", workers=1) as two,
    ):
        apis = [one, two] * 10
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda api: api.post("/v1/jobs", json=SEEDED), apis))
        assert all(answer.status_code == 202 for answer in answers)
        done = [wait_for_job(one, a.json()["id"], timeout_s=60) for a in answers]
        assert len({job["id"] for job in done}) == 20
        assert all(job["status"] == "completed" for job in done)
        made = [job["metadata"]["cache"] for job in done]
        assert made.count("miss") == 1, made  # one generation; the rest followed or hit it
        assert set(made) <= {"miss", "collapsed", "hit"} and "collapsed" in made
        assert len({png(two, job) for job in done}) == 1


def leader_and_followers(store: JobStore, count: int = 2) -> tuple[str, list[str]]:
    request = CacheRequest(uuid.uuid4().hex, CacheMode.DEFAULT)
    ids = [store.submit(spec(seed=5), "local", cache=request).id for _ in range(count + 1)]
    return ids[0], ids[1:]


def test_followers_complete_with_the_leaders_images(store: JobStore) -> None:
    leader, followers = leader_and_followers(store)
    (claim,) = store.claim(lease_s=30)
    assert claim.job.id == leader and store.claim(lease_s=30) == []  # followers never run
    image = ImageRecord(str(uuid.uuid4()), leader, 0, f"images/{leader}/0.png", 64, 64, 10)
    assert store.complete(claim, [image], GenerationMeta(5, "sketch-v1", 40))
    for follower in followers:
        job = store.get(follower)
        assert (job.status, job.cache) == (Status.COMPLETED, "collapsed")
        assert [im.storage_key for im in job.images] == [image.storage_key]
        assert job.images[0].id != image.id


def test_followers_fail_as_their_leader_failed(store: JobStore) -> None:
    _, followers = leader_and_followers(store)
    (claim,) = store.claim(lease_s=30)
    store.fail(claim, ErrorInfo("out_of_memory", "The GPU ran out of memory.", True))
    for follower in followers:
        job = store.get(follower)
        assert job.status is Status.FAILED
        assert job.error == ErrorInfo("out_of_memory", "The GPU ran out of memory.", True)


def test_a_canceled_follower_leaves_the_leader_and_a_canceled_leader_hands_over(
    store: JobStore,
) -> None:
    leader, (first, second) = leader_and_followers(store)
    store.cancel(second)
    assert store.get(leader).status is Status.QUEUED
    store.cancel(leader)
    (claim,) = store.claim(lease_s=30)
    assert claim.job.id == first  # the oldest follower runs in the leader's place
    image = ImageRecord(str(uuid.uuid4()), first, 0, f"images/{first}/0.png", 64, 64, 10)
    store.complete(claim, [image], GenerationMeta(5, "sketch-v1", 40))
    assert store.get(first).cache == "miss"
    assert store.get(second).status is Status.CANCELED


# -- idempotency keys ------------------------------------------------------------------------


def test_a_retry_with_the_same_key_gets_the_same_job(api: httpx.Client) -> None:
    key = {"Idempotency-Key": "order-1234"}
    body = {"prompt": "a kite"}
    first = api.post("/v1/jobs", json=body, headers=key)
    again = api.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(api.get("/v1/jobs").json()["data"]) == 1
    reused = api.post("/v1/jobs", json={"prompt": "a boat"}, headers=key)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert reused.json()["field"] == "Idempotency-Key"
    too_long = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k" * 256})
    assert (too_long.status_code, too_long.json()["code"]) == (422, "invalid_idempotency_key")
    legacy = [
        api.post("/generate", json={"prompt": "a kite"}, headers={"Idempotency-Key": "g-1"})
        for _ in range(2)
    ]
    assert legacy[0].json()["job_id"] == legacy[1].json()["job_id"]


def test_concurrent_retries_with_one_key_make_one_job(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"burst-{uuid.uuid4().hex}"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: api.post("/v1/jobs", json={"prompt": "a kite"}, headers=key), range(8)
            )
        )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(api.get("/v1/jobs").json()["data"]) == 1


def test_keys_belong_to_their_tenant(
    make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    api = server_factory(make_settings(auth="required", admin_token=ADMIN_TOKEN))
    key = {"Idempotency-Key": "same-key"}
    jobs = [
        api.post("/v1/jobs", json={"prompt": "a kite"}, headers=new_key(api, t) | key).json()
        for t in ("acme", "umbrella")
    ]
    assert jobs[0]["id"] != jobs[1]["id"]


# -- per-user history ------------------------------------------------------------------------


def test_history_by_user_and_time_and_a_gallery_of_images(api: httpx.Client) -> None:
    for user, prompt in (("ana", "a kite"), ("ben", "a boat"), ("ana", "a tree")):
        finished(api, {"prompt": prompt, "user": user})
    mine = api.get("/v1/jobs", params={"user": "ana"}).json()["data"]
    assert [job["prompt"] for job in mine] == ["a tree", "a kite"]
    middle = mine[1]["created_at"]
    later = api.get("/v1/jobs", params={"created_after": middle}).json()["data"]
    assert [job["prompt"] for job in later] == ["a tree", "a boat"]
    earlier = api.get("/v1/jobs", params={"created_before": middle}).json()["data"]
    assert earlier == []
    gallery = api.get("/v1/images", params={"user": "ana", "limit": 1}).json()
    assert [(im["prompt"], im["user"]) for im in gallery["data"]] == [("a tree", "ana")]
    rest = api.get("/v1/images", params={"user": "ana", "cursor": gallery["next_cursor"]}).json()
    assert [im["prompt"] for im in rest["data"]] == ["a kite"] and rest["next_cursor"] is None
    assert api.get(rest["data"][0]["url"]).content.startswith(b"\x89PNG")
    bad = api.get("/v1/images", params={"cursor": "!!"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")


def test_images_carry_a_content_etag_and_answer_304(api: httpx.Client) -> None:
    _, made = finished(api, SEEDED)
    hit = api.post("/v1/jobs", json=SEEDED).json()
    first = api.get(made["images"][0]["url"])
    tag = first.headers["ETag"]
    assert tag.startswith('"') and "immutable" in first.headers["Cache-Control"]
    assert api.get(hit["images"][0]["url"]).headers["ETag"] == tag  # the same bytes
    again = api.get(made["images"][0]["url"], headers={"If-None-Match": tag})
    assert (again.status_code, again.content) == (304, b"")
    other = api.get(made["images"][0]["url"], headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.content == first.content
