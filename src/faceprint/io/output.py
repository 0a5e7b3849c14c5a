"""Check an output path before any work starts, so a bad ``-o`` costs nothing and destroys nothing.

Every command that writes a file or a folder calls :func:`check_output_path` first, with the paths it will
read. It refuses, each with its own code (see :mod:`faceprint.errors`):

- ``output_is_input``: the output is one of the inputs (the same file, also through a link), an existing
  photo or CSV inside an input folder, or a folder inside an input folder: writing it would overwrite or
  change the data being read (a results file beside the photos, such as ``results.tar.gz``, is allowed);
- ``output_not_regular``: a device node, FIFO or socket (``-o /dev/null``): ``os.replace`` would swap the
  node for a regular file, and opening a FIFO would hang;
- ``output_is_directory`` / ``output_not_directory``: a file was asked for and a folder is there, or the
  other way round;
- ``output_parent_missing``: the folder to write into does not exist (or is a file);
- ``read_only_output``, ``output_not_writable``, ``disk_full``: a probe file cannot be created in the target
  folder (read-only file system, permissions, no space). The probe is a real ``mkstemp`` + unlink rather
  than ``os.access``, which says yes to root on a read-only mount.

The same errno mapping (:func:`output_write_error`) turns a failure *while* writing (the disk filling up
half-way) into a clear error in :mod:`faceprint.io.atomic`.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_output_path(folder / "results.tar.gz").name
    'results.tar.gz'
    >>> try:
    ...     check_output_path(folder)
    ... except OutputIsDirectoryError as err:
    ...     err.code
    'output_is_directory'
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from faceprint.errors import (
    DiskFullError,
    OutputIsDirectoryError,
    OutputIsInputError,
    OutputNotDirectoryError,
    OutputNotRegularError,
    OutputNotWritableError,
    OutputParentMissingError,
    OutputWriteError,
    ReadOnlyOutputError,
)

__all__ = ["check_output_path", "output_write_error"]

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_READ_FROM_FOLDERS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".csv", ".mpo"})
"""Suffixes of the files faceprint reads out of an input folder (photos, ``pairs.csv``)."""
_DENIED = frozenset({errno.EACCES, errno.EPERM})


def output_write_error(err: OSError, path: Path | str) -> OutputWriteError | None:
    """The clear error for an ``OSError`` met while writing ``path``, or None if it is not about space or rights.

    Example:
        >>> import errno
        >>> output_write_error(OSError(errno.ENOSPC, "No space left on device"), "out.csv").code
        'disk_full'
        >>> output_write_error(OSError(errno.ENOENT, "gone"), "out.csv") is None
        True
    """
    details = {"path": str(path), "errno": errno.errorcode.get(err.errno or 0, str(err.errno))}
    reason = err.strerror if err.strerror is not None else str(err)
    if err.errno in _FULL:
        return DiskFullError(f"cannot write {path}: no space left ({reason})", details=details)
    if err.errno == errno.EROFS:
        return ReadOnlyOutputError(f"cannot write {path}: the file system is read-only", details=details)
    if err.errno in _DENIED:
        return OutputNotWritableError(f"cannot write {path}: permission denied", details=details)
    return None


def _probe_writable(folder: Path, shown: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".faceprint-probe.", dir=folder)
    except OSError as err:
        mapped = output_write_error(err, shown)
        if mapped is not None:
            raise mapped from err
        raise OutputNotWritableError(
            f"cannot write {shown}: {err.strerror if err.strerror is not None else err}", details={"path": str(shown)}
        ) from err
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # e.g. a dangling link loop; the probe below reports what matters


def _inside(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


def _check_not_input(path: Path, path_stat: os.stat_result | None, inputs: Sequence[Path], kind: str) -> None:
    resolved = Path(os.path.realpath(path))
    for given in inputs:
        source = Path(given)
        source_stat = _stat(source)
        if source_stat is None:
            continue
        if path_stat is not None and _same_file(path_stat, source_stat):
            raise OutputIsInputError(
                f"output {path} is the input {source}: writing it would destroy the input",
                details={"path": str(path), "input": str(source)},
            )
        if not stat.S_ISDIR(source_stat.st_mode) or not _inside(resolved, Path(os.path.realpath(source))):
            continue
        # Writing into a dataset folder would change the data being read (and a rerun would read it).
        if kind == "dir":
            raise OutputIsInputError(
                f"output folder {path} is inside the input folder {source}",
                details={"path": str(path), "input": str(source)},
            )
        # An existing photo or CSV of an input folder is an input (a photo, its pairs.csv): never replace it.
        # (An earlier run's results.tar.gz or faces.jsonl there is not read, and may be written again.)
        if path_stat is not None and path.suffix.lower() in _READ_FROM_FOLDERS:
            raise OutputIsInputError(
                f"output {path} is a file of the input folder {source}: writing it would destroy the input",
                details={"path": str(path), "input": str(source)},
            )


def _nearest_existing(folder: Path) -> Path:
    current = folder
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_path(
    path: str | os.PathLike[str],
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
    kind: Literal["file", "dir"] = "file",
) -> Path:
    """Make sure ``path`` can be written as a file (or a folder) without harming anything; return it.

    Args:
        path: The output file (``kind="file"``: written atomically beside itself) or folder (``kind="dir"``:
            created with its parents when missing).
        inputs: Every path the command reads; the output must be none of them.
        kind: ``"file"`` or ``"dir"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (not resolved, so messages show what the user typed).

    Raises:
        OutputIsInputError: ``path`` is an input (or a folder inside an input folder).
        OutputNotRegularError: ``path`` is a device, FIFO or socket.
        OutputIsDirectoryError: a file was asked for and ``path`` is a folder.
        OutputNotDirectoryError: a folder was asked for and ``path`` is something else.
        OutputParentMissingError: the folder to write into does not exist.
        ReadOnlyOutputError: the target is on a read-only file system.
        OutputNotWritableError: no permission to write there.
        DiskFullError: no space to create even an empty file.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> source = folder / "in.csv"; _ = source.write_text("a,b\\n")
        >>> try:
        ...     check_output_path(source, inputs=[source])
        ... except OutputIsInputError as err:
        ...     err.code
        'output_is_input'
        >>> check_output_path(folder / "new" / "deeper", kind="dir").name
        'deeper'
    """
    target = Path(path)
    target_stat = _stat(target)
    input_paths = [Path(p) for p in inputs]
    details = {"path": str(target)}
    if kind == "file":
        if target_stat is not None:
            if stat.S_ISDIR(target_stat.st_mode):
                raise OutputIsDirectoryError(
                    f"output {target} is a folder; give a file name inside it", details=details
                )
            if not stat.S_ISREG(target_stat.st_mode):
                raise OutputNotRegularError(
                    f"output {target} is a device, FIFO or socket, not a regular file; give a file name",
                    details=details,
                )
        _check_not_input(target, target_stat, input_paths, kind)
        parent = target.parent
        if not parent.is_dir():
            raise OutputParentMissingError(
                f"the folder of output {target} does not exist ({parent})", details={**details, "parent": str(parent)}
            )
        _probe_writable(parent, target)
        return target
    if kind != "dir":
        raise ValueError(f"kind must be 'file' or 'dir', not {kind!r}")
    if target_stat is not None and not stat.S_ISDIR(target_stat.st_mode):
        raise OutputNotDirectoryError(f"output folder {target} exists and is not a folder", details=details)
    _check_not_input(target, target_stat, input_paths, kind)
    existing = target if target_stat is not None else _nearest_existing(target.parent)
    if not existing.is_dir():
        raise OutputParentMissingError(
            f"cannot create output folder {target}: {existing} is not a folder",
            details={**details, "parent": str(existing)},
        )
    _probe_writable(existing, target)
    return target
