"""Costs, usage reports, budgets (the reservation race, settlement, alerts) and fair share.

Everything here goes through real HTTP to real servers on loopback, on SQLite and on
PostgreSQL. Jobs are submitted to a server without workers, so that nothing settles while
the test looks, and run by a second server with workers on the same database.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job

ADMIN_TOKEN = "budget-tests-admin-token-4d9c2a-0123456789"
SECRET = "whsec_0Y48PIKZhOtzzAav7NYyFFfw62Bq1VIjZRH5UPdsKfc="
SKETCH = {"prompt": "a lighthouse at dusk", "width": 512, "height": 512}  # 0.001 USD

Start = Callable[..., httpx.Client]
Signed = Callable[[httpx.Client, str], httpx.Client]


@pytest.fixture
def start(server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory) -> Start:
    """A server with keys required; the same overrides give a second server on the same
    database and data folder."""

    def start(workers: int = 0, **overrides: Any) -> httpx.Client:
        settings = make_settings(auth="required", admin_token=ADMIN_TOKEN, **overrides)
        return server_factory(settings, workers=workers)

    return start


@pytest.fixture
def signed() -> Iterator[Signed]:
    """A client of the same server that sends ``credential`` as its bearer token."""
    made: list[httpx.Client] = []

    def sign(server: httpx.Client, credential: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {credential}"}
        made.append(httpx.Client(base_url=server.base_url, headers=headers, timeout=30))
        return made[-1]

    yield sign
    for client in made:
        client.close()


def new_key(admin: httpx.Client, tenant: str, **fields: Any) -> dict[str, Any]:
    response = admin.post("/v1/admin/keys", json={"tenant": tenant, "name": "app"} | fields)
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def put_budget(admin: httpx.Client, tenant: str, **budget: Any) -> dict[str, Any]:
    response = admin.put(f"/v1/admin/tenants/{tenant}", json={"budget": budget})
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


def budget_status(admin: httpx.Client, tenant: str) -> dict[str, Any]:
    status: dict[str, Any] = admin.get(f"/v1/admin/tenants/{tenant}").json()["budget_status"]
    return status


def submit(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/v1/jobs", json=SKETCH | fields)


def accepted(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = submit(client, **fields)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def money(amounts: Any) -> float:
    """A sum of amounts as the API reports money: to the micro."""
    return round(sum(amounts), 6)


# -- what a job costs --------------------------------------------------------------------


def test_a_job_shows_its_estimate_while_queued_and_its_cost_once_it_ends(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)
    admin = signed(api, ADMIN_TOKEN)
    app = signed(api, new_key(admin, "acme")["key"])
    small = accepted(app, n=2)
    large = accepted(app, n=2, width=1024, height=1024)
    dropped = accepted(app)
    assert small["cost"] == {"amount": 0.002, "currency": "USD", "estimated": True}
    assert large["cost"] == {"amount": 0.008, "currency": "USD", "estimated": True}  # 4x pixels
    assert app.get(f"/v1/jobs/{small['id']}").json()["cost"]["estimated"] is True

    canceled = app.post(f"/v1/jobs/{dropped['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    assert canceled["cost"] == {"amount": 0.0, "currency": "USD", "estimated": False}

    start(workers=1)  # a worker on the same database runs the two others
    for job, amount in ((small, 0.002), (large, 0.008)):
        done = wait_for_job(app, job["id"])
        assert done["status"] == "completed"
        assert done["cost"] == {"amount": amount, "currency": "USD", "estimated": False}

    rows = app.get("/v1/usage", params={"group_by": "status"}).json()["data"]
    by_status = {row["status"]: row for row in rows}
    assert set(by_status) == {"completed", "canceled"}
    assert (by_status["canceled"]["jobs"], by_status["canceled"]["images"]) == (1, 0)
    assert by_status["canceled"]["cost"] == 0
    assert (by_status["completed"]["jobs"], by_status["completed"]["images"]) == (2, 4)
    assert by_status["completed"]["cost"] == 0.01


# -- usage reports -----------------------------------------------------------------------


def test_usage_adds_up_to_the_jobs_run_and_each_tenant_sees_only_its_own(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)
    admin = signed(api, ADMIN_TOKEN)
    web, batch = new_key(admin, "acme", name="web"), new_key(admin, "acme", name="batch")
    acme_web, acme_batch = signed(api, web["key"]), signed(api, batch["key"])
    globex = signed(api, new_key(admin, "globex")["key"])
    acme_jobs = [
        accepted(acme_web, user="ann"),
        accepted(acme_web, user="bob", n=2),
        accepted(acme_batch, user="ann", width=1024, height=1024),
    ]
    dropped = accepted(acme_batch, user="bob")
    acme_web.post(f"/v1/jobs/{dropped['id']}/cancel")
    globex_jobs = [accepted(globex, n=3)]
    start(workers=1)
    ran = {job["id"]: wait_for_job(acme_web, job["id"]) for job in acme_jobs}
    ran |= {job["id"]: wait_for_job(globex, job["id"]) for job in globex_jobs}
    assert {job["status"] for job in ran.values()} == {"completed"}
    cost = {job_id: job["cost"]["amount"] for job_id, job in ran.items()}

    def usage(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
        response = client.get("/v1/usage", params=params)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["data"]
        return rows

    def totals(rows: list[dict[str, Any]], **group: Any) -> tuple[int, int, float]:
        mine = [row for row in rows if all(row[k] == v for k, v in group.items())]
        return (
            sum(row["jobs"] for row in mine),
            sum(row["images"] for row in mine),
            money(row["cost"] for row in mine),
        )

    acme_cost = money(cost[job["id"]] for job in acme_jobs)
    assert acme_cost == 0.007  # 0.001 + 0.002 + 0.004
    for bucket in ("1h", "1d"):
        rows = usage(acme_web, bucket=bucket, group_by="model,status")
        assert {(row["model"], row["currency"]) for row in rows} == {("sketch-v1", "USD")}
        assert totals(rows, status="completed") == (3, 4, acme_cost)
        assert totals(rows, status="canceled") == (1, 0, 0)
        assert all(row["start"] < row["end"] for row in rows)

    by_key = usage(acme_batch, bucket="1h", group_by="key")
    assert {row["key"] for row in by_key} == {web["id"], batch["id"]}
    assert totals(by_key, key=web["id"]) == (2, 3, money([cost[acme_jobs[0]["id"]], 0.002]))
    assert totals(by_key, key=batch["id"]) == (2, 1, cost[acme_jobs[2]["id"]])

    by_user = usage(acme_web, group_by=["user"])
    assert totals(by_user, user="ann") == (2, 2, 0.005)
    assert totals(by_user, user="bob") == (2, 2, 0.002)

    globex_rows = usage(globex, group_by="key,user")
    assert totals(globex_rows) == (1, 3, 0.003)
    assert {row["key"] for row in globex_rows}.isdisjoint({web["id"], batch["id"]})
    refused = globex.get("/v1/usage", params={"tenant": "acme"})
    assert (refused.status_code, refused.json()["code"]) == (404, "tenant_not_found")
    assert totals(usage(admin, tenant="acme")) == (4, 4, acme_cost)
    assert totals(usage(admin)) == (5, 7, money([acme_cost, 0.003]))


# -- the reservation race ------------------------------------------------------------------


def race(server: httpx.Client, key: str, submitters: int = 50, each: int = 2) -> list[Any]:
    """``submitters`` threads, each with its own connection, released together by a
    barrier, each submitting ``each`` sketch jobs; every response, in no order."""
    barrier = threading.Barrier(submitters)
    headers = {"Authorization": f"Bearer {key}"}

    def submitter(_: int) -> list[httpx.Response]:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
            client.get("/health")  # connected before the start
            barrier.wait(timeout=30)
            return [submit(client) for _ in range(each)]

    with ThreadPoolExecutor(submitters) as pool:
        return [response for batch in pool.map(submitter, range(submitters)) for response in batch]


class BudgetWatch:
    """Reads the tenant's budget status over and over while a race runs."""

    def __init__(self, admin: httpx.Client, tenant: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(admin, tenant), daemon=True)

    def __enter__(self) -> BudgetWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _watch(self, admin: httpx.Client, tenant: str) -> None:
        while not self._stop.is_set():
            self.seen.append(budget_status(admin, tenant))


