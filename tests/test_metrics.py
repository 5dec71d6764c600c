"""Prometheus metrics: the queue read from the database, what workers observe as jobs end,
output moderation, GPU memory, HTTP requests, and the Grafana dashboard over them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from imagegate.jobs.queue_stats import queue_stats, waiting_jobs_query
from imagegate.jobs.store import JobStore
from imagegate.jobs.tables import jobs
from imagegate.metrics import exposition
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import spec, wait_for_job
from tests.test_output_moderation import landscape, skin_toned_figure
from tests.test_safety_api import run_one_job

Server = Callable[..., httpx.Client]
DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "imagegate.json"
MODEL = "sketch-v1"


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def series_names(body: str) -> set[str]:
    """The names a query can use: every family's (a labelled counter may have no samples
    yet, and is still exported), with the suffixes of its type."""
    names = set()
    for family in text_string_to_metric_families(body):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def value(body: str, name: str, **labels: str) -> float | None:
    return samples(body).get((name, frozenset(labels.items())))


def counted(name: str, **labels: str) -> float:
    """This process's registry (the in-process servers' counters and histograms)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the queue, read at each scrape -------------------------------------------------------------


def test_queue_depth_and_oldest_age_by_model(store: JobStore) -> None:
    assert [(s.model, s.depth, s.oldest_age_s) for s in queue_stats(store.engine, MODEL)] == [
        (MODEL, 0, 0.0)  # reported when empty: its series never goes missing
    ]
    first = store.submit(spec("first"), "local")
    time.sleep(0.05)
    for prompt in ("second", "third"):
        store.submit(spec(prompt), "local")
    # A job records its model when it runs: one that ran before, on another model.
    with store.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == first.id).values(model="other-model"))
    stats = {s.model: s for s in queue_stats(store.engine, MODEL)}
    assert {m: s.depth for m, s in stats.items()} == {MODEL: 2, "other-model": 1}
    assert stats["other-model"].oldest_age_s > stats[MODEL].oldest_age_s > 0
    claimed = store.claim(30, 3)
    assert len(claimed) == 3
    assert [s.depth for s in queue_stats(store.engine, MODEL)] == [0]


def test_a_follower_of_an_identical_job_is_not_queue_depth(
    server_factory: Server, settings: Settings
) -> None:
    api = server_factory(settings, workers=0)
    body = {"prompt": "the same lighthouse", "seed": 7, "width": 64, "height": 64}
    answers = [api.post("/v1/jobs", json=body) for _ in range(2)]
    assert "collapsed" in answers[1].headers["Cache-Status"]
    scraped = api.get("/metrics").text
    assert value(scraped, "imagegate_jobs", status="queued") == 2
    assert value(scraped, "imagegate_queue_depth", model=MODEL) == 1
    age = value(scraped, "imagegate_queue_oldest_age_seconds", model=MODEL)
    assert age is not None and 0 < age < 60


