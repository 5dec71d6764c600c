"""``imagegate worker --metrics-port``: metrics, liveness and readiness over real HTTP, and
the pod deletion cost written to a stand-in Kubernetes API over TLS on loopback."""

from __future__ import annotations

import json
import signal
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import trustme
from PIL.Image import Image

from imagegate.generators import GenerationRequest, StepCallback
from imagegate.jobs.store import JobStore
from imagegate.runtime import Runtime
from imagegate.settings import Settings
from imagegate.storage.local import LocalStorage
from imagegate.worker.deletion_cost import ANNOTATION, DeletionCostAnnotator, PodRef
from imagegate.worker.liveness import Liveness, stall_limit_s
from imagegate.worker.pool import WorkerPool
from tests.conftest import SettingsFactory
from tests.helpers import eventually, spec, wait_for_job
from tests.processes import Process, free_port, imagegate_process, serve
from tests.test_metrics import value

# -- probes in process: loading, running, draining -----------------------------------------------


@pytest.fixture
def runtime(make_settings: SettingsFactory) -> Iterator[Runtime]:
    runtime = Runtime(make_settings(output_moderation=False))
    yield runtime
    runtime.close(grace_s=1)


def test_probes_follow_the_worker_from_loading_to_draining(runtime: Runtime) -> None:
    port = runtime.start_probes("127.0.0.1", 0)
    probes = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
    # Before the model is loaded: not ready, and not yet alive (a startup probe waits).
    assert _probe(probes, "/readyz") == (503, {"status": "loading"})
    assert _probe(probes, "/healthz") == (503, {"status": "starting"})
    scraped = probes.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    assert value(scraped.text, "imagegate_queue_depth", model="sketch-v1") == 0
    runtime.start_workers(2)
    assert _probe(probes, "/readyz") == (200, {"status": "ok"})
    assert _probe(probes, "/healthz") == (200, {"status": "ok"})
    assert probes.get("/nothing-here").status_code == 404
    assert runtime.pool is not None
    runtime.pool.stop_claiming()  # SIGTERM: no longer ready, still alive while it drains
    assert _probe(probes, "/readyz") == (503, {"status": "draining"})
    assert _probe(probes, "/healthz") == (200, {"status": "draining"})


def _probe(client: httpx.Client, path: str) -> tuple[int, dict[str, Any]]:
    response = client.get(path)
    return response.status_code, response.json()


class Vanishing:
    """A backend whose call ends the worker thread itself (as an uncaught BaseException
    would): the pool must not look alive with no thread left to work."""

    model_name = "vanishing"

    def load(self) -> None:
        return None

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        raise SystemExit


# The thread ends on purpose, and pytest reports any thread that ends with an exception.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_thread_fails_liveness(store: JobStore, settings: Settings) -> None:
    pool = WorkerPool(settings, store, LocalStorage(settings.data_dir), Vanishing(), 1)
    pool.start()
    try:
        assert pool.health().ok
        store.submit(spec(), "local")
        health = eventually(lambda: (h := pool.health()).status == "dead" and h)
        assert not health.ok and list(health.workers) == ["worker-0"]
    finally:
        pool.stop(grace_s=1)


def test_the_stall_limit_allows_for_the_longest_quiet_stretch(
    make_settings: SettingsFactory,
) -> None:
    assert stall_limit_s(make_settings()) == 120  # twice the 60 s job timeout
    assert stall_limit_s(make_settings(lease_s=90)) == 180
    assert stall_limit_s(make_settings(worker_stall_s=5)) == 5
    # openai: one image can take a request and all its retries before it reports a step.
    assert stall_limit_s(make_settings(backend="openai", openai_timeout_s=100)) == 808
    ticks = iter([0.0, 4.0, 6.0])
    liveness = Liveness(stall_s=5, clock=lambda: next(ticks))
    liveness.register("worker-0")  # beat at 0
    assert liveness.stalled() == {}  # 4 s
    assert liveness.stalled() == {"worker-0": 6.0}


# -- a real worker process ----------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_POLL_INTERVAL_S": "0.2",
        "IMAGEGATE_OUTPUT_MODERATION": "false",
    }


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[tuple[Process, httpx.Client]]:
    """``imagegate worker --metrics-port``; yields it and a client of its probes once ready."""
    port = free_port()
    with imagegate_process(["worker", "--metrics-port", str(port)], env, log) as process:
        probes = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)

        def ready() -> bool:
            assert process.popen.poll() is None, process.output()
            try:
                return probes.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, timeout_s=60)
        try:
            yield process, probes
        finally:
            probes.close()


