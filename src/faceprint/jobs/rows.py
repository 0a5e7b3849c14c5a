"""What both job stores (SQLite, PostgreSQL) share: the job row's columns and mapping, page checks, and the
sealing of the payloads that hold face data.

With a cipher (``FACEPRINT_ENCRYPTION_KEY``), the payloads that say who was recognised or quote file names
are stored as AES-256-GCM records, written ``fpe1:`` + base64 in the same text columns, each bound to its
job and place (so a payload copied to another job fails its tag):

=====================  ==============================  =================================================
payload                context                          holds
=====================  ==============================  =================================================
job item ``data``       ``jobs/<id>/items/<key>``        person, similarity, boxes, thumbnails
job ``summary``         ``jobs/<id>/summary``            labels found per source, video summaries
job ``errors``          ``jobs/<id>/errors``             messages (they may quote file names)
done units              ``jobs/<id>/units``              per-source error messages and summaries
=====================  ==============================  =================================================

Job sources (``storage://`` ids), parameters, states, progress and times stay in clear: the queue is
queried by them, and they hold no face data. Payloads written in clear before a key was set stay readable.

Example:
    >>> from faceprint.crypto import EncryptionKey, RecordCipher
    >>> seal = PayloadSeal(RecordCipher(EncryptionKey.generate()))
    >>> text = seal.dumps({"person": "Ruby"}, context="jobs/j1/items/a")
    >>> text.startswith("fpe1:"), "Ruby" in text, seal.loads(text, context="jobs/j1/items/a")
    (True, False, {'person': 'Ruby'})
    >>> PayloadSeal(None).loads('{"person": "Ruby"}', context="jobs/j1/items/a")
    {'person': 'Ruby'}
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceprint.crypto import EncryptedRecordCorruptError, EncryptionKeyRequiredError
from faceprint.errors import UsageError
from faceprint.jobs.model import Job, JobError, JobState

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher

__all__ = [
    "JOB_COLUMNS",
    "MAX_PAGE_LIMIT",
    "PayloadRotation",
    "PayloadSeal",
    "check_page",
    "items_context",
    "job_from_row",
    "rotate_payload_batch",
]

MAX_PAGE_LIMIT = 1000
SEALED_PREFIX = "fpe1:"

JOB_COLUMNS = (
    "id, kind, state, sources_json, params_json, tag, media_type, progress, errors_json, summary_json, "
    "result_path, attempts, max_attempts, cancel_requested, lease_owner, lease_expires_s, time_created_s, "
    "time_started_s, time_completed_s"
)
"""The columns :func:`job_from_row` reads, in its order (the same in both stores)."""


def items_context(job_id: str, key: str) -> str:
    return f"jobs/{job_id}/items/{key}"


class PayloadSeal:
    """JSON payloads in clear (no cipher) or as sealed records (see the module doc)."""

    __slots__ = ("_cipher",)

    def __init__(self, cipher: RecordCipher | None) -> None:
        self._cipher = cipher

    @property
    def cipher(self) -> RecordCipher | None:
        return self._cipher

    def dumps(self, value: Any, *, context: str, sort_keys: bool = False) -> str:
        """``value`` as JSON text, sealed when there is a cipher."""
        return self.seal_text(json.dumps(value, sort_keys=sort_keys), context=context)

    def loads(self, text: str, *, context: str) -> Any:
        """The value of a payload written by :meth:`dumps` (or in clear before a key was set)."""
        return json.loads(self.open_text(text, context=context))

    def seal_text(self, text: str, *, context: str) -> str:
        if self._cipher is None:
            return text
        record = self._cipher.encrypt(text.encode("utf-8"), context=context)
        return SEALED_PREFIX + base64.b64encode(record).decode("ascii")

    def rotated(self, text: str, *, context: str) -> str | None:
        """``text`` sealed anew under the cipher's key, or ``None`` when it already is (or there is no cipher).

        Example:
            >>> from faceprint.crypto import EncryptionKey, RecordCipher
            >>> old, new = EncryptionKey.generate(), EncryptionKey.generate()
            >>> text = PayloadSeal(RecordCipher(old)).dumps([1], context="jobs/j/summary")
            >>> seal = PayloadSeal(RecordCipher(new, previous_keys=[old]))
            >>> again = seal.rotated(text, context="jobs/j/summary")
            >>> seal.loads(again, context="jobs/j/summary"), seal.rotated(again, context="jobs/j/summary")
            ([1], None)
        """
        if self._cipher is None:
            return None
        if text.startswith(SEALED_PREFIX):
            try:
                record = base64.b64decode(text[len(SEALED_PREFIX) :], validate=True)
            except ValueError:
                record = b""  # not a record: open_text below names the corruption
            if not self._cipher.needs_rotation(record):
                return None
        return self.seal_text(self.open_text(text, context=context), context=context)

    def open_text(self, text: str, *, context: str) -> str:
        """The clear text of a stored payload.

        Raises:
            EncryptionKeyRequiredError: a sealed payload and no cipher.
            EncryptionKeyMismatchError: sealed under another key.
            EncryptedRecordCorruptError: altered, or moved from another job or place.
        """
        if not text.startswith(SEALED_PREFIX):
            return text
        if self._cipher is None:
            raise EncryptionKeyRequiredError(
                f"job data at {context!r} is encrypted; set FACEPRINT_ENCRYPTION_KEY to read it",
                details={"context": context},
            )
        try:
            record = base64.b64decode(text[len(SEALED_PREFIX) :], validate=True)
        except ValueError:
            raise EncryptedRecordCorruptError(
                f"job data at {context!r} is not a valid sealed record", details={"context": context}
            ) from None
        return self._cipher.decrypt(record, context=context).decode("utf-8")


def job_from_row(row: Sequence[Any], seal: PayloadSeal) -> Job:
    """A :class:`Job` from a row of :data:`JOB_COLUMNS` (SQLite or PostgreSQL)."""
    job_id = row[0]
    return Job(
        id=job_id,
        kind=row[1],
        state=JobState(row[2]),
        sources=tuple(json.loads(row[3])),
        params=json.loads(row[4]),
        tag=row[5],
        media_type=row[6],
        progress=float(row[7]),
        errors=tuple(JobError.from_dict(e) for e in seal.loads(row[8], context=f"jobs/{job_id}/errors")),
        summary=tuple(seal.loads(row[9], context=f"jobs/{job_id}/summary")),
        result_path=row[10],
        attempts=int(row[11]),
        max_attempts=int(row[12]),
        cancel_requested=bool(row[13]),
        lease_owner=row[14],
        lease_expires_s=row[15],
        time_created_s=float(row[16]),
        time_started_s=row[17],
        time_completed_s=row[18],
    )


def check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise UsageError(f"offset must be at least 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise UsageError(f"limit must be 1-{MAX_PAGE_LIMIT}, got {limit}")


@dataclass(frozen=True, slots=True)
class PayloadRotation:
    """What a job store's ``rotate_encryption`` did."""

    payloads_rotated: int
    payloads_current: int
    """Payloads already under the new key (a run again after a crash skips them)."""