def assert_refused_by_budget(response: httpx.Response, scope: str, amount: float) -> None:
    assert response.status_code == 402, response.text
    problem = response.json()
    assert problem["code"] == "budget_exceeded"
    assert problem["budget"] == {"scope": scope, "amount": amount, "currency": "USD"}
    assert problem["period"] == "day" and problem["estimate"] == 0.001
    assert datetime.fromisoformat(problem["period_end"]) > datetime.now().astimezone()
    assert money([problem["spend"], problem["reserved"]]) <= amount


def test_concurrent_submitters_cannot_overspend_a_tenant_budget(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)  # nothing settles during the race
    admin = signed(api, ADMIN_TOKEN)
    put_budget(admin, "acme", amount=0.010, period="day")  # ten sketch jobs
    key = new_key(admin, "acme")["key"]

    with BudgetWatch(admin, "acme") as watch:
        responses = race(api, key)
    codes = [response.status_code for response in responses]
    assert (codes.count(202), codes.count(402), len(codes)) == (10, 90, 100)
    for response in responses:
        if response.status_code == 402:
            assert_refused_by_budget(response, "tenant:acme", 0.010)
    assert watch.seen and all(money([s["spend"], s["reserved"]]) <= 0.010 for s in watch.seen)
    assert budget_status(admin, "acme") | {"period_start": None, "period_end": None} == {
        "period_start": None,
        "period_end": None,
        "spend": 0.0,
        "reserved": 0.010,
    }
    app = signed(api, key)
    queued = app.get("/v1/jobs", params={"limit": 100}).json()["data"]
    admitted = {r.json()["id"] for r in responses if r.status_code == 202}
    assert {job["id"] for job in queued} == admitted  # a refused job leaves no trace

    # Settlement: a worker on the same database runs them; each reservation becomes its cost.
    start(workers=1)
    costs = [wait_for_job(app, job_id)["cost"] for job_id in admitted]
    assert all(cost == {"amount": 0.001, "currency": "USD", "estimated": False} for cost in costs)
    settled = budget_status(admin, "acme")
    assert (settled["spend"], settled["reserved"]) == (money(c["amount"] for c in costs), 0)
    assert settled["spend"] == 0.010
    refused = submit(app)
    assert_refused_by_budget(refused, "tenant:acme", 0.010)
    assert (refused.json()["spend"], refused.json()["reserved"]) == (0.010, 0)