@pytest.mark.slow
def test_a_worker_process_exports_what_its_jobs_did(env: dict[str, str], tmp_path: Path) -> None:
    labels = {"model": "sketch-v1", "backend": "sketch"}
    ended = {"tenant": "local", "model": "sketch-v1", "status": "completed", "error_code": ""}
    with (
        serve(env, tmp_path / "api.log", workers=0) as api,
        worker_process(env, tmp_path / "worker.log") as (worker, probes),
    ):
        assert _probe(probes, "/healthz") == (200, {"status": "ok"})
        ids = [api.post("/v1/jobs", json={"prompt": p, "steps": 2}).json()["id"] for p in "ab"]
        assert [wait_for_job(api, i)["status"] for i in ids] == ["completed"] * 2
        scraped = probes.get("/metrics").text
        api_scraped = api.get("/metrics").text
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    for name in ("queue_wait", "generation", "job_latency"):
        assert value(scraped, f"imagegate_{name}_seconds_count", **labels) == 2
        assert value(api_scraped, f"imagegate_{name}_seconds_count", **labels) is None
    assert value(scraped, "imagegate_batch_size_sum", model="sketch-v1") == 2
    assert value(scraped, "imagegate_jobs_ended_total", **ended) == 2
    for process_scrape in (scraped, api_scraped):  # the database's figures, on both
        assert value(process_scrape, "imagegate_jobs", status="completed") == 2
        assert value(process_scrape, "imagegate_queue_depth", model="sketch-v1") == 0


@pytest.mark.slow
def test_liveness_fails_when_the_loop_stalls_not_while_a_long_job_progresses(
    env: dict[str, str], tmp_path: Path
) -> None:
    paced = env | {"IMAGEGATE_SKETCH_DELAY_MS": "3000", "IMAGEGATE_WORKER_STALL_S": "1"}
    with (
        serve(env, tmp_path / "api.log", workers=0) as api,
        worker_process(paced, tmp_path / "worker.log") as (_, probes),
    ):
        # 3 s over 20 steps: a step every 150 ms, each a sign of life.
        long_job = api.post("/v1/jobs", json={"prompt": "many steps", "steps": 20}).json()
        wait_for_job(api, long_job["id"], {"generating"})
        codes = set()
        while api.get(f"/v1/jobs/{long_job['id']}").json()["status"] == "generating":
            codes.add(probes.get("/healthz").status_code)
        assert codes == {200}
        # 3 s in one step: nothing from the loop for longer than the limit.
        stuck = api.post("/v1/jobs", json={"prompt": "one long step", "steps": 1}).json()
        health = eventually(lambda: (r := probes.get("/healthz")).status_code == 503 and r.json())
        assert health["status"] == "stalled" and health["workers"]["worker-0"] > 1
        assert wait_for_job(api, stuck["id"])["status"] == "completed"
        eventually(lambda: probes.get("/healthz").status_code == 200)


# -- the pod deletion cost, against a stand-in Kubernetes API -------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandInKubernetes:
    """The API server's pod PATCH, over TLS under a CA of its own; the service account's
    files (token, ca.crt, namespace) in a folder, as a pod has them mounted."""

    account: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    seen: list[Seen] = field(default_factory=list)
    failures_to_come: int = 0

    def __post_init__(self) -> None:
        self.account.mkdir(parents=True)
        self.ca.cert_pem.write_to_path(str(self.account / "ca.crt"))
        (self.account / "namespace").write_text("imagegate\n")
        self.rotate_token("first-token")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1").configure_cert(tls)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def rotate_token(self, token: str) -> None:
        (self.account / "token").write_text(token)

    def costs(self) -> list[str]:
        return [seen.body["metadata"]["annotations"][ANNOTATION] for seen in self.seen]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                headers = {k.lower(): v for k, v in self.headers.items()}
                stand_in.seen.append(Seen("PATCH", self.path, headers, body))
                failing = stand_in.failures_to_come > 0
                stand_in.failures_to_come -= failing
                answer = b'{"kind":"Status","code":500}' if failing else b'{"kind":"Pod"}'
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                return None

        return Handler


@pytest.fixture
def kubernetes(tmp_path: Path) -> Iterator[StandInKubernetes]:
    stand_in = StandInKubernetes(tmp_path / "serviceaccount")
    yield stand_in
    stand_in.stop()


def _annotator(kubernetes: StandInKubernetes, held: list[int]) -> DeletionCostAnnotator:
    pod = PodRef(kubernetes.url, "imagegate", "worker-7f9c", kubernetes.account)
    return DeletionCostAnnotator(pod, lambda: held[0])


