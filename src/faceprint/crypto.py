"""Encryption at rest: AES-256-GCM records bound to where they are stored.

A record is ``header || ciphertext || tag``; the header is::

    b"FPE"  format version (1 byte)  key id (8 bytes)  nonce (12 bytes)

The nonce is fresh (``os.urandom``) for every record, so encrypting the same template twice gives two
different records. The associated data is the header plus a *context* string naming the record's place
(e.g. ``"gallery/<gallery id>/templates/42/vector"``): the tag then fails for a record copied to another row,
table or gallery, and for any flipped bit, and decryption raises :class:`EncryptedRecordCorruptError`
instead of returning garbage.

The key id (a truncated SHA-256 of the key, which reveals nothing useful about a 256-bit random key) tells
a wrong key (:class:`EncryptionKeyMismatchError`) from damage, and lets a :class:`RecordCipher` hold the
keys of a rotation: it encrypts with its ``key`` and decrypts with it or any of ``previous_keys``.

Keys are 32 random bytes written as base64, from ``FACEPRINT_ENCRYPTION_KEY`` or a file named by
``FACEPRINT_ENCRYPTION_KEY_FILE`` (see :func:`cipher_from_settings`).

Example:
    >>> key = EncryptionKey.generate()
    >>> cipher = RecordCipher(key)
    >>> record = cipher.encrypt(b"template bytes", context="gallery/g1/templates/7/vector")
    >>> cipher.decrypt(record, context="gallery/g1/templates/7/vector")
    b'template bytes'
    >>> cipher.decrypt(record, context="gallery/g1/templates/8/vector")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    faceprint.crypto.EncryptedRecordCorruptError: encrypted record at '...' fails its authentication check: ...
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from faceprint.errors import EXIT_USAGE, FaceprintError
from faceprint.io.atomic import open_atomic

if TYPE_CHECKING:
    from faceprint.settings import Settings

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "EncryptedRecordCorruptError",
    "EncryptionError",
    "EncryptionKey",
    "EncryptionKeyInvalidError",
    "EncryptionKeyMismatchError",
    "EncryptionKeyRequiredError",
    "RecordCipher",
    "SealedReader",
    "SealedWriter",
    "cipher_from_settings",
    "decrypt_stream",
    "encrypt_stream",
    "is_encrypted_record",
    "is_sealed_stream",
    "open_sealed",
    "record_key_id",
]

MAGIC = b"FPE"
FORMAT_VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES + NONCE_BYTES
RECORD_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES
"""How much longer a record is than its plaintext (40 bytes)."""

_AAD_LABEL = b"faceprint-record/1\x00"
_KEY_ID_LABEL = b"faceprint-key-id/1\x00"


class EncryptionError(FaceprintError):
    """Something about encryption at rest: a key, or a record."""

    code = "encryption_error"
    exit_code = EXIT_USAGE
    http_status = 500


class EncryptionKeyInvalidError(EncryptionError):
    """A key that is not 32 bytes of base64, or a key file that cannot be read."""

    code = "encryption_key_invalid"


class EncryptionKeyMismatchError(EncryptionError):
    """A record encrypted with a key this process does not have (the wrong key, or a rotated-away one)."""

    code = "encryption_key_mismatch"


class EncryptionKeyRequiredError(EncryptionError):
    """Encrypted data, but no key configured (``FACEPRINT_ENCRYPTION_KEY`` or ``FACEPRINT_ENCRYPTION_KEY_FILE``)."""

    code = "encryption_key_required"


class EncryptedRecordCorruptError(EncryptionError):
    """A record whose authentication tag fails: altered, truncated, or moved from another place."""

    code = "encrypted_record_corrupt"


def _key_id(key: bytes) -> str:
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_BYTES].hex()


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """A 256-bit AES key and its public id; ``repr`` never shows the key.

    Example:
        >>> key = EncryptionKey.from_base64(base64.b64encode(bytes(32)).decode())
        >>> key.key_id
        'e3858e12da2f9543'
        >>> EncryptionKey.from_base64("c2hvcnQ=")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        faceprint.crypto.EncryptionKeyInvalidError: an encryption key is 32 bytes ...; this one decodes to 5 bytes
    """

    secret: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise EncryptionKeyInvalidError(
                f"an encryption key is {KEY_BYTES} bytes; this one is {len(self.secret)} bytes"
            )
        object.__setattr__(self, "key_id", _key_id(self.secret))

    @classmethod
    def generate(cls) -> EncryptionKey:
        """A new random key (from ``os.urandom``)."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> EncryptionKey:
        """A key from its base64 text (standard or URL-safe alphabet; surrounding white space ignored)."""
        cleaned = "".join(text.split())
        try:
            secret = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyInvalidError(
                "an encryption key is 32 bytes written as base64; this is not base64"
            ) from None
        if len(secret) != KEY_BYTES:
            raise EncryptionKeyInvalidError(
                f"an encryption key is {KEY_BYTES} bytes written as base64; this one decodes to {len(secret)} bytes"
            )
        return cls(secret)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> EncryptionKey:
        """A key from a file holding its base64 text (as written by :meth:`write_file`)."""
        source = Path(path)
        try:
            text = source.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as err:
            raise EncryptionKeyInvalidError(
                f"cannot read the encryption key file {source}: {err}", details={"path": str(source)}
            ) from None
        return cls.from_base64(text)

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode("ascii")

    def write_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the key's base64 text to a new file readable by its owner only (mode 0600); never overwrites."""
        target = Path(path)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise EncryptionKeyInvalidError(
                f"{target} exists: a key file is never overwritten (its data would be lost)",
                details={"path": str(target)},
            ) from None
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(self.to_base64() + "\n")
        return target