def test_a_key_budget_smaller_than_the_tenants_refuses_first(start: Start, signed: Signed) -> None:
    api = start(workers=0)
    admin = signed(api, ADMIN_TOKEN)
    put_budget(admin, "acme", amount=0.010, period="day")
    capped = new_key(admin, "acme", budget={"amount": 0.004, "period": "day"})
    assert capped["budget"]["amount"] == 0.004

    responses = race(api, capped["key"], submitters=50, each=1)
    codes = [response.status_code for response in responses]
    assert (codes.count(202), codes.count(402)) == (4, 46)
    for response in responses:
        if response.status_code == 402:
            assert_refused_by_budget(response, f"key:{capped['id']}", 0.004)
    # The refusals reserved nothing against the tenant: only the four jobs did.
    assert budget_status(admin, "acme")["reserved"] == 0.004

    other = signed(api, new_key(admin, "acme")["key"])  # the same tenant, no key budget
    assert [submit(other).status_code for _ in range(6)] == [202] * 6
    assert_refused_by_budget(submit(other), "tenant:acme", 0.010)


def test_a_job_canceled_before_it_runs_gives_its_reservation_back(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)
    admin = signed(api, ADMIN_TOKEN)
    put_budget(admin, "acme", amount=0.003, period="day")
    app = signed(api, new_key(admin, "acme")["key"])
    jobs = [accepted(app) for _ in range(3)]
    assert_refused_by_budget(submit(app), "tenant:acme", 0.003)

    app.post(f"/v1/jobs/{jobs[0]['id']}/cancel")
    status = budget_status(admin, "acme")
    assert (status["spend"], status["reserved"]) == (0, 0.002)
    jobs.append(accepted(app))  # it fits again
    assert budget_status(admin, "acme")["reserved"] == 0.003

    start(workers=1)
    ended = [wait_for_job(app, job["id"]) for job in jobs]
    assert [job["status"] for job in ended] == ["canceled"] + ["completed"] * 3
    status = budget_status(admin, "acme")
    assert (status["spend"], status["reserved"]) == (money(j["cost"]["amount"] for j in ended), 0)
    assert status["spend"] == 0.003


# -- budget alerts -----------------------------------------------------------------------


