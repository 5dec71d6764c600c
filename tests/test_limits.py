"""Rate limits, quotas and caps, through real HTTP.

Per key, per tenant, per end user and (auth off) per client address; images counted by
``n``; concurrent-jobs caps and queue depth counted in the database; the OpenAI route's
envelope; and Redis as the store that makes a limit hold across API processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_job
from tests.processes import free_port, serve

REDIS_ENV = "IMAGEGATE_TEST_REDIS_URL"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef-xyz"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBLEM = "application/problem+json"
SMALL = {"width": 64, "height": 64, "steps": 2}
ServerFactory = Callable[..., httpx.Client]


def _redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(f"{REDIS_ENV} must be set under CI: the Redis tests are required there")
    pytest.skip(f"Redis tests need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0)")


@pytest.fixture
def redis_url() -> str:
    return _redis_url()


@pytest.fixture(params=["memory", "redis"])
def limit_storage(request: pytest.FixtureRequest) -> str | None:
    """The rate-limit store: process memory, or a real Redis server."""
    return None if request.param == "memory" else _redis_url()


@pytest.fixture
def keyed(make_settings: SettingsFactory) -> SettingsFactory:
    """Settings with auth required and an admin token to create keys and tenants with."""

    def make(**overrides: Any) -> Any:
        return make_settings(auth="required", admin_token=ADMIN_TOKEN, **overrides)

    return make


def create_key(client: httpx.Client, tenant: str = "acme", **fields: Any) -> dict[str, str]:
    """A new key of ``tenant``; returns its Authorization header."""
    body = {"tenant": tenant, "name": "test"} | fields
    response = client.post("/v1/admin/keys", json=body, headers=AS_ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def submit(client: httpx.Client, auth: dict[str, str], **fields: Any) -> httpx.Response:
    body = {"prompt": "a lighthouse at dusk", **SMALL} | fields
    return client.post("/v1/jobs", json=body, headers=auth)


def rate_fields(header: str) -> dict[str, dict[str, int]]:
    """``"key.requests_per_minute";r=0;t=42, …`` as {policy: {"r": 0, "t": 42}}."""
    found = {}
    for member in header.split(", "):
        name, *params = member.split(";")
        found[name.strip('"')] = {k: int(v) for k, v in (p.split("=") for p in params)}
    return found


def assert_refused(
    response: httpx.Response, code: str, policy: str, quota: int, window_s: int, left: int = 0
) -> dict[str, Any]:
    """A 429 problem naming ``policy``, with Retry-After and both rate-limit fields
    (``left``: what remains, less than the refused request needed)."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["code"], body["policy"], body["limit"]) == (code, policy, quota)
    assert body["window_s"] == window_s
    assert 1 <= int(response.headers["Retry-After"]) <= window_s
    assert response.headers["RateLimit-Policy"] == f'"{policy}";q={quota};w={window_s}'
    standing = rate_fields(response.headers["RateLimit"])[policy]
    assert standing["r"] == left and 1 <= standing["t"] <= window_s
    return body


def job_count(client: httpx.Client, auth: dict[str, str] | None = None) -> int:
    response = client.get("/v1/jobs", params={"limit": 100}, headers=auth or AS_ADMIN)
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


# -- requests per minute --------------------------------------------------------------------


def test_a_key_makes_its_requests_per_minute_then_gets_429(
    server_factory: ServerFactory, keyed: SettingsFactory, limit_storage: str | None
) -> None:
    api = server_factory(keyed(redis_url=limit_storage), workers=0)
    limited = create_key(api, limits={"requests_per_minute": 5})
    remaining = []
    for _ in range(5):
        admitted = submit(api, limited)
        assert admitted.status_code == 202, admitted.text
        assert admitted.headers["RateLimit-Policy"] == '"key.requests_per_minute";q=5;w=60'
        remaining.append(rate_fields(admitted.headers["RateLimit"])["key.requests_per_minute"]["r"])
    assert remaining == [4, 3, 2, 1, 0]

    refused = assert_refused(submit(api, limited), "rate_limited", "key.requests_per_minute", 5, 60)
    assert "key.requests_per_minute" in refused["detail"]
    # Another key of the same tenant has its own allowance, and sees only the 5 jobs made.
    other = create_key(api)
    assert job_count(api, other) == 5
    assert submit(api, other).status_code == 202


