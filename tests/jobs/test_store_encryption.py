"""Job results sealed at rest in both job stores: the same values with and without a key, nothing readable in
the database, clear rows still readable once a key is set, and a wrong or missing key a clear error."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.crypto import (
    EncryptedRecordCorruptError,
    EncryptionKey,
    EncryptionKeyMismatchError,
    EncryptionKeyRequiredError,
    RecordCipher,
)
from faceprint.jobs.model import JobError, JobItem, JobState, NewJob
from faceprint.jobs.store import JobStore, SqliteJobStore

Opener = Callable[[RecordCipher | None], JobStore]
SECRET = "Ruby Secretname"
VECTOR = [float(v) for v in np.random.default_rng(3).normal(size=128).astype(np.float32)]
THUMB = "/9j/4AAQSkZJRgABAQAAAQABAAD"


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Opener, Callable[[], list[str]]]]:
    """Opens a store on one database with a given cipher, and dumps its raw payload columns."""
    opened: list[JobStore] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite"

        def open_sqlite(cipher: RecordCipher | None) -> JobStore:
            opened.append(SqliteJobStore(path, cipher=cipher))
            return opened[-1]

        def raw_sqlite() -> list[str]:
            with contextlib.closing(sqlite3.connect(path)) as conn:
                rows = conn.execute(
                    "SELECT errors_json || summary_json FROM jobs UNION ALL SELECT data_json FROM job_items "
                    "UNION ALL SELECT unit_key FROM job_units"
                ).fetchall()
            return [r[0] for r in rows] + [path.read_bytes().decode("latin-1")]

        yield open_sqlite, raw_sqlite
    else:
        from faceprint.jobs.pg_store import PgJobStore
        from faceprint.postgres import connect

        url: str = request.getfixturevalue("postgres_url")
        schema = "jobs_" + uuid.uuid4().hex[:12]

        def open_pg(cipher: RecordCipher | None) -> JobStore:
            opened.append(PgJobStore(url, schema=schema, cipher=cipher))
            return opened[-1]

        def raw_pg() -> list[str]:
            with contextlib.closing(connect(url)) as conn:
                rows = conn.execute(
                    f"SELECT errors_json || summary_json FROM {schema}.jobs UNION ALL "
                    f"SELECT data_json FROM {schema}.job_items UNION ALL SELECT unit_key FROM {schema}.job_units"
                ).fetchall()
            return [str(r[0]) for r in rows]

        yield open_pg, raw_pg
        for store in opened:
            store.close()
        with contextlib.closing(connect(url)) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return
    for store in opened:
        store.close()


def _run_job(store: JobStore) -> tuple[Any, ...]:
    job = store.create(NewJob("face_recognition", ("storage://" + "a" * 32,), {"model": "staff"}))
    assert store.claim("w1", lease_s=30) is not None
    data = {"meta": {"person": SECRET, "vector": VECTOR}, "thumbnail": {"data": THUMB}}
    store.put_items(job.id, "w1", [JobItem("0:0", 0, data)], done_units=[f'{{"error": "{SECRET}.png unreadable"}}'])
    store.finish(
        job.id,
        "w1",
        state=JobState.COMPLETED,
        summary=({"items": [{"label": SECRET}]},),
        errors=(JobError("decode_error", f"{SECRET}.png: not an image"),),
    )
    done = store.get(job.id)
    items = store.items(job.id, offset=0, limit=10).rows
    return job.id, done.summary, done.errors, [(i.key, i.data) for i in items], store.done_units(job.id)


def test_sealed_payloads_answer_the_same_and_show_nothing(opener: tuple[Opener, Callable[[], list[str]]]) -> None:
    open_store, raw = opener
    cipher = RecordCipher(EncryptionKey.generate())
    job_id, *sealed = _run_job(open_store(cipher))
    dumped = "\n".join(raw())
    assert SECRET not in dumped and THUMB not in dumped and repr(VECTOR[0])[:8] not in dumped
    assert "fpe1:" in dumped
    with SqliteJobStore(":memory:") as plain:
        _, *clear = _run_job(plain)
    assert sealed == clear

    with pytest.raises(EncryptionKeyRequiredError):
        open_store(None).get(job_id)
    with pytest.raises(EncryptionKeyMismatchError):
        open_store(RecordCipher(EncryptionKey.generate())).items(job_id, offset=0, limit=10)
    rotated = RecordCipher(EncryptionKey.generate(), previous_keys=[_key_of(cipher)])
    assert open_store(rotated).get(job_id).summary == sealed[0]


def _key_of(cipher: RecordCipher) -> EncryptionKey:
    return cipher._key  # type: ignore[attr-defined]  # the test's own key, to build a rotation keyring


def test_clear_rows_stay_readable_after_a_key_is_set(opener: tuple[Opener, Callable[[], list[str]]]) -> None:
    open_store, _ = opener
    job_id, *clear = _run_job(open_store(None))
    keyed = open_store(RecordCipher(EncryptionKey.generate()))
    job = keyed.get(job_id)
    assert (job.summary, job.errors) == (clear[0], clear[1])
    assert [(i.key, i.data) for i in keyed.items(job_id, offset=0, limit=10).rows] == clear[2]


def test_a_payload_moved_to_another_job_fails_its_check(tmp_path: Path) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    path = tmp_path / "jobs.sqlite"
    with SqliteJobStore(path, cipher=cipher) as store:
        first = _run_job(store)[0]
        second = _run_job(store)[0]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (summary,) = conn.execute("SELECT summary_json FROM jobs WHERE id = ?", (first,)).fetchone()
        conn.execute("UPDATE jobs SET summary_json = ? WHERE id = ?", (summary, second))
        conn.commit()
    with SqliteJobStore(path, cipher=cipher) as store:
        assert store.get(first).summary
        with pytest.raises(EncryptedRecordCorruptError):
            store.get(second)


def test_rotation_reseals_every_payload_in_batches_and_a_rerun_finishes(
    opener: tuple[Opener, Callable[[], list[str]]],
) -> None:
    open_store, raw = opener
    old, new = EncryptionKey.generate(), EncryptionKey.generate()
    first = _run_job(open_store(RecordCipher(old)))
    second = _run_job(open_store(RecordCipher(old)))
    clear = _run_job(open_store(None))  # written before any key: sealed by the rotation too
    keyring = RecordCipher(new, previous_keys=[old])

    class Crash(Exception):
        pass

    def crash(rotated: int) -> None:
        raise Crash(rotated)

    with pytest.raises(Crash):
        open_store(keyring).rotate_encryption(batch_size=1, after_batch=crash)
    # One job done (its errors, summary, item and unit), the others untouched, all readable by the keyring.
    assert [_run_view(open_store(keyring), j[0]) for j in (first, second, clear)] == [
        tuple(j[1:]) for j in (first, second, clear)
    ]
    with pytest.raises(EncryptionKeyMismatchError):
        _run_view(open_store(RecordCipher(new)), second[0])

    summary = open_store(keyring).rotate_encryption(batch_size=1)
    assert (summary.payloads_rotated, summary.payloads_current) == (8, 4)
    new_only = open_store(RecordCipher(new))
    assert [_run_view(new_only, j[0]) for j in (first, second, clear)] == [tuple(j[1:]) for j in (first, second, clear)]
    payloads = [t for t in raw() if t.startswith(("fpe1:", "[", "{"))]
    assert payloads and all(t.startswith("fpe1:") for t in payloads)
    assert open_store(keyring).rotate_encryption().payloads_rotated == 0
    with pytest.raises(EncryptionKeyRequiredError):
        open_store(None).rotate_encryption()


def _run_view(store: JobStore, job_id: str) -> tuple[Any, ...]:
    done = store.get(job_id)
    items = store.items(job_id, offset=0, limit=10).rows
    return done.summary, done.errors, [(i.key, i.data) for i in items], store.done_units(job_id)