def test_the_cost_is_written_when_it_changes_with_the_pods_own_token(
    kubernetes: StandInKubernetes,
) -> None:
    held = [0]
    annotator = _annotator(kubernetes, held)
    assert annotator.sync()
    assert annotator.sync()  # unchanged: nothing sent
    held[0] = 3
    assert annotator.sync()
    kubernetes.rotate_token("second-token")  # the kubelet rotates projected tokens
    held[0] = 0
    assert annotator.sync()
    assert [(s.method, s.path) for s in kubernetes.seen] == [
        ("PATCH", "/api/v1/namespaces/imagegate/pods/worker-7f9c")
    ] * 3
    assert {s.headers["content-type"] for s in kubernetes.seen} == {"application/merge-patch+json"}
    assert [s.headers["authorization"] for s in kubernetes.seen] == [
        "Bearer first-token",
        "Bearer first-token",
        "Bearer second-token",
    ]
    assert kubernetes.seen[1].body == {"metadata": {"annotations": {ANNOTATION: "300"}}}
    assert kubernetes.costs() == ["0", "300", "0"]


def test_a_failing_api_server_is_tried_again_and_never_raises(
    kubernetes: StandInKubernetes,
) -> None:
    held = [1]
    annotator = _annotator(kubernetes, held)
    kubernetes.failures_to_come = 2
    with structlog.testing.capture_logs() as logs:
        assert not annotator.sync()
        assert not annotator.sync()
        assert annotator.sync()
        kubernetes.stop()  # the API server away altogether
        held[0] = 2
        assert not annotator.sync()
    assert kubernetes.costs() == ["100"] * 3
    failures = [entry for entry in logs if entry["event"] == "deletion_cost.write_failed"]
    assert [entry["error"] for entry in failures[:2]] == ["HTTP 500", "HTTP 500"]
    assert len(failures) == 3
    assert "first-token" not in repr(logs)


def test_an_api_server_the_clusters_ca_did_not_sign_is_refused(
    kubernetes: StandInKubernetes, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "other-account"
    elsewhere.mkdir()
    trustme.CA().cert_pem.write_to_path(str(elsewhere / "ca.crt"))
    (elsewhere / "token").write_text("first-token")
    pod = PodRef(kubernetes.url, "imagegate", "worker-7f9c", elsewhere)
    assert not DeletionCostAnnotator(pod, lambda: 1).sync()
    assert kubernetes.seen == []


def test_the_pod_is_found_from_its_environment(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    account = tmp_path / "account"
    account.mkdir()
    (account / "namespace").write_text("team-a\n")
    for name in ("POD_NAME", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        PodRef.from_settings(make_settings(kubernetes_account_dir=account))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    pod = PodRef.from_settings(make_settings(kubernetes_account_dir=account))
    assert pod.api_url == "https://[fd00::1]:6443"
    assert pod.namespace == "team-a" and pod.name  # the hostname: a pod's own name
    monkeypatch.setenv("POD_NAME", "imagegate-worker-5d8f")  # the downward API's
    monkeypatch.setenv("POD_NAMESPACE", "gpu")
    pod = PodRef.from_settings(make_settings(kubernetes_account_dir=account))
    assert pod.path == "/api/v1/namespaces/gpu/pods/imagegate-worker-5d8f"


@pytest.mark.slow
def test_a_worker_pods_deletion_cost_follows_its_jobs(
    env: dict[str, str], tmp_path: Path, kubernetes: StandInKubernetes
) -> None:
    in_a_pod = env | {
        "IMAGEGATE_POD_DELETION_COST": "true",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": kubernetes.url.rsplit(":", 1)[1],
        "IMAGEGATE_KUBERNETES_ACCOUNT_DIR": str(kubernetes.account),
        "POD_NAME": "imagegate-worker-0",
        "POD_NAMESPACE": "gpu",
        "IMAGEGATE_SKETCH_DELAY_MS": "2000",
    }
    with (
        serve(env, tmp_path / "api.log", workers=0) as api,
        worker_process(in_a_pod, tmp_path / "worker.log") as (worker, _),
    ):
        eventually(lambda: kubernetes.costs() == ["0"])  # idle, from the start
        job = api.post("/v1/jobs", json={"prompt": "keep me", "steps": 4}).json()
        eventually(lambda: kubernetes.costs() == ["0", "100"], timeout_s=10)
        assert wait_for_job(api, job["id"])["status"] == "completed"
        eventually(lambda: kubernetes.costs() == ["0", "100", "0"], timeout_s=10)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    assert {s.path for s in kubernetes.seen} == {"/api/v1/namespaces/gpu/pods/imagegate-worker-0"}