@pytest.mark.postgres
def test_the_queue_query_reads_the_queue_index_on_postgresql(
    store: JobStore, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's plan")
    with store.engine.begin() as conn:  # a table that has held many jobs, a few queued
        conn.execute(text(FILL), {"n": 50_000})
        conn.exec_driver_sql("ANALYZE jobs")
    compiled = waiting_jobs_query().compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "ix_jobs_queue" in plan or "ix_jobs_waiting" in plan, plan  # a queue index
    assert "Seq Scan" not in plan, plan
    assert [s.depth for s in queue_stats(store.engine, MODEL)] == [500]


FILL = """
INSERT INTO jobs (id, owner, status, prompt, full_prompt, width, height, steps, guidance,
                  seed, n, created_at, run_after)
SELECT md5(i::text), 'local', CASE WHEN i % 100 = 0 THEN 'queued' ELSE 'completed' END,
       'p', 'p', 64, 64, 4, 7.5, i, 1, now() - i * interval '1 second', now()
FROM generate_series(1, :n) AS i
"""


# -- what workers observe -----------------------------------------------------------------------


def test_completed_jobs_feed_the_histograms_and_outcomes(
    server_factory: Server, settings: Settings
) -> None:
    labels = {"model": MODEL, "backend": "sketch"}
    ended = {"tenant": "local", "model": MODEL, "status": "completed", "error_code": ""}
    before = {
        "wait": counted("imagegate_queue_wait_seconds_count", **labels),
        "gen": counted("imagegate_generation_seconds_count", **labels),
        "gen_sum": counted("imagegate_generation_seconds_sum", **labels),
        "e2e": counted("imagegate_job_latency_seconds_count", **labels),
        "e2e_sum": counted("imagegate_job_latency_seconds_sum", **labels),
        "batch_jobs": counted("imagegate_batch_size_sum", model=MODEL),
        "ended": counted("imagegate_jobs_ended_total", **ended),
        "allowed": counted("imagegate_output_moderation_decisions_total", action="allow"),
    }
    api = server_factory(settings)
    for prompt in ("a harbour", "a hill"):
        job = api.post("/v1/jobs", json={"prompt": prompt, "steps": 2}).json()
        assert wait_for_job(api, job["id"])["status"] == "completed"
    assert counted("imagegate_queue_wait_seconds_count", **labels) == before["wait"] + 2
    assert counted("imagegate_generation_seconds_count", **labels) == before["gen"] + 2
    assert counted("imagegate_job_latency_seconds_count", **labels) == before["e2e"] + 2
    generation = counted("imagegate_generation_seconds_sum", **labels) - before["gen_sum"]
    latency = counted("imagegate_job_latency_seconds_sum", **labels) - before["e2e_sum"]
    assert 0 < generation <= latency < 60
    assert counted("imagegate_batch_size_sum", model=MODEL) == before["batch_jobs"] + 2
    assert counted("imagegate_jobs_ended_total", **ended) == before["ended"] + 2
    allowed = counted("imagegate_output_moderation_decisions_total", action="allow")
    assert allowed == before["allowed"] + 2
    scraped = api.get("/metrics").text  # the same registry, over HTTP
    assert value(scraped, "imagegate_jobs_ended_total", **ended) == before["ended"] + 2


def test_a_failed_job_is_counted_with_its_error_code_and_kept_out_of_the_histograms(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    settings = make_settings(job_timeout_s=0.3, sketch_delay_ms=3000)
    failed = {"tenant": "local", "model": MODEL, "status": "failed", "error_code": "timeout"}
    labels = {"model": MODEL, "backend": "sketch"}
    before = counted("imagegate_jobs_ended_total", **failed)
    completed_before = counted("imagegate_job_latency_seconds_count", **labels)
    api = server_factory(settings)
    job = api.post("/v1/jobs", json={"prompt": "too slow", "steps": 10}).json()
    finished = wait_for_job(api, job["id"])
    assert finished["status"] == "failed" and finished["error"]["code"] == "timeout"
    assert counted("imagegate_jobs_ended_total", **failed) == before + 1
    assert counted("imagegate_job_latency_seconds_count", **labels) == completed_before


def test_output_moderation_decisions_are_counted(
    store: JobStore, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    def decisions() -> dict[str, float]:
        actions = ("allow", "block", "review")
        return {
            a: counted("imagegate_output_moderation_decisions_total", action=a) for a in actions
        }

    before = decisions()
    settings = make_settings()
    run_one_job(store, settings, landscape(), tmp_path / "a")
    run_one_job(store, settings, skin_toned_figure(), tmp_path / "b")
    run_one_job(store, settings, skin_toned_figure(), tmp_path / "c", hold=True)
    after = decisions()
    assert {a: after[a] - before[a] for a in after} == {"allow": 1, "block": 1, "review": 1}


# -- GPU memory, only where CUDA is in use ------------------------------------------------------


class StandInCuda:
    """torch.cuda's few calls the scrape makes, for a process with two GPUs in use."""

    def __init__(self, initialised: bool = True) -> None:
        self.initialised = initialised

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self.initialised

    def device_count(self) -> int:
        return 2

    def memory_reserved(self, index: int) -> int:
        return (index + 1) * 2**30

    def memory_allocated(self, index: int) -> int:
        return (index + 1) * 2**29

    def max_memory_allocated(self, index: int) -> int:
        return (index + 1) * 3 * 2**28

    def get_device_properties(self, index: int) -> Any:
        return SimpleNamespace(total_memory=80 * 2**30)


def test_gpu_memory_is_exported_where_cuda_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=StandInCuda()))
    body = exposition(None).decode()
    assert value(body, "imagegate_gpu_memory_bytes", device="cuda:1") == 2 * 2**30
    assert value(body, "imagegate_gpu_memory_allocated_bytes", device="cuda:0") == 2**29
    assert value(body, "imagegate_gpu_memory_peak_allocated_bytes", device="cuda:1") == 6 * 2**28
    assert value(body, "imagegate_gpu_memory_total_bytes", device="cuda:0") == 80 * 2**30
    # CUDA not initialised (a CPU worker with torch imported): no context made for a scrape.
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=StandInCuda(False)))
    assert "imagegate_gpu_memory" not in exposition(None).decode()


