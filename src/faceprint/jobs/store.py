"""Where jobs are kept: the :class:`JobStore` protocol and its default, :class:`SqliteJobStore`.

The protocol is small and backend-neutral so that a PostgreSQL store (``SELECT … FOR UPDATE SKIP LOCKED``)
can implement it too. Its guarantees:

- **claim with a lease**: :meth:`JobStore.claim` hands one job to one worker until ``lease_s`` from now;
  the worker renews it with :meth:`JobStore.heartbeat`. A job whose lease expired (its worker was killed)
  is claimed again; each claim counts an attempt, and a job claimed ``max_attempts`` times whose lease
  expires again fails with ``job_attempts_exhausted`` instead of killing another worker.
- **only the lease holder writes**: heartbeats, items and the final state of a job whose lease passed to
  another worker raise :class:`~faceprint.jobs.model.LeaseLostError`.
- **idempotent items**: results are keyed ``(job_id, item_key)``; writing a key again replaces it, so a
  retried item never appears twice. ``done_units`` records which parts of the work are finished so a
  retry can skip them.
- **progress never goes backwards** (the stored value is the maximum written).
- listings and result pages are read from the store, ``offset``/``limit``, never all at once.

Example:
    >>> store = SqliteJobStore(":memory:")
    >>> job = store.create(NewJob("face_pairs", ("storage://abc",)))
    >>> claimed = store.claim("worker-1", lease_s=30)
    >>> claimed.id == job.id, claimed.state.value, claimed.attempts
    (True, 'running', 1)
    >>> store.put_items(job.id, "worker-1", [JobItem("a", 0, {"x": 1}), JobItem("a", 0, {"x": 2})])
    >>> [item.data for item in store.items(job.id, offset=0, limit=10).rows]
    [{'x': 2}]
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
    MAX_PAGE_LIMIT,
    PayloadRotation,
    PayloadSeal,
    check_page,
    items_context,
    job_from_row,
    rotate_payload_batch,
)

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher

__all__ = ["DEFAULT_MAX_ATTEMPTS", "MAX_PAGE_LIMIT", "JobStore", "SqliteJobStore"]

DEFAULT_MAX_ATTEMPTS = 3


class JobStore(Protocol):
    """The job queue and result store every server and worker shares (see the module doc)."""

    def create(self, new: NewJob, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Job: ...

    def get(self, job_id: str) -> Job: ...

    def list_jobs(
        self, *, state: JobState | None = None, tag: str | None = None, offset: int = 0, limit: int = 10
    ) -> Page[Job]: ...

    def claim(self, worker_id: str, *, lease_s: float) -> Job | None:
        """The oldest waiting (or lease-expired) job, now running under ``worker_id``; None when there is none."""
        ...

    def heartbeat(self, job_id: str, worker_id: str, *, lease_s: float, progress: float | None = None) -> bool:
        """Renew the lease (and write progress); True when a cancel was requested. Raises LeaseLostError."""
        ...

    def put_items(
        self, job_id: str, worker_id: str, items: Iterable[JobItem], *, done_units: Sequence[str] = ()
    ) -> None: ...

    def done_units(self, job_id: str) -> frozenset[str]: ...

    def items(self, job_id: str, *, offset: int, limit: int) -> Page[JobItem]: ...

    def finish(
        self,
        job_id: str,
        worker_id: str,
        *,
        state: JobState,
        summary: Sequence[dict[str, Any]] = (),
        errors: Sequence[JobError] = (),
        result_path: str | None = None,
    ) -> Job: ...

    def request_cancel(self, job_id: str) -> Job:
        """A waiting job is cancelled at once; a running one is flagged and its worker stops it."""
        ...

    def rotate_encryption(
        self, *, batch_size: int = 100, after_batch: Callable[[int], None] | None = None
    ) -> PayloadRotation:
        """Re-seal every payload not yet under the store's cipher's key (clear ones included)."""
        ...

    def close(self) -> None: ...


_MIGRATIONS: tuple[str, ...] = (
    # 1: jobs, their items, and the units of work already done.
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        sources_json TEXT NOT NULL,
        params_json TEXT NOT NULL,
        tag TEXT NOT NULL,
        media_type TEXT,
        progress REAL NOT NULL DEFAULT 0,
        errors_json TEXT NOT NULL DEFAULT '[]',
        summary_json TEXT NOT NULL DEFAULT '[]',
        result_path TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_s REAL,
        time_created_s REAL NOT NULL,
        time_started_s REAL,
        time_completed_s REAL
    );
    CREATE INDEX jobs_state ON jobs (state, seq);
    CREATE INDEX jobs_tag ON jobs (tag, seq);
    CREATE TABLE job_items (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        item_key TEXT NOT NULL,
        position INTEGER NOT NULL,
        data_json TEXT NOT NULL,
        PRIMARY KEY (job_id, item_key)
    );
    CREATE INDEX job_items_order ON job_items (job_id, position, item_key);
    CREATE TABLE job_units (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        unit_key TEXT NOT NULL,
        PRIMARY KEY (job_id, unit_key)
    );
    """,
)