class Receiver:
    """An HTTP receiver on 127.0.0.1 that keeps what it is sent and answers 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/budget"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified(self) -> list[dict[str, Any]]:
        return [Webhook(SECRET).verify(body, headers) for headers, body in list(self.requests)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def alerts_total(server: httpx.Client, tenant: str) -> dict[str, float]:
    """imagegate_budget_alerts_total for ``tenant``, by threshold."""
    found = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "imagegate_budget_alerts_total" and sample.labels["tenant"] == tenant:
                found[sample.labels["threshold"]] = sample.value
    return found


def test_each_threshold_crossed_sends_one_signed_alert(
    start: Start, signed: Signed, receiver: Receiver
) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:8]}"  # the metric is the process's, shared by tests
    api = start(workers=1, webhook_allow_private=True, webhook_secret=SECRET)
    admin = signed(api, ADMIN_TOKEN)
    budget = {"amount": 0.004, "period": "day", "thresholds": [0.5, 1.0]}
    put_budget(admin, tenant, **budget, alert_url=receiver.url)
    app = signed(api, new_key(admin, tenant)["key"])
    for _ in range(4):
        assert wait_for_job(app, accepted(app)["id"])["status"] == "completed"
    assert_refused_by_budget(submit(app), f"tenant:{tenant}", 0.004)

    alerts = eventually(lambda: len(receiver.verified()) == 2 and receiver.verified())
    assert [alert["type"] for alert in alerts] == ["budget.threshold_crossed"] * 2
    by_threshold = {alert["data"]["threshold"]: alert["data"] for alert in alerts}
    assert set(by_threshold) == {0.5, 1.0}
    for threshold, spend in ((0.5, 0.002), (1.0, 0.004)):
        data = by_threshold[threshold]
        assert (data["tenant"], data["scope"], data["key"]) == (tenant, "tenant", None)
        assert (data["spend"], data["budget"], data["currency"]) == (spend, 0.004, "USD")
        assert data["period"]["kind"] == "day"
        assert data["period"]["end"] == budget_status(admin, tenant)["period_end"]

    # With the budget raised, the spend crosses half of the new amount too: no second alert
    # for a threshold already reported this period.
    put_budget(admin, tenant, **(budget | {"amount": 0.010}), alert_url=receiver.url)
    for _ in range(2):
        wait_for_job(app, accepted(app)["id"])
    assert budget_status(admin, tenant)["spend"] == 0.006
    last = accepted(app, webhook_url=receiver.url)  # delivered after any earlier alert
    wait_for_job(app, last["id"])
    eventually(lambda: any(m["type"] == "job.completed" for m in receiver.verified()))
    kinds = [message["type"] for message in receiver.verified()]
    assert sorted(kinds) == ["budget.threshold_crossed"] * 2 + ["job.completed"]

    audit = admin.get("/v1/admin/audit", params={"stage": "budget"}).json()["data"]
    assert [(entry["owner"], entry["action"]) for entry in audit] == [(tenant, "alert")] * 2
    assert any("50%" in entry["reasons"][0] for entry in audit)
    assert alerts_total(api, tenant) == {"0.5": 1.0, "1": 1.0}

    logged = admin.get(f"/v1/admin/tenants/{tenant}/alerts").json()["data"]
    assert [(m["event_type"], m["status"], m["url"]) for m in logged] == [
        ("budget.threshold_crossed", "delivered", receiver.url)
    ] * 2
    assert all(m["attempts"][0]["status_code"] == 204 for m in logged)  # what it answered


def test_an_alert_url_on_a_private_network_is_refused_unless_allowed(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)  # webhook_allow_private is off: only public addresses
    admin = signed(api, ADMIN_TOKEN)
    for url in ("http://10.1.2.3/hooks", "http://192.168.0.5:8080/hooks"):  # never connected
        refused = admin.put(
            "/v1/admin/tenants/acme", json={"budget": {"amount": 1, "alert_url": url}}
        )
        assert refused.status_code == 422
        assert (refused.json()["code"], refused.json()["field"]) == (
            "webhook_url_refused",
            "budget.alert_url",
        )
    assert admin.get("/v1/admin/tenants/acme").status_code == 404  # nothing was stored


def test_a_budget_in_another_currency_than_the_prices_is_refused(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)
    admin = signed(api, ADMIN_TOKEN)
    euros = {"amount": 5, "currency": "EUR", "period": "day"}
    for refused in (
        admin.put("/v1/admin/tenants/acme", json={"budget": euros}),
        admin.post("/v1/admin/keys", json={"tenant": "acme", "name": "eu", "budget": euros}),
    ):
        assert refused.status_code == 422
        assert (refused.json()["code"], refused.json()["field"]) == (
            "currency_mismatch",
            "budget.currency",
        )
    assert put_budget(admin, "acme", amount=5, currency="USD")["budget"]["currency"] == "USD"


# -- fair share among tenants --------------------------------------------------------------


def test_a_second_tenant_is_served_ahead_of_another_tenants_burst(
    start: Start, signed: Signed
) -> None:
    api = start(workers=0)  # the burst is queued first, whatever the submission speed
    admin = signed(api, ADMIN_TOKEN)
    bursty = signed(api, new_key(admin, "bursty")["key"])
    polite = signed(api, new_key(admin, "polite")["key"])
    burst = [accepted(bursty, width=64, height=64)["id"] for _ in range(40)]
    start(workers=2, sketch_delay_ms=120)  # two worker threads on the same database
    wait_for_job(bursty, burst[1], {"generating", "completed"})
    few = [accepted(polite, width=64, height=64)["id"] for _ in range(4)]

    def started(client: httpx.Client, job_id: str) -> datetime:
        job = wait_for_job(client, job_id, timeout_s=30)
        assert job["status"] == "completed"
        return datetime.fromisoformat(job["started_at"])

    polite_started = [started(polite, job_id) for job_id in few]
    burst_started = [started(bursty, job_id) for job_id in burst]
    # Submitted after all forty, the polite tenant's jobs still go before the burst's last 20.
    assert max(polite_started) < min(burst_started[-20:])
