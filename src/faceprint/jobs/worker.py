"""The worker: a process that claims jobs, runs them on one long-lived engine, and heartbeats while it does.

One :class:`~faceprint.analyze.Analyzer` is built when the worker starts and reused for every job. While a
job runs, a heartbeat thread renews its lease and writes its progress every ``heartbeat_s`` (at most 2 s),
and learns whether the job was cancelled; the runner then stops within seconds. A job-level problem (a
missing gallery, a bad dataset) fails the job with its error code; a worker that dies (SIGKILL, out of
memory) simply stops heartbeating, and another worker claims the job once the lease expires.

Example:
    >>> WorkerConfig(heartbeat_s=1.0).lease_s
    30.0
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from faceprint.analyze import Analyzer
from faceprint.errors import FaceprintError, UsageError
from faceprint.jobs.context import JobContext, JobLimits, JobOutcome, ProgressCell, Runner
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.model import Job, JobError, JobState, LeaseLostError
from faceprint.jobs.retention import release_job_uploads, sweep_uploads
from faceprint.jobs.store import JobStore
from faceprint.jobs.uploads import UploadStore

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher

__all__ = ["JobWorker", "WorkerConfig", "default_runners", "new_worker_id", "run_worker"]

_log = logging.getLogger("faceprint.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker claims and keeps jobs."""

    lease_s: float = 30.0
    """How long a claim lasts without a heartbeat (a killed worker's job waits this long to be re-leased)."""
    heartbeat_s: float = 1.0
    """Lease renewal and progress write interval (at most 2 s)."""
    poll_s: float = 0.5
    """Wait between claims when the queue is empty."""
    limits: JobLimits = field(default_factory=JobLimits)
    engine_workers: int = 1
    """Worker processes of the engine for big jobs (1: in the worker process)."""
    confidential: bool = False
    """Confidential mode (docs/privacy.md): a job's uploads are deleted when it ends, orphans swept, logs scrubbed."""
    orphan_grace_s: float = 300.0
    """Confidential sweeps leave uploads younger than this (one whose job is being created right now)."""
    sweep_every_s: float = 60.0
    """How often an idle confidential worker sweeps orphaned uploads."""

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s <= 2.0:
            raise UsageError(f"heartbeat_s must be within (0, 2], got {self.heartbeat_s}")
        if self.lease_s < 2 * self.heartbeat_s:
            raise UsageError(f"lease_s must be at least two heartbeats, got {self.lease_s}")
        if self.poll_s <= 0:
            raise UsageError(f"poll_s must be positive, got {self.poll_s}")
        if self.engine_workers < 1:
            raise UsageError(f"engine_workers must be at least 1, got {self.engine_workers}")
        if self.orphan_grace_s < 0 or self.sweep_every_s <= 0:
            raise UsageError("orphan_grace_s must be >= 0 and sweep_every_s positive")