class SqliteJobStore:
    """Jobs in one SQLite file (WAL, busy timeout, numbered migrations), shared by the server and workers.

    One object may be used by several threads (it serialises its own use of its connection); several
    processes may open the same file. ``clock`` gives the time in seconds (tests pass a fake one).

    Args:
        path: the ``.sqlite`` file (created with its folder), or ``":memory:"``.
        busy_timeout_s: how long a write waits for another process's write lock.
        clock: the time source for leases and job times.
        cipher: seal result payloads at rest (:mod:`faceprint.jobs.rows`); None: clear.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        cipher: RecordCipher | None = None,
    ) -> None:
        self._seal = PayloadSeal(cipher)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the last commit).
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # --- plumbing -------------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                current = 0 if row is None or row[0] is None else int(row[0])
                for version, script in enumerate(_MIGRATIONS, start=1):
                    if version <= current:
                        continue
                    for statement in script.split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in one write transaction (BEGIN IMMEDIATE takes the write lock up front)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def _row(self, conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}", details={"job_id": job_id})
        return job_from_row(row, self._seal)

    def _held(self, conn: sqlite3.Connection, job_id: str, worker_id: str) -> Job:
        job = self._row(conn, job_id)
        if job.state is not JobState.RUNNING or job.lease_owner != worker_id:
            raise LeaseLostError(
                f"job {job_id} is no longer held by {worker_id} (state {job.state.value}, owner {job.lease_owner})",
                details={"job_id": job_id},
            )
        return job

    def rotate_encryption(
        self, *, batch_size: int = 100, after_batch: Callable[[int], None] | None = None
    ) -> PayloadRotation:
        """Re-seal every payload not yet under this store's cipher's key (clear ones included).

        The cipher must hold the old keys as ``previous_keys``. Each batch of jobs is one write
        transaction, so a crash (or ``after_batch`` raising, as tests do) leaves each payload wholly under
        one key, and a second run picks up where the first stopped.
        """
        if self._seal.cipher is None:
            raise EncryptionKeyRequiredError("rotating job data needs the new key in FACEPRINT_ENCRYPTION_KEY")

        def batch(after_seq: int) -> tuple[int | None, int, int]:
            def run(conn: sqlite3.Connection) -> tuple[int | None, int, int]:
                return rotate_payload_batch(
                    self._seal,
                    lambda sql, params: conn.execute(sql, params).fetchall(),
                    table_prefix="",
                    placeholder="?",
                    after_seq=after_seq,
                    batch_size=batch_size,
                )

            result: tuple[int | None, int, int] = self._write(run)
            return result

        rotated, current = rotate_in_batches(batch, start=0, after_batch=after_batch)
        return PayloadRotation(payloads_rotated=rotated, payloads_current=current)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- clients ----------------------------------------------------------------------------------------------

    def create(self, new: NewJob, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Job:
        """Queue a new job (``waiting``)."""
        if max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1, got {max_attempts}")
        job_id = str(uuid.uuid4())
        now = self._clock()

        def insert(conn: sqlite3.Connection) -> Job:
            conn.execute(
                "INSERT INTO jobs (id, kind, state, sources_json, params_json, tag, media_type, max_attempts, "
                "time_created_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    new.kind,
                    JobState.WAITING.value,
                    json.dumps(list(new.sources)),
                    json.dumps(new.params, sort_keys=True),
                    new.tag,
                    new.media_type,
                    max_attempts,
                    now,
                ),
            )
            return self._row(conn, job_id)

        job: Job = self._write(insert)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._row(self._conn, job_id)

    def list_jobs(
        self, *, state: JobState | None = None, tag: str | None = None, offset: int = 0, limit: int = 10
    ) -> Page[Job]:
        """Jobs newest first, filtered by state and tag."""
        check_page(offset, limit)
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if tag is not None:
            where.append("tag = ?")
            args.append(tag)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            total = int(self._conn.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0])
            rows = self._conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs{clause} ORDER BY seq DESC LIMIT ? OFFSET ?", [*args, limit, offset]
            ).fetchall()
        return Page(total=total, offset=offset, limit=limit, rows=tuple(job_from_row(r, self._seal) for r in rows))

    def request_cancel(self, job_id: str) -> Job:
        now = self._clock()

        def cancel(conn: sqlite3.Connection) -> Job:
            job = self._row(conn, job_id)
            if job.state is JobState.WAITING:
                conn.execute(
                    "UPDATE jobs SET state = ?, cancel_requested = 1, time_completed_s = ? WHERE id = ?",
                    (JobState.CANCELLED.value, now, job_id),
                )
            elif job.state is JobState.RUNNING:
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return self._row(conn, job_id)

        job: Job = self._write(cancel)
        return job

    def items(self, job_id: str, *, offset: int, limit: int) -> Page[JobItem]:
        """One page of a job's detailed results, in position order."""
        check_page(offset, limit)
        with self._lock:
            self._row(self._conn, job_id)
            total = int(self._conn.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ?", (job_id,)).fetchone()[0])
            rows = self._conn.execute(
                "SELECT item_key, position, data_json FROM job_items WHERE job_id = ? "
                "ORDER BY position, item_key LIMIT ? OFFSET ?",
                (job_id, limit, offset),
            ).fetchall()
        return Page(
            total=total,
            offset=offset,
            limit=limit,
            rows=tuple(
                JobItem(key=r[0], position=int(r[1]), data=self._seal.loads(r[2], context=items_context(job_id, r[0])))
                for r in rows
            ),
        )

    # --- workers ----------------------------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_s: float) -> Job | None:
        if lease_s <= 0:
            raise UsageError(f"lease_s must be positive, got {lease_s}")

        def take(conn: sqlite3.Connection) -> Job | None:
            now = self._clock()
            while True:
                row = conn.execute(
                    "SELECT id, attempts, max_attempts, state, cancel_requested FROM jobs "
                    "WHERE state = ? OR (state = ? AND lease_expires_s < ?) ORDER BY seq LIMIT 1",
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
                    conn.execute(
                        "UPDATE jobs SET state = ?, errors_json = ?, lease_owner = NULL, lease_expires_s = NULL, "
                        "time_completed_s = ? WHERE id = ?",
                        (final.value, self._seal.dumps(errors, context=f"jobs/{job_id}/errors"), now, job_id),
                    )
                    continue
                conn.execute(
                    "UPDATE jobs SET state = ?, attempts = attempts + 1, lease_owner = ?, lease_expires_s = ?, "
                    "time_started_s = COALESCE(time_started_s, ?) WHERE id = ?",
                    (JobState.RUNNING.value, worker_id, now + lease_s, now, job_id),
                )
                return self._row(conn, job_id)

        job: Job | None = self._write(take)
        return job

    def heartbeat(self, job_id: str, worker_id: str, *, lease_s: float, progress: float | None = None) -> bool:
        def beat(conn: sqlite3.Connection) -> bool:
            job = self._held(conn, job_id, worker_id)
            value = job.progress if progress is None else max(job.progress, min(max(progress, 0.0), 1.0))
            conn.execute(
                "UPDATE jobs SET lease_expires_s = ?, progress = ? WHERE id = ?",
                (self._clock() + lease_s, value, job_id),
            )
            return job.cancel_requested

        cancelled: bool = self._write(beat)
        return cancelled

    def put_items(
        self, job_id: str, worker_id: str, items: Iterable[JobItem], *, done_units: Sequence[str] = ()
    ) -> None:
        rows = [
            (job_id, item.key, item.position, self._seal.dumps(item.data, context=items_context(job_id, item.key)))
            for item in items
        ]
        units = [self._seal.seal_text(u, context=f"jobs/{job_id}/units") for u in done_units]

        def put(conn: sqlite3.Connection) -> None:
            self._held(conn, job_id, worker_id)
            conn.executemany(
                "INSERT INTO job_items (job_id, item_key, position, data_json) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job_id, item_key) DO UPDATE SET position = excluded.position, "
                "data_json = excluded.data_json",
                rows,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO job_units (job_id, unit_key) VALUES (?, ?)", [(job_id, u) for u in units]
            )

        self._write(put)

    def done_units(self, job_id: str) -> frozenset[str]:
        with self._lock:
            rows = self._conn.execute("SELECT unit_key FROM job_units WHERE job_id = ?", (job_id,)).fetchall()
        return frozenset(self._seal.open_text(r[0], context=f"jobs/{job_id}/units") for r in rows)

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

        def end(conn: sqlite3.Connection) -> Job:
            self._held(conn, job_id, worker_id)
            progress_sql = "1.0" if state is JobState.COMPLETED else "progress"
            conn.execute(
                f"UPDATE jobs SET state = ?, progress = {progress_sql}, summary_json = ?, errors_json = ?, "
                "result_path = ?, lease_owner = NULL, lease_expires_s = NULL, time_completed_s = ? WHERE id = ?",
                (
                    state.value,
                    self._seal.dumps(list(summary), context=f"jobs/{job_id}/summary"),
                    self._seal.dumps([e.to_dict() for e in errors], context=f"jobs/{job_id}/errors"),
                    result_path,
                    self._clock(),
                    job_id,
                ),
            )
            return self._row(conn, job_id)

        job: Job = self._write(end)
        return job