Query = Callable[[str, tuple[Any, ...]], list[Any]]


def rotate_payload_batch(
    seal: PayloadSeal, query: Query, *, table_prefix: str, placeholder: str, after_seq: int, batch_size: int
) -> tuple[int | None, int, int]:
    """Re-seal the payloads of the next ``batch_size`` jobs after ``after_seq`` (in one transaction: the
    caller's ``query`` runs in it); returns (the last job's seq or ``None`` when none was left, payloads
    rotated, payloads already current). The same SQL serves SQLite (``?``) and PostgreSQL (``%s``)."""
    t, p = table_prefix, placeholder
    jobs = query(
        f"SELECT seq, id, errors_json, summary_json FROM {t}jobs WHERE seq > {p} ORDER BY seq LIMIT {p}",
        (after_seq, batch_size),
    )
    rotated = current = 0

    def count(new: str | None) -> bool:
        nonlocal rotated, current
        if new is None:
            current += 1
            return False
        rotated += 1
        return True

    for seq, job_id, errors, summary in jobs:
        new_errors = seal.rotated(errors, context=f"jobs/{job_id}/errors")
        new_summary = seal.rotated(summary, context=f"jobs/{job_id}/summary")
        if count(new_errors) | count(new_summary):
            query(
                f"UPDATE {t}jobs SET errors_json = {p}, summary_json = {p} WHERE id = {p}",
                (errors if new_errors is None else new_errors, summary if new_summary is None else new_summary, job_id),
            )
        for key, data in query(f"SELECT item_key, data_json FROM {t}job_items WHERE job_id = {p}", (job_id,)):
            new_data = seal.rotated(data, context=items_context(job_id, key))
            if count(new_data):
                query(
                    f"UPDATE {t}job_items SET data_json = {p} WHERE job_id = {p} AND item_key = {p}",
                    (new_data, job_id, key),
                )
        for (unit,) in query(f"SELECT unit_key FROM {t}job_units WHERE job_id = {p}", (job_id,)):
            new_unit = seal.rotated(unit, context=f"jobs/{job_id}/units")
            if count(new_unit):
                query(
                    f"UPDATE {t}job_units SET unit_key = {p} WHERE job_id = {p} AND unit_key = {p}",
                    (new_unit, job_id, unit),
                )
        after_seq = int(seq)
    return (after_seq if jobs else None), rotated, current
