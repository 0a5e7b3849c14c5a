"""Uploaded files: stored atomically under the data dir, named by id, addressed as ``storage://<id>``.

A job's sources are storage URIs only, never server paths: :meth:`UploadStore.resolve` turns a URI into the
stored file after checking the id's form, so no client string ever becomes a path. Each upload is checked
against the sha256 the client sent (when it sent one), its kind is sniffed from its first bytes (never from
its name), and its size is limited while it streams in.

Example:
    >>> import tempfile, io
    >>> store = UploadStore(Path(tempfile.mkdtemp()))
    >>> record = store.save(io.BytesIO(b"\\x89PNG\\r\\n\\x1a\\n" + b"0" * 32), filename="../../a.png", max_bytes=1000)
    >>> record.filename, record.media_type, record.uri == f"storage://{record.id}"
    ('a.png', 'image', True)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from faceprint.crypto import (
    EncryptionKeyRequiredError,
    RecordCipher,
    SealedWriter,
    is_encrypted_record,
    is_sealed_stream,
    open_sealed,
    reseal_file,
)
from faceprint.errors import InputError, UsageError
from faceprint.io.atomic import write_atomic

__all__ = [
    "STORAGE_SCHEME",
    "InvalidSourceError",
    "MediaType",
    "UnsupportedMediaError",
    "UploadDigestMismatchError",
    "UploadNotFoundError",
    "UploadRecord",
    "UploadStore",
    "UploadTooLargeError",
    "clean_filename",
    "parse_storage_uri",
    "sniff_media_type",
]

STORAGE_SCHEME = "storage://"
MediaType = Literal["image", "video", "archive"]
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 20


class UploadTooLargeError(InputError):
    """The upload is larger than the server's limit."""

    code = "upload_too_large"
    http_status = 413


class UploadDigestMismatchError(InputError):
    """The bytes received do not have the sha256 the client said they have (a truncated or altered upload)."""

    code = "upload_digest_mismatch"
    http_status = 422


class UnsupportedMediaError(InputError):
    """Not an image, a video or a dataset archive (told by content), or a kind this job cannot take."""

    code = "unsupported_media"
    http_status = 415


class UploadNotFoundError(InputError):
    """No upload with this id (or the source is not a ``storage://`` URI of a valid id)."""

    code = "upload_not_found"
    http_status = 404


class InvalidSourceError(UsageError):
    """A job source that is not a ``storage://<id>`` URI (server paths and URLs are refused)."""

    code = "invalid_source"
    http_status = 422


def sniff_media_type(head: bytes) -> MediaType | None:
    """``image``, ``video`` or ``archive`` from a file's first bytes (at least 512 for TAR); None otherwise.

    Example:
        >>> sniff_media_type(b"\\xff\\xd8\\xff\\xe0"), sniff_media_type(b"PK\\x03\\x04"), sniff_media_type(b"hello")
        ('image', 'archive', None)
    """
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "image" if brand in (b"heic", b"heix", b"avif", b"mif1") else "video"
    if head.startswith(b"\x1a\x45\xdf\xa3") or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    # ZIP: a local file header, or the end record that is all of an empty archive.
    if head.startswith((b"\x1f\x8b", b"PK\x03\x04", b"PK\x05\x06")) or head[257:262] == b"ustar":
        return "archive"
    return None


def clean_filename(name: str | None) -> str:
    """The last path component of a client's file name, without control characters (display only).

    Example:
        >>> clean_filename("..\\\\..\\\\boot.ini"), clean_filename("/etc/passwd"), clean_filename("")
        ('boot.ini', 'passwd', 'upload')
    """
    if name is None:
        return "upload"
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip().strip(".")
    return base[:200] if base else "upload"


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A stored upload (DeepVA's storage object, plus the sha256)."""

    id: str
    filename: str
    media_type: MediaType
    size_bytes: int
    sha256: str
    time_created_s: float

    @property
    def uri(self) -> str:
        return f"{STORAGE_SCHEME}{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uri": self.uri,
            "filename": self.filename,
            "media_type": self.media_type,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "time_created_s": self.time_created_s,
        }


