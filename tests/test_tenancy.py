"""Tenants, API keys and browser tokens, through a real uvicorn server on SQLite and PostgreSQL.

Who may call what (401 and 403), that a tenant cannot reach another's objects (the same
404 as for an id that does not exist), revocation across replicas, and auth off as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from imagegate.jobs.database import create_db_engine
from imagegate.jobs.tables import api_keys
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job
from tests.processes import IMAGEGATE, QUICK

Server = Callable[..., httpx.Client]
ADMIN_TOKEN = "tenancy-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ALL_SCOPES = ["admin", "jobs:read", "jobs:write", "usage:read"]
SMALL = {"width": 64, "height": 64}
HELD_PROMPT = "a dangerous cliff edge"  # a warn-level term: held with safety_review_warn


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def create_key(api: httpx.Client, tenant: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/admin/keys", json={"tenant": tenant, "name": "web"} | fields, headers=ADMIN)
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def mint(api: httpx.Client, secret: str, user: str, **fields: Any) -> str:
    response = api.post("/v1/client-tokens", json={"user": user} | fields, headers=bearer(secret))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def submit(api: httpx.Client, credential: str, prompt: str = "a lighthouse", **fields: Any) -> dict[str, Any]:
    body = {"prompt": prompt} | SMALL | fields
    response = api.post("/v1/jobs", json=body, headers=bearer(credential))
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def finished(api: httpx.Client, credential: str, job_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=bearer(credential)).json()
        return job if job["status"] in ("completed", "failed", "canceled") else None

    return eventually(probe)


def refusal_code(response: httpx.Response) -> str | None:
    """The error code, from problem+json or from the OpenAI route's envelope."""
    body = response.json()
    code: str | None = body["error"]["code"] if "error" in body else body["code"]
    return code


def same_refusal(mine: httpx.Response, asked: str, missing: httpx.Response, other: str) -> None:
    """Another tenant's object is refused exactly as one that does not exist: the same
    status, headers' type, and body, but for the id asked (it names ``instance``)."""
    assert (mine.status_code, missing.status_code) == (404, 404), (mine.text, missing.text)
    assert mine.headers["content-type"] == missing.headers["content-type"]
    assert mine.text.replace(asked, other) == missing.text


def ws_url(api: httpx.Client, path: str) -> str:
    return str(api.base_url).replace("http", "ws", 1) + path


def ws_refusal(api: httpx.Client, path: str, headers: dict[str, str] | None = None) -> tuple[dict[str, Any], int]:
    """The error message a refused socket sends, and the code it then closes with."""
    with connect(ws_url(api, path), additional_headers=headers, proxy=None, open_timeout=10) as socket:
        message = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    return message, closed.value.rcvd.code


def ws_follow(api: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every message of /v1/jobs/{id}/ws until the server closes it."""
    with connect(ws_url(api, path), proxy=None, open_timeout=10) as socket:
        return [json.loads(raw) for raw in socket]


def read_sse(api: httpx.Client, path: str) -> list[str]:
    """The event types of a stream, until the server closes it."""
    with api.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        return [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]


def b64json(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def b64encode(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def forgeries(token: str) -> dict[str, str]:
    """Tokens made from a real one without the server's signing key."""
    header, payload, signature = token.split(".")
    flip = "A" if signature[10] != "A" else "B"  # mid-signature: no padding bits to hide in
    claims = b64json(payload)
    other_user = b64encode(claims | {"sub": "mallory"})
    unsigned = b64encode({"alg": "none", "typ": "JWT"})
    return {
        "tampered signature": f"{header}.{payload}.{signature[:10]}{flip}{signature[11:]}",
        "another user, same signature": f"{header}.{other_user}.{signature}",
        "signed with another key": jwt.encode(claims, "not-the-server-key" * 2, algorithm="HS256"),
        "alg none": f"{unsigned}.{payload}.",
    }


@pytest.fixture
def required(make_settings: SettingsFactory) -> Settings:
    return make_settings(auth="required", admin_token=ADMIN_TOKEN)


@pytest.fixture
def gate(server_factory: Server, required: Settings) -> httpx.Client:
    return server_factory(required)


# -- keys ------------------------------------------------------------------------------------


def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    gate: httpx.Client, required: Settings
) -> None:
    created = create_key(gate, "acme", name="backend")
    secret, prefix = created["key"], created["prefix"]
    # ig_sk_ and at least 22 URL-safe characters: 6 bits each, 128 bits or more
    assert re.fullmatch(r"ig_sk_[A-Za-z0-9_-]{22,}", secret), secret
    assert secret.startswith(prefix) and prefix.startswith("ig_sk_")
    assert len(secret) - len(prefix) >= 22  # the prefix shown in lists gives little away
    assert created["tenant"] == "acme" and created["revoked_at"] is None
    assert sorted(created["scopes"]) == ["jobs:read", "jobs:write", "usage:read"]
    assert create_key(gate, "acme")["key"] != secret

    listed = gate.get("/v1/admin/keys", headers=ADMIN)
    assert listed.status_code == 200
    assert secret not in listed.text and secret[len(prefix) :] not in listed.text
    mine = [key for key in listed.json()["data"] if key["id"] == created["id"]]
    assert mine == [{k: v for k, v in created.items() if k != "key"}]

    engine = create_db_engine(required)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == created["id"])).mappings().one()
    finally:
        engine.dispose()
    stored = " ".join(str(value) for value in row.values())
    assert secret[len(prefix) :] not in stored  # not the secret, nor its hidden part
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert gate.get("/v1/jobs", headers=bearer(secret)).status_code == 200


