from __future__ import annotations

import base64
import io
import os
import struct
from pathlib import Path

import pytest

from faceprint.crypto import (
    RECORD_OVERHEAD_BYTES,
    EncryptedRecordCorruptError,
    EncryptionKey,
    EncryptionKeyInvalidError,
    EncryptionKeyMismatchError,
    RecordCipher,
    cipher_from_settings,
    decrypt_stream,
    encrypt_stream,
    is_encrypted_record,
    load_key,
    record_key_id,
)
from faceprint.settings import Settings

KEY_A = EncryptionKey(bytes(range(32)))
KEY_B = EncryptionKey(bytes(range(1, 33)))


@pytest.mark.parametrize("plaintext", [b"", b"x", bytes(range(256)) * 8, os.urandom(2048)])
def test_round_trip_and_size(plaintext: bytes) -> None:
    cipher = RecordCipher(KEY_A)
    record = cipher.encrypt(plaintext, context="t/1/v")
    assert len(record) == len(plaintext) + RECORD_OVERHEAD_BYTES
    assert is_encrypted_record(record)
    assert record_key_id(record) == KEY_A.key_id
    assert cipher.decrypt(record, context="t/1/v") == plaintext
    if len(plaintext) > 8:
        assert plaintext[:8] not in record


def test_fresh_nonce_per_record() -> None:
    cipher = RecordCipher(KEY_A)
    records = {cipher.encrypt(b"same template", context="t/1/v") for _ in range(50)}
    assert len(records) == 50
    nonces = {record[12:24] for record in records}
    assert len(nonces) == 50


def _flip(record: bytes, bit: int) -> bytes:
    data = bytearray(record)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def test_every_flipped_bit_is_refused() -> None:
    cipher = RecordCipher(KEY_A)
    record = cipher.encrypt(b"0123456789abcdef", context="t/1/v")
    for bit in range(len(record) * 8):
        with pytest.raises((EncryptedRecordCorruptError, EncryptionKeyMismatchError)):
            cipher.decrypt(_flip(record, bit), context="t/1/v")


