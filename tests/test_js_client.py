"""The JS client (clients/js) against the real thing: its integration tests run under
``node --test`` against a live ``imagegate serve`` on loopback (auth required, previews, a
slow sketch); its webhook check agrees with our own signer; its generated types and the
playground's bundle of it are what the current code and source make."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagegate.webhooks import signing
from tests.js.support import CLIENT, run_node
from tests.processes import serve

pytestmark = pytest.mark.slow
ADMIN_TOKEN = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("js-live")
    env = {
        "IMAGEGATE_DATA_DIR": str(data / "data"),
        "IMAGEGATE_AUTH": "required",
        "IMAGEGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "IMAGEGATE_PREVIEW_EVERY": "2",
        "IMAGEGATE_SKETCH_DELAY_MS": "800",
        "IMAGEGATE_LOG_LEVEL": "warning",
    }
    with serve(env, data / "serve.log", workers=2) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield client


def make_key(admin: httpx.Client, tenant: str, **extra: object) -> str:
    body = {"tenant": tenant, "name": "js", "scopes": ["jobs:write", "jobs:read"], **extra}
    made = admin.post("/v1/admin/keys", json=body)
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def test_the_client_against_a_live_server(live: httpx.Client) -> None:
    budget = {"amount": 0.0005, "currency": "USD", "period": "month"}
    assert live.put("/v1/admin/tenants/js-poor", json={"budget": budget}).status_code == 200
    env = {
        "IMAGEGATE_URL": str(live.base_url).rstrip("/"),
        "IMAGEGATE_API_KEY": make_key(live, "js-main"),
        "IMAGEGATE_LIMITED_KEY": make_key(live, "js-limited", limits={"requests_per_minute": 2}),
        "IMAGEGATE_BUDGET_KEY": make_key(live, "js-poor"),
    }
    output = run_node(["--test", "test/integration/"], env)
    assert "# fail 0" in output, output


def test_webhook_signatures_from_our_signer_verify_in_the_client(tmp_path: Path) -> None:
    secrets_now = [
        signing.PREFIX + base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2)
    ]
    body = json.dumps({"type": "job.completed", "data": {"id": "job_1", "prompt": "é"}})
    stamp = int(time.time())
    signed = signing.headers(secrets_now, "msg_1", stamp, body.encode())
    cases = {
        "first": {"secret": secrets_now[0], "body": body, "ok": True},
        "second": {"secret": [secrets_now[1]], "body": body, "ok": True},
        "tampered": {"secret": secrets_now[0], "body": body.replace("job_1", "job_2"), "ok": False},
        "other": {
            "secret": signing.derive_secret(b"another service key"),
            "body": body,
            "ok": False,
        },
    }
    check = tmp_path / "check.mjs"
    check.write_text(
        f"""
import {{ verifyWebhook }} from {json.dumps((CLIENT / "dist" / "index.js").as_uri())};
const headers = {json.dumps(signed)};
const cases = {json.dumps(cases)};
for (const [name, c] of Object.entries(cases)) {{
  const ok = await verifyWebhook(c.body, headers, c.secret).then(() => true, () => false);
  if (ok !== c.ok) {{ console.error(`${{name}}: verified=${{ok}}`); process.exit(1); }}
}}
console.log("all agree");
"""
    )
    assert "all agree" in run_node([str(check)])


def test_the_generated_types_match_the_current_openapi() -> None:
    assert "matches" in run_node(["scripts/openapi-types.mjs", "--check"])


def test_the_playground_bundle_matches_a_fresh_build() -> None:
    assert "matches a fresh build" in run_node(["scripts/bundle.mjs", "--check"])
