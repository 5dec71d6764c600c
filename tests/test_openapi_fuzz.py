"""The OpenAPI document describes every answer (issue 11, part 5).

schemathesis reads the live server's /openapi.json and sends what it generates from it,
valid and not, to a real ``imagegate serve``: once with auth off, and once with auth
required and the admin token, so the credential's refusals and the admin routes' own are
reached too. Every answer must be documented: its status, its content type and its body's
schema, and none may be a server error. The checks are the four the issue names, with all
phases but the stateful one. The seed is fixed so a run is repeatable; set
IMAGEGATE_FUZZ_SEED to explore others.

The document itself is checked too: each refusal is problem+json (OpenAI's envelope on the
OpenAI-compatible routes), with the headers it carries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imagegate.api.app import create_app
from imagegate.settings import Settings
from tests.processes import serve

SCHEMATHESIS = Path(sys.executable).parent / "st"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,"
CHECKS += "response_schema_conformance"
ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef0123"
SEED = os.environ.get("IMAGEGATE_FUZZ_SEED", "20261203")
OPENAI_ROUTES = {"/v1/images/generations", "/v1/models"}


def _fuzz(base_url: str, report: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base_url}/openapi.json",
        f"--checks={CHECKS}",
        "--phases=examples,coverage,fuzzing",
        "--max-examples=15",
        f"--seed={SEED}",
        "--no-color",
        "--report=junit",
        f"--report-junit-path={report}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report.parent)


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["off", "required"])
def test_schemathesis_finds_no_undocumented_answer(tmp_path: Path, auth: str) -> None:
    env = {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_AUTH": auth,
        "IMAGEGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        # The fuzzer's bad credentials would soon be refused 429 (documented, but it would
        # then see little else).
        "IMAGEGATE_AUTH_FAILURES_PER_MINUTE": "1000000",
    }
    headers = ["-H", f"Authorization: Bearer {ADMIN_TOKEN}"] if auth == "required" else []
    with serve(env, tmp_path / "serve.log", workers=1) as client:
        run = _fuzz(str(client.base_url).rstrip("/"), tmp_path / "junit.xml", *headers)
    summary = run.stdout[-6000:]
    assert run.returncode == 0, f"schemathesis found undocumented answers:\n{summary}"
    tested = [line for line in run.stdout.splitlines() if "Tested:" in line]
    assert tested and int(tested[0].split()[-1]) >= 30, summary  # it reached the routes
    assert " passed" in summary and "failures" not in summary, summary


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("openapi")
    app = create_app(Settings(data_dir=data_dir))
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_refusal_is_documented_with_its_body_and_headers(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        assert "400" in responses, (method, path)  # host_untrusted, everywhere
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, (method, path)
        for status, response in responses.items():
            assert "X-Request-ID" in response["headers"], (method, path, status)
            if int(status) < 400:
                continue
            (media, body), *others = response["content"].items()
            assert not others, (method, path, status)
            if path in OPENAI_ROUTES:
                expected = ("application/json", "#/components/schemas/OpenAIErrorOut")
            else:
                expected = ("application/problem+json", "#/components/schemas/ProblemOut")
            assert (media, body["schema"]["$ref"]) == expected, (method, path, status)
        if "429" in responses:
            assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(
                responses["429"]["headers"]
            ), (method, path)
        if "503" in responses:
            assert "Retry-After" in responses["503"]["headers"], (method, path)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 body is never sent
    assert {"ProblemOut", "OpenAIErrorOut"} <= set(schemas)


def test_the_credential_and_state_changes_carry_their_refusals(document: dict[str, Any]) -> None:
    submit = document["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"401", "402", "403", "413", "422", "429", "503"} <= set(submit)
    assert {"Location", "Cache-Status", "Idempotent-Replayed", "RateLimit"} <= set(
        submit["202"]["headers"]
    )
    poll = document["paths"]["/status/{job_id}"]["get"]["responses"]
    assert {"401", "403", "404", "429"} <= set(poll)
    assert "Retry-After" in poll["200"]["headers"]
    image = document["paths"]["/v1/images/{image_id}"]["get"]["responses"]
    assert {"403", "404"} <= set(image) and "401" not in image  # signed, no credential
    assert {"ETag", "Cache-Control"} <= set(image["200"]["headers"])
    assert "401" not in document["paths"]["/health"]["get"]["responses"]