def test_a_tenant_limit_holds_across_its_keys(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    put = api.put(
        "/v1/admin/tenants/acme", json={"limits": {"requests_per_minute": 4}}, headers=AS_ADMIN
    )
    assert put.status_code == 200, put.text
    first, second = create_key(api), create_key(api)
    for auth in (first, second, first, second):
        assert api.get("/v1/jobs", headers=auth).status_code == 200
    for auth in (first, second):
        refused = api.get("/v1/jobs", headers=auth)
        assert_refused(refused, "rate_limited", "tenant.requests_per_minute", 4, 60)
    # Another tenant is counted apart.
    assert api.get("/v1/jobs", headers=create_key(api, tenant="globex")).status_code == 200


# -- images ---------------------------------------------------------------------------------


def test_images_per_minute_counts_each_image_of_a_job(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    auth = create_key(api, limits={"images_per_minute": 5})
    four = submit(api, auth, n=4)
    assert four.status_code == 202, four.text
    assert four.headers["RateLimit-Policy"] == '"key.images_per_minute";q=5;w=60'
    assert rate_fields(four.headers["RateLimit"])["key.images_per_minute"]["r"] == 1

    too_many = submit(api, auth, n=2)
    assert_refused(too_many, "rate_limited", "key.images_per_minute", 5, 60, left=1)
    # The refused job took nothing: the one image left is still there.
    assert submit(api, auth, n=1).status_code == 202
    assert_refused(submit(api, auth, n=1), "rate_limited", "key.images_per_minute", 5, 60)
    assert job_count(api, auth) == 2


def test_a_keys_requests_and_images_are_counted_apart(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    auth = create_key(api, limits={"requests_per_minute": 3, "images_per_minute": 3})
    two = submit(api, auth, n=2)
    assert two.status_code == 202, two.text
    standing = rate_fields(two.headers["RateLimit"])
    assert standing["key.requests_per_minute"]["r"] == 2
    assert standing["key.images_per_minute"]["r"] == 1
    assert [api.get("/v1/jobs", headers=auth).status_code for _ in range(2)] == [200, 200]
    refused = api.get("/v1/jobs", headers=auth)
    assert_refused(refused, "rate_limited", "key.requests_per_minute", 3, 60)


def test_images_per_day_is_a_quota(server_factory: ServerFactory, keyed: SettingsFactory) -> None:
    api = server_factory(keyed(), workers=0)
    auth = create_key(api, limits={"images_per_day": 3})
    assert submit(api, auth, n=3).status_code == 202
    refused = submit(api, auth, n=1)
    assert_refused(refused, "quota_exceeded", "key.images_per_day", 3, 86_400)
    assert job_count(api, auth) == 1


# -- concurrent jobs and queue depth (counted in the database) -------------------------------


def test_concurrent_jobs_are_capped_until_one_is_canceled(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    auth = create_key(api, limits={"concurrent_jobs": 2})
    ids = [submit(api, auth, prompt=f"job {i}").json()["id"] for i in range(2)]

    refused = submit(api, auth)
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert (body["code"], body["policy"]) == ("rate_limited", "key.concurrent_jobs")
    assert body["limit"] == 2
    assert int(refused.headers["Retry-After"]) >= 1
    assert job_count(api, auth) == 2

    assert api.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth).json()["status"] == "canceled"
    assert submit(api, auth).status_code == 202
    assert submit(api, auth).status_code == 429


def test_a_tenant_may_run_its_concurrent_jobs_again_once_one_finishes(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    # The settings' default cap applies to every tenant.
    settings = keyed(limit_concurrent_jobs=1, sketch_delay_ms=2000, output_moderation=False)
    api = server_factory(settings, workers=1)
    auth = create_key(api)
    running = submit(api, auth)
    assert running.status_code == 202, running.text

    refused = submit(api, auth)
    assert refused.status_code == 429, refused.text
    assert refused.json()["policy"] == "tenant.concurrent_jobs"
    assert int(refused.headers["Retry-After"]) >= 1

    with httpx.Client(base_url=api.base_url, headers=auth, timeout=30) as as_key:
        assert wait_for_job(as_key, running.json()["id"])["status"] == "completed"
        admitted = submit(api, auth, steps=20)
        assert admitted.status_code == 202, admitted.text
        # Canceled, it stops at its next step (of 20) instead of holding up the shutdown.
        as_key.post(f"/v1/jobs/{admitted.json()['id']}/cancel")


def test_a_full_queue_refuses_with_503_and_records_nothing(
    server_factory: ServerFactory, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(max_queue_depth=2), workers=0)
    for i in range(2):
        assert api.post("/v1/jobs", json={"prompt": f"job {i}", **SMALL}).status_code == 202

    refused = api.post("/v1/jobs", json={"prompt": "one too many", **SMALL})
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    assert job_count(api) == 2


# -- per end user ---------------------------------------------------------------------------


def test_per_user_limits_one_user_and_not_another(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    images = create_key(api, limits={"per_user": {"images_per_minute": 2}})
    assert submit(api, images, user="alice", n=2).status_code == 202
    refused = submit(api, images, user="alice")
    assert_refused(refused, "rate_limited", "user.images_per_minute", 2, 60)
    assert submit(api, images, user="bob", n=2).status_code == 202

    # A key's caller names the user in the body: its requests are counted per user too.
    requests = create_key(api, limits={"per_user": {"requests_per_minute": 2}})
    assert [submit(api, requests, user="alice").status_code for _ in range(2)] == [202, 202]
    refused = submit(api, requests, user="alice")
    assert_refused(refused, "rate_limited", "user.requests_per_minute", 2, 60)
    assert submit(api, requests, user="bob").status_code == 202
    assert submit(api, requests).status_code == 202  # no user named: no user to count


def test_per_user_requests_limit_each_browser_token_user(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    key = create_key(api, limits={"per_user": {"requests_per_minute": 2}})

    def token_of(user: str) -> dict[str, str]:
        minted = api.post("/v1/client-tokens", json={"user": user}, headers=key)
        assert minted.status_code == 201, minted.text
        return {"Authorization": f"Bearer {minted.json()['token']}"}

    alice, bob = token_of("alice"), token_of("bob")
    assert [api.get("/v1/jobs", headers=alice).status_code for _ in range(2)] == [200, 200]
    assert_refused(
        api.get("/v1/jobs", headers=alice), "rate_limited", "user.requests_per_minute", 2, 60
    )
    assert api.get("/v1/jobs", headers=bob).status_code == 200
    assert api.get("/v1/jobs", headers=key).status_code == 200  # the key itself: no user


# -- auth off: per client address -------------------------------------------------------------


def test_with_auth_off_the_default_limit_applies_per_client_address(
    server_factory: ServerFactory, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(limit_requests_per_minute=3), workers=0)
    for i in range(3):
        assert api.post("/generate", json={"prompt": f"job {i}"}).status_code == 200
    refused = api.post("/generate", json={"prompt": "one too many"})
    assert_refused(refused, "rate_limited", "ip.requests_per_minute", 3, 60)
    assert api.get("/health").status_code == 200  # probes are not counted

    # Another loopback address is another client, with its own allowance.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=api.base_url, transport=transport, timeout=30) as elsewhere:
        assert elsewhere.post("/generate", json={"prompt": "from afar"}).status_code == 200


# -- the OpenAI-compatible route ------------------------------------------------------------


def assert_openai_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert error["message"]
    assert int(response.headers["Retry-After"]) >= 1


def test_the_openai_route_refuses_in_openais_envelope(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    api = server_factory(keyed(), workers=0)
    generate = {"prompt": "a lighthouse at dusk", "size": "256x256"}

    requests = create_key(api, limits={"requests_per_minute": 1})
    assert api.get("/v1/jobs", headers=requests).status_code == 200
    refused = api.post("/v1/images/generations", json=generate, headers=requests)
    assert_openai_rate_limited(refused)

    images = create_key(api, limits={"images_per_minute": 1})
    refused = api.post("/v1/images/generations", json=generate | {"n": 2}, headers=images)
    assert_openai_rate_limited(refused)
    assert refused.headers["RateLimit-Policy"] == '"key.images_per_minute";q=1;w=60'
    assert job_count(api, images) == 0


# -- the store: Redis shared by processes, and Redis away -------------------------------------


def test_an_unreachable_redis_is_a_503_not_a_500(
    server_factory: ServerFactory, keyed: SettingsFactory
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    api = server_factory(keyed(redis_url=closed), workers=0)
    auth = create_key(api, limits={"requests_per_minute": 10})
    refused = api.get("/v1/jobs", headers=auth)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "service_unavailable"
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[Callable[..., list[httpx.Client]]]:
    """Start ``imagegate serve`` processes on one database (one after the other, so that one
    migrates it first); each may be given more environment."""
    base = {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_AUTH": "required",
        "IMAGEGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "IMAGEGATE_LOG_LEVEL": "warning",
    }
    with ExitStack() as stack:

        def start(count: int, **env: str) -> list[httpx.Client]:
            return [
                stack.enter_context(serve(base | env, tmp_path / f"serve{i}.log", workers=0))
                for i in range(count)
            ]

        yield start


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("store", "admitted"), [("redis", 60), ("memory", 120)])
def test_a_limit_holds_across_api_processes_only_with_redis(
    replicas: Callable[..., list[httpx.Client]], store: str, admitted: int
) -> None:
    """Behind a load balancer, a key's 60 requests a minute are 60 in all with Redis; in
    each process's memory, every replica allows its own 60."""
    env = {"IMAGEGATE_REDIS_URL": _redis_url()} if store == "redis" else {}
    first, second = replicas(2, **env)
    auth = create_key(first, limits={"requests_per_minute": 60})
    servers = [first, second] * 61  # round robin, as a load balancer would
    statuses = [server.get("/v1/jobs", headers=auth).status_code for server in servers]
    assert statuses.count(200) == admitted
    assert statuses.count(429) == 122 - admitted
