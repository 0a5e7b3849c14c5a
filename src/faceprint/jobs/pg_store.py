"""PgJobStore: the job queue in PostgreSQL, shared by API servers and workers on many hosts.

The same :class:`~faceprint.jobs.store.JobStore` guarantees as :class:`~faceprint.jobs.store.SqliteJobStore`
(leases, attempts, lease-holder-only writes, idempotent items, monotonic progress, paged reads), with the
claim done the PostgreSQL way: ``SELECT … FOR UPDATE SKIP LOCKED``, so any number of workers claim at once
without waiting on each other and never take the same job. Every write of a running job locks its row
first (``FOR UPDATE``), so a worker whose lease just passed to another one cannot slip a write in.

Times come from the database server's clock (one clock for every host), unless a ``clock`` is given
(tests). Tables live in the ``faceprint_jobs`` schema, built by numbered migrations.

Example:
    >>> store = PgJobStore("postgresql://app@db.example.org/faces")  # doctest: +SKIP
    >>> job = store.create(NewJob("face_pairs", ("storage://abc",)))  # doctest: +SKIP
    >>> store.claim("worker-1", lease_s=30).state.value  # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from faceprint.crypto import EncryptionKeyRequiredError, rotate_in_batches
from faceprint.errors import UsageError
from faceprint.jobs.model import (
    Job,
    JobAttemptsExhaustedError,
    JobError,
    JobItem,
    JobNotFoundError,
    JobState,
    LeaseLostError,
    NewJob,
    Page,
)
from faceprint.jobs.rows import (
    JOB_COLUMNS,
    PayloadRotation,
    PayloadSeal,
    check_page,
    items_context,
    job_from_row,
    rotate_payload_batch,
)
from faceprint.jobs.store import DEFAULT_MAX_ATTEMPTS
from faceprint.postgres import (
    apply_migrations,
    check_schema_name,
    connect,
    operational_errors,
    redact_url,
    unavailable,
)

if TYPE_CHECKING:
    import psycopg

    from faceprint.crypto import RecordCipher

__all__ = ["JOBS_SCHEMA", "MIGRATIONS", "PgJobStore"]

JOBS_SCHEMA = "faceprint_jobs"

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE {schema}.jobs (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                sources_json TEXT NOT NULL,
                params_json TEXT NOT NULL,
                tag TEXT NOT NULL,
                media_type TEXT,
                progress DOUBLE PRECISION NOT NULL DEFAULT 0,
                errors_json TEXT NOT NULL DEFAULT '[]',
                summary_json TEXT NOT NULL DEFAULT '[]',
                result_path TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
                lease_owner TEXT,
                lease_expires_s DOUBLE PRECISION,
                time_created_s DOUBLE PRECISION NOT NULL,
                time_started_s DOUBLE PRECISION,
                time_completed_s DOUBLE PRECISION
            )""",
            "CREATE INDEX jobs_state ON {schema}.jobs (state, seq)",
            "CREATE INDEX jobs_tag ON {schema}.jobs (tag, seq)",
            """CREATE TABLE {schema}.job_items (
                job_id TEXT NOT NULL REFERENCES {schema}.jobs (id) ON DELETE CASCADE,
                item_key TEXT NOT NULL,
                position INTEGER NOT NULL,
                data_json TEXT NOT NULL,
                PRIMARY KEY (job_id, item_key)
            )""",
            "CREATE INDEX job_items_order ON {schema}.job_items (job_id, position, item_key)",
            """CREATE TABLE {schema}.job_units (
                job_id TEXT NOT NULL REFERENCES {schema}.jobs (id) ON DELETE CASCADE,
                unit_key TEXT NOT NULL,
                PRIMARY KEY (job_id, unit_key)
            )""",
        ),
    ),
)
"""Numbered schema steps; append only."""


