"""The store and queue, on SQLite and on PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from imagegate.errors import IllegalTransition, InvalidField, JobNotFound
from imagegate.jobs.database import create_db_engine
from imagegate.jobs.models import ErrorInfo, GenerationMeta, ImageRecord
from imagegate.jobs.states import Status
from imagegate.jobs.store import JobStore
from imagegate.settings import Settings
from tests.helpers import spec

OWNER = "alice"
META = GenerationMeta(seed=1, model="sketch-v1", generation_time_ms=5)


def image_for(job_id: str, index: int = 0) -> ImageRecord:
    return ImageRecord(str(uuid.uuid4()), job_id, index, f"k/{job_id}/{index}", 64, 64, 10)


def test_submit_then_get_round_trips_the_spec(store: JobStore) -> None:
    job = store.submit(spec(seed=4_000_000_000, style="noir", negative_prompt="blur"), OWNER)
    again = store.get(job.id)
    assert again.spec == job.spec
    assert again.spec.seed == 4_000_000_000
    assert (again.status, again.attempts, again.owner) == (Status.QUEUED, 0, OWNER)
    assert again.created_at.tzinfo is not None


def test_get_of_an_unknown_or_foreign_job_is_not_found(store: JobStore) -> None:
    job = store.submit(spec(), OWNER)
    with pytest.raises(JobNotFound):
        store.get("no-such-job")
    with pytest.raises(JobNotFound):
        store.get(job.id, owner="mallory")


def test_claim_takes_priority_first_then_oldest(store: JobStore) -> None:
    low = store.submit(spec("low"), OWNER)
    high = store.submit(spec("high", priority=5), OWNER)
    low_later = store.submit(spec("low later"), OWNER)
    order = [store.claim(lease_s=30)[0].job.id for _ in range(3)]
    assert order == [high.id, low.id, low_later.id]
    assert store.claim(lease_s=30) == []


def test_claim_sets_the_lease_and_counts_the_attempt(store: JobStore) -> None:
    store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    assert claim.job.status is Status.GENERATING
    assert claim.job.attempts == 1
    assert claim.job.started_at is not None


def test_each_claim_appends_a_started_event_with_its_attempt(store: JobStore) -> None:
    """On PostgreSQL the claim writes its events in its own statement (claiming.py)."""
    first, second = store.submit(spec("a"), OWNER), store.submit(spec("b"), OWNER)
    claims = store.claim(lease_s=30, limit=2, like=first.spec)
    assert {c.job.id for c in claims} == {first.id, second.id}
    mine = next(c for c in claims if c.job.id == first.id)
    store.retry_later(mine, ErrorInfo("generation_failed", "again", True), 0.0)
    (again,) = store.claim(lease_s=30)
    assert again.job.id == first.id
    started = [e for e in store.events_since(first.id) if e.type == "started"]
    assert [e.data for e in started] == [{"attempt": 1}, {"attempt": 2}]
    assert mine.job.started_at is not None and mine.job.started_at <= started[0].created_at
    assert [e.type for e in store.events_since(second.id)] == ["queued", "started"]


def test_on_postgresql_a_submission_wakes_the_workers_and_a_claim_announces_its_event(
    store: JobStore,
) -> None:
    """Other processes hear of both through NOTIFY, sent in the statements that write them."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    import psycopg

    from imagegate.jobs.events import CHANNEL as EVENTS
    from imagegate.jobs.wakeup import CHANNEL as WORKERS
    from imagegate.jobs.wakeup import conninfo

    with psycopg.connect(conninfo(store.engine), autocommit=True) as listener:
        listener.execute(f"LISTEN {EVENTS}")
        listener.execute(f"LISTEN {WORKERS}")
        job = store.submit(spec(), OWNER)
        heard = [(n.channel, n.payload) for n in listener.notifies(timeout=2, stop_after=2)]
        assert sorted(heard) == sorted([(EVENTS, job.id), (WORKERS, "")])
        store.claim(lease_s=30)
        heard = [(n.channel, n.payload) for n in listener.notifies(timeout=2, stop_after=1)]
        assert heard == [(EVENTS, job.id)]


def test_claim_can_take_a_batch_of_compatible_jobs_only(store: JobStore) -> None:
    first = store.submit(spec(width=64), OWNER)
    store.submit(spec(width=128), OWNER)
    third = store.submit(spec(width=64), OWNER)
    claims = store.claim(lease_s=30, limit=4, like=first.spec)
    assert [c.job.id for c in claims] == [first.id, third.id]
    assert len({c.token for c in claims}) == 1