def is_encrypted_record(blob: bytes | bytearray | memoryview) -> bool:
    """Whether ``blob`` has the shape of a record (magic, version, room for header and tag).

    Example:
        >>> is_encrypted_record(b"FPE" + bytes(60)), is_encrypted_record(bytes(64))
        (False, False)
    """
    data = bytes(blob[: len(MAGIC) + 1])
    return len(blob) >= RECORD_OVERHEAD_BYTES and data == MAGIC + bytes([FORMAT_VERSION])


def record_key_id(blob: bytes | bytearray | memoryview) -> str | None:
    """The key id in a record's header, or ``None`` when ``blob`` is not a record."""
    if not is_encrypted_record(blob):
        return None
    start = len(MAGIC) + 1
    return bytes(blob[start : start + KEY_ID_BYTES]).hex()


class RecordCipher:
    """AES-256-GCM over records bound to a context; encrypts with ``key``, decrypts with it or ``previous_keys``.

    Thread-safe (it holds no mutable state).

    Args:
        key: the current key: every new record is encrypted with it.
        previous_keys: keys of a rotation in progress: records still under them remain readable.

    Example:
        >>> old, new = EncryptionKey.generate(), EncryptionKey.generate()
        >>> record = RecordCipher(old).encrypt(b"x", context="c")
        >>> RecordCipher(new, previous_keys=[old]).decrypt(record, context="c")
        b'x'
        >>> RecordCipher(new).decrypt(record, context="c")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        faceprint.crypto.EncryptionKeyMismatchError: encrypted record at 'c' was written with key ...
    """

    __slots__ = ("_aeads", "_key")

    def __init__(self, key: EncryptionKey, *, previous_keys: Sequence[EncryptionKey] = ()) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._key = key
        self._aeads = {k.key_id: AESGCM(k.secret) for k in (*reversed(previous_keys), key)}

    def __repr__(self) -> str:
        return f"RecordCipher(key_id={self._key.key_id!r}, key_ids={sorted(self._aeads)!r})"

    @property
    def key_id(self) -> str:
        """The id of the key new records are encrypted with."""
        return self._key.key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this cipher can decrypt."""
        return frozenset(self._aeads)

    def encrypt(self, plaintext: bytes, *, context: str) -> bytes:
        """One record of ``plaintext`` bound to ``context``, under a fresh random nonce."""
        header = MAGIC + bytes([FORMAT_VERSION]) + bytes.fromhex(self._key.key_id) + os.urandom(NONCE_BYTES)
        sealed = self._aeads[self._key.key_id].encrypt(header[-NONCE_BYTES:], plaintext, self._aad(header, context))
        return header + sealed

    def decrypt(self, record: bytes | bytearray | memoryview, *, context: str) -> bytes:
        """The plaintext of ``record``, checked against its tag and ``context``.

        Raises:
            EncryptionKeyMismatchError: the record's key is not one of this cipher's.
            EncryptedRecordCorruptError: not a record, an unknown format version, or a failed tag.
        """
        from cryptography.exceptions import InvalidTag

        data = bytes(record)
        if len(data) < RECORD_OVERHEAD_BYTES or data[: len(MAGIC)] != MAGIC:
            raise EncryptedRecordCorruptError(
                f"data at {context!r} is not an encrypted record ({len(data)} bytes)", details={"context": context}
            )
        if data[len(MAGIC)] != FORMAT_VERSION:
            raise EncryptedRecordCorruptError(
                f"encrypted record at {context!r} has format version {data[len(MAGIC)]}, not {FORMAT_VERSION}",
                details={"context": context, "version": data[len(MAGIC)]},
            )
        header = data[:HEADER_BYTES]
        key_id = header[len(MAGIC) + 1 : len(MAGIC) + 1 + KEY_ID_BYTES].hex()
        aead = self._aeads.get(key_id)
        if aead is None:
            raise EncryptionKeyMismatchError(
                f"encrypted record at {context!r} was written with key {key_id}, which is not configured "
                f"(configured: {', '.join(sorted(self._aeads))}); set the right FACEPRINT_ENCRYPTION_KEY",
                details={"context": context, "record_key_id": key_id, "key_ids": sorted(self._aeads)},
            )
        try:
            return aead.decrypt(header[-NONCE_BYTES:], data[HEADER_BYTES:], self._aad(header, context))
        except InvalidTag:
            raise EncryptedRecordCorruptError(
                f"encrypted record at {context!r} fails its authentication check: it was altered, damaged, "
                "or moved from another place",
                details={"context": context},
            ) from None

    def needs_rotation(self, record: bytes | bytearray | memoryview) -> bool:
        """Whether ``record`` is in clear or under another key than :attr:`key_id`."""
        return record_key_id(record) != self._key.key_id

    @staticmethod
    def _aad(header: bytes, context: str) -> bytes:
        return _AAD_LABEL + header[: len(MAGIC) + 1 + KEY_ID_BYTES] + context.encode("utf-8")


Batch = Callable[[int], tuple[int | None, int, int]]
"""One rotation batch after a position: ``(its last position or None when none was left, rotated, current)``."""


def rotate_in_batches(batch: Batch, *, start: int, after_batch: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Run ``batch`` (one transaction each) from ``start`` until none is left; returns (rotated, current).

    ``after_batch`` gets the running count of rotated records after every batch (tests raise in it to stand
    for a crash: the batches done stay done, and a second run skips them as current).

    Example:
        >>> rows = [1, 2, 3]
        >>> def batch(after: int) -> tuple[int | None, int, int]:
        ...     left = [r for r in rows if r > after][:2]
        ...     return (left[-1] if left else None), len(left), 0
        >>> rotate_in_batches(batch, start=0)
        (3, 0)
    """
    rotated = current = 0
    position = start
    while True:
        last, done, skipped = batch(position)
        rotated, current = rotated + done, current + skipped
        if last is None:
            return rotated, current
        position = last
        if after_batch is not None:
            after_batch(rotated)