def parse_storage_uri(uri: str) -> str:
    """The upload id of ``storage://<id>``.

    Raises:
        InvalidSourceError: anything else (a path, an http URL, a malformed id).

    Example:
        >>> parse_storage_uri("storage://" + "a" * 32) == "a" * 32
        True
    """
    if not isinstance(uri, str) or not uri.startswith(STORAGE_SCHEME):
        raise InvalidSourceError(
            f"sources must be storage URIs (storage://<id> from POST /api/v1/storage/), got {str(uri)[:200]!r}",
            details={"source": str(uri)[:200]},
        )
    upload_id = uri[len(STORAGE_SCHEME) :]
    if not _ID_RE.match(upload_id):
        raise InvalidSourceError(f"malformed storage URI {uri[:200]!r}", details={"source": uri[:200]})
    return upload_id


class UploadStore:
    """Uploads in ``root``: ``<id>/data`` and ``<id>/meta.json``, each written atomically.

    With a ``cipher``, both are sealed at rest (AES-256-GCM, :func:`faceprint.crypto.open_sealed`): the data
    as a chunked stream bound to ``upload/<id>/data``, read back through a seekable decrypting reader, so
    an archive or a video is read in place and never decrypted to a file; the record (file name, sha256)
    as one record. Uploads stored in clear before a key was set stay readable.

    Several processes may share one root (the server writes, workers read).
    """

    def __init__(self, root: Path, *, cipher: RecordCipher | None = None) -> None:
        self._root = root
        self._cipher = cipher

    @property
    def root(self) -> Path:
        return self._root

    def _folder(self, upload_id: str) -> Path:
        if not _ID_RE.match(upload_id):
            raise UploadNotFoundError(f"no upload {upload_id[:100]!r}", details={"id": upload_id[:100]})
        return self._root / upload_id

    def save(
        self,
        stream: BinaryIO,
        *,
        filename: str | None,
        max_bytes: int,
        expected_sha256: str | None = None,
    ) -> UploadRecord:
        """Copy ``stream`` in (at most ``max_bytes``), check it, and record it.

        Raises:
            UploadTooLargeError: more than ``max_bytes``.
            UploadDigestMismatchError: ``expected_sha256`` given and not matched.
            UnsupportedMediaError: not an image, video or archive.
        """
        self._root.mkdir(parents=True, exist_ok=True)
        upload_id = uuid.uuid4().hex
        digest = hashlib.sha256()
        size = 0
        head = b""
        fd, temp_name = tempfile.mkstemp(prefix=".upload.", suffix=".tmp", dir=self._root)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                sink: Any = (
                    handle
                    if self._cipher is None
                    else SealedWriter(handle, self._cipher, context=_data_context(upload_id))
                )
                while True:
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLargeError(
                            f"upload larger than the limit of {max_bytes} bytes", details={"max_bytes": max_bytes}
                        )
                    if len(head) < 512:
                        head += chunk[: 512 - len(head)]
                    digest.update(chunk)
                    sink.write(chunk)
                if sink is not handle:
                    sink.close()  # seals the last chunk
                handle.flush()
                os.fsync(handle.fileno())
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.strip().lower() != sha256:
                raise UploadDigestMismatchError(
                    f"received {size} bytes with sha256 {sha256}, not {expected_sha256.strip()[:64]}",
                    details={"sha256": sha256, "size_bytes": size},
                )
            if size == 0:
                raise UnsupportedMediaError("the upload is empty")
            media_type = sniff_media_type(head)
            if media_type is None:
                raise UnsupportedMediaError(
                    "not an image, a video or a dataset archive (TAR, TAR.GZ or ZIP), by its content",
                    details={"filename": clean_filename(filename)},
                )
            record = UploadRecord(
                id=upload_id,
                filename=clean_filename(filename),
                media_type=media_type,
                size_bytes=size,
                sha256=sha256,
                time_created_s=time.time(),
            )
            folder = self._root / upload_id
            folder.mkdir()
            os.replace(temp, folder / "data")
            meta = json.dumps(record.to_dict()).encode("utf-8")
            if self._cipher is not None:
                meta = self._cipher.encrypt(meta, context=_meta_context(upload_id))
            write_atomic(folder / "meta.json", meta)
            return record
        finally:
            temp.unlink(missing_ok=True)

    def get(self, upload_id: str) -> UploadRecord:
        """The record of an upload.

        Raises:
            UploadNotFoundError: no such upload.
            EncryptionKeyRequiredError: it is sealed and this store has no key.
        """
        meta = self._folder(upload_id) / "meta.json"
        try:
            raw = meta.read_bytes()
        except FileNotFoundError:
            raise UploadNotFoundError(f"no upload {upload_id!r}", details={"id": upload_id}) from None
        if is_encrypted_record(raw):
            if self._cipher is None:
                raise EncryptionKeyRequiredError(
                    f"upload {upload_id} is encrypted; set FACEPRINT_ENCRYPTION_KEY to read it",
                    details={"id": upload_id},
                )
            raw = self._cipher.decrypt(raw, context=_meta_context(upload_id))
        data = json.loads(raw.decode("utf-8"))
        return UploadRecord(
            id=data["id"],
            filename=data["filename"],
            media_type=data["media_type"],
            size_bytes=int(data["size_bytes"]),
            sha256=data["sha256"],
            time_created_s=float(data["time_created_s"]),
        )

    def exists(self, upload_id: str) -> bool:
        return _ID_RE.match(upload_id) is not None and (self._root / upload_id / "meta.json").is_file()

    def open(self, upload_id: str) -> BinaryIO:
        """The upload's bytes as a seekable binary file (decrypted as it is read when sealed); close it.

        Raises:
            UploadNotFoundError: no such upload.
            EncryptionKeyRequiredError, EncryptionKeyMismatchError: a sealed upload without the right key.
        """
        self.get(upload_id)
        try:
            handle = (self._folder(upload_id) / "data").open("rb")
        except FileNotFoundError:
            raise UploadNotFoundError(f"no upload {upload_id!r}", details={"id": upload_id}) from None
        try:
            sealed = is_sealed_stream(handle.read(16))
            handle.seek(0)
            if not sealed:
                return handle
            if self._cipher is None:
                raise EncryptionKeyRequiredError(
                    f"upload {upload_id} is encrypted; set FACEPRINT_ENCRYPTION_KEY to read it",
                    details={"id": upload_id},
                )
            return open_sealed(handle, self._cipher, context=_data_context(upload_id))
        except BaseException:
            handle.close()
            raise

    def read_bytes(self, upload_id: str) -> bytes:
        """All of an upload's bytes, in memory (for photos)."""
        with self.open(upload_id) as handle:
            return handle.read()

    def resolve(self, uri: str) -> UploadRecord:
        """The record of a ``storage://`` source (its bytes: :meth:`open`)."""
        return self.get(parse_storage_uri(uri))

    def rotate_encryption(self) -> tuple[int, int]:
        """Re-encrypt every upload not yet under this store's cipher's key (clear ones get sealed); returns
        (uploads rotated, uploads already current).

        The cipher must hold the old keys as ``previous_keys``. The data and the record are each replaced
        in one rename, data first: a crash leaves each under the old key or the new one (both readable
        with the keyring), and a second run finishes the job.
        """
        if self._cipher is None:
            raise EncryptionKeyRequiredError("rotating uploads needs the new key in FACEPRINT_ENCRYPTION_KEY")
        rotated = current = 0
        if not self._root.is_dir():
            return rotated, current
        for folder in sorted(self._root.iterdir()):
            meta = folder / "meta.json"
            if not _ID_RE.match(folder.name) or not meta.is_file() or not (folder / "data").is_file():
                continue  # not an upload, or one being deleted
            upload_id = folder.name
            changed = reseal_file(folder / "data", self._cipher, context=_data_context(upload_id))
            raw = meta.read_bytes()
            if self._cipher.needs_rotation(raw):
                context = _meta_context(upload_id)
                clear = self._cipher.decrypt(raw, context=context) if is_encrypted_record(raw) else raw
                write_atomic(meta, self._cipher.encrypt(clear, context=context))
                changed = True
            rotated, current = (rotated + 1, current) if changed else (rotated, current + 1)
        return rotated, current

    def delete(self, upload_id: str) -> None:
        """Delete an upload (no key needed: a sealed upload is deleted without being read).

        Raises:
            UploadNotFoundError: no such upload.
        """
        folder = self._folder(upload_id)
        if not (folder / "meta.json").is_file():
            raise UploadNotFoundError(f"no upload {upload_id!r}", details={"id": upload_id})
        # meta.json first: once it is gone the upload no longer exists for readers.
        (folder / "meta.json").unlink(missing_ok=True)
        (folder / "data").unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a stray file left in it: the upload is gone all the same
            folder.rmdir()


def _data_context(upload_id: str) -> str:
    return f"upload/{upload_id}/data"


def _meta_context(upload_id: str) -> str:
    return f"upload/{upload_id}/meta"
