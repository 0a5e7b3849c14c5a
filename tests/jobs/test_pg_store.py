"""PgJobStore on a real PostgreSQL: the SqliteJobStore behaviour tests, run again, plus what only PostgreSQL does.

The behaviour tests of ``tests/jobs/test_store.py`` are collected here a second time with this module's
``store`` fixture (a :class:`PgJobStore` in a fresh schema), so both backends answer the same tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceprint.jobs.model import JobItem, JobState, NewJob
from faceprint.jobs.pg_store import MIGRATIONS, PgJobStore
from faceprint.postgres import DatabaseSchemaError, connect

_SQLITE_ONLY = {"test_state_survives_reopening_the_file", "test_two_stores_on_one_file_never_hand_out_one_job_twice"}


def _load_sqlite_tests() -> Any:
    spec = importlib.util.spec_from_file_location(
        "faceprint_job_store_behaviour", Path(__file__).with_name("test_store.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_behaviour = _load_sqlite_tests()
for _name in dir(_behaviour):
    if _name.startswith("test_") and _name not in _SQLITE_ONLY:
        globals()[_name] = getattr(_behaviour, _name)
Clock = _behaviour.Clock


@pytest.fixture
def schema() -> str:
    return "jobs_" + uuid.uuid4().hex[:12]


@pytest.fixture
def clock() -> Any:
    return Clock()


@pytest.fixture
def store(postgres_url: str, clock: Any, schema: str) -> Iterator[PgJobStore]:
    with PgJobStore(postgres_url, clock=clock, schema=schema) as opened:
        yield opened
    with contextlib.closing(connect(postgres_url)) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _new(tag: str = "") -> NewJob:
    return NewJob("face_pairs", ("storage://" + "b" * 32,), {"top_k": 1}, tag=tag)


def test_state_survives_reopening(postgres_url: str, schema: str, store: PgJobStore) -> None:
    job = store.create(_new("keep"))
    store.claim("w1", lease_s=30)
    store.put_items(job.id, "w1", [JobItem("a", 0, {"x": 1})], done_units=["unit-1"])
    with PgJobStore(postgres_url, schema=schema) as again:
        assert again.get(job.id).state is JobState.RUNNING
        assert again.done_units(job.id) == frozenset({"unit-1"})
        assert again.schema_version() == MIGRATIONS[-1][0]


def test_the_database_clock_is_used_without_a_clock(postgres_url: str, schema: str, store: PgJobStore) -> None:
    import time

    with PgJobStore(postgres_url, schema=schema) as real:
        job = real.create(_new())
        claimed = real.claim("w1", lease_s=60)
    assert claimed is not None and claimed.lease_expires_s is not None
    assert abs(job.time_created_s - time.time()) < 60  # the same host here: the clocks agree
    assert 59 <= claimed.lease_expires_s - (claimed.time_started_s or 0) <= 61


def test_a_newer_schema_is_refused(postgres_url: str, schema: str, store: PgJobStore) -> None:
    with contextlib.closing(connect(postgres_url)) as conn:
        conn.execute(f"INSERT INTO {schema}.schema_version VALUES (99, 'future')")
    with pytest.raises(DatabaseSchemaError):
        PgJobStore(postgres_url, schema=schema)


_CLAIMER = textwrap.dedent(
    """
    import sys, time
    from faceprint.jobs.pg_store import PgJobStore

    url, schema, worker = sys.argv[1:4]
    claimed = []
    with PgJobStore(url, schema=schema) as store:
        while True:
            job = store.claim(worker, lease_s=300)
            if job is None:
                break
            claimed.append(job.id)
            store.finish(job.id, worker, state=__import__("faceprint.jobs.model").jobs.model.JobState.COMPLETED)
    print("\\n".join(claimed))
    """
)


def test_workers_in_several_processes_share_one_queue(postgres_url: str, schema: str, store: PgJobStore) -> None:
    jobs = {store.create(_new(str(i))).id for i in range(60)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, postgres_url, schema, f"w{i}"], stdout=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    claimed = [w.communicate(timeout=120)[0].split() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0]
    everything = [job for part in claimed for job in part]
    assert sorted(everything) == sorted(jobs)  # every job claimed, none twice
    assert store.list_jobs(state=JobState.COMPLETED, limit=100).total == 60