def test_racing_workers_never_claim_the_same_job(settings: Settings, store: JobStore) -> None:
    ids = {store.submit(spec(f"job {i}"), OWNER).id for i in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        engine = create_db_engine(settings)
        mine = JobStore(engine)
        while batch := mine.claim(lease_s=30):
            with lock:
                claimed.extend(c.job.id for c in batch)
        engine.dispose()

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def test_complete_records_images_and_metadata_once(store: JobStore) -> None:
    store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    assert store.complete(claim, [image_for(claim.job.id)], META)
    assert not store.complete(claim, [image_for(claim.job.id, 1)], META)
    job = store.get(claim.job.id)
    assert job.status is Status.COMPLETED
    assert [im.index for im in job.images] == [0]
    assert job.meta == META
    assert job.finished_at is not None


def test_a_stale_lease_cannot_record_a_result(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock)
    timed.submit(spec(), OWNER)
    (stale,) = timed.claim(lease_s=10)
    clock.advance(11)
    (fresh,) = timed.claim(lease_s=10)  # the expired lease is recovered and claimed again
    assert fresh.job.id == stale.job.id and fresh.job.attempts == 2
    assert not timed.complete(stale, [image_for(stale.job.id)], META)
    assert timed.complete(fresh, [image_for(fresh.job.id)], META)
    assert len(timed.get(fresh.job.id).images) == 1


def test_renewed_leases_do_not_expire(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock)
    timed.submit(spec(), OWNER)
    (claim,) = timed.claim(lease_s=10)
    for _ in range(3):
        clock.advance(8)
        assert timed.renew(claim.token, lease_s=10) == {claim.job.id}
    assert timed.claim(lease_s=10) == []


def test_a_job_whose_workers_keep_dying_fails_after_max_retries(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock, max_attempts=2)
    job = timed.submit(spec(), OWNER)
    for _ in range(2):
        assert timed.claim(lease_s=5)
        clock.advance(6)
    assert timed.claim(lease_s=5) == []
    failed = timed.get(job.id)
    assert failed.status is Status.FAILED
    assert failed.error is not None and failed.error.code == "retries_exhausted"
    assert failed.attempts == 2


def test_a_lost_job_is_claimed_again_only_after_a_backoff(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock, retry_backoff_s=100)
    job = timed.submit(spec(), OWNER)
    timed.claim(lease_s=5)
    clock.advance(6)
    assert timed.claim(lease_s=5) == []  # recovered, but waiting out a jittered backoff
    lost = timed.get(job.id)
    assert lost.status is Status.QUEUED
    assert lost.error is not None and lost.error.code == "worker_lost"
    clock.advance(101)
    (again,) = timed.claim(lease_s=5)
    assert again.job.attempts == 2


def test_a_job_stuck_far_past_the_timeout_is_failed(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock, job_timeout_s=10)
    timed.submit(spec(), OWNER)
    (stuck,) = timed.claim(lease_s=60)
    clock.advance(11)
    timed.renew(stuck.token, lease_s=60)  # its worker is alive, but stuck in one step
    timed.claim(lease_s=60)
    assert timed.get(stuck.job.id).status is Status.GENERATING  # within 1.5x: the worker's call
    clock.advance(5)
    timed.claim(lease_s=60)
    failed = timed.get(stuck.job.id)
    assert failed.status is Status.FAILED
    assert failed.error is not None and failed.error.code == "timeout"
    assert not timed.complete(stuck, [], META)  # its late result is refused


def test_retry_later_waits_for_its_backoff(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock)
    timed.submit(spec(), OWNER)
    (claim,) = timed.claim(lease_s=30)
    assert timed.retry_later(claim, ErrorInfo("generation_failed", "flaky"), delay_s=5)
    assert timed.claim(lease_s=30) == []
    clock.advance(6)
    (again,) = timed.claim(lease_s=30)
    assert again.job.attempts == 2


def test_release_gives_the_job_back_without_using_an_attempt(store: JobStore) -> None:
    store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    assert store.release(claim)
    (again,) = store.claim(lease_s=30)
    assert again.job.attempts == 1


def test_cancel_a_queued_job_at_once(store: JobStore) -> None:
    job = store.submit(spec(), OWNER)
    canceled = store.cancel(job.id, OWNER)
    assert canceled.status is Status.CANCELED
    assert canceled.finished_at is not None
    assert store.claim(lease_s=30) == []


def test_cancel_a_generating_job_flags_it_for_the_worker(store: JobStore) -> None:
    store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    flagged = store.cancel(claim.job.id, OWNER)
    assert flagged.status is Status.GENERATING and flagged.cancel_requested
    assert store.report_progress(claim, 1, 4) is True
    assert store.finish_canceled(claim)
    assert store.get(claim.job.id).status is Status.CANCELED


def test_cancel_a_finished_job_is_a_conflict(store: JobStore) -> None:
    store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    store.fail(claim, ErrorInfo("generation_failed", "boom"))
    with pytest.raises(IllegalTransition):
        store.cancel(claim.job.id, OWNER)
    with pytest.raises(JobNotFound):
        store.cancel("no-such-job", OWNER)


def test_list_is_newest_first_with_cursor_pages_and_status_filter(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock)
    ids = []
    for i in range(5):
        ids.append(timed.submit(spec(f"job {i}"), OWNER).id)
        clock.advance(1)
    timed.submit(spec("someone else's"), "bob")
    first, cursor = timed.list_jobs(OWNER, limit=2)
    second, cursor2 = timed.list_jobs(OWNER, limit=2, cursor=cursor)
    third, end = timed.list_jobs(OWNER, limit=2, cursor=cursor2)
    assert [j.id for j in first + second + third] == ids[::-1]
    assert end is None
    timed.cancel(ids[0], OWNER)
    canceled, _ = timed.list_jobs(OWNER, status=Status.CANCELED)
    assert [j.id for j in canceled] == [ids[0]]


def test_a_garbled_cursor_is_a_field_error(store: JobStore) -> None:
    with pytest.raises(InvalidField) as refused:
        store.list_jobs(OWNER, cursor="not a cursor!")
    assert refused.value.field == "cursor"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_every_change_appends_its_event_in_order(store: JobStore) -> None:
    published: list[str] = []
    store.publishers.append(published.append)
    job = store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    store.report_progress(claim, 2, 4, "previews/x.png")
    store.complete(claim, [image_for(job.id)], META)
    assert not store.complete(claim, [], META)  # refused: no second event
    events = store.events_since(job.id)
    assert [e.type.value for e in events] == ["queued", "started", "progress", "completed"]
    assert events[0].data == {"queue_position": 0}
    assert events[2].data == {"step": 2, "total": 4, "preview": "previews/x.png"}
    assert events[3].data["metadata"]["seed"] == 1
    assert [e.id for e in store.events_since(job.id, after_id=events[1].id)] == [
        events[2].id,
        events[3].id,
    ]
    assert set(published) == {job.id}


def test_queue_info_counts_the_jobs_ahead(store: JobStore) -> None:
    first = store.submit(spec("first"), OWNER)
    second = store.submit(spec("second"), OWNER)
    urgent = store.submit(spec("urgent", priority=9), OWNER)
    assert store.queue_info(second, 60).position == 2
    assert store.queue_info(urgent, 60).position == 0
    assert store.queue_info(first, 60).eta_s is None  # no history, no workers yet
    store.heartbeat_worker(concurrency=2)
    (claim,) = store.claim(lease_s=30)
    store.complete(claim, [], GenerationMeta(1, "m", generation_time_ms=4000))
    info = store.queue_info(second, 60)
    assert info.position == 1
    assert info.eta_s == 4.0  # one round of 4 s with two workers: position 1 runs next


def test_only_jobs_with_a_webhook_fill_the_outbox(store: JobStore) -> None:
    plain = store.submit(spec(), OWNER)
    hooked = store.submit(spec(), OWNER, webhook_url="https://hooks.example.com/in")
    for job in (plain, hooked):
        store.cancel(job.id, OWNER)
    assert store.webhook_deliveries(plain.id) == []
    (message,) = store.webhook_deliveries(hooked.id)
    assert (message["event_type"], message["status"]) == ("job.canceled", "pending")


def test_a_cancel_asked_during_a_run_survives_a_retry_or_a_lost_worker(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock)
    retried = timed.submit(spec("retried"), OWNER)
    clock.advance(1)
    lost = timed.submit(spec("lost"), OWNER)
    first, second = timed.claim(lease_s=5), timed.claim(lease_s=5)
    timed.cancel(retried.id, OWNER)
    timed.cancel(lost.id, OWNER)
    assert timed.retry_later(first[0], ErrorInfo("generation_failed", "flaky"), delay_s=0)
    clock.advance(6)
    timed.maintain()  # no claim needed: the lease keeper calls this
    assert timed.get(retried.id).status is Status.CANCELED
    assert timed.get(lost.id).status is Status.CANCELED
    assert second[0].job.id == lost.id


def test_maintain_recovers_a_dead_workers_job_without_any_claim(store: JobStore) -> None:
    clock = FakeClock()
    timed = JobStore(store.engine, clock=clock)
    job = timed.submit(spec(), OWNER)
    timed.claim(lease_s=5)
    clock.advance(6)
    timed.maintain()
    assert timed.get(job.id).status is Status.QUEUED
