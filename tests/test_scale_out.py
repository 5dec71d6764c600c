"""The scale-out acceptance test: ImageGate as a fleet of real processes on loopback.

PostgreSQL (a fresh database), Redis (a database number of its own, flushed), moto's S3
server, two ``imagegate serve --workers 0`` replicas and three ``imagegate worker``
processes, all started with the same settings. Three tenants submit 1,000 jobs across
both APIs while one API replica is killed with SIGKILL and started again on its port, and
one worker is killed with SIGKILL while it holds jobs. Then:

- every job the clients were given completed, exactly once (the tenant-scoped listings
  hold exactly those jobs, and exactly one worker recorded each result);
- images are the same PNG bytes from either API;
- event streams on one API follow jobs submitted to the other and run by any worker, live;
- another tenant's job id is a 404;
- a tenant's rate limit holds across both APIs at once: its counter is in Redis.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import _fresh_postgres_database, _postgres_admin_url
from tests.helpers import eventually
from tests.processes import IMAGEGATE, Process, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 1000
TENANTS = ("acme", "globex", "initech")
LIMITED, LIMITED_RPM, LIMITED_TRIES = "umbrella", 40, 60  # the rate-limited fourth tenant
SUBMITTERS = 12  # client threads submitting at once
WORKERS, CONCURRENCY = 3, 3
KEEPALIVE_S = 60  # an event stream that missed NOTIFY would re-read only after this long
ADMIN_TOKEN = "scale-out-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PNG = b"\x89PNG\r\n\x1a\n"
PROBLEM = "application/problem+json"
REDIS_ENV, REDIS_DB = "IMAGEGATE_TEST_REDIS_URL", 11
MOTO = str(Path(sys.executable).parent / "moto_server")
SMALL = {"width": 64, "height": 64, "steps": 2}
UNFINISHED = ("queued", "generating", "pending_review")


# -- the services: skipped locally without them, required under CI ---------------------------


def _missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} under CI: the scale-out test is required there")
    pytest.skip(f"the scale-out test needs {what}")


def _redis_url() -> str:
    url = os.environ.get(REDIS_ENV) or _missing(f"{REDIS_ENV} (redis://127.0.0.1:6379/0)")
    return urlsplit(url)._replace(path=f"/{REDIS_DB}").geturl()


@contextmanager
def _flushed_redis(url: str) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextmanager
def _moto_bucket(logs: Path) -> Iterator[dict[str, str]]:
    """moto's S3 server as a process, with an empty bucket; yields the storage settings."""
    if not Path(MOTO).exists():
        _missing("moto[server] installed (pip install -e '.[test]')")
    import boto3

    port = free_port()
    moto = Process(["-H", "127.0.0.1", "-p", str(port)], {}, logs / "moto.log", MOTO)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(endpoint, moto), timeout_s=30)
        bucket = f"imagegate-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=bucket)
        yield {
            "IMAGEGATE_STORAGE_URL": f"s3://{bucket}/images",
            "IMAGEGATE_S3_ENDPOINT_URL": endpoint,
            "IMAGEGATE_S3_REGION": "us-east-1",
            "IMAGEGATE_S3_ACCESS_KEY_ID": "testing",
            "IMAGEGATE_S3_SECRET_ACCESS_KEY": "testing",
        }
    finally:
        moto.stop()


def _answers(url: str, process: Process) -> bool:
    assert process.popen.poll() is None, process.output()[-2000:]
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True


# -- the processes ----------------------------------------------------------------------------


