"""Confidential mode in the job service: no upload outlives the jobs that use it.

:func:`release_job_uploads` deletes the uploads of a job that has ended (completed, failed or cancelled),
except those another waiting or running job still needs. :func:`sweep_uploads` deletes every upload that no
waiting or running job refers to, and the temp files of uploads cut off mid-way: the orphans a crash or a
restart leaves, run at start-up (``min_age_s=0``) or now and then (with a grace time, so an upload whose
job is about to be created is not taken away).

Example:
    >>> import tempfile
    >>> from faceprint.jobs.store import SqliteJobStore
    >>> root = Path(tempfile.mkdtemp())
    >>> with SqliteJobStore(root / "jobs.sqlite") as store:
    ...     sweep_uploads(store, root / "uploads")
    []
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from faceprint.jobs.model import Job, JobState
from faceprint.jobs.store import MAX_PAGE_LIMIT, JobStore
from faceprint.jobs.uploads import InvalidSourceError, UploadNotFoundError, UploadStore, parse_storage_uri

__all__ = ["release_job_uploads", "release_uploads", "sweep_uploads"]

_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def _active_jobs(store: JobStore) -> Iterator[Job]:
    for state in (JobState.WAITING, JobState.RUNNING):
        offset = 0
        while True:
            page = store.list_jobs(state=state, offset=offset, limit=MAX_PAGE_LIMIT)
            yield from page.rows
            offset += len(page.rows)
            if not page.rows or offset >= page.total:
                break


def _upload_ids(job: Job) -> set[str]:
    ids: set[str] = set()
    for uri in job.sources:
        with contextlib.suppress(InvalidSourceError):
            ids.add(parse_storage_uri(uri))
    return ids


def _in_use(store: JobStore, *, besides: str | None = None) -> set[str]:
    used: set[str] = set()
    for job in _active_jobs(store):
        if job.id != besides:
            used |= _upload_ids(job)
    return used


def release_job_uploads(job: Job, store: JobStore, uploads: UploadStore) -> list[str]:
    """Delete the uploads of an ended ``job`` that no waiting or running job uses; returns their ids.

    A job that has not ended keeps its uploads (a re-leased job needs them again).
    """
    if not job.state.is_final:
        return []
    return _delete_unused(_upload_ids(job), store, uploads, besides=job.id)


def release_uploads(upload_ids: Iterable[str], store: JobStore, uploads: UploadStore) -> list[str]:
    """Delete these uploads unless a waiting or running job uses them; returns the ids deleted.

    For uploads used outside jobs (a confidential service's enrolment photos, once enrolled).
    """
    return _delete_unused(set(upload_ids), store, uploads, besides=None)


def _delete_unused(ids: set[str], store: JobStore, uploads: UploadStore, *, besides: str | None) -> list[str]:
    keep = _in_use(store, besides=besides)
    deleted: list[str] = []
    for upload_id in sorted(ids - keep):
        with contextlib.suppress(UploadNotFoundError):
            uploads.delete(upload_id)
            deleted.append(upload_id)
    return deleted


def sweep_uploads(store: JobStore, uploads_dir: Path, *, min_age_s: float = 0.0) -> list[str]:
    """Delete every upload (and partial upload) under ``uploads_dir`` that no waiting or running job uses.

    Args:
        store: The job store whose waiting and running jobs keep their uploads.
        uploads_dir: The upload store's root (``DataLayout.uploads_dir``).
        min_age_s: Leave entries younger than this (an upload whose job is not created yet).

    Returns:
        The names deleted (upload ids, and temp file names).
    """
    if not uploads_dir.is_dir():
        return []
    keep = _in_use(store)
    cutoff = time.time() - min_age_s
    deleted: list[str] = []
    for entry in sorted(uploads_dir.iterdir()):
        try:
            if entry.lstat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        if entry.name.startswith(".upload.") and entry.is_file():
            entry.unlink(missing_ok=True)
            deleted.append(entry.name)
        elif _ID_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink() and entry.name not in keep:
            with contextlib.suppress(UploadNotFoundError):
                UploadStore(uploads_dir).delete(entry.name)
            shutil.rmtree(entry, ignore_errors=True)  # a half-written upload without its meta.json
            deleted.append(entry.name)
    return deleted
