"""All-or-nothing file writes: a temp file in the target folder, then ``os.replace``.

A reader (or a crashed run) never sees half a ``calib.json``, ``report.json`` or PNG: the old file stays
until the new one is complete and flushed, and ``os.replace`` swaps them in one step on POSIX and Windows.

A file-system failure (full disk, read-only mount, no permission) becomes a clear
:class:`~faceprint.errors.OutputWriteError` (``disk_full``, ``read_only_output``, ``output_not_writable``)
instead of a raw ``OSError``, and the temp file is removed, so the old file (if any) is left as it was.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", b"hello").read_bytes()
    b'hello'
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from faceprint.io.output import output_write_error

_NEW_FILE_MODE = 0o644
# Only errnos that can only come from writing are mapped once the caller's block runs: an EACCES there may be
# the caller failing to read an input, which is not an output problem.
_WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary handle whose content replaces ``path`` only when the ``with`` block ends cleanly.

    Args:
        path: The final file path; its folder must exist.

    Yields:
        A writable binary file object (a temp file beside ``path``).

    Raises:
        OutputWriteError: no space, a read-only file system or no permission (the errno mapped to a code).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "b.bin"
        >>> with open_atomic(target) as handle:
        ...     _ = handle.write(b"xyz")
        >>> target.read_bytes()
        b'xyz'
    """
    target = Path(path)
    # Same folder as the target: os.replace is only atomic within one file system.
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        mapped = output_write_error(err, target)
        if mapped is not None:
            raise mapped from err
        raise
    try:
        # mkstemp makes the file 0600; a report or calib.json is meant to be shared like any output file.
        os.chmod(temp_name, target.stat().st_mode & 0o777 if target.exists() else _NEW_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        mapped = output_write_error(err, target) if err.errno in _WRITE_ONLY_ERRNOS else None
        if mapped is not None:
            raise mapped from err
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), hence best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` all at once and return the path.

    Example:
        >>> import tempfile, pathlib
        >>> write_atomic(pathlib.Path(tempfile.mkdtemp()) / "c.txt", b"1").name
        'c.txt'
    """
    with open_atomic(path) as handle:
        handle.write(data)
    return Path(path)