class Replica:
    """One ``imagegate serve --workers 0`` on a fixed port, so it can be killed and come
    back where its clients expect it."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name, self.env, self.log = name, env, logs / f"{name}.log"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.process: Process | None = None
        self.lives = 0  # 1 once started, 2 after a restart

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        self.process = Process(["serve", "--port", port, "--workers", "0"], self.env, self.log)
        self.lives += 1  # whatever answers on this port from now on is this life
        eventually(self._ready, timeout_s=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGKILL)
        assert self.process.wait() == -signal.SIGKILL

    def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.popen.poll() is None, f"{self.name} exited:\n{self.tail()}"
        try:
            return self.client.get("/ready").status_code == 200
        except httpx.TransportError:
            return False

    def tail(self) -> str:
        return _tail(self.log)


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Fleet:
    env: dict[str, str]
    logs: Path
    apis: list[Replica]
    workers: list[Process] = field(default_factory=list)

    def start_workers(self) -> None:
        for index in range(WORKERS):
            args = ["worker", "--concurrency", str(CONCURRENCY)]
            log = self.logs / f"worker-{index}.log"
            self.workers.append(Process(args, self.env, log))

    def worker_lines(self, index: int) -> list[dict[str, Any]]:
        """The JSON log lines of one worker (its console notes are not JSON)."""
        lines = []
        for raw in self.workers[index].output().splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
        return lines

    @contextmanager
    def explained(self) -> Iterator[None]:
        """On failure, print the tail of every process's log (pytest shows it)."""
        try:
            yield
        except BaseException:
            for log in sorted(self.logs.glob("*.log")):
                print(f"\n===== {log.name} (tail) =====\n{_tail(log)}")
            raise


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    admin_url = _postgres_admin_url() or _missing("IMAGEGATE_TEST_DATABASE_URL")
    redis_url = _redis_url()
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        database = stack.enter_context(contextmanager(_fresh_postgres_database)(admin_url))
        redis = stack.enter_context(_flushed_redis(redis_url))
        s3 = stack.enter_context(_moto_bucket(logs))
        env = _fleet_env(database, redis, tmp_path / "data") | s3
        _migrate(env, logs)
        fleet = Fleet(env, logs, [Replica(name, env, logs) for name in ("api-a", "api-b")])
        stack.callback(_stop_all, fleet)
        for api in fleet.apis:
            api.start()
        yield fleet


def _fleet_env(database: str, redis: str, data_dir: Path) -> dict[str, str]:
    """The settings every process of the fleet shares."""
    return {
        "IMAGEGATE_DATABASE_URL": database,
        "IMAGEGATE_REDIS_URL": redis,
        "IMAGEGATE_DATA_DIR": str(data_dir),
        "IMAGEGATE_SECRET_KEY": "scale-out-secret-key-0123456789abcdef",
        "IMAGEGATE_AUTH": "required",
        "IMAGEGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "IMAGEGATE_AUTO_MIGRATE": "false",  # the one-shot below migrated, as in a deployment
        "IMAGEGATE_LEASE_S": "3",  # a killed worker's jobs are claimed again 3 s on
        "IMAGEGATE_POLL_INTERVAL_S": "0.2",
        "IMAGEGATE_SKETCH_DELAY_MS": "150",  # so kills land mid-job
        "IMAGEGATE_OUTPUT_MODERATION": "false",  # NudeNet has its own tests; here it is time
        "IMAGEGATE_SSE_KEEPALIVE_S": str(KEEPALIVE_S),
        "IMAGEGATE_LOG_JSON": "true",  # which worker recorded which job, read from the logs
        "PYTHONUNBUFFERED": "1",  # a SIGKILLed process's last lines reach its log
    }


def _migrate(env: dict[str, str], logs: Path) -> None:
    migration = Process(["db", "upgrade"], env, logs / "migrate.log", IMAGEGATE)
    assert migration.wait(60) == 0, migration.output()


def _stop_all(fleet: Fleet) -> None:
    for process in [*fleet.workers, *(api.process for api in fleet.apis if api.process)]:
        process.stop()
    for api in fleet.apis:
        api.client.close()


# -- the clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    index: int
    tenant: str
    job_id: str
    api: str  # the replica that answered
    life: int  # which life of that replica answered
    tries: int
    replayed: bool  # a retry that got the job its first try had made