def test_a_scrape_never_imports_torch() -> None:
    probe = (
        "import sys; from imagegate.metrics import exposition; body = exposition(None); "
        "print('torch' in sys.modules, b'imagegate_gpu' in body)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    with_torch = "import torch; " + probe  # the CPU build: imported, but no CUDA
    out = subprocess.run(
        [sys.executable, "-c", with_torch], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"]


def test_without_the_database_a_scrape_still_has_the_process_figures() -> None:
    body = exposition(None).decode()
    assert "imagegate_jobs_ended_total" in body or "imagegate_jobs_ended" in body
    assert "imagegate_queue_depth" not in body and "imagegate_jobs{" not in body


# -- HTTP requests ------------------------------------------------------------------------------


def test_requests_are_counted_and_timed_by_route_template(
    server_factory: Server, settings: Settings
) -> None:
    route = {"route": "/v1/jobs/{job_id}", "method": "GET"}
    before = counted("imagegate_http_requests_total", **route, status="200")
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    missing = counted("imagegate_http_requests_total", **unmatched)
    timed = counted("imagegate_http_request_duration_seconds_count", **route)
    api = server_factory(settings, workers=0)
    job_id = api.post("/v1/jobs", json={"prompt": "counted"}).json()["id"]
    for _ in range(3):
        assert api.get(f"/v1/jobs/{job_id}").status_code == 200
    assert api.get("/no/such/route").status_code == 404
    assert counted("imagegate_http_requests_total", **route, status="200") == before + 3
    assert counted("imagegate_http_request_duration_seconds_count", **route) == timed + 3
    assert counted("imagegate_http_requests_total", **unmatched) == missing + 1


# -- the dashboard -------------------------------------------------------------------------------


def dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, item in node.items():
            if key in ("expr", "definition") and isinstance(item, str):
                yield item
            else:
                yield from dashboard_exprs(item)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_the_dashboard_is_a_grafana_model_over_a_prometheus_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_every_metric_the_dashboard_queries_is_exported(
    server_factory: Server, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a running app that has run a job: the names its queries use are real."""
    api = server_factory(make_settings())
    job = api.post("/v1/jobs", json={"prompt": "for the dashboard", "seed": 3}).json()
    assert wait_for_job(api, job["id"])["status"] == "completed"
    api.post("/v1/jobs", json={"prompt": "for the dashboard", "seed": 3})  # a cache hit
    scrapes = [api.get("/metrics").text]
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=StandInCuda()))
    scrapes.append(api.get("/metrics").text)  # a worker on a GPU
    exported = {name for scrape in scrapes for name in series_names(scrape)}
    exprs = list(dashboard_exprs(json.loads(DASHBOARD.read_text())))
    used = {name for expr in exprs for name in re.findall(r"\bimagegate_[a-z0-9_]+", expr)}
    assert len(used) >= 20
    assert used - exported == set()