@pytest.mark.parametrize(
    ("mutate", "context", "error", "code"),
    [
        (lambda r: r, "t/2/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),  # moved to another row
        (lambda r: r, "u/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),  # another table
        (lambda r: r[:-1], "t/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),  # truncated tag
        (lambda r: r[:20], "t/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),  # shorter than a header
        (lambda r: r + b"\0", "t/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),  # appended byte
        (lambda r: r[:3] + b"\x02" + r[4:], "t/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),
        (lambda r: b"XYZ" + r[3:], "t/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),
        (lambda r: bytes(64), "t/1/v", EncryptedRecordCorruptError, "encrypted_record_corrupt"),  # a clear blob
        (lambda r: r[:4] + bytes(8) + r[12:], "t/1/v", EncryptionKeyMismatchError, "encryption_key_mismatch"),
    ],
)
def test_tampering_table(mutate: object, context: str, error: type[Exception], code: str) -> None:
    cipher = RecordCipher(KEY_A)
    record = cipher.encrypt(b"\x00\x01" * 64, context="t/1/v")
    with pytest.raises(error) as info:
        cipher.decrypt(mutate(record), context=context)  # type: ignore[operator]
    assert info.value.code == code  # type: ignore[attr-defined]


def test_wrong_key_is_a_clear_error_never_garbage() -> None:
    record = RecordCipher(KEY_A).encrypt(b"secret", context="c")
    with pytest.raises(EncryptionKeyMismatchError) as info:
        RecordCipher(KEY_B).decrypt(record, context="c")
    assert info.value.details["record_key_id"] == KEY_A.key_id
    assert "FACEPRINT_ENCRYPTION_KEY" in info.value.message
    # Same key id forged into the header, other key material: the tag catches it.
    forged = EncryptionKey(KEY_B.secret)
    object.__setattr__(forged, "key_id", KEY_A.key_id)
    with pytest.raises(EncryptedRecordCorruptError):
        RecordCipher(forged).decrypt(record, context="c")


def test_rotation_keyring() -> None:
    old_record = RecordCipher(KEY_A).encrypt(b"old", context="c")
    rotating = RecordCipher(KEY_B, previous_keys=[KEY_A])
    assert rotating.decrypt(old_record, context="c") == b"old"
    assert rotating.needs_rotation(old_record)
    assert rotating.needs_rotation(b"clear bytes of a template")
    new_record = rotating.encrypt(b"new", context="c")
    assert record_key_id(new_record) == KEY_B.key_id
    assert not rotating.needs_rotation(new_record)
    assert RecordCipher(KEY_B).decrypt(new_record, context="c") == b"new"
    assert rotating.key_ids == {KEY_A.key_id, KEY_B.key_id}


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (base64.b64encode(bytes(32)).decode(), True),
        (base64.b64encode(bytes(32)).decode() + "\n", True),
        (base64.urlsafe_b64encode(b"\xfb" * 32).decode(), True),
        (base64.b64encode(bytes(16)).decode(), False),
        (base64.b64encode(bytes(33)).decode(), False),
        ("not base64 at all!", False),
        ("", False),
    ],
)
def test_key_parsing(text: str, ok: bool) -> None:
    if ok:
        assert len(EncryptionKey.from_base64(text).secret) == 32
    else:
        with pytest.raises(EncryptionKeyInvalidError):
            EncryptionKey.from_base64(text)


def test_key_never_in_repr_and_key_file(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    assert key.to_base64() not in repr(key)
    assert key.to_base64() not in repr(RecordCipher(key))
    path = key.write_file(tmp_path / "key")
    assert path.stat().st_mode & 0o777 == 0o600
    assert EncryptionKey.from_file(path) == key
    with pytest.raises(EncryptionKeyInvalidError):
        key.write_file(path)  # never overwrites a key
    with pytest.raises(EncryptionKeyInvalidError):
        EncryptionKey.from_file(tmp_path / "missing")


def test_cipher_from_settings(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    cipher = cipher_from_settings(Settings(encryption_key=key.to_base64()))
    assert cipher is not None and cipher.key_id == key.key_id
    assert key.to_base64() not in repr(Settings(encryption_key=key.to_base64()))
    key.write_file(tmp_path / "k")
    from_file = cipher_from_settings(Settings(encryption_key_file=tmp_path / "k"))
    assert from_file is not None and from_file.key_id == key.key_id
    assert cipher_from_settings(Settings()) is None
    with pytest.raises(EncryptionKeyInvalidError):
        load_key(key_base64=key.to_base64(), key_file=tmp_path / "k")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = EncryptionKey.generate()
    monkeypatch.setenv("FACEPRINT_ENCRYPTION_KEY", key.to_base64())
    monkeypatch.setenv("FACEPRINT_CONFIDENTIAL", "1")
    settings = Settings()
    assert settings.confidential is True
    cipher = cipher_from_settings(settings)
    assert cipher is not None and cipher.key_id == key.key_id


# --- streams (uploads, archives) -------------------------------------------------------------------------


def _sealed(data: bytes, *, context: str = "upload/1", chunk: int = 7, key: EncryptionKey = KEY_A) -> bytes:
    out = io.BytesIO()
    assert encrypt_stream(io.BytesIO(data), out, RecordCipher(key), context=context, chunk_bytes=chunk) == len(data)
    return out.getvalue()


def _records(sealed: bytes) -> list[bytes]:
    records, at = [], 0
    while at < len(sealed):
        (length,) = struct.unpack(">I", sealed[at : at + 4])
        records.append(sealed[at : at + 4 + length])
        at += 4 + length
    return records


def _open(sealed: bytes, *, context: str = "upload/1", cipher: RecordCipher | None = None) -> bytes:
    reader = RecordCipher(KEY_A) if cipher is None else cipher
    return b"".join(decrypt_stream(io.BytesIO(sealed), reader, context=context))


@pytest.mark.parametrize("size", [0, 1, 6, 7, 8, 21, 100])
def test_stream_round_trip(size: int) -> None:
    data = os.urandom(size)
    sealed = _sealed(data)
    assert len(_records(sealed)) == max(1, -(-size // 7))
    assert _open(sealed) == data


@pytest.mark.parametrize(
    ("name", "mutate", "context", "error"),
    [
        ("truncated-last-chunk", lambda r: b"".join(r[:-1]), "upload/1", EncryptedRecordCorruptError),
        ("cut-mid-record", lambda r: b"".join(r)[:-3], "upload/1", EncryptedRecordCorruptError),
        ("reordered", lambda r: b"".join([r[1], r[0], *r[2:]]), "upload/1", EncryptedRecordCorruptError),
        ("chunk-dropped", lambda r: b"".join([r[0], *r[2:]]), "upload/1", EncryptedRecordCorruptError),
        ("trailing-data", lambda r: b"".join(r) + b"x", "upload/1", EncryptedRecordCorruptError),
        ("another-stream", lambda r: b"".join(r), "upload/2", EncryptedRecordCorruptError),
        ("flipped-bit", lambda r: _flip(b"".join(r), 8 * 30), "upload/1", EncryptedRecordCorruptError),
    ],
)
def test_stream_tampering(name: str, mutate: object, context: str, error: type[Exception]) -> None:
    records = _records(_sealed(bytes(range(30))))
    with pytest.raises(error):
        _open(mutate(records), context=context)  # type: ignore[operator]


def test_stream_under_another_key() -> None:
    sealed = _sealed(b"photo", key=KEY_B)
    with pytest.raises(EncryptionKeyMismatchError):
        _open(sealed)
    assert _open(sealed, cipher=RecordCipher(KEY_A, previous_keys=[KEY_B])) == b"photo"


# --- sealed streams read with seeks (uploads, results) ---------------------------------------------------


def _seal_in_pieces(data: bytes, cipher: RecordCipher, context: str, chunk_bytes: int) -> bytes:
    from faceprint.crypto import SealedWriter

    out = io.BytesIO()
    with SealedWriter(out, cipher, context=context, chunk_bytes=chunk_bytes) as writer:
        for start in range(0, len(data), 7):  # writes that do not line up with chunks
            writer.write(data[start : start + 7])
    return out.getvalue()


def test_sealed_reader_reads_any_range_and_matches_encrypt_stream() -> None:
    import random

    from faceprint.crypto import decrypt_stream, open_sealed

    cipher = RecordCipher(EncryptionKey.generate())
    data = bytes(random.Random(1).randrange(256) for _ in range(1000))
    for chunk_bytes in (1, 64, 100, 1000, 4096):
        sealed = _seal_in_pieces(data, cipher, "upload/x/data", chunk_bytes)
        assert b"".join(decrypt_stream(io.BytesIO(sealed), cipher, context="upload/x/data")) == data
        reader = open_sealed(io.BytesIO(sealed), cipher, context="upload/x/data")
        assert reader.read() == data
        for start, size in ((0, 10), (63, 2), (999, 5), (500, 300), (1000, 1), (64, 64)):
            reader.seek(start)
            assert reader.read(size) == data[start : start + size]
        assert reader.seek(-3, 2) == 997 and reader.read() == data[-3:]
    empty = _seal_in_pieces(b"", cipher, "c", 8)
    assert open_sealed(io.BytesIO(empty), cipher, context="c").read() == b""


def test_sealed_reader_refuses_damage_truncation_reorder_and_the_wrong_key() -> None:
    from faceprint.crypto import EncryptionKeyMismatchError, open_sealed

    cipher = RecordCipher(EncryptionKey.generate())
    data = b"0123456789" * 10
    sealed = _seal_in_pieces(data, cipher, "c", 30)  # 4 chunks
    record = 4 + 30 + RECORD_OVERHEAD_BYTES
    with pytest.raises(EncryptionKeyMismatchError):
        open_sealed(io.BytesIO(sealed), RecordCipher(EncryptionKey.generate()), context="c")
    with pytest.raises(EncryptedRecordCorruptError):
        open_sealed(io.BytesIO(sealed), cipher, context="other")
    # Cut at a chunk boundary: the stream's last chunk is missing, which its "last" binding tells.
    cut = open_sealed(io.BytesIO(sealed[: 2 * record]), cipher, context="c")
    with pytest.raises(EncryptedRecordCorruptError):
        cut.seek(45)
        cut.read(5)
    with pytest.raises(EncryptedRecordCorruptError):
        open_sealed(io.BytesIO(sealed[:-1]), cipher, context="c")
    swapped = sealed[record : 2 * record] + sealed[:record] + sealed[2 * record :]
    with pytest.raises(EncryptedRecordCorruptError):
        open_sealed(io.BytesIO(swapped), cipher, context="c")
    flipped = bytearray(sealed)
    flipped[2 * record + 50] ^= 1
    reader = open_sealed(io.BytesIO(bytes(flipped)), cipher, context="c")
    assert reader.read(10) == data[:10]  # undamaged chunks read; the damaged one never returns a byte
    with pytest.raises(EncryptedRecordCorruptError):
        reader.seek(65)
        reader.read(1)
    assert struct.unpack(">I", sealed[:4])[0] == 30 + RECORD_OVERHEAD_BYTES