class Submitters:
    """Clients that submit job ``index`` to one API and, when no answer comes (a killed
    replica), retry with the same Idempotency-Key on the other or after the restart.

    The last jobs wait for ``restarted``, so the restarted replica is sure to take some
    however long its start takes on a slow machine."""

    HELD_BACK = int(JOBS * 0.85)  # jobs from this index on are sent after the restart

    def __init__(self, fleet: Fleet, keys: dict[str, dict[str, str]]) -> None:
        self.fleet, self.keys = fleet, keys
        self.done = 0
        self.restarted = threading.Event()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def submit(self, index: int) -> Submitted:
        if index >= self.HELD_BACK:
            assert self.restarted.wait(300), "the API replica was never restarted"
        tenant = TENANTS[index % len(TENANTS)]
        # Unseeded, so never answered from the cache. (No numbers in prompts: the term
        # lists rightly refuse some, such as 88.)
        body = {"prompt": f"a lighthouse at dusk for {tenant}", **SMALL}
        headers = self.keys[tenant] | {"Idempotency-Key": f"scale-out-{index}"}
        deadline, tries, last = time.monotonic() + 120, 0, "nothing"
        while time.monotonic() < deadline:
            api = self.fleet.apis[(index + tries) % 2]
            life, tries = api.lives, tries + 1
            try:
                answer = self._client(api).post("/v1/jobs", json=body, headers=headers)
            except httpx.TransportError as exc:  # the replica died under us, or is down
                last = repr(exc)
                time.sleep(0.2)
                continue
            assert answer.status_code == 202, f"job {index} on {api.name}: {answer.text}"
            with self._lock:
                self.done += 1
            replayed = answer.headers.get("Idempotent-Replayed") == "true"
            return Submitted(index, tenant, answer.json()["id"], api.name, life, tries, replayed)
        raise AssertionError(f"job {index} was never accepted after {tries} tries: {last}")

    def _client(self, api: Replica) -> httpx.Client:
        clients: dict[str, httpx.Client] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if api.name not in clients:
            clients[api.name] = httpx.Client(base_url=api.url, timeout=30)
            with self._lock:
                self._clients.append(clients[api.name])
        return clients[api.name]

    def close(self) -> None:
        for client in self._clients:
            client.close()


@dataclass
class Stream:
    """One SSE stream, read in a thread: every event with the time it arrived."""

    url: str
    job_id: str
    headers: dict[str, str]
    tenant: str = ""
    submitted_to: str = ""
    events: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.read, daemon=True)
        thread.start()
        return thread

    def read(self) -> None:
        try:
            timeout = httpx.Timeout(10, read=KEEPALIVE_S * 2)
            with httpx.Client(base_url=self.url, timeout=timeout) as client:
                path = f"/v1/jobs/{self.job_id}/events"
                with client.stream("GET", path, headers=self.headers) as response:
                    assert response.status_code == 200, response.read()
                    self._parse(response.iter_lines())
        except BaseException as exc:
            self.error = exc

    def _parse(self, lines: Iterator[str]) -> None:
        event: dict[str, str] = {}
        for line in lines:
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value
            elif not line and "event" in event:
                self.events.append((event["event"], json.loads(event["data"]), time.time()))
                self.opened.set()
                event = {}

    def types(self) -> list[str]:
        return [name for name, _, _ in self.events if name != "progress"]


def read_stream(url: str, job_id: str, headers: dict[str, str]) -> Stream:
    stream = Stream(url, job_id, headers)
    stream.read()
    assert stream.error is None, f"stream of {job_id} on {url}: {stream.error!r}"
    return stream


# -- the test ---------------------------------------------------------------------------------


