"""End to end with real ``imagegate serve`` and ``imagegate worker`` processes.

Durability across restarts, kill -9 of a worker mid-job, and SIGTERM draining, on
SQLite (processes sharing one file) and on PostgreSQL.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually, wait_for_job
from tests.processes import imagegate_process, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_POLL_INTERVAL_S": "0.2",
    }


def pngs_on_disk(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["IMAGEGATE_DATA_DIR"]) / "images").rglob("*.png"))


def test_the_original_client_flow_against_a_served_process(
    env: dict[str, str], tmp_path: Path
) -> None:
    with serve(env, tmp_path / "serve.log", workers=1) as client:
        body = client.post("/generate", json={"prompt": "a lighthouse at dusk"}).json()
        assert body["status"] == "queued"

        def completed() -> dict[str, str] | None:
            status: dict[str, str] = client.get(body["check_url"]).json()
            return status if status["status"] == "completed" else None

        status = eventually(completed)
        png = client.get(status["result_url"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_jobs_queued_with_no_workers_complete_after_a_restart(
    env: dict[str, str], tmp_path: Path
) -> None:
    with serve(env, tmp_path / "api.log", workers=0) as client:
        ids = [
            client.post("/generate", json={"prompt": f"job {i}"}).json()["job_id"] for i in range(6)
        ]
        assert {client.get(f"/status/{i}").json()["status"] for i in ids} == {"queued"}
    with serve(env, tmp_path / "both.log", workers=2) as client:
        statuses = [wait_for_job(client, job_id)["status"] for job_id in ids]
    assert statuses == ["completed"] * 6
    assert len(pngs_on_disk(env)) == 6


def test_a_job_of_a_killed_worker_completes_once_on_another(
    env: dict[str, str], tmp_path: Path
) -> None:
    slow = env | {"IMAGEGATE_SKETCH_DELAY_MS": "60000", "IMAGEGATE_LEASE_S": "1"}
    with serve(env, tmp_path / "api.log", workers=0) as client:
        job_id = client.post("/v1/jobs", json={"prompt": "survivor", "steps": 60}).json()["id"]
        with imagegate_process(["worker"], slow, tmp_path / "w1.log") as doomed:
            eventually(lambda: _has_progress(client, job_id), timeout_s=30)
            doomed.signal(signal.SIGKILL)
            assert doomed.wait() == -signal.SIGKILL
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "generating"
        quick = env | {"IMAGEGATE_LEASE_S": "1"}
        with imagegate_process(["worker"], quick, tmp_path / "w2.log") as rescuer:
            job = wait_for_job(client, job_id, timeout_s=30)
            rescuer.signal(signal.SIGTERM)
            assert rescuer.wait() == 0
    assert job["status"] == "completed", job
    assert job["attempts"] == 2
    assert len(job["images"]) == 1
    assert len(pngs_on_disk(env)) == 1


def test_sigterm_lets_a_worker_finish_its_job(env: dict[str, str], tmp_path: Path) -> None:
    paced = env | {"IMAGEGATE_SKETCH_DELAY_MS": "1500"}
    with serve(env, tmp_path / "api.log", workers=0) as client:
        job_id = client.post("/v1/jobs", json={"prompt": "finish me"}).json()["id"]
        with imagegate_process(["worker"], paced, tmp_path / "w.log") as worker:
            wait_for_job(client, job_id, {"generating"})
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "completed"


def test_sigterm_past_the_grace_period_gives_the_job_back(
    env: dict[str, str], tmp_path: Path
) -> None:
    stuck = env | {"IMAGEGATE_SKETCH_DELAY_MS": "60000", "IMAGEGATE_DRAIN_GRACE_S": "0.5"}
    with serve(env, tmp_path / "api.log", workers=0) as client:
        job_id = client.post("/v1/jobs", json={"prompt": "too slow"}).json()["id"]
        with imagegate_process(["worker"], stuck, tmp_path / "w.log") as worker:
            wait_for_job(client, job_id, {"generating"})
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["attempts"]) == ("queued", 0)


def _has_progress(client: httpx.Client, job_id: str) -> bool:
    progress = client.get(f"/v1/jobs/{job_id}").json()["progress"]
    return bool(progress and progress["step"] > 0)