def load_key(*, key_base64: str | None, key_file: Path | None) -> EncryptionKey | None:
    """The key from its base64 text or its file; ``None`` when neither is given.

    Raises:
        EncryptionKeyInvalidError: both given, or a malformed key.
    """
    if key_base64 is not None and key_file is not None:
        raise EncryptionKeyInvalidError("set FACEPRINT_ENCRYPTION_KEY or FACEPRINT_ENCRYPTION_KEY_FILE, not both")
    if key_base64 is not None:
        return EncryptionKey.from_base64(key_base64)
    if key_file is not None:
        return EncryptionKey.from_file(key_file)
    return None


def cipher_from_settings(settings: Settings, *, previous_keys: Sequence[EncryptionKey] = ()) -> RecordCipher | None:
    """The cipher of ``FACEPRINT_ENCRYPTION_KEY`` / ``FACEPRINT_ENCRYPTION_KEY_FILE``, or ``None`` (no encryption).

    Example:
        >>> from faceprint.settings import Settings
        >>> cipher_from_settings(Settings()) is None
        True
    """
    key = load_key(key_base64=settings.encryption_key, key_file=settings.encryption_key_file)
    if key is None:
        if previous_keys:
            raise EncryptionKeyRequiredError("a key rotation needs the new key in FACEPRINT_ENCRYPTION_KEY(_FILE)")
        return None
    return RecordCipher(key, previous_keys=previous_keys)