def test_two_apis_and_three_workers_complete_every_job_once_through_kills(fleet: Fleet) -> None:
    with fleet.explained():
        a, b = fleet.apis
        keys = {tenant: _key(a, tenant) for tenant in (*TENANTS, LIMITED)}
        limited = _limit(fleet, keys[LIMITED])
        started = time.monotonic()
        live, threads = _streams_across_apis(fleet, keys)
        fleet.start_workers()
        workers_started = time.monotonic()
        submitters = Submitters(fleet, keys)
        with ThreadPoolExecutor(SUBMITTERS) as pool, closing(submitters):
            futures = [pool.submit(submitters.submit, index) for index in range(JOBS)]
            _join(threads)
            try:
                downtime_s = _kill_and_restart_api(a, lambda: submitters.done >= JOBS * 0.3)
            finally:
                submitters.restarted.set()
            in_flight = _kill_a_worker_mid_job(fleet)
            submitted = [future.result() for future in futures]
            limited_answers = list(pool.map(limited, range(LIMITED_TRIES)))
        accepted_at = time.monotonic()
        admitted = _check_the_rate_limit(limited_answers)
        expected = len(submitted) + len(live) + len(admitted)
        _wait_for_all(b, expected)
        finished = time.monotonic()

        jobs = _check_listings(fleet, keys, submitted, live)
        _check_the_api_kill_was_survived(submitted)
        jobs |= _admitted_jobs(b, keys[LIMITED], admitted)
        recorded_by = _check_each_recorded_once(fleet, jobs, in_flight)
        latency_s = _check_live_streams(live, jobs)
        _check_streams_of_every_worker(fleet, keys, submitted, recorded_by)
        _check_images_from_both_apis(fleet, jobs)
        _check_another_tenants_job_is_404(fleet, keys, submitted)
        assert not list(Path(fleet.env["IMAGEGATE_DATA_DIR"]).rglob("*.png")), "PNGs on disk"
        timings = [started, workers_started, accepted_at, finished, downtime_s, latency_s]
        _report(submitted, *timings)


def _key(api: Replica, tenant: str) -> dict[str, str]:
    body = {"tenant": tenant, "name": "scale-out", "scopes": ["jobs:write", "jobs:read"]}
    made = api.client.post("/v1/admin/keys", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def _limit(fleet: Fleet, key: dict[str, str]) -> Callable[[int], tuple[str, httpx.Response]]:
    """Give the fourth tenant a per-minute limit (through API B); returns a submitter of its
    jobs that alternates between the APIs, a new connection each time."""
    limits = {"limits": {"requests_per_minute": LIMITED_RPM}}
    answer = fleet.apis[1].client.put(f"/v1/admin/tenants/{LIMITED}", json=limits, headers=ADMIN)
    assert answer.status_code == 200, answer.text

    def submit(index: int) -> tuple[str, httpx.Response]:
        api = fleet.apis[index % 2]
        body = {"prompt": "a rate-limited harbour", **SMALL}
        return api.name, httpx.post(f"{api.url}/v1/jobs", json=body, headers=key, timeout=30)

    return submit


def _streams_across_apis(
    fleet: Fleet, keys: dict[str, dict[str, str]]
) -> tuple[list[Stream], list[threading.Thread]]:
    """Before any worker exists: jobs submitted to one API, each followed on the other."""
    streams, threads = [], []
    for tenant in TENANTS:
        for to, on in [(0, 1), (1, 0), (0, 1), (1, 0)]:
            source, follower = fleet.apis[to], fleet.apis[on]
            body = {"prompt": f"a watched harbour for {tenant}", **SMALL}
            answer = source.client.post("/v1/jobs", json=body, headers=keys[tenant])
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]
            stream = Stream(follower.url, job_id, keys[tenant], tenant, source.name)
            threads.append(stream.start())
            streams.append(stream)
    for stream in streams:
        assert stream.opened.wait(30), f"no event on {stream.url} for {stream.job_id}"
        assert stream.error is None, repr(stream.error)
        assert stream.types() == ["queued"], stream.events  # no worker is running yet
    return streams, threads