def run_cli(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        "IMAGEGATE_DATABASE_URL": settings.database_url,
        "IMAGEGATE_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [IMAGEGATE, *args],
        env=os.environ | QUICK | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_a_key_made_and_revoked_with_the_cli_is_honoured_by_the_server(
    gate: httpx.Client, required: Settings
) -> None:
    made = run_cli(["keys", "create", "--tenant", "acme", "--name", "web", "--json"], required)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["key"].startswith(created["prefix"]) and created["tenant"] == "acme"
    job = submit(gate, created["key"])
    assert job["status"] == "queued"
    listed = gate.get("/v1/admin/keys", params={"tenant": "acme"}, headers=ADMIN).json()["data"]
    assert [key["id"] for key in listed] == [created["id"]]

    revoked = run_cli(["keys", "revoke", created["id"]], required)
    assert revoked.returncode == 0, revoked.stderr

    def refused() -> bool:
        return gate.get("/v1/jobs", headers=bearer(created["key"])).status_code == 401

    eventually(refused, timeout_s=2.0)  # the server's key cache lasts 1 s


# -- every route, in required mode -----------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {job} and {key} are filled in
    body: dict[str, Any] | None
    scope: str | None  # None: any valid credential
    ok: int  # the answer to a key of the tenant with every scope


ROUTES = [
    Route("POST", "/generate", {"prompt": "a red kite"}, "jobs:write", 200),
    Route("GET", "/status/{job}", None, "jobs:read", 200),
    Route("POST", "/v1/jobs", {"prompt": "a red kite", **SMALL}, "jobs:write", 202),
    Route("GET", "/v1/jobs", None, "jobs:read", 200),
    Route("GET", "/v1/jobs/{job}", None, "jobs:read", 200),
    Route("POST", "/v1/jobs/{job}/cancel", None, "jobs:write", 409),  # it has completed
    Route("GET", "/v1/jobs/{job}/webhooks", None, "jobs:read", 200),
    Route("GET", "/v1/jobs/{job}/events", None, "jobs:read", 200),
    Route("GET", "/v1/usage", None, "usage:read", 200),
    Route("POST", "/v1/images/generations", {"prompt": "a kite", "size": "64x64"}, "jobs:write", 200),
    Route("GET", "/v1/styles", None, None, 200),
    Route("GET", "/v1/templates", None, None, 200),
    Route("GET", "/v1/models", None, None, 200),
    Route("POST", "/v1/moderations", {"input": "a red kite"}, "jobs:write", 200),
    Route("POST", "/v1/client-tokens", {"user": "alice"}, "jobs:write", 201),
    Route("POST", "/v1/admin/keys", {"tenant": "acme", "name": "more"}, "admin", 201),
    Route("GET", "/v1/admin/keys", None, "admin", 200),
    Route("POST", "/v1/admin/keys/{key}/revoke", None, "admin", 200),
    Route("PUT", "/v1/admin/tenants/acme", {"weight": 2}, "admin", 200),
    Route("GET", "/v1/admin/tenants/acme", None, "admin", 200),
    Route("GET", "/v1/admin/tenants", None, "admin", 200),
    Route("GET", "/v1/admin/reviews", None, "admin", 200),
    Route("POST", "/v1/admin/reviews/{job}/approve", None, "admin", 409),  # not held
    Route("POST", "/v1/admin/reviews/{job}/reject", None, "admin", 409),
    Route("GET", "/v1/admin/reviews/{job}/images/0", None, "admin", 404),  # none withheld
    Route("GET", "/v1/admin/audit", None, "admin", 200),
    Route("GET", "/v1/admin/audit/counts", None, "admin", 403),  # the admin token's alone
]


def call(api: httpx.Client, route: Route, headers: dict[str, str], **ids: str) -> httpx.Response:
    return api.request(route.method, route.path.format(**ids), json=route.body, headers=headers)


def test_every_route_refuses_a_missing_or_bad_credential(gate: httpx.Client) -> None:
    full = create_key(gate, "acme", scopes=ALL_SCOPES)["key"]
    reader = create_key(gate, "acme", scopes=["jobs:read"])["key"]
    spare = create_key(gate, "acme")
    revoked = create_key(gate, "acme")
    assert gate.post(f"/v1/admin/keys/{revoked['id']}/revoke", headers=ADMIN).status_code == 200
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = create_key(gate, "acme", expires_at=past)["key"]
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    expiring = create_key(gate, "acme", expires_at=soon)["key"]
    short_token = mint(gate, full, "alice", ttl_s=1)
    job = submit(gate, full)
    ids = {"job": job["id"], "key": spare["id"]}
    assert finished(gate, full, job["id"])["status"] == "completed"

    # The table is right: a valid key gets through every route, and a scope is needed
    for route in ROUTES:
        answered = call(gate, route, bearer(full), **ids)
        assert answered.status_code == route.ok, (route, answered.text)
        answered = call(gate, route, bearer(reader), **ids)
        expected = route.ok if route.scope in (None, "jobs:read") else 403
        assert answered.status_code == expected, (route, answered.text)
        if expected == 403:
            assert refusal_code(answered) == "forbidden", route

    # A key that expires, and a token whose time is up, stop working by themselves
    assert gate.get("/v1/jobs", headers=bearer(expiring)).status_code == 200

    def expired_both() -> bool:
        answers = {gate.get("/v1/jobs", headers=bearer(c)).status_code for c in (expiring, short_token)}
        return answers == {401}

    eventually(expired_both, timeout_s=5)

    bad = {
        "no credential": {},
        "an unknown key": bearer("ig_sk_" + uuid.uuid4().hex + uuid.uuid4().hex),
        "a junk credential": bearer("not-a-credential"),
        "the wrong admin token": bearer(ADMIN_TOKEN + "x"),
        "a revoked key": bearer(revoked["key"]),
        "a key past its expires_at": bearer(expired),
        "a key that has just expired": bearer(expiring),
        "an expired browser token": bearer(short_token),
    } | {name: bearer(token) for name, token in forgeries(mint(gate, full, "alice")).items()}
    for route in ROUTES:
        bodies = set()
        for name, headers in bad.items():
            answered = call(gate, route, headers, **ids)
            assert answered.status_code == 401, (route, name, answered.text)
            assert refusal_code(answered) == "unauthorized", (route, name)
            bodies.add(answered.text)
        assert len(bodies) == 1, (route, bodies)  # a refusal tells nothing about the key
    openai = call(gate, ROUTES[9], {})
    assert openai.json()["error"]["type"] == "invalid_request_error"

    for name, headers in bad.items():
        message, code = ws_refusal(gate, "/ws/generate", headers)
        assert (message["status"], message["code"], code) == ("error", "unauthorized", 4401), name
        message, code = ws_refusal(gate, f"/v1/jobs/{job['id']}/ws", headers)
        assert (message["event"], message["data"]["code"], code) == ("error", "unauthorized", 4401), name

    for probe in ("/health", "/ready", "/metrics"):
        assert gate.get(probe).status_code == 200, probe


def test_a_secret_key_in_a_url_is_refused(gate: httpx.Client) -> None:
    secret = create_key(gate, "acme")["key"]
    job = submit(gate, secret)
    for path in ("/v1/jobs", f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/events"):
        answered = gate.get(path, params={"access_token": secret})
        assert answered.status_code == 401, path
        assert answered.json()["code"] == "unauthorized"
        assert "Authorization header" in answered.json()["detail"]
    message, code = ws_refusal(gate, f"/v1/jobs/{job['id']}/ws?access_token={secret}")
    assert (message["data"]["code"], code) == ("unauthorized", 4401)
    message, code = ws_refusal(gate, f"/ws/generate?access_token={secret}")
    assert (message["code"], code) == ("unauthorized", 4401)


# -- revocation ------------------------------------------------------------------------------


def test_a_revoked_key_and_its_tokens_stop_working_on_every_replica(
    server_factory: Server, required: Settings
) -> None:
    one, two = server_factory(required), server_factory(required)  # one database
    secret = create_key(one, "acme")
    token = mint(one, secret["key"], "alice")
    for replica in (one, two):  # known to each (and cached there)
        for credential in (secret["key"], token):
            assert replica.get("/v1/jobs", headers=bearer(credential)).status_code == 200

    revoked_at = time.monotonic()
    answer = one.post(f"/v1/admin/keys/{secret['id']}/revoke", headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["revoked_at"] is not None
    assert one.get("/v1/jobs", headers=bearer(secret["key"])).status_code == 401  # here, at once

    def refused_everywhere() -> bool:
        return all(
            replica.get("/v1/jobs", headers=bearer(credential)).status_code == 401
            for replica in (one, two)
            for credential in (secret["key"], token)
        )

    eventually(refused_everywhere, timeout_s=2.0 - (time.monotonic() - revoked_at))
    listed = two.get("/v1/admin/keys", headers=ADMIN).json()["data"]
    assert [key["revoked_at"] is not None for key in listed] == [True]


# -- one tenant cannot reach another's objects -----------------------------------------------


JOB_ROUTES = [
    ("GET", "/v1/jobs/{}"),
    ("GET", "/status/{}"),
    ("POST", "/v1/jobs/{}/cancel"),
    ("GET", "/v1/jobs/{}/webhooks"),
    ("GET", "/v1/jobs/{}/events"),
    ("POST", "/v1/admin/reviews/{}/approve"),
    ("POST", "/v1/admin/reviews/{}/reject"),
    ("GET", "/v1/admin/reviews/{}/images/0"),
]


def test_another_tenant_sees_nothing_of_a_tenants_objects(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    settings = make_settings(auth="required", admin_token=ADMIN_TOKEN, safety_review_warn=True)
    api = server_factory(settings)
    key_a = create_key(api, "acme")
    a = key_a["key"]
    b = create_key(api, "globex", scopes=ALL_SCOPES)["key"]
    b_ids = {key["id"] for key in api.get("/v1/admin/keys", headers=bearer(b)).json()["data"]}
    done = submit(api, a)
    held = submit(api, a, HELD_PROMPT)
    assert held["status"] == "pending_review"
    assert finished(api, a, done["id"])["status"] == "completed"
    assert finished(api, b, submit(api, b)["id"])["status"] == "completed"

    missing = str(uuid.uuid4())
    for job in (done, held):
        for method, path in JOB_ROUTES:
            mine = api.request(method, path.format(job["id"]), headers=bearer(b))
            nothing = api.request(method, path.format(missing), headers=bearer(b))
            same_refusal(mine, job["id"], nothing, missing)
            assert mine.json()["code"] == "job_not_found", path
        ws_mine = ws_refusal(api, f"/v1/jobs/{job['id']}/ws", bearer(b))
        ws_nothing = ws_refusal(api, f"/v1/jobs/{missing}/ws", bearer(b))
        assert ws_mine == ws_nothing and ws_mine[1] == 4404
    assert api.get(f"/v1/jobs/{held['id']}", headers=bearer(a)).json()["status"] == "pending_review"
    listed = api.get("/v1/jobs", headers=bearer(b)).json()["data"]
    assert len(listed) == 1 and {done["id"], held["id"]}.isdisjoint(j["id"] for j in listed)

    # keys and tenants: the other tenant is as absent as one that never existed
    keys = api.get("/v1/admin/keys", headers=bearer(b)).json()["data"]
    assert {key["id"] for key in keys} == b_ids
    for method, path, body in [
        ("GET", "/v1/admin/keys?tenant={}", None),
        ("POST", "/v1/admin/keys", {"tenant": "{}", "name": "takeover"}),
        ("PUT", "/v1/admin/tenants/{}", {"weight": 50}),
        ("GET", "/v1/admin/tenants/{}", None),
        ("GET", "/v1/usage?tenant={}", None),
    ]:
        asked = [
            api.request(
                method,
                path.format(name),
                content=json.dumps(body).replace("{}", name) if body else None,
                headers=bearer(b) | {"content-type": "application/json"},
            )
            for name in ("acme", "nosuch")
        ]
        same_refusal(asked[0], "acme", asked[1], "nosuch")
        assert asked[0].json()["code"] == "tenant_not_found", path
    mine = api.post(f"/v1/admin/keys/{key_a['id']}/revoke", headers=bearer(b))
    nothing = api.post("/v1/admin/keys/key_0123456789abcdef01234567/revoke", headers=bearer(b))
    same_refusal(mine, key_a["id"], nothing, "key_0123456789abcdef01234567")
    assert mine.json()["code"] == "key_not_found"
    assert [t["id"] for t in api.get("/v1/admin/tenants", headers=bearer(b)).json()["data"]] == ["globex"]
    # ...and nothing of acme's changed
    assert api.get("/v1/jobs", headers=bearer(a)).status_code == 200
    acme = api.get("/v1/admin/tenants/acme", headers=ADMIN).json()
    assert acme["weight"] == 1
    assert api.get("/v1/admin/tenants/nosuch", headers=ADMIN).status_code == 404
    assert [k["tenant"] for k in api.get("/v1/admin/keys", headers=ADMIN).json()["data"]].count("acme") == 1

    # reviews, audit and usage: each tenant's own
    assert api.get("/v1/admin/reviews", headers=bearer(b)).json() == []
    everyone = api.get("/v1/admin/reviews", headers=ADMIN).json()
    assert [j["id"] for j in everyone] == [held["id"]]
    assert {e["owner"] for e in api.get("/v1/admin/audit", headers=ADMIN).json()["data"]} == {"acme"}
    assert api.get("/v1/admin/audit", headers=bearer(b)).json()["data"] == []
    usage_b = api.get("/v1/usage", params={"group_by": "key"}, headers=bearer(b)).json()["data"]
    assert {row["key"] for row in usage_b} <= b_ids and sum(row["jobs"] for row in usage_b) == 1
    usage_a = api.get("/v1/usage", params={"group_by": "key", "tenant": "acme"}, headers=ADMIN)
    assert [(row["key"], row["jobs"]) for row in usage_a.json()["data"]] == [(key_a["id"], 1)]


# -- browser tokens --------------------------------------------------------------------------


def test_a_browser_token_acts_for_its_user_only(gate: httpx.Client) -> None:
    secret = create_key(gate, "acme")["key"]
    minted = gate.post("/v1/client-tokens", json={"user": "alice"}, headers=bearer(secret))
    assert minted.status_code == 201 and set(minted.json()) == {"token", "expires_at"}
    left = datetime.fromisoformat(minted.json()["expires_at"]) - datetime.now(UTC)
    assert timedelta(seconds=590) < left <= timedelta(seconds=600)  # the default ttl_s
    alice = minted.json()["token"]

    job = submit(gate, alice)
    assert job["user"] == "alice"
    bobs = submit(gate, secret, user="bob")
    anyones = submit(gate, secret)
    events = read_sse(gate, f"/v1/jobs/{job['id']}/events?access_token={alice}")
    assert events[0] == "queued" and events[-1] == "completed"
    assert gate.get(f"/v1/jobs/{job['id']}", headers=bearer(alice)).json()["status"] == "completed"
    followed = ws_follow(gate, f"/v1/jobs/{job['id']}/ws?access_token={alice}")
    assert followed[-1]["event"] == "completed"

    def listed(credential: str, **params: str) -> list[str]:
        page = gate.get("/v1/jobs", params=params, headers=bearer(credential))
        assert page.status_code == 200, page.text
        return [j["id"] for j in page.json()["data"]]

    assert listed(alice) == [job["id"]]
    assert listed(secret, user="alice") == [job["id"]]  # a key lists one end user's jobs
    assert listed(secret, user="bob") == [bobs["id"]]
    assert set(listed(secret)) == {job["id"], bobs["id"], anyones["id"]}

    missing = str(uuid.uuid4())
    for method, path in [("GET", "/v1/jobs/{}"), ("POST", "/v1/jobs/{}/cancel"), ("GET", "/v1/jobs/{}/events")]:
        for other in (bobs["id"], anyones["id"]):
            theirs = gate.request(method, path.format(other), headers=bearer(alice))
            nothing = gate.request(method, path.format(missing), headers=bearer(alice))
            same_refusal(theirs, other, nothing, missing)
    assert ws_refusal(gate, f"/v1/jobs/{bobs['id']}/ws?access_token={alice}")[1] == 4404

    forbidden = [
        gate.post("/v1/jobs", json={"prompt": "x", "user": "bob"}, headers=bearer(alice)),
        gate.get("/v1/jobs", params={"user": "bob"}, headers=bearer(alice)),
        gate.get("/v1/usage", headers=bearer(alice)),
        gate.get("/v1/admin/keys", headers=bearer(alice)),
        gate.post("/v1/client-tokens", json={"user": "alice"}, headers=bearer(alice)),
        gate.post("/v1/client-tokens", json={"user": "alice"}, headers=ADMIN),
    ]
    for answered in forbidden:
        assert answered.status_code == 403, (answered.request.url, answered.text)
        assert answered.json()["code"] == "forbidden"
    assert submit(gate, alice, user="alice")["user"] == "alice"  # its own user may be named
    assert len(listed(secret, user="bob")) == 1  # nothing was made for bob


def test_a_browser_token_keeps_to_its_job_count_and_templates(gate: httpx.Client) -> None:
    secret = create_key(gate, "acme")["key"]
    once = mint(gate, secret, "carol", max_jobs=1)
    submit(gate, once)
    again = gate.post("/v1/jobs", json={"prompt": "more", **SMALL}, headers=bearer(once))
    assert again.status_code == 429 and again.json()["policy"] == "token.max_jobs"
    assert again.json()["limit"] == 1 and int(again.headers["retry-after"]) > 0

    templates = {t["name"] for t in gate.get("/v1/templates", headers=bearer(secret)).json()}
    assert {"landscape", "portrait"} <= templates
    landscapes = mint(gate, secret, "dave", templates=["landscape"])
    for body in ({"prompt": "anything at all"}, {"template": "portrait", "inputs": {"description": "a man"}}):
        refused = gate.post("/v1/jobs", json=body, headers=bearer(landscapes))
        assert refused.status_code == 403, refused.text
        assert (refused.json()["code"], refused.json()["field"]) == ("forbidden", "template")
    refused = gate.post("/generate", json={"prompt": "a free prompt"}, headers=bearer(landscapes))
    assert refused.status_code == 403
    allowed = {"template": "landscape", "inputs": {"environment": "alpine lake"}} | SMALL
    made = gate.post("/v1/jobs", json=allowed, headers=bearer(landscapes))
    assert made.status_code == 202, made.text
    assert made.json()["prompt"] == "alpine lake landscape" and made.json()["user"] == "dave"

    for fields in ({"ttl_s": 3601}, {"templates": ["no-such-template"]}, {"max_jobs": 0}):
        answered = gate.post("/v1/client-tokens", json={"user": "eve"} | fields, headers=bearer(secret))
        assert answered.status_code == 422, (fields, answered.text)
        assert answered.json()["field"] == next(iter(fields)).split(".")[0]


# -- auth off --------------------------------------------------------------------------------


def test_with_auth_off_no_key_is_needed_and_a_junk_one_is_ignored(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings())
    for headers in ({}, bearer("junk"), bearer("ig_sk_" + "x" * 32), {"Authorization": "Basic Zm9vOmJhcg=="}):
        submitted = api.post("/generate", json={"prompt": "a lighthouse at dusk"}, headers=headers)
        assert submitted.status_code == 200, (headers, submitted.text)

        def done(check_url: str = submitted.json()["check_url"]) -> dict[str, Any] | None:
            status: dict[str, Any] = api.get(check_url, headers=headers).json()
            return status if status["status"] == "completed" else None

        image = api.get(eventually(done)["result_url"])
        assert image.headers["content-type"] == "image/png"
        assert api.get("/v1/usage", headers=headers).status_code == 200
    jobs = api.get("/v1/jobs", headers=bearer("junk")).json()["data"]
    assert len(jobs) == 4
    assert wait_for_job(api, jobs[0]["id"])["status"] == "completed"
