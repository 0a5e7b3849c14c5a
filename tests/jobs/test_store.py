"""SqliteJobStore: claims, leases, re-leases, attempts, idempotent items, progress, cancel, pages."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from faceprint.errors import UsageError
from faceprint.jobs.model import JobError, JobItem, JobNotFoundError, JobState, LeaseLostError, NewJob
from faceprint.jobs.store import SqliteJobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> SqliteJobStore:
    return SqliteJobStore(tmp_path / "jobs.sqlite", clock=clock)


def _new(tag: str = "") -> NewJob:
    return NewJob("face_recognition", ("storage://" + "a" * 32,), {"top_k": 3}, tag=tag)


def test_claim_runs_oldest_first_and_only_once(store: SqliteJobStore) -> None:
    first = store.create(_new("one"))
    second = store.create(_new("two"))
    assert store.claim("w1", lease_s=10).id == first.id  # type: ignore[union-attr]
    assert store.claim("w2", lease_s=10).id == second.id  # type: ignore[union-attr]
    assert store.claim("w3", lease_s=10) is None
    job = store.get(first.id)
    assert (job.state, job.lease_owner, job.attempts, job.params) == (JobState.RUNNING, "w1", 1, {"top_k": 3})


def test_expired_lease_is_claimed_again_and_the_old_holder_can_no_longer_write(
    store: SqliteJobStore, clock: Clock
) -> None:
    job = store.create(_new())
    store.claim("dead", lease_s=5)
    clock.now += 4
    assert store.claim("w2", lease_s=5) is None  # still leased
    clock.now += 2
    again = store.claim("w2", lease_s=5)
    assert again is not None and again.id == job.id and again.attempts == 2
    with pytest.raises(LeaseLostError):
        store.heartbeat(job.id, "dead", lease_s=5)
    with pytest.raises(LeaseLostError):
        store.put_items(job.id, "dead", [JobItem("k", 0, {})])
    with pytest.raises(LeaseLostError):
        store.finish(job.id, "dead", state=JobState.COMPLETED)


def test_heartbeat_keeps_the_lease(store: SqliteJobStore, clock: Clock) -> None:
    job = store.create(_new())
    store.claim("w1", lease_s=5)
    for _ in range(5):
        clock.now += 4
        store.heartbeat(job.id, "w1", lease_s=5)
    assert store.claim("w2", lease_s=5) is None


def test_a_job_that_keeps_killing_workers_fails_with_a_clear_error(store: SqliteJobStore, clock: Clock) -> None:
    job = store.create(_new(), max_attempts=2)
    for worker in ("w1", "w2"):
        assert store.claim(worker, lease_s=1) is not None
        clock.now += 2
    assert store.claim("w3", lease_s=1) is None
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED
    assert [e.code for e in failed.errors] == ["job_attempts_exhausted"]
    assert "2 attempts" in failed.errors[0].message


def test_items_are_idempotent_per_key_and_paged_in_position_order(store: SqliteJobStore) -> None:
    job = store.create(_new())
    store.claim("w1", lease_s=10)
    store.put_items(job.id, "w1", [JobItem(f"k{i:02d}", 30 - i, {"i": i}) for i in range(30)], done_units=["u1"])
    store.put_items(job.id, "w1", [JobItem("k05", 25, {"i": "again"})], done_units=["u1", "u2"])
    first = store.items(job.id, offset=0, limit=10)
    assert first.total == 30
    assert [item.position for item in first.rows] == list(range(1, 11))
    everything = store.items(job.id, offset=0, limit=1000).rows
    assert len({item.key for item in everything}) == 30
    assert [item.data for item in everything if item.key == "k05"] == [{"i": "again"}]
    assert store.items(job.id, offset=28, limit=10).rows[-1].key == "k00"
    assert store.done_units(job.id) == {"u1", "u2"}


def test_progress_never_goes_backwards(store: SqliteJobStore) -> None:
    job = store.create(_new())
    store.claim("w1", lease_s=10)
    seen = []
    for value in (0.2, 0.5, 0.3, 0.9, 1.5):
        store.heartbeat(job.id, "w1", lease_s=10, progress=value)
        seen.append(store.get(job.id).progress)
    assert seen == [0.2, 0.5, 0.5, 0.9, 1.0]


def test_cancel_waiting_is_immediate_and_running_is_flagged(store: SqliteJobStore, clock: Clock) -> None:
    waiting = store.create(_new())
    running = store.create(_new())
    assert store.request_cancel(waiting.id).state is JobState.CANCELLED
    assert store.claim("w1", lease_s=10).id == running.id  # type: ignore[union-attr]
    assert store.heartbeat(running.id, "w1", lease_s=10) is False
    assert store.request_cancel(running.id).state is JobState.RUNNING
    assert store.heartbeat(running.id, "w1", lease_s=10) is True
    done = store.finish(running.id, "w1", state=JobState.CANCELLED)
    assert done.state is JobState.CANCELLED and done.time_completed_s == clock.now


def test_cancelled_job_whose_worker_died_ends_cancelled(store: SqliteJobStore, clock: Clock) -> None:
    job = store.create(_new())
    store.claim("dead", lease_s=1)
    store.request_cancel(job.id)
    clock.now += 5
    assert store.claim("w2", lease_s=1) is None
    assert store.get(job.id).state is JobState.CANCELLED


def test_finish_records_summary_errors_and_duration(store: SqliteJobStore, clock: Clock) -> None:
    job = store.create(_new())
    store.claim("w1", lease_s=10)
    clock.now += 3
    done = store.finish(
        job.id, "w1", state=JobState.COMPLETED, summary=[{"source": "s"}], errors=[JobError("no_face", "x", "s")]
    )
    assert (done.progress, done.summary, done.errors[0].source) == (1.0, ({"source": "s"},), "s")
    assert done.duration_s(clock.now + 100) == pytest.approx(3.0)
    with pytest.raises(UsageError):
        store.finish(job.id, "w1", state=JobState.RUNNING)


def test_list_filters_by_state_and_tag_newest_first(store: SqliteJobStore) -> None:
    ids = [store.create(_new(tag="a" if i % 2 else "b")).id for i in range(7)]
    store.claim("w1", lease_s=10)
    page = store.list_jobs(tag="a", limit=2)
    assert page.total == 3 and [j.id for j in page.rows] == [ids[5], ids[3]]
    assert store.list_jobs(state=JobState.RUNNING).rows[0].id == ids[0]
    with pytest.raises(UsageError):
        store.list_jobs(limit=1001)
    with pytest.raises(JobNotFoundError):
        store.get("nope")


def test_state_survives_reopening_the_file(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "jobs.sqlite"
    with SqliteJobStore(path, clock=clock) as store:
        job = store.create(_new())
        store.claim("w1", lease_s=10)
        store.put_items(job.id, "w1", [JobItem("k", 0, {"a": 1})])
    with SqliteJobStore(path, clock=clock) as again:  # migrations are not re-applied
        assert again.get(job.id).state is JobState.RUNNING
        assert again.items(job.id, offset=0, limit=10).total == 1


def test_two_stores_on_one_file_never_hand_out_one_job_twice(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    stores = [SqliteJobStore(path) for _ in range(4)]
    for _ in range(40):
        stores[0].create(_new())
    claimed: list[str] = []
    lock = threading.Lock()

    def take(store: SqliteJobStore, name: str) -> None:
        while (job := store.claim(name, lease_s=60)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=take, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40
