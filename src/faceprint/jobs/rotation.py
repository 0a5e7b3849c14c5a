"""Re-encrypt everything a job service data dir keeps under a new key: ``faceprint keys rotate-encryption
--data-dir``.

What is rotated, each step crash-safe on its own (a template, a payload, a file is wholly under the old
key or the new one, the cipher's keyring reads both, and running the rotation again finishes it):

==========================  ====================================================================
what                        how
==========================  ====================================================================
galleries, index            every ``galleries/*.sqlite`` and ``index/unknowns.sqlite``, a batch of
                            templates per transaction (:meth:`SqliteGallery.rotate_encryption`)
job payloads                items, summaries, errors, done units, a batch of jobs per transaction,
                            in ``jobs.sqlite`` or PostgreSQL (the store's ``rotate_encryption``)
uploads                     data and record, each replaced in one rename
result archives             ``results/<job>.tar.gz``, each replaced in one rename
==========================  ====================================================================

Stop the server and the workers first: a process still running with only the old key cannot read what
was rotated, and one writing meanwhile writes under its own key (run the rotation again afterwards).

Example:
    >>> from faceprint.crypto import EncryptionKey, RecordCipher
    >>> from faceprint.jobs.store import SqliteJobStore
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> cipher = RecordCipher(EncryptionKey.generate())
    >>> with SqliteJobStore(root / "jobs.sqlite", cipher=cipher) as store:
    ...     rotate_data_dir(DataLayout(root), store, cipher).files_rotated
    0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from faceprint.crypto import reseal_file
from faceprint.jobs.context import result_context
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.uploads import UploadStore

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher
    from faceprint.jobs.rows import PayloadRotation
    from faceprint.jobs.store import JobStore

__all__ = ["DataDirRotation", "GalleryRotation", "rotate_data_dir"]

_RESULT_SUFFIX = ".tar.gz"


@dataclass(frozen=True, slots=True)
class GalleryRotation:
    path: Path
    templates_rotated: int
    templates_current: int


@dataclass(frozen=True, slots=True)
class DataDirRotation:
    """What :func:`rotate_data_dir` did (the ``current`` counts: already under the new key)."""

    galleries: tuple[GalleryRotation, ...]
    payloads: PayloadRotation
    uploads_rotated: int
    uploads_current: int
    results_rotated: int
    results_current: int

    @property
    def files_rotated(self) -> int:
        return self.uploads_rotated + self.results_rotated


def rotate_data_dir(
    layout: DataLayout,
    store: JobStore,
    cipher: RecordCipher,
    *,
    after_step: Callable[[str], None] | None = None,
) -> DataDirRotation:
    """Rotate the galleries, index, job payloads, uploads and result archives of ``layout`` under ``cipher``.

    ``cipher`` encrypts with the new key and holds the old ones as ``previous_keys``; ``store`` was opened
    with it. ``after_step`` is called with the name of each step once it is done (tests raise in it to
    stand for a crash).
    """
    from faceprint.gallery.sqlite import SqliteGallery

    def done(step: str) -> None:
        if after_step is not None:
            after_step(step)

    galleries: list[GalleryRotation] = []
    paths = sorted(layout.gallery_dir.glob("*.sqlite")) if layout.gallery_dir.is_dir() else []
    if layout.index_gallery.is_file():
        paths.append(layout.index_gallery)
    for path in paths:
        with SqliteGallery.open(path, cipher=cipher) as gallery:
            summary = gallery.rotate_encryption()
        galleries.append(GalleryRotation(path, summary.templates_rotated, summary.templates_current))
        done(f"gallery {path.name}")
    payloads = store.rotate_encryption()
    done("job payloads")
    uploads_rotated, uploads_current = UploadStore(layout.uploads_dir, cipher=cipher).rotate_encryption()
    done("uploads")
    results_rotated = results_current = 0
    if layout.results_dir.is_dir():
        for path in sorted(layout.results_dir.glob(f"*{_RESULT_SUFFIX}")):
            job_id = path.name[: -len(_RESULT_SUFFIX)]
            if reseal_file(path, cipher, context=result_context(job_id)):
                results_rotated += 1
            else:
                results_current += 1
    done("results")
    return DataDirRotation(
        galleries=tuple(galleries),
        payloads=payloads,
        uploads_rotated=uploads_rotated,
        uploads_current=uploads_current,
        results_rotated=results_rotated,
        results_current=results_current,
    )
