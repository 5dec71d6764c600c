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
from tests.helpers import eventually
from tests.processes import IMAGEGATE, QUICK

Server = Callable[..., httpx.Client]
ADMIN_TOKEN = "tenancy-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ALL_SCOPES = ["admin", "jobs:read", "jobs:write", "usage:read"]
SMALL = {"width": 64, "height": 64}
HELD_PROMPT = "a dangerous cliff edge"  # a warn-level term: held with safety_review_warn


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def create_key(api: httpx.Client, tenant: str, **fields: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/admin/keys", json={"tenant": tenant, "name": "web"} | fields, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def mint(api: httpx.Client, secret: str, user: str, **fields: Any) -> str:
    response = api.post("/v1/client-tokens", json={"user": user} | fields, headers=bearer(secret))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def submit(
    api: httpx.Client, credential: str, prompt: str = "a lighthouse", **fields: Any
) -> dict[str, Any]:
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


def ws_refusal(
    api: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], int]:
    """The error message a refused socket sends, and the code it then closes with."""
    with connect(
        ws_url(api, path), additional_headers=headers, proxy=None, open_timeout=10
    ) as socket:
        message = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    return message, closed.value.rcvd.code


def ws_follow(
    api: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every message of /v1/jobs/{id}/ws until the server closes it."""
    with connect(
        ws_url(api, path), additional_headers=headers, proxy=None, open_timeout=10
    ) as socket:
        return [json.loads(raw) for raw in socket]


def read_sse(api: httpx.Client, path: str) -> list[str]:
    """The event types of a stream, until the server closes it."""
    with api.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        return [
            line.removeprefix("event: ")
            for line in response.iter_lines()
            if line.startswith("event: ")
        ]


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
    return make_settings(auth="required", admin_token=ADMIN_TOKEN, auth_failures_per_minute=100_000)


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
            row = (
                conn.execute(select(api_keys).where(api_keys.c.id == created["id"]))
                .mappings()
                .one()
            )
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
    Route(
        "POST", "/v1/images/generations", {"prompt": "a kite", "size": "64x64"}, "jobs:write", 200
    ),
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
    accountant = create_key(gate, "acme", scopes=["usage:read"])["key"]
    spare = create_key(gate, "acme")
    revoked = create_key(gate, "acme")
    assert gate.post(f"/v1/admin/keys/{revoked['id']}/revoke", headers=ADMIN).status_code == 200
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = create_key(gate, "acme", expires_at=past)["key"]
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    expiring = create_key(gate, "acme", expires_at=soon)["key"]
    short_token = mint(gate, full, "alice", ttl_s=2)  # expires at a whole second: 1 to 2 s
    for credential in (expiring, short_token):  # they work, for now
        assert gate.get("/v1/jobs", headers=bearer(credential)).status_code == 200
    job = submit(gate, full)
    ids = {"job": job["id"], "key": spare["id"]}
    assert finished(gate, full, job["id"])["status"] == "completed"
    assert_the_table_holds(
        gate, {full: ALL_SCOPES, reader: ["jobs:read"], accountant: ["usage:read"]}, ids
    )
    assert ws_follow(gate, f"/v1/jobs/{job['id']}/ws", bearer(reader))[-1]["event"] == "completed"
    message, code = ws_refusal(gate, f"/v1/jobs/{job['id']}/ws", bearer(accountant))
    assert (message["data"]["code"], code) == ("forbidden", 4403)
    message, code = ws_refusal(gate, "/ws/generate", bearer(reader))
    assert (message["code"], code) == ("forbidden", 4403)

    # The key that expires, and the token whose time is up, stop working by themselves
    def expired_both() -> bool:
        answers = {
            gate.get("/v1/jobs", headers=bearer(c)).status_code for c in (expiring, short_token)
        }
        return answers == {401}

    eventually(expired_both, timeout_s=6)
    bad_tokens = {"an expired browser token": short_token} | forgeries(mint(gate, full, "alice"))
    bad = {
        "no credential": {},
        "an unknown key": bearer("ig_sk_" + uuid.uuid4().hex + uuid.uuid4().hex),
        "a junk credential": bearer("not-a-credential"),
        "the wrong admin token": bearer(ADMIN_TOKEN + "x"),
        "a revoked key": bearer(revoked["key"]),
        "a key past its expires_at": bearer(expired),
        "a key that has just expired": bearer(expiring),
    } | {name: bearer(token) for name, token in bad_tokens.items()}
    for route in ROUTES:
        bodies = {
            name: unauthorized(call(gate, route, headers, **ids)) for name, headers in bad.items()
        }
        assert len(set(bodies.values())) == 1, (route, bodies)  # it tells nothing of the key
    openai = gate.post("/v1/images/generations", json={"prompt": "a kite"})
    assert set(openai.json()) == {"error"}  # OpenAI's envelope, not problem+json
    assert openai.json()["error"]["type"] == "invalid_request_error"

    for name, headers in bad.items():
        assert_sockets_refuse(gate, job["id"], name, headers=headers)
    for name, token in bad_tokens.items():  # as a browser passes one, in the URL
        in_url = f"?access_token={token}"
        assert unauthorized(gate.get(f"/v1/jobs/{job['id']}/events{in_url}")), name
        assert_sockets_refuse(gate, job["id"], name, query=in_url)

    for probe in ("/health", "/ready", "/metrics"):
        assert gate.get(probe).status_code == 200, probe


def assert_the_table_holds(
    gate: httpx.Client, keys: dict[str, list[str]], ids: dict[str, str]
) -> None:
    """Each key gets through every route its scopes allow (and is refused with 403 where
    they do not): so the 401s below are about the credential, not a malformed request."""
    for route in ROUTES:
        for key, scopes in keys.items():
            answered = call(gate, route, bearer(key), **ids)
            expected = route.ok if route.scope is None or route.scope in scopes else 403
            assert answered.status_code == expected, (route, scopes, answered.text)
            if expected == 403:
                assert refusal_code(answered) == "forbidden", route


def unauthorized(answered: httpx.Response) -> str:
    """The body of a 401 (problem+json, or OpenAI's envelope on its route)."""
    assert answered.status_code == 401, (answered.request.url, answered.text)
    assert refusal_code(answered) == "unauthorized"
    return answered.text


def assert_sockets_refuse(
    gate: httpx.Client,
    job_id: str,
    name: str,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> None:
    message, code = ws_refusal(gate, f"/ws/generate{query}", headers)
    assert (message["status"], message["code"], code) == ("error", "unauthorized", 4401), name
    message, code = ws_refusal(gate, f"/v1/jobs/{job_id}/ws{query}", headers)
    assert (message["event"], message["data"]["code"], code) == ("error", "unauthorized", 4401), (
        name
    )


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


@dataclass(frozen=True)
class TwoTenants:
    api: httpx.Client
    key_a: dict[str, Any]  # acme's key (the default scopes)
    key_b: dict[str, Any]  # globex's key, with every scope, admin too
    done: dict[str, Any]  # acme's completed job
    held: dict[str, Any]  # acme's job, held for a reviewer

    def as_b(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.api.request(method, path, json=body, headers=bearer(self.key_b["key"]))


@pytest.fixture
def tenants(server_factory: Server, make_settings: SettingsFactory) -> TwoTenants:
    settings = make_settings(
        auth="required",
        admin_token=ADMIN_TOKEN,
        auth_failures_per_minute=100_000,
        safety_review_warn=True,
    )
    api = server_factory(settings)
    key_a, key_b = create_key(api, "acme"), create_key(api, "globex", scopes=ALL_SCOPES)
    done = submit(api, key_a["key"])
    held = submit(api, key_a["key"], HELD_PROMPT)
    assert held["status"] == "pending_review"
    assert finished(api, key_a["key"], done["id"])["status"] == "completed"
    assert finished(api, key_b["key"], submit(api, key_b["key"])["id"])["status"] == "completed"
    return TwoTenants(api, key_a, key_b, done, held)


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


def test_another_tenants_job_is_a_404_like_a_missing_one(tenants: TwoTenants) -> None:
    api, a, b = tenants.api, tenants.key_a["key"], tenants.key_b["key"]
    missing = str(uuid.uuid4())
    for job in (tenants.done, tenants.held):
        for method, path in JOB_ROUTES:
            theirs = tenants.as_b(method, path.format(job["id"]))
            nothing = tenants.as_b(method, path.format(missing))
            same_refusal(theirs, job["id"], nothing, missing)
            assert theirs.json()["code"] == "job_not_found", path
        ws_theirs = ws_refusal(api, f"/v1/jobs/{job['id']}/ws", bearer(b))
        ws_nothing = ws_refusal(api, f"/v1/jobs/{missing}/ws", bearer(b))
        assert ws_theirs == ws_nothing and ws_theirs[1] == 4404
    listed = [j["id"] for j in tenants.as_b("GET", "/v1/jobs").json()["data"]]
    assert len(listed) == 1 and tenants.done["id"] not in listed
    assert tenants.as_b("GET", "/v1/admin/reviews").json() == []
    # acme's jobs are as they were: the held one was neither canceled nor decided
    held = api.get(f"/v1/jobs/{tenants.held['id']}", headers=bearer(a)).json()
    assert held["status"] == "pending_review"
    assert [j["id"] for j in api.get("/v1/admin/reviews", headers=ADMIN).json()] == [held["id"]]


def about(tenant: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """The admin and usage requests that name a tenant."""
    return [
        ("GET", f"/v1/admin/keys?tenant={tenant}", None),
        ("POST", "/v1/admin/keys", {"tenant": tenant, "name": "takeover"}),
        ("PUT", f"/v1/admin/tenants/{tenant}", {"weight": 50}),
        ("GET", f"/v1/admin/tenants/{tenant}", None),
        ("GET", f"/v1/usage?tenant={tenant}", None),
    ]


def test_a_tenants_admin_key_manages_its_own_tenant_only(tenants: TwoTenants) -> None:
    api, key_a, key_b = tenants.api, tenants.key_a, tenants.key_b
    for acme, nosuch in zip(about("acme"), about("nosuch"), strict=True):
        theirs, nothing = tenants.as_b(*acme), tenants.as_b(*nosuch)
        same_refusal(theirs, "acme", nothing, "nosuch")
        assert theirs.json()["code"] == "tenant_not_found", acme
    fake_id = "key_0123456789abcdef01234567"
    theirs = tenants.as_b("POST", f"/v1/admin/keys/{key_a['id']}/revoke")
    same_refusal(
        theirs, key_a["id"], tenants.as_b("POST", f"/v1/admin/keys/{fake_id}/revoke"), fake_id
    )
    assert theirs.json()["code"] == "key_not_found"
    own_keys = tenants.as_b("GET", "/v1/admin/keys").json()["data"]
    assert [key["id"] for key in own_keys] == [key_b["id"]]
    own_tenants = tenants.as_b("GET", "/v1/admin/tenants").json()["data"]
    assert [tenant["id"] for tenant in own_tenants] == ["globex"]
    assert tenants.as_b("GET", "/v1/admin/audit").json()["data"] == []
    usage = tenants.as_b("GET", "/v1/usage?group_by=key").json()["data"]
    assert [(row["key"], row["jobs"]) for row in usage] == [(key_b["id"], 1)]

    # nothing of acme's changed, and nothing was made for it or for "nosuch"
    assert api.get("/v1/jobs", headers=bearer(key_a["key"])).status_code == 200
    assert api.get("/v1/admin/tenants/acme", headers=ADMIN).json()["weight"] == 1
    assert api.get("/v1/admin/tenants/nosuch", headers=ADMIN).status_code == 404
    every_key = api.get("/v1/admin/keys", headers=ADMIN).json()["data"]
    assert [key["id"] for key in every_key if key["tenant"] == "acme"] == [key_a["id"]]
    # ...while the admin token sees acme's audit entries and usage
    audit = api.get("/v1/admin/audit", headers=ADMIN).json()["data"]
    assert audit and {entry["owner"] for entry in audit} == {"acme"}
    usage = api.get("/v1/usage?group_by=key&tenant=acme", headers=ADMIN).json()["data"]
    assert [(row["key"], row["jobs"]) for row in usage] == [(key_a["id"], 1)]


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
    for method, path in [
        ("GET", "/v1/jobs/{}"),
        ("POST", "/v1/jobs/{}/cancel"),
        ("GET", "/v1/jobs/{}/events"),
    ]:
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
    for body in (
        {"prompt": "anything at all"},
        {"template": "portrait", "inputs": {"description": "a man"}},
    ):
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
        answered = gate.post(
            "/v1/client-tokens", json={"user": "eve"} | fields, headers=bearer(secret)
        )
        assert answered.status_code == 422, (fields, answered.text)
        assert answered.json()["field"] == next(iter(fields))


# -- auth off --------------------------------------------------------------------------------


def test_with_auth_off_no_key_is_needed_and_a_junk_one_is_ignored(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings())
    ignored = [{}, bearer("junk"), bearer("ig_sk_" + "x" * 32), {"Authorization": "Basic eDp5"}]
    for headers in ignored:
        submitted = api.post("/generate", json={"prompt": "a lighthouse"}, headers=headers)
        assert submitted.status_code == 200, (headers, submitted.text)
        status = original_status(api, submitted.json()["check_url"], headers)
        image = api.get(status["result_url"])
        assert image.headers["content-type"] == "image/png"
        assert api.get("/v1/usage", headers=headers).status_code == 200
    jobs = api.get("/v1/jobs", headers=bearer("junk")).json()["data"]
    assert [job["status"] for job in jobs] == ["completed"] * len(ignored)


def original_status(api: httpx.Client, check_url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll the original /status/{id} until the job completes."""

    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = api.get(check_url, headers=headers).json()
        return status if status["status"] == "completed" else None

    return eventually(probe)
