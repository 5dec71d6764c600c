"""Safety in the service: templates, refusals, review, audit, moderations, output gate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL.Image import Image

from imagegate.errors import IllegalTransition
from imagegate.generators import GenerationRequest, StepCallback, StepInfo
from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.states import Status
from imagegate.jobs.store import JobStore
from imagegate.safety.output import OutputModerator
from imagegate.settings import Settings
from imagegate.storage.local import LocalStorage
from imagegate.worker.leases import LeaseKeeper
from imagegate.worker.output_gate import OutputGate
from imagegate.worker.runner import Worker, WorkerContext
from tests.conftest import SettingsFactory
from tests.helpers import eventually, spec, wait_for_job
from tests.test_output_moderation import landscape, skin_toned_figure

TOKEN = "let-me-review-0123456789abcdef-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
Server = Callable[..., httpx.Client]


@pytest.fixture
def api(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    return server_factory(make_settings(admin_token=TOKEN))


# -- templates -------------------------------------------------------------------------------


def test_the_original_templates_are_listed_with_their_inputs(api: httpx.Client) -> None:
    templates = {t["name"]: t for t in api.get("/v1/templates").json()}
    assert {"product_photography", "portrait", "landscape"} <= set(templates)
    assert [i["name"] for i in templates["product_photography"]["inputs"]] == ["object"]
    assert "person" in templates["product_photography"]["forbidden"]


def test_a_job_from_a_template_gets_the_template_prompt(api: httpx.Client) -> None:
    body = {"template": "product_photography", "inputs": {"object": "a {red} teapot {0}"}}
    job = api.post("/v1/jobs", json=body).json()
    assert job["prompt"] == "professional product photograph of a {red} teapot {0}"
    assert job["full_prompt"].endswith("studio lighting, white background, sharp focus, 8k")
    assert wait_for_job(api, job["id"])["status"] == "completed"


PORTRAIT, LANDSCAPE = {"template": "portrait"}, {"template": "landscape"}
TEMPLATE_MISTAKES = [
    ({"template": "nope", "inputs": {}}, "template", "unknown_template"),
    (PORTRAIT | {"inputs": {}}, "inputs.description", "missing_input"),
    (PORTRAIT | {"inputs": {"description": 7}}, "inputs.description", "invalid_input"),
    (LANDSCAPE | {"inputs": {"environment": "a person"}}, "inputs.environment", "forbidden_term"),
    (
        LANDSCAPE | {"prompt": "x", "inputs": {"environment": "hills"}},
        "prompt",
        "prompt_and_template",
    ),
]


@pytest.mark.parametrize(("body", "field", "code"), TEMPLATE_MISTAKES)
def test_template_mistakes_are_field_errors(
    api: httpx.Client, body: dict[str, Any], field: str, code: str
) -> None:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert (response.json()["field"], response.json()["code"]) == (field, code)


def test_an_unknown_template_lists_the_known_ones(api: httpx.Client) -> None:
    detail = api.post("/v1/jobs", json={"template": "nope"}).json()["detail"]
    assert "portrait" in detail and "landscape" in detail


# -- refusals, warnings and the audit log ----------------------------------------------------


def test_a_blocked_prompt_is_refused_and_audited(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={"prompt": "a g.o.r.e soaked corpse, dismembered"})
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "content_policy_violation" and problem["field"] == "prompt"
    assert "gore" in problem["categories"]
    legacy = api.post("/generate", json={"prompt": "a g.o.r.e soaked corpse, dismembered"})
    assert legacy.status_code == 400
    entries = api.get("/v1/admin/audit", headers=ADMIN, params={"category": "gore"}).json()["data"]
    assert len(entries) == 2
    assert entries[0]["stage"] == "input" and entries[0]["action"] == "block"
    assert entries[0]["client_ip"] == "127.0.0.1"
    assert "gore" in entries[0]["normalized_prompt"]
    counts = api.get("/v1/admin/audit/counts", headers=ADMIN).json()
    assert counts["by_category"]["gore"] == 2 and counts["by_action"]["block"] == 2


def test_a_negative_prompt_is_judged_too_but_may_name_what_to_keep_out(
    api: httpx.Client,
) -> None:
    # Security (issue 16, finding 15): the negative prompt is text the user chose.
    hateful = {"prompt": "a quiet harbour", "negative_prompt": "blurry, h.e.i.l h1tler"}
    refused = api.post("/v1/jobs", json=hateful)
    assert refused.status_code == 400
    problem = refused.json()
    assert problem["code"] == "content_policy_violation"
    assert problem["field"] == "negative_prompt"
    assert problem["categories"] == ["hate"]
    (entry,) = api.get("/v1/admin/audit", headers=ADMIN, params={"category": "hate"}).json()["data"]
    assert entry["prompt"] == hateful["negative_prompt"] and entry["action"] == "block"
    # The usual negative prompt lists exactly what the user wants kept out of the image.
    usual = {"prompt": "a quiet harbour", "negative_prompt": "nsfw, gore, blood, gun, lowres"}
    job = api.post("/v1/jobs", json=usual)
    assert job.status_code == 202
    assert wait_for_job(api, job.json()["id"])["status"] == "completed"


def test_exempt_categories_are_a_setting(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    strict = server_factory(make_settings(admin_token=TOKEN, safety_negative_exempt=[]))
    body = {"prompt": "a quiet harbour", "negative_prompt": "nsfw"}
    refused = strict.post("/v1/jobs", json=body)
    assert refused.status_code == 400 and refused.json()["field"] == "negative_prompt"
    assert strict.post("/v1/jobs", json=body | {"negative_prompt": "lowres"}).status_code == 202


def metric(api: httpx.Client, name: str, **labels: str) -> float:
    """One sample of GET /metrics, read with Prometheus's own parser; 0 when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    body = api.get("/metrics")
    assert body.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(body.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_metrics_count_safety_decisions_and_jobs(api: httpx.Client) -> None:
    block = {"stage": "input", "action": "block", "category": "weapons"}
    before = metric(api, "imagegate_safety_decisions_total", **block)
    assert api.post("/v1/jobs", json={"prompt": "a gunman in a mall"}).status_code == 400
    assert metric(api, "imagegate_safety_decisions_total", **block) == before + 1
    job = api.post("/v1/jobs", json={"prompt": "a calm lake"}).json()
    wait_for_job(api, job["id"])
    assert metric(api, "imagegate_jobs", status="completed") == 1
    assert metric(api, "imagegate_jobs", status="pending_review") == 0


def test_innocent_compounds_pass(api: httpx.Client) -> None:
    for prompt in ("a glue gun on a workbench", "a butter knife on toast", "Scunthorpe at dusk"):
        response = api.post("/v1/jobs", json={"prompt": prompt})
        assert response.status_code == 202, (prompt, response.text)


def test_a_warn_term_is_allowed_with_a_warning(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={"prompt": "a car accident on a rainy street"})
    assert response.status_code == 202
    job = response.json()
    assert job["warnings"] and job["moderation"]["input"]["action"] == "warn"
    assert job["status"] == "queued"


# -- human review ------------------------------------------------------------------------------


@pytest.fixture
def strict(server_factory: Server, make_settings: SettingsFactory) -> httpx.Client:
    return server_factory(make_settings(admin_token=TOKEN, safety_review_warn=True))


def test_held_jobs_wait_for_a_reviewer_who_approves(strict: httpx.Client) -> None:
    job = strict.post("/v1/jobs", json={"prompt": "a dangerous cliff edge"}).json()
    assert job["status"] == "pending_review"
    queue = strict.get("/v1/admin/reviews", headers=ADMIN).json()
    assert [j["id"] for j in queue] == [job["id"]]
    assert strict.get(f"/status/{job['id']}").json()["status"] == "pending_review"
    approved = strict.post(f"/v1/admin/reviews/{job['id']}/approve", headers=ADMIN).json()
    assert approved["status"] == "queued" and approved["review"]["decision"] == "approved"
    assert approved["review"]["by"] == "admin" and approved["review"]["at"]
    assert wait_for_job(strict, job["id"])["status"] == "completed"
    again = strict.post(f"/v1/admin/reviews/{job['id']}/approve", headers=ADMIN)
    assert again.status_code == 409


def test_a_rejected_job_fails_with_its_reason(strict: httpx.Client) -> None:
    job = strict.post("/v1/jobs", json={"prompt": "an injury on the pitch"}).json()
    rejected = strict.post(f"/v1/admin/reviews/{job['id']}/reject", headers=ADMIN).json()
    assert rejected["status"] == "failed"
    assert rejected["error"]["code"] == "rejected_by_review"
    actions = [e["action"] for e in strict.get("/v1/admin/audit", headers=ADMIN).json()["data"]]
    assert actions == ["reject", "review"]


def test_admin_routes_need_the_token(
    strict: httpx.Client, server_factory: Server, settings: Settings
) -> None:
    assert strict.get("/v1/admin/reviews").status_code == 401
    wrong = strict.get("/v1/admin/reviews", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    closed = server_factory(settings, workers=0).get("/v1/admin/reviews", headers=ADMIN)
    assert closed.status_code == 401 and "IMAGEGATE_ADMIN_TOKEN" in closed.json()["detail"]


# -- checking without generating -------------------------------------------------------------


def test_moderations_answer_in_openai_shape(api: httpx.Client) -> None:
    body = api.post(
        "/v1/moderations", json={"input": ["a sunny meadow", "a k-n-i-f-e fight, stabbing"]}
    ).json()
    assert body["id"].startswith("modr-")
    calm, violent = body["results"]
    assert calm["flagged"] is False and calm["action"] == "allow"
    assert violent["flagged"] is True and violent["action"] == "block"
    assert set(violent["category_scores"]) >= {"violence", "gore", "sexual", "weapons", "hate"}
    assert any(violent["categories"].values()) and violent["reasons"]
    refused = api.post("/v1/moderations", json={"input": ""})
    assert refused.status_code == 422 and refused.json()["field"] == "input.0"


# -- the output gate ---------------------------------------------------------------------------


class FixedPicture:
    """A backend that returns one given picture: the model's place in the worker."""

    model_name = "fixed"

    def __init__(self, picture: Image) -> None:
        self.picture = picture

    def load(self) -> None:
        return None

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        on_step(StepInfo(1, 1))
        return [[self.picture] * request.n for request in batch]


def run_one_job(
    store: JobStore, settings: Settings, picture: Image, root: Path, *, hold: bool = False
) -> str:
    storage = LocalStorage(root)
    gate = OutputGate(OutputModerator().check, storage, hold_for_review=hold)
    leases = LeaseKeeper(store, 30)
    generator = FixedPicture(picture)
    context = WorkerContext(settings, store, storage, generator, leases, threading.Event(), gate)
    job = store.submit(spec(), "local")
    worker = Worker(context)
    assert worker.run_once()
    worker.flush()
    return job.id


def test_a_flagged_image_is_never_served(
    store: JobStore, settings: Settings, tmp_path: Path
) -> None:
    job_id = run_one_job(store, settings, skin_toned_figure(), tmp_path)
    job = store.get(job_id)
    assert job.status is Status.FAILED
    assert job.error is not None and job.error.code == "output_blocked"
    assert job.images == ()
    assert job.moderation is not None and job.moderation["output"][0]["flagged"] is True
    files = sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*.png"))
    assert files == ["quarantine"]  # kept for reviewers, nowhere the API serves from
    (entry,) = store.audit_entries(stage="output")
    assert entry["action"] == "block" and entry["job_id"] == job_id


@pytest.fixture
def held_image(
    store: JobStore, make_settings: SettingsFactory, server_factory: Server
) -> tuple[httpx.Client, str, Path]:
    """A job whose image the gate flagged, held for review (IMAGEGATE_OUTPUT_FLAGGED=review):
    run by a worker here, then seen through a real server on the same database and files."""
    settings = make_settings(admin_token=TOKEN, output_flagged="review")
    root = settings.data_dir / "images"
    job_id = run_one_job(store, settings, skin_toned_figure(), root, hold=True)
    return server_factory(settings, workers=0), job_id, root


def test_a_flagged_image_can_wait_for_a_reviewer_who_releases_it(
    held_image: tuple[httpx.Client, str, Path],
) -> None:
    api, job_id, root = held_image
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "pending_review" and job["images"] == []
    assert job["moderation"]["output"][0]["flagged"] is True
    assert job["moderation"]["output"][0]["categories"] == ["sexual"]
    assert api.get(f"/status/{job_id}").json()["result_url"] is None
    assert [j["id"] for j in api.get("/v1/admin/reviews", headers=ADMIN).json()] == [job_id]
    (held,) = api.get("/v1/admin/audit", headers=ADMIN).json()["data"]
    assert (held["stage"], held["action"], held["categories"]) == ("output", "review", ["sexual"])
    # the reviewer sees the withheld image; nobody else can
    withheld = api.get(f"/v1/admin/reviews/{job_id}/images/0", headers=ADMIN)
    assert withheld.status_code == 200 and withheld.headers["content-type"] == "image/png"
    assert api.get(f"/v1/admin/reviews/{job_id}/images/0").status_code == 401
    missing = api.get(f"/v1/admin/reviews/{job_id}/images/1", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["code"] == "image_not_found"
    approved = api.post(f"/v1/admin/reviews/{job_id}/approve", headers=ADMIN).json()
    assert approved["status"] == "completed" and approved["review"]["decision"] == "approved"
    (image,) = approved["images"]
    assert api.get(image["url"]).content == withheld.content
    assert api.get(f"/status/{job_id}").json()["result_url"]
    assert not list(root.glob("quarantine/**/*.png"))  # released, so no longer withheld
    again = api.post(f"/v1/admin/reviews/{job_id}/approve", headers=ADMIN)
    assert again.status_code == 409
    assert len(api.get(f"/v1/jobs/{job_id}").json()["images"]) == 1


def test_a_reviewer_can_reject_a_flagged_image(
    held_image: tuple[httpx.Client, str, Path],
) -> None:
    api, job_id, root = held_image
    rejected = api.post(f"/v1/admin/reviews/{job_id}/reject", headers=ADMIN).json()
    assert rejected["status"] == "failed" and rejected["images"] == []
    assert rejected["error"]["code"] == "rejected_by_review"
    assert len(list(root.glob("quarantine/**/*.png"))) == 1  # kept for the record
    actions = [e["action"] for e in api.get("/v1/admin/audit", headers=ADMIN).json()["data"]]
    assert actions == ["reject", "review"]


def test_two_reviewers_approving_at_once_release_the_images_once(
    held_image: tuple[httpx.Client, str, Path],
) -> None:
    api, job_id, root = held_image
    url = f"/v1/admin/reviews/{job_id}/approve"
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: api.post(url, headers=ADMIN), range(4)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200, 409, 409, 409], [a.json() for a in answers]
    (image,) = api.get(f"/v1/jobs/{job_id}").json()["images"]
    served = [p for p in root.rglob("*.png") if "quarantine" not in p.parts]
    assert len(served) == 1 and api.get(image["url"]).status_code == 200  # no stray copies


def test_holding_an_image_clears_the_last_attempt_and_a_cancel_wins(
    store: JobStore, tmp_path: Path
) -> None:
    from imagegate.jobs.models import ErrorInfo, GenerationMeta

    meta = GenerationMeta(1, "fixed", 10)
    store.submit(spec(), "local")
    (first,) = store.claim(lease_s=30)
    assert store.retry_later(first, ErrorInfo("flaky", "try again", retryable=True), 0.0)
    (second,) = store.claim(lease_s=30)
    assert store.hold_output(second, meta, {"output": [{"flagged": True}]})
    held = store.get(second.job.id)
    assert held.status is Status.PENDING_REVIEW and held.error is None and held.review is None
    store.submit(spec(), "local")
    (running,) = store.claim(lease_s=30)
    store.cancel(running.job.id)  # asked while it runs
    assert store.hold_output(running, meta, {"output": [{"flagged": True}]})
    assert store.get(running.job.id).status is Status.CANCELED


def test_approving_a_job_held_before_it_ran_never_completes_it(
    strict: httpx.Client, store: JobStore
) -> None:
    job = strict.post("/v1/jobs", json={"prompt": "a dangerous cliff edge"}).json()
    entry = AuditEntry(owner="local", prompt="", normalized_prompt="", stage="review",
                       action="approve", categories=(), reasons=())  # fmt: skip
    with pytest.raises(IllegalTransition):
        store.review(job["id"], True, "admin", entry, released=[])
    assert store.get(job["id"]).status is Status.PENDING_REVIEW


def test_a_clean_image_passes_the_gate_with_its_verdict(
    store: JobStore, settings: Settings, tmp_path: Path
) -> None:
    job = store.get(run_one_job(store, settings, landscape(), tmp_path))
    assert job.status is Status.COMPLETED and len(job.images) == 1
    assert job.moderation is not None and job.moderation["output"][0]["flagged"] is False


def test_the_semantic_stage_refuses_a_paraphrase_with_no_listed_term(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(safety_semantic=True), workers=0)
    eventually(lambda: api.get("/ready").status_code == 200, timeout_s=120)
    refused = api.post(
        "/v1/jobs", json={"prompt": "a man beating another man until he stops breathing"}
    )
    assert refused.status_code == 400
    assert refused.json()["reasons"] == ["semantic:violence", "language:en"]
    assert api.post("/v1/jobs", json={"prompt": "a sunny meadow with cows"}).status_code == 202


def test_the_gate_keeps_a_flagged_preview_back(tmp_path: Path) -> None:
    gate = OutputGate(OutputModerator().check, LocalStorage(tmp_path))
    assert gate.passes(landscape())
    assert not gate.passes(skin_toned_figure())
    assert OutputGate(None, LocalStorage(tmp_path)).passes(skin_toned_figure())
