from imagegate.jobs.states import FINAL, TRANSITIONS, Status, sources_of


def test_the_lifecycle_runs_queued_generating_final() -> None:
    assert Status.QUEUED.can_become(Status.GENERATING)
    for final in (Status.COMPLETED, Status.FAILED, Status.CANCELED):
        assert Status.GENERATING.can_become(final)


def test_final_states_allow_no_way_out() -> None:
    for status in FINAL:
        assert TRANSITIONS[status] == frozenset()
        assert status.is_final


def test_a_job_completes_by_running_by_review_or_from_the_cache() -> None:
    # completed by its worker, by a reviewer who releases the images it held back, or
    # straight from the queue: a cache hit, or a follower when its leader completes
    assert sources_of(Status.COMPLETED) == {
        Status.GENERATING,
        Status.PENDING_REVIEW,
        Status.QUEUED,
    }
    assert sources_of(Status.FAILED) == {
        Status.GENERATING,
        Status.PENDING_REVIEW,
        Status.QUEUED,
    }


def test_a_job_whose_images_were_withheld_waits_for_review() -> None:
    assert Status.GENERATING.can_become(Status.PENDING_REVIEW)
    assert sources_of(Status.PENDING_REVIEW) == {Status.GENERATING}


def test_a_generating_job_may_return_to_the_queue_for_a_retry() -> None:
    assert Status.GENERATING in sources_of(Status.QUEUED)


def test_a_held_job_is_approved_into_the_queue_or_rejected() -> None:
    assert sources_of(Status.QUEUED) == {Status.GENERATING, Status.PENDING_REVIEW}
    assert Status.PENDING_REVIEW.can_become(Status.FAILED)
    assert not Status.PENDING_REVIEW.can_become(Status.GENERATING)