STREAM_CHUNK_BYTES = 1 << 20
"""Plaintext bytes per record of an encrypted stream (an upload, a result archive)."""


def _chunk_context(context: str, index: int, *, last: bool) -> str:
    return f"{context}#chunk/{index}{'/last' if last else ''}"


class SealedWriter:
    """A writable file that stores what is written to ``target`` as a sealed stream (see :func:`encrypt_stream`).

    Data is buffered to whole chunks of ``chunk_bytes``; :meth:`close` writes the last chunk (bound as the
    last, so a stream cut off at a chunk boundary is detected) and leaves ``target`` open. Nothing in clear
    reaches ``target``.

    Example:
        >>> import io
        >>> cipher = RecordCipher(EncryptionKey.generate())
        >>> sealed = io.BytesIO()
        >>> with SealedWriter(sealed, cipher, context="result/1", chunk_bytes=4) as out:
        ...     _ = out.write(b"abc"); _ = out.write(b"defgh")
        >>> open_sealed(io.BytesIO(sealed.getvalue()), cipher, context="result/1").read()
        b'abcdefgh'
    """

    def __init__(
        self, target: BinaryIO, cipher: RecordCipher, *, context: str, chunk_bytes: int = STREAM_CHUNK_BYTES
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self._target = target
        self._cipher = cipher
        self._context = context
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._index = 0
        self._written = 0
        self.closed = False

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed SealedWriter")
        self._buffer += data
        # A chunk is known not to be the last only once more data follows it.
        while len(self._buffer) > self._chunk_bytes:
            self._emit(bytes(self._buffer[: self._chunk_bytes]), last=False)
            del self._buffer[: self._chunk_bytes]
        self._written += len(data)
        return len(data)

    def flush(self) -> None:
        """Flush ``target`` (a partial chunk stays buffered: chunks are sealed whole)."""
        self._target.flush()

    def tell(self) -> int:
        """Plaintext bytes written so far."""
        return self._written

    def close(self) -> None:
        """Seal the last chunk; ``target`` stays open."""
        if not self.closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._target.flush()
            self.closed = True

    def _emit(self, chunk: bytes, *, last: bool) -> None:
        record = self._cipher.encrypt(chunk, context=_chunk_context(self._context, self._index, last=last))
        self._target.write(struct.pack(">I", len(record)) + record)
        self._index += 1


class SealedReader(io.RawIOBase):
    """A seekable, read-only view of the plaintext of a sealed stream; chunks are decrypted as they are read.

    Opening lists the chunk records (reading only their 4-byte length prefixes) and decrypts the first one,
    so a wrong key or a foreign stream fails at once; each chunk is checked against its place (index, last
    or not) before any of its bytes are returned. Seeking is cheap (one chunk is decrypted per jump), which
    is what TAR, ZIP and video demuxers need; no plaintext is ever written anywhere.

    Raises (on open or read):
        EncryptedRecordCorruptError: a damaged, reordered, foreign or truncated stream.
        EncryptionKeyMismatchError: a stream under a key the cipher does not hold.
    """

    def __init__(self, source: BinaryIO, cipher: RecordCipher, *, context: str) -> None:
        super().__init__()
        self._source = source
        self._cipher = cipher
        self._context = context
        self._records: list[tuple[int, int]] = []  # (offset of the record, its length)
        self._starts: list[int] = []  # plaintext offset of each chunk
        end = source.seek(0, os.SEEK_END)
        offset = 0
        plain = 0
        while offset < end:
            source.seek(offset)
            prefix = source.read(4)
            if len(prefix) < 4:
                raise self._corrupt(f"is cut off after {len(self._records)} chunks")
            (length,) = struct.unpack(">I", prefix)
            if length < RECORD_OVERHEAD_BYTES or offset + 4 + length > end:
                raise self._corrupt(f"is cut off in chunk {len(self._records)}")
            self._records.append((offset + 4, length))
            self._starts.append(plain)
            plain += length - RECORD_OVERHEAD_BYTES
            offset += 4 + length
        if not self._records:
            raise self._corrupt("is empty (not even its last chunk)")
        self._size = plain
        self._position = 0
        self._cached: tuple[int, bytes] | None = None
        self._chunk(0)

    def _corrupt(self, what: str) -> EncryptedRecordCorruptError:
        return EncryptedRecordCorruptError(
            f"encrypted stream {self._context!r} {what}", details={"context": self._context}
        )

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        offset, length = self._records[index]
        self._source.seek(offset)
        record = self._source.read(length)
        if len(record) != length:
            raise self._corrupt(f"is cut off in chunk {index}")
        last = index == len(self._records) - 1
        data = self._cipher.decrypt(record, context=_chunk_context(self._context, index, last=last))
        self._cached = (index, data)
        return data

    @property
    def size_bytes(self) -> int:
        """The plaintext size."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        index = bisect.bisect_right(self._starts, self._position) - 1
        chunk = self._chunk(index)
        start = self._position - self._starts[index]
        piece = chunk[start : start + len(view)]
        view[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def close(self) -> None:
        self._cached = None
        self._source.close()
        super().close()


def open_sealed(source: BinaryIO, cipher: RecordCipher, *, context: str) -> io.BufferedReader:
    """A buffered, seekable reader of a sealed stream's plaintext (see :class:`SealedReader`); closes ``source``."""
    return io.BufferedReader(SealedReader(source, cipher, context=context), buffer_size=1 << 16)


def encrypt_stream(
    source: BinaryIO, target: BinaryIO, cipher: RecordCipher, *, context: str, chunk_bytes: int = STREAM_CHUNK_BYTES
) -> int:
    """Copy ``source`` to ``target`` as length-prefixed records of ``chunk_bytes``; returns the bytes read.

    Chunk ``i`` is bound to ``context``, ``i`` and whether it is the last one, so chunks cannot be
    reordered, dropped, cut off at the end or moved to another stream unnoticed; a file is never
    decrypted to disk (:func:`decrypt_stream` yields the plaintext in memory, :func:`open_sealed` reads it
    with seeks).

    Example:
        >>> import io
        >>> cipher = RecordCipher(EncryptionKey.generate())
        >>> sealed = io.BytesIO()
        >>> encrypt_stream(io.BytesIO(b"photo bytes" * 3), sealed, cipher, context="upload/1", chunk_bytes=8)
        33
        >>> b"".join(decrypt_stream(io.BytesIO(sealed.getvalue()), cipher, context="upload/1"))
        b'photo bytesphoto bytesphoto bytes'
    """
    with SealedWriter(target, cipher, context=context, chunk_bytes=chunk_bytes) as writer:
        while True:
            data = source.read(chunk_bytes)
            if not data:
                break
            writer.write(data)
        return writer.tell()


def decrypt_stream(source: BinaryIO, cipher: RecordCipher, *, context: str) -> Iterator[bytes]:
    """The plaintext chunks of a stream written by :func:`encrypt_stream`, each checked before it is yielded.

    Raises:
        EncryptedRecordCorruptError: a damaged, reordered, foreign or truncated stream.
        EncryptionKeyMismatchError: a stream under a key this cipher does not hold.
    """
    index = 0
    while True:
        prefix = source.read(4)
        if len(prefix) < 4:
            raise EncryptedRecordCorruptError(
                f"encrypted stream {context!r} ends after {index} chunks without its last one (truncated)",
                details={"context": context, "chunks": index},
            )
        (length,) = struct.unpack(">I", prefix)
        record = source.read(length)
        if len(record) != length:
            raise EncryptedRecordCorruptError(f"encrypted stream {context!r} is cut off in chunk {index}")
        key_id = record_key_id(record)
        if key_id is not None and key_id not in cipher.key_ids:
            cipher.decrypt(record, context=context)  # raises the key mismatch, naming the key
        try:
            chunk = cipher.decrypt(record, context=_chunk_context(context, index, last=False))
            last = False
        except EncryptedRecordCorruptError:
            chunk = cipher.decrypt(record, context=_chunk_context(context, index, last=True))
            last = True
        yield chunk
        if last:
            if source.read(1):
                raise EncryptedRecordCorruptError(f"encrypted stream {context!r} has data after its last chunk")
            return
        index += 1


def is_sealed_stream(head: bytes) -> bool:
    """Whether a file's first bytes are those of a sealed stream (a length prefix, then a record header).

    Example:
        >>> is_sealed_stream(b"\\xff\\xd8\\xff\\xe0" + bytes(8))
        False
    """
    return head[4 : 4 + len(MAGIC) + 1] == MAGIC + bytes([FORMAT_VERSION])


def sealed_stream_key_id(head: bytes) -> str | None:
    """The key id of a sealed stream from its first bytes, or ``None`` for a file in clear.

    Example:
        >>> cipher = RecordCipher(EncryptionKey.generate())
        >>> sealed = io.BytesIO()
        >>> _ = encrypt_stream(io.BytesIO(b"x"), sealed, cipher, context="c")
        >>> sealed_stream_key_id(sealed.getvalue()) == cipher.key_id, sealed_stream_key_id(b"clear bytes")
        (True, None)
    """
    if not is_sealed_stream(head):
        return None
    return record_key_id(head[4 : 4 + RECORD_OVERHEAD_BYTES])


def reseal_file(path: str | os.PathLike[str], cipher: RecordCipher, *, context: str) -> bool:
    """Re-encrypt a sealed file under ``cipher``'s key (a file in clear gets sealed); ``False``: already current.

    The new stream is written beside the file and replaces it in one rename, so a crash leaves either
    the old stream (readable with the old key among ``previous_keys``) or the new one, never a mix; the
    plaintext passes through memory one chunk at a time and never reaches the disk.

    Raises:
        EncryptionKeyMismatchError: the file is under a key ``cipher`` does not hold.
        EncryptedRecordCorruptError: the file is damaged or bound to another context.
    """
    target = Path(path)
    with target.open("rb") as probe:
        head = probe.read(4 + RECORD_OVERHEAD_BYTES)
    key_id = sealed_stream_key_id(head)
    if key_id == cipher.key_id:
        return False
    source: BinaryIO = target.open("rb")
    with source if key_id is None else open_sealed(source, cipher, context=context) as reader:
        with open_atomic(target) as out:
            encrypt_stream(reader, out, cipher, context=context)
    return True
