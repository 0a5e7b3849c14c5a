"""Downloads of stored files (uploads, job results) that may be sealed at rest: decrypted as they stream.

A sealed file is never decrypted to disk: its chunks are checked and sent one by one. A clear one is sent
as a plain file response.

Example:
    >>> file_response.__name__
    'file_response'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fastapi.responses import FileResponse, StreamingResponse

from faceprint.crypto import EncryptionKeyRequiredError, RecordCipher, decrypt_stream, is_sealed_stream

__all__ = ["file_response", "stream_response"]

_CHUNK = 1 << 20


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def stream_response(handle: BinaryIO, *, media_type: str, filename: str) -> StreamingResponse:
    """Send an open binary file (an upload, decrypted as it is read) and close it at the end."""
    return StreamingResponse(
        _chunks(handle), media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def file_response(
    path: Path, *, cipher: RecordCipher | None, context: str, media_type: str, filename: str
) -> FileResponse | StreamingResponse:
    """``path`` as a download: decrypted chunk by chunk when sealed (bound to ``context``), else as is.

    Raises:
        EncryptionKeyRequiredError: sealed, and no key configured.
    """
    with path.open("rb") as probe:
        sealed = is_sealed_stream(probe.read(16))
    if not sealed:
        return FileResponse(path, media_type=media_type, filename=filename)
    if cipher is None:
        raise EncryptionKeyRequiredError(f"{filename} is encrypted; set FACEPRINT_ENCRYPTION_KEY to read it")
    handle = path.open("rb")
    # The first chunk is checked now, so a wrong key is an error response, not a cut-off download.
    chunks = decrypt_stream(handle, cipher, context=context)
    try:
        first = next(chunks)
    except BaseException:
        handle.close()
        raise

    def body() -> Iterator[bytes]:
        with handle:
            yield first
            yield from chunks

    return StreamingResponse(
        body(), media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