class PgJobStore:
    """Jobs in PostgreSQL (see the module doc); a drop-in for :class:`~faceprint.jobs.store.SqliteJobStore`.

    One object may be used by several threads (it serialises its own use of its connection); any number
    of processes on any number of hosts may open the same database.

    Args:
        url: ``postgresql://…`` of the database (``FACEPRINT_DATABASE_URL``).
        clock: the time source for leases and job times; None uses the database server's clock.
        schema: the PostgreSQL schema of the tables (several deployments may share one database).
        connect_timeout_s: how long to wait for the server.

    Example:
        >>> with PgJobStore(settings.database_url) as store:  # doctest: +SKIP
        ...     store.list_jobs(limit=5).total
        0
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        schema: str = JOBS_SCHEMA,
        connect_timeout_s: float = 10.0,
        cipher: RecordCipher | None = None,
    ) -> None:
        self._seal = PayloadSeal(cipher)  # result payloads sealed at rest (faceprint.jobs.rows)
        self._url = url
        self._schema = check_schema_name(schema)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = connect(url, connect_timeout_s=connect_timeout_s, application_name="faceprint-jobs")
        try:
            apply_migrations(self._conn, schema=self._schema, migrations=MIGRATIONS)
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"PgJobStore({redact_url(self._url)!r})"

    # --- plumbing -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            try:
                with self._conn.transaction():
                    yield self._conn.cursor()
            except operational_errors() as err:
                raise unavailable(self._url, err) from err

    def _now(self, cur: psycopg.Cursor[Any]) -> float:
        if self._clock is not None:
            return self._clock()
        row = cur.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8").fetchone()
        return float(row[0]) if row is not None else 0.0

    def _row(self, cur: psycopg.Cursor[Any], job_id: str, *, lock: bool = False) -> Job:
        suffix = " FOR UPDATE" if lock else ""
        row = cur.execute(f"SELECT {JOB_COLUMNS} FROM {self._schema}.jobs WHERE id = %s{suffix}", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}", details={"job_id": job_id})
        return job_from_row(row, self._seal)

    def _held(self, cur: psycopg.Cursor[Any], job_id: str, worker_id: str) -> Job:
        job = self._row(cur, job_id, lock=True)
        if job.state is not JobState.RUNNING or job.lease_owner != worker_id:
            raise LeaseLostError(
                f"job {job_id} is no longer held by {worker_id} (state {job.state.value}, owner {job.lease_owner})",
                details={"job_id": job_id},
            )
        return job

    def schema_version(self) -> int:
        with self._tx() as cur:
            row = cur.execute(f"SELECT MAX(version) FROM {self._schema}.schema_version").fetchone()
            return 0 if row is None or row[0] is None else int(row[0])

    def rotate_encryption(
        self, *, batch_size: int = 100, after_batch: Callable[[int], None] | None = None
    ) -> PayloadRotation:
        """Re-seal every payload not yet under this store's cipher's key, a batch of jobs per transaction
        (see :meth:`faceprint.jobs.store.SqliteJobStore.rotate_encryption`)."""
        if self._seal.cipher is None:
            raise EncryptionKeyRequiredError("rotating job data needs the new key in FACEPRINT_ENCRYPTION_KEY")

        def batch(after_seq: int) -> tuple[int | None, int, int]:
            with self._tx() as cur:

                def query(sql: str, params: tuple[Any, ...]) -> list[Any]:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description is not None else []

                return rotate_payload_batch(
                    self._seal,
                    query,
                    table_prefix=f"{self._schema}.",
                    placeholder="%s",
                    after_seq=after_seq,
                    batch_size=batch_size,
                )

        rotated, current = rotate_in_batches(batch, start=0, after_batch=after_batch)
        return PayloadRotation(payloads_rotated=rotated, payloads_current=current)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PgJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- clients ----------------------------------------------------------------------------------------------

    def create(self, new: NewJob, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Job:
        """Queue a new job (``waiting``)."""
        if max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1, got {max_attempts}")
        job_id = str(uuid.uuid4())
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO {self._schema}.jobs (id, kind, state, sources_json, params_json, tag, media_type, "
                "max_attempts, time_created_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    job_id,
                    new.kind,
                    JobState.WAITING.value,
                    json.dumps(list(new.sources)),
                    json.dumps(new.params, sort_keys=True),
                    new.tag,
                    new.media_type,
                    max_attempts,
                    self._now(cur),
                ),
            )
            return self._row(cur, job_id)

    def get(self, job_id: str) -> Job:
        with self._tx() as cur:
            return self._row(cur, job_id)

    def list_jobs(
        self, *, state: JobState | None = None, tag: str | None = None, offset: int = 0, limit: int = 10
    ) -> Page[Job]:
        """Jobs newest first, filtered by state and tag."""
        check_page(offset, limit)
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append("state = %s")
            args.append(state.value)
        if tag is not None:
            where.append("tag = %s")
            args.append(tag)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._tx() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the count and the page agree
            count = cur.execute(f"SELECT COUNT(*) FROM {self._schema}.jobs{clause}", args).fetchone()
            rows = cur.execute(
                f"SELECT {JOB_COLUMNS} FROM {self._schema}.jobs{clause} ORDER BY seq DESC LIMIT %s OFFSET %s",
                [*args, limit, offset],
            ).fetchall()
        total = 0 if count is None else int(count[0])
        return Page(total=total, offset=offset, limit=limit, rows=tuple(job_from_row(r, self._seal) for r in rows))

    def request_cancel(self, job_id: str) -> Job:
        with self._tx() as cur:
            job = self._row(cur, job_id, lock=True)
            if job.state is JobState.WAITING:
                cur.execute(
                    f"UPDATE {self._schema}.jobs SET state = %s, cancel_requested = TRUE, time_completed_s = %s "
                    "WHERE id = %s",
                    (JobState.CANCELLED.value, self._now(cur), job_id),
                )
            elif job.state is JobState.RUNNING:
                cur.execute(f"UPDATE {self._schema}.jobs SET cancel_requested = TRUE WHERE id = %s", (job_id,))
            return self._row(cur, job_id)

    def items(self, job_id: str, *, offset: int, limit: int) -> Page[JobItem]:
        """One page of a job's detailed results, in position order."""
        check_page(offset, limit)
        with self._tx() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._row(cur, job_id)
            count = cur.execute(
                f"SELECT COUNT(*) FROM {self._schema}.job_items WHERE job_id = %s", (job_id,)
            ).fetchone()
            rows = cur.execute(
                f"SELECT item_key, position, data_json FROM {self._schema}.job_items WHERE job_id = %s "
                'ORDER BY position, item_key COLLATE "C" LIMIT %s OFFSET %s',
                (job_id, limit, offset),
            ).fetchall()
        return Page(
            total=0 if count is None else int(count[0]),
            offset=offset,
            limit=limit,
            rows=tuple(
                JobItem(key=r[0], position=int(r[1]), data=self._seal.loads(r[2], context=items_context(job_id, r[0])))
                for r in rows
            ),
        )

    # --- workers ----------------------------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_s: float) -> Job | None:
        """The oldest waiting (or lease-expired) job, now running under ``worker_id``; None when there is none.

        Rows other workers are claiming right now are skipped (``SKIP LOCKED``), never waited for.
        """
        if lease_s <= 0:
            raise UsageError(f"lease_s must be positive, got {lease_s}")
        with self._tx() as cur:
            now = self._now(cur)
            while True:
                row = cur.execute(
                    f"SELECT id, attempts, max_attempts, state, cancel_requested FROM {self._schema}.jobs "
                    "WHERE state = %s OR (state = %s AND lease_expires_s < %s) "
                    "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (JobState.WAITING.value, JobState.RUNNING.value, now),
                ).fetchone()
                if row is None:
                    return None
                job_id, attempts, max_attempts, state, cancel_requested = row
                if state == JobState.RUNNING.value and (cancel_requested or attempts >= max_attempts):
                    # Its worker died: a cancelled job ends here, and one out of attempts fails clearly.
                    final, errors = JobState.CANCELLED, []
                    if not cancel_requested:
                        err = JobAttemptsExhaustedError(
                            f"the job's worker stopped (killed or crashed) on each of its {attempts} attempts"
                        )
                        final, errors = JobState.FAILED, [JobError(err.code, err.message).to_dict()]
                    cur.execute(
                        f"UPDATE {self._schema}.jobs SET state = %s, errors_json = %s, lease_owner = NULL, "
                        "lease_expires_s = NULL, time_completed_s = %s WHERE id = %s",
                        (final.value, self._seal.dumps(errors, context=f"jobs/{job_id}/errors"), now, job_id),
                    )
                    continue
                cur.execute(
                    f"UPDATE {self._schema}.jobs SET state = %s, attempts = attempts + 1, lease_owner = %s, "
                    "lease_expires_s = %s, time_started_s = COALESCE(time_started_s, %s) WHERE id = %s",
                    (JobState.RUNNING.value, worker_id, now + lease_s, now, job_id),
                )
                return self._row(cur, job_id)

    def heartbeat(self, job_id: str, worker_id: str, *, lease_s: float, progress: float | None = None) -> bool:
        """Renew the lease (and write progress); True when a cancel was requested. Raises LeaseLostError."""
        with self._tx() as cur:
            job = self._held(cur, job_id, worker_id)
            value = job.progress if progress is None else max(job.progress, min(max(progress, 0.0), 1.0))
            cur.execute(
                f"UPDATE {self._schema}.jobs SET lease_expires_s = %s, progress = %s WHERE id = %s",
                (self._now(cur) + lease_s, value, job_id),
            )
            return job.cancel_requested

    def put_items(
        self, job_id: str, worker_id: str, items: Iterable[JobItem], *, done_units: Sequence[str] = ()
    ) -> None:
        rows = [
            (job_id, item.key, item.position, self._seal.dumps(item.data, context=items_context(job_id, item.key)))
            for item in items
        ]
        units = [self._seal.seal_text(u, context=f"jobs/{job_id}/units") for u in done_units]
        with self._tx() as cur:
            self._held(cur, job_id, worker_id)
            if rows:
                cur.executemany(
                    f"INSERT INTO {self._schema}.job_items (job_id, item_key, position, data_json) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (job_id, item_key) DO UPDATE SET "
                    "position = excluded.position, data_json = excluded.data_json",
                    rows,
                )
            if done_units:
                cur.executemany(
                    f"INSERT INTO {self._schema}.job_units (job_id, unit_key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [(job_id, unit) for unit in units],
                )

    def done_units(self, job_id: str) -> frozenset[str]:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT unit_key FROM {self._schema}.job_units WHERE job_id = %s", (job_id,)).fetchall()
        return frozenset(self._seal.open_text(str(r[0]), context=f"jobs/{job_id}/units") for r in rows)

    def finish(
        self,
        job_id: str,
        worker_id: str,
        *,
        state: JobState,
        summary: Sequence[dict[str, Any]] = (),
        errors: Sequence[JobError] = (),
        result_path: str | None = None,
    ) -> Job:
        if not state.is_final:
            raise UsageError(f"finish needs a final state, not {state.value}")
        with self._tx() as cur:
            self._held(cur, job_id, worker_id)
            progress_sql = "1.0" if state is JobState.COMPLETED else "progress"
            cur.execute(
                f"UPDATE {self._schema}.jobs SET state = %s, progress = {progress_sql}, summary_json = %s, "
                "errors_json = %s, result_path = %s, lease_owner = NULL, lease_expires_s = NULL, "
                "time_completed_s = %s WHERE id = %s",
                (
                    state.value,
                    self._seal.dumps(list(summary), context=f"jobs/{job_id}/summary"),
                    self._seal.dumps([e.to_dict() for e in errors], context=f"jobs/{job_id}/errors"),
                    result_path,
                    self._now(cur),
                    job_id,
                ),
            )
            return self._row(cur, job_id)