def new_worker_id() -> str:
    """``host:pid:random``, unique per worker process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def default_runners() -> dict[str, Runner]:
    from faceprint.jobs.pairs import run_face_pairs
    from faceprint.jobs.recognition import run_face_recognition

    return {"face_recognition": run_face_recognition, "face_pairs": run_face_pairs}


class JobWorker:
    """Claims and runs jobs from ``store`` (see the module doc).

    Args:
        store: The shared job store.
        layout: The data dir (uploads, galleries, results).
        analyzer: The engine, entered by the caller, reused for every job.
        config: Lease, heartbeat and limits.
        runners: Job kind → runner (default: the face_recognition and face_pairs runners).
        pipeline_factory_ref: ``module:function`` of the analyzer's pipeline factory, for child processes.
        worker_id: This worker's name in leases.
        cipher: Uploads, results and galleries sealed at rest with it (None: no encryption key).
    """

    def __init__(
        self,
        store: JobStore,
        layout: DataLayout,
        analyzer: Analyzer,
        *,
        config: WorkerConfig | None = None,
        runners: dict[str, Runner] | None = None,
        pipeline_factory_ref: str | None = None,
        worker_id: str | None = None,
        cipher: RecordCipher | None = None,
    ) -> None:
        self._store = store
        self._layout = layout
        self._cipher = cipher
        self._uploads = UploadStore(layout.uploads_dir, cipher=cipher)
        self._analyzer = analyzer
        self._config = config if config is not None else WorkerConfig()
        self._runners = runners if runners is not None else default_runners()
        self._factory_ref = pipeline_factory_ref
        self.worker_id = worker_id if worker_id is not None else new_worker_id()
        self._video: Analyzer | None = None
        self._video_lock = threading.Lock()

    def _video_analyzer(self) -> Analyzer:
        """A second long-lived engine, for video: the same model without detector fallbacks (see video.engine)."""
        with self._video_lock:
            if self._video is None:
                from faceprint.jobs.pairs import load_factory
                from faceprint.video.engine import for_video  # type: ignore[import-not-found,unused-ignore]

                # upsample 0: what `faceprint video` uses (faces of ~80 px at the detection scale; 4x faster),
                # so a video job finds what the command finds, in the same time.
                engine = Analyzer(
                    replace(for_video(self._analyzer.config), upsample=0),
                    workers=self._analyzer.workers,
                    pipeline_factory=load_factory(self._factory_ref),
                )
                self._video = engine.__enter__()
            return self._video

    def close(self) -> None:
        """Stop the video engine's workers (the caller closes the main engine)."""
        with self._video_lock:
            if self._video is not None:
                self._video.close()
                self._video = None

    def run_forever(self, stop: threading.Event) -> None:
        """Claim and run jobs until ``stop`` is set (the running job is finished first).

        In confidential mode, orphaned uploads (no waiting or running job uses them: a crash between a
        job's end and the release of its uploads) are swept at start and every ``sweep_every_s`` while idle.
        """
        if self._config.confidential:
            from faceprint.logs import install_confidential_logging

            install_confidential_logging()  # idempotent; the worker's own records are scrubbed too
        last_sweep = -math.inf
        try:
            while not stop.is_set():
                if self._config.confidential and time.monotonic() - last_sweep >= self._config.sweep_every_s:
                    self.sweep_orphans()
                    last_sweep = time.monotonic()
                if not self.run_once():
                    stop.wait(self._config.poll_s)
        finally:
            self.close()

    def sweep_orphans(self) -> list[str]:
        """Delete uploads no waiting or running job uses (older than ``orphan_grace_s``); their names."""
        try:
            return sweep_uploads(self._store, self._layout.uploads_dir, min_age_s=self._config.orphan_grace_s)
        except Exception as err:  # a sweep must never stop the worker; the next one retries
            _log.error("sweep of orphaned uploads failed: %s", type(err).__name__)
            return []

    def run_once(self) -> bool:
        """Claim one job and run it to its end; False when there was none."""
        job = self._store.claim(self.worker_id, lease_s=self._config.lease_s)
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        cancel = threading.Event()
        lost = threading.Event()
        done = threading.Event()
        progress = ProgressCell()
        progress.set(job.progress)
        beat = threading.Thread(
            target=self._heartbeat, args=(job.id, progress, cancel, lost, done), name=f"heartbeat-{job.id}", daemon=True
        )
        beat.start()
        ctx = JobContext(
            job=job,
            worker_id=self.worker_id,
            store=self._store,
            layout=self._layout,
            uploads=self._uploads,
            analyzer=self._analyzer,
            cancel=cancel,
            progress=progress,
            limits=self._config.limits,
            pipeline_factory_ref=self._factory_ref,
            engine_workers=self._config.engine_workers,
            video_engine=self._video_analyzer,
            cipher=self._cipher,
            confidential=self._config.confidential,
        )
        state = JobState.COMPLETED
        outcome = JobOutcome()
        try:
            runner = self._runners.get(job.kind)
            if runner is None:
                raise UsageError(f"no runner for job kind {job.kind!r}")
            outcome = runner(ctx)
            if cancel.is_set():
                state = JobState.CANCELLED
        except FaceprintError as err:
            if cancel.is_set():
                state = JobState.CANCELLED
            else:
                state = JobState.FAILED
                outcome = JobOutcome(errors=(JobError(err.code, err.message),))
        except Exception as err:  # one bad job must not stop the worker; its error is recorded, not shown raw
            if self._config.confidential:
                # A traceback quotes file names and values: confidential logs keep the job and the type only.
                _log.error("job %s failed: %s", job.id, type(err).__name__)
            else:
                _log.exception("job %s failed", job.id)
            state = JobState.FAILED
            outcome = JobOutcome(errors=(JobError("internal_error", f"{type(err).__name__}: {err}"),))
        finally:
            done.set()
            beat.join()
        if lost.is_set():
            return  # another worker holds the job now; it writes the outcome
        try:
            self._store.heartbeat(job.id, self.worker_id, lease_s=self._config.lease_s, progress=progress.get())
            self._store.finish(
                job.id,
                self.worker_id,
                state=state,
                summary=outcome.summary,
                errors=outcome.errors,
                result_path=outcome.result_path,
            )
        except LeaseLostError:
            _log.warning("job %s: lease lost before finishing", job.id)
            return
        if self._config.confidential:
            self._release(job.id)

    def _release(self, job_id: str) -> None:
        """Delete the uploads of an ended job (confidential mode); a failure leaves them to the sweep."""
        try:
            ended = self._store.get(job_id)
            release_job_uploads(ended, self._store, self._uploads)
        except Exception as err:
            _log.error("job %s: its uploads could not be released: %s", job_id, type(err).__name__)

    def _heartbeat(
        self,
        job_id: str,
        progress: ProgressCell,
        cancel: threading.Event,
        lost: threading.Event,
        done: threading.Event,
    ) -> None:
        while not done.wait(self._config.heartbeat_s):
            try:
                if self._store.heartbeat(job_id, self.worker_id, lease_s=self._config.lease_s, progress=progress.get()):
                    cancel.set()
            except LeaseLostError:
                lost.set()
                cancel.set()
                return
            except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                _log.exception("heartbeat of job %s failed", job_id)


def run_worker(
    store_factory: Callable[[], JobStore],
    layout: DataLayout,
    analyzer: Analyzer,
    *,
    stop: threading.Event,
    config: WorkerConfig | None = None,
    pipeline_factory_ref: str | None = None,
    cipher: RecordCipher | None = None,
) -> None:
    """Open the store, then run a worker until ``stop`` is set (what ``faceprint worker`` does)."""
    store = store_factory()
    try:
        JobWorker(
            store, layout, analyzer, config=config, pipeline_factory_ref=pipeline_factory_ref, cipher=cipher
        ).run_forever(stop)
    finally:
        store.close()
