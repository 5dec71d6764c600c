"""Logs: request ids on every API request, JSON lines naming each job and its tenant along
the worker's path, and credentials never written."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import websockets

from imagegate.logs import REDACTED, configure_logging, job_context
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import wait_for_job
from tests.processes import serve

Server = Callable[..., httpx.Client]
GENERATED = re.compile(r"[0-9a-f]{32}")


# -- request ids ------------------------------------------------------------------------------


def test_a_sane_request_id_is_kept_and_any_other_replaced(
    server_factory: Server, settings: Settings
) -> None:
    api = server_factory(settings, workers=0)

    def answered(sent: str | None, path: str = "/health", **headers: str) -> httpx.Response:
        if sent is not None:
            headers["X-Request-ID"] = sent
        return api.get(path, headers=headers)

    kept = "7f1c2a9e-4b1d-4d0e-9a57-3c2b1e0f9d11"
    assert answered(kept).headers["X-Request-ID"] == kept
    for unfit in ("x" * 129, "two words", "<script>", ""):
        replaced = answered(unfit).headers["X-Request-ID"]
        assert GENERATED.fullmatch(replaced), unfit
    made = {answered(None).headers["X-Request-ID"] for _ in range(3)}
    assert len(made) == 3 and all(GENERATED.fullmatch(m) for m in made)
    # Refusals too: a 404 problem, and the host guard's 400 before anything else ran.
    assert answered(kept, "/v1/jobs/nope").headers["X-Request-ID"] == kept
    refused = answered(kept, "/v1/jobs", Host="evil.example")
    assert refused.status_code == 400 and refused.headers["X-Request-ID"] == kept
    assert len(refused.headers.get_list("X-Request-ID")) == 1


async def test_a_websocket_handshake_carries_the_request_id(
    server_factory: Server, settings: Settings
) -> None:
    api = server_factory(settings, workers=0)
    url = str(api.base_url).replace("http://", "ws://") + "/ws/generate"
    sent = {"X-Request-ID": "ws-req-1"}
    async with websockets.connect(url, additional_headers=sent) as socket:
        assert socket.response is not None
        assert socket.response.headers["X-Request-ID"] == "ws-req-1"


# -- the processors ---------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog's and the root logger's set-up back after a test changed them."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_bound_context_and_no_credentials(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(make_settings(log_json=True, log_level="info"))  # to capsys's stderr
    log = structlog.get_logger("test")
    with job_context("job-1", "acme"):
        log.info(
            "job.step",
            authorization="Bearer abc123",
            api_key="ig_live_abc123",
            token="abc123",
            password="abc123",
            step=3,
        )
    log.info("after")
    logging.getLogger("sqlalchemy.pool").warning("the pool is %s", "exhausted")
    lines = json_lines(capsys.readouterr().err)
    step, after, library = lines
    assert step["event"] == "job.step" and step["level"] == "info" and step["step"] == 3
    assert (step["job_id"], step["tenant"]) == ("job-1", "acme")
    for key in ("authorization", "api_key", "token", "password"):
        assert step[key] == REDACTED
    assert "abc123" not in json.dumps(lines)
    assert "job_id" not in after  # unbound when the job's path ends
    assert library["event"] == "the pool is exhausted" and library["level"] == "warning"
    assert library["logger"] == "sqlalchemy.pool"


# -- a real process ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_json_lines_of_a_job_name_it_and_its_tenant(tmp_path: Path) -> None:
    secret_key, admin_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    env = {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_LOG_JSON": "true",
        "IMAGEGATE_LOG_LEVEL": "debug",
        "IMAGEGATE_POLL_INTERVAL_S": "0.2",
        "IMAGEGATE_SECRET_KEY": secret_key,
        "IMAGEGATE_ADMIN_TOKEN": admin_token,
    }
    log_file = tmp_path / "serve.log"
    with serve(env, log_file, workers=1) as api:
        answer = api.post(
            "/v1/jobs", json={"prompt": "a lantern"}, headers={"X-Request-ID": "req-lantern-1"}
        )
        job_id = answer.json()["id"]
        assert answer.headers["X-Request-ID"] == "req-lantern-1"
        assert wait_for_job(api, job_id)["status"] == "completed"
        api.get("/v1/admin/jobs", headers={"Authorization": f"Bearer {admin_token}"})
    output = log_file.read_text()
    assert secret_key not in output and admin_token not in output
    lines = json_lines(output)
    of_job = [line for line in lines if line.get("job_id") == job_id]
    events = [line["event"] for line in of_job]
    for stage in ("submitted", "claimed", "generated", "moderated", "stored", "completed"):
        assert f"job.{stage}" in events, events
    assert {line["tenant"] for line in of_job} == {"local"}
    (submitted,) = (line for line in of_job if line["event"] == "job.submitted")
    assert submitted["request_id"] == "req-lantern-1"
    # Every line structlog wrote is JSON; what is not comes from uvicorn's own loggers.
    plain = [line for line in output.splitlines() if line and not line.startswith("{")]
    assert all(re.match(r"(INFO|WARNING|ERROR):", line) for line in plain), plain