def _join(threads: list[threading.Thread], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
        assert not thread.is_alive(), f"an event stream did not end within {timeout_s} s"


def _kill_and_restart_api(api: Replica, when: Callable[[], bool]) -> float:
    """SIGKILL ``api`` once ``when`` holds, and start it again on its port; returns how
    long it was away."""
    eventually(when, timeout_s=120)
    api.kill()
    killed = time.monotonic()
    api.start()  # on the same port: its clients come back to it
    return time.monotonic() - killed


def _kill_a_worker_mid_job(fleet: Fleet) -> set[str]:
    """SIGKILL worker 0 once it has recorded some jobs and holds others; returns the jobs it
    held (claimed, never recorded), read from its log after it died."""

    def holding() -> bool:
        claimed, recorded = _claims(fleet.worker_lines(0))
        return len(recorded) >= 20 and bool(claimed - recorded)

    eventually(holding, timeout_s=180, every_s=0.02)
    doomed = fleet.workers[0]
    doomed.signal(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL
    claimed, recorded = _claims(fleet.worker_lines(0))
    assert claimed - recorded, "the killed worker held no job"
    return claimed - recorded


def _claims(lines: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The jobs a worker claimed, and those it recorded or gave up (a lost lease)."""
    claimed = {line["job_id"] for line in lines if line["event"] == "job.claimed"}
    ended = {"job.completed", "job.lease_lost", "job.failed", "job.released"}
    return claimed, {line["job_id"] for line in lines if line["event"] in ended}


def _check_the_rate_limit(answers: list[tuple[str, httpx.Response]]) -> list[str]:
    """Half the tries went to each API, fewer than the limit: only a counter that both
    share refuses any. Returns the admitted jobs."""
    admitted = [r.json()["id"] for _, r in answers if r.status_code == 202]
    refused = [(api, r) for api, r in answers if r.status_code != 202]
    assert len(admitted) == LIMITED_RPM, Counter((api, r.status_code) for api, r in answers)
    assert len(refused) == LIMITED_TRIES - LIMITED_RPM
    for _, answer in refused:
        assert answer.status_code == 429, answer.text
        assert answer.headers["content-type"] == PROBLEM
        problem = answer.json()
        assert problem["code"] == "rate_limited", problem
        assert problem["policy"] == "tenant.requests_per_minute", problem
        assert int(answer.headers["Retry-After"]) >= 1
    assert {api for api, _ in refused} == {"api-a", "api-b"}, "one API refused nothing"
    return admitted


def _admitted_jobs(
    api: Replica, key: dict[str, str], admitted: list[str]
) -> dict[str, dict[str, Any]]:
    """The rate-limited tenant's jobs, read with its key once its limit is lifted."""
    lifted = api.client.put(f"/v1/admin/tenants/{LIMITED}", json={"limits": {}}, headers=ADMIN)
    assert lifted.status_code == 200, lifted.text

    def read(job_id: str) -> dict[str, Any] | None:
        answer = api.client.get(f"/v1/jobs/{job_id}", headers=key)
        assert answer.status_code in (200, 429), answer.text
        return answer.json() if answer.status_code == 200 else None  # until caches expire

    jobs = {job_id: eventually(partial(read, job_id), timeout_s=10) for job_id in admitted}
    assert {job["status"] for job in jobs.values()} == {"completed"}, jobs
    return jobs


def _job_counts(api: Replica) -> dict[str, float]:
    """Jobs by status, read from the database by ``/metrics``."""
    text = api.client.get("/metrics").text
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "imagegate_jobs"
        for sample in family.samples
    }


def _wait_for_all(api: Replica, expected: int) -> None:
    """Until no job is left unfinished; then exactly the accepted jobs have completed."""
    counts: dict[str, float] = {}

    def finished() -> bool:
        nonlocal counts
        counts = _job_counts(api)
        assert not counts.get("failed"), f"jobs failed: {counts}"
        return not any(counts.get(status) for status in UNFINISHED)

    try:
        eventually(finished, timeout_s=300, every_s=1)
    except AssertionError as exc:
        raise AssertionError(f"{expected} jobs were accepted; by status now: {counts}") from exc
    assert counts.get("completed") == expected, (
        f"{expected} jobs were accepted, but by status {counts} (more: a duplicate)"
    )


def _check_listings(
    fleet: Fleet, keys: dict[str, dict[str, str]], submitted: list[Submitted], live: list[Stream]
) -> dict[str, dict[str, Any]]:
    """Each tenant's listing, on either API, holds exactly the jobs its clients were given,
    each completed with one image. Returns the jobs by id."""
    assert len({s.job_id for s in submitted}) == JOBS, "two submissions were given one job"
    jobs: dict[str, dict[str, Any]] = {}
    for tenant in TENANTS:
        given = {s.job_id for s in submitted if s.tenant == tenant}
        given |= {s.job_id for s in live if s.tenant == tenant}
        for api in fleet.apis:
            listed = _list_all(api, keys[tenant])
            ids = [job["id"] for job in listed]
            assert len(ids) == len(set(ids)), f"{tenant} on {api.name}: a job listed twice"
            assert set(ids) == given, _difference(tenant, api.name, set(ids), given)
            jobs |= {job["id"]: job for job in listed}
    for job in jobs.values():
        assert job["status"] == "completed" and len(job["images"]) == 1, job
    return jobs


def _list_all(api: Replica, key: dict[str, str]) -> list[dict[str, Any]]:
    listed, cursor = [], None
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/v1/jobs", params=params, headers=key)
        assert page.status_code == 200, page.text
        listed += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return listed


def _difference(tenant: str, api: str, listed: set[str], given: set[str]) -> str:
    return (
        f"{tenant} on {api}: {len(listed - given)} listed jobs no client was given "
        f"(duplicates?), {len(given - listed)} given jobs not listed (lost?)"
    )


def _check_the_api_kill_was_survived(submitted: list[Submitted]) -> None:
    """Submissions cut off by the kill were retried, and the restarted replica took jobs."""
    assert any(s.tries > 1 for s in submitted), "the API kill interrupted no submission"
    assert any(s.api == "api-a" and s.life == 2 for s in submitted), "api-a took none again"


def _check_each_recorded_once(
    fleet: Fleet, jobs: dict[str, dict[str, Any]], held: set[str]
) -> dict[str, int]:
    """Exactly one worker recorded each job's result (a second ``job.completed`` would be
    a duplicate); returns which worker process did. What the killed worker held was either
    recorded by it as it died (its log line lost: attempt 1) or claimed again after its
    lease and recorded by another (attempt 2)."""
    recorded: Counter[str] = Counter()
    by: dict[str, int] = {}
    for index in range(WORKERS):
        for line in fleet.worker_lines(index):
            if line["event"] == "job.completed":
                recorded[line["job_id"]] += 1
                by[line["job_id"]] = index
    twice = [job_id for job_id, count in recorded.items() if count > 1]
    assert not twice, f"{len(twice)} jobs recorded more than once: {twice[:5]}"
    assert set(recorded) <= set(jobs), "a worker recorded a job no client was given"
    unlogged = set(jobs) - set(recorded)
    assert unlogged <= held, f"{len(unlogged - held)} jobs recorded by no worker"
    assert all(jobs[job_id]["attempts"] == 1 for job_id in unlogged), unlogged
    assert set(by.values()) == set(range(WORKERS)), Counter(by.values())
    rerun = [job_id for job_id in held if jobs[job_id]["attempts"] >= 2]
    assert rerun, f"no held job ran again: {[(i, jobs[i]['attempts']) for i in held]}"
    assert all(by[job_id] != 0 for job_id in rerun), "a held job was recorded by the dead"
    return by | dict.fromkeys(unlogged, 0)


def _check_live_streams(streams: list[Stream], jobs: dict[str, dict[str, Any]]) -> float:
    """Opened before any worker existed, each stream ends with its job's ``completed``, and
    gets it soon after the job finished: live, through NOTIFY from a worker's process, not
    at the re-read after a keep-alive. Returns the longest delay."""
    delays = []
    for stream in streams:
        assert stream.error is None, repr(stream.error)
        types = stream.types()
        assert (types[0], types[-1]) == ("queued", "completed"), types
        assert "started" in types, types
        _, completed, arrived = stream.events[-1]
        job = jobs[stream.job_id]
        assert [i["id"] for i in completed["images"]] == [i["id"] for i in job["images"]]
        delays.append(arrived - datetime.fromisoformat(job["finished_at"]).timestamp())
    assert max(delays) < KEEPALIVE_S / 4, f"events reached the streams late: {delays}"
    return max(delays)


def _check_streams_of_every_worker(
    fleet: Fleet,
    keys: dict[str, dict[str, str]],
    submitted: list[Submitted],
    recorded_by: dict[str, int],
) -> None:
    """On each API, the event log of a job submitted to the other and run by each worker."""
    for worker in range(WORKERS):
        for to, on in [(0, 1), (1, 0)]:
            job = next(
                (
                    s
                    for s in submitted
                    if recorded_by[s.job_id] == worker and s.api == fleet.apis[to].name
                ),
                None,
            )
            assert job, f"worker {worker} ran no job submitted to {fleet.apis[to].name}"
            stream = read_stream(fleet.apis[on].url, job.job_id, keys[job.tenant])
            types = stream.types()
            assert (types[0], types[-1]) == ("queued", "completed"), (worker, types)


def _check_images_from_both_apis(fleet: Fleet, jobs: dict[str, dict[str, Any]]) -> None:
    a, b = fleet.apis
    for job_id in random.Random(6).sample(sorted(jobs), 50):
        url = urlsplit(jobs[job_id]["images"][0]["url"])
        link = f"{url.path}?{url.query}"
        one, other = a.client.get(link), b.client.get(link)
        assert (one.status_code, other.status_code) == (200, 200), (job_id, one.text, other.text)
        assert one.headers["content-type"] == other.headers["content-type"] == "image/png"
        assert one.content.startswith(PNG) and one.content == other.content, job_id
        assert one.headers["etag"] == other.headers["etag"]


def _check_another_tenants_job_is_404(
    fleet: Fleet, keys: dict[str, dict[str, str]], submitted: list[Submitted]
) -> None:
    theirs = next(s for s in submitted if s.tenant == TENANTS[0]).job_id
    missing = uuid.uuid4().hex
    for api in fleet.apis:
        assert api.client.get(f"/v1/jobs/{theirs}", headers=keys[TENANTS[0]]).status_code == 200
        for path in (f"/v1/jobs/{theirs}", f"/v1/jobs/{theirs}/events"):
            answer = api.client.get(path, headers=keys[TENANTS[1]])
            like = api.client.get(path.replace(theirs, missing), headers=keys[TENANTS[1]])
            assert answer.status_code == like.status_code == 404, (api.name, path, answer.text)
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json()["code"] == like.json()["code"] == "job_not_found"


def _report(
    submitted: list[Submitted],
    began: float,
    workers: float,
    accepted: float,
    done: float,
    downtime_s: float,
    latency_s: float,
) -> None:
    """Figures for the record (shown with ``-s`` or ``-rP``); nothing here passes or fails."""
    tries = Counter(s.tries for s in submitted)
    by_api = Counter(f"{s.api} (life {s.life})" for s in submitted)
    print(
        f"\nscale-out: {JOBS} jobs accepted {accepted - workers:.1f} s after the workers "
        f"started, every job completed after {done - workers:.1f} s "
        f"({JOBS / (done - workers):.1f} jobs/s), {done - began:.1f} s from the first job; "
        f"api-a away {downtime_s:.1f} s; live streams got `completed` within "
        f"{latency_s:.2f} s of the job's end. Tries per job {dict(tries)}, "
        f"{sum(s.replayed for s in submitted)} idempotent replays, by API {dict(by_api)}."
    )
