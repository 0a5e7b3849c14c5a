"""Read faceprint files, whatever a user hands over, with one clear error instead of a traceback.

Two shapes are read:

- one faceprint as JSON (``Faceprint.to_json()``: an object with ``"format": "faceprint/1"``), possibly
  pretty-printed over many lines;
- JSON Lines as ``faceprint embed`` writes them: one record a line, ``{"image", "face_index", "detection",
  "faceprint"}``, or ``{"image", "error"}`` for a photo that gave none (skipped). Blank lines are skipped.

Everything else is a :class:`~faceprint.errors.FaceprintFormatError` (``faceprint_format``) whose message
names the file, the line and what is wrong: an empty file, only blank lines, bytes that are not UTF-8 (a
Latin-1 file), text that is not JSON, a JSON list, string or number instead of an object, an object that is
not a faceprint, a file with no faceprint (only error records). A path that is missing is
``missing_file``; a FIFO, device or socket is ``not_regular_file`` (never opened: a FIFO would hang).

Two faceprints of different sizes (a 64-d one against a 128-d one) are a compare-time problem:
:func:`check_comparable` raises :class:`~faceprint.errors.ContractMismatchError` for a different contract
or dimension, before any arithmetic.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from faceprint.types import Faceprint
    >>> fp = Faceprint(np.ones(4, np.float32), model_id="m", contract_id="m:1", package_version="0")
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = path.write_text(fp.to_json())
    >>> [p.dim for p in read_faceprint_file(path)]
    [4]
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faceprint.errors import (
    ContractMismatchError,
    FaceprintFormatError,
    MissingFileError,
    NotRegularFileError,
)
from faceprint.types import Faceprint

__all__ = ["MAX_FACEPRINT_FILE_BYTES", "check_comparable", "read_faceprint_file"]

MAX_FACEPRINT_FILE_BYTES = 256 * 1024 * 1024
"""Largest faceprint file read (about 100,000 faceprints of 128 values as ``embed`` JSON Lines)."""

_KIND: dict[type, str] = {
    list: "a JSON list",
    str: "a JSON string",
    int: "a JSON number",
    float: "a JSON number",
    bool: "a JSON true/false",
    type(None): "JSON null",
}


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    details = {"path": str(path)}
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise FaceprintFormatError(f"{path}: a folder, not a faceprint file", details=details)
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path}: a FIFO, device or socket, not a faceprint file", details=details)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise NotRegularFileError(f"{path}: no longer a regular file", details=details)
            data = handle.read(max_bytes + 1)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise MissingFileError(f"{path}: no such file", details=details) from err
    except OSError as err:
        raise FaceprintFormatError(f"{path}: cannot read: {err.strerror}", details=details) from err
    if len(data) > max_bytes:
        raise FaceprintFormatError(f"{path}: larger than {max_bytes} bytes, not a faceprint file", details=details)
    return data


def _decode(path: Path, data: bytes) -> str:
    details: dict[str, Any] = {"path": str(path)}
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise FaceprintFormatError(f"{path}: invalid UTF-16 text: {err.reason}", details=details) from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise FaceprintFormatError(
            f"{path}: line {line}: byte 0x{data[err.start]:02x} is not UTF-8; faceprint files are UTF-8 JSON "
            "(was it saved as Latin-1?)",
            details={**details, "line": line, "offset": err.start},
        ) from err


def _faceprint_of(value: Any, where: str) -> Faceprint | None:
    """The faceprint a JSON value holds; None for an ``embed`` error record (a photo that gave none)."""
    if not isinstance(value, Mapping):
        kind = _KIND.get(type(value), type(value).__name__)
        raise FaceprintFormatError(f"{where}: {kind}, not a faceprint object")
    if "faceprint" in value:
        inner = value["faceprint"]
        if not isinstance(inner, Mapping):
            raise FaceprintFormatError(f"{where}: 'faceprint' is {_KIND.get(type(inner), 'not')}, not an object")
        value = inner
    elif "error" in value and "vector" not in value:
        return None
    if "vector" not in value and "format" not in value:
        raise FaceprintFormatError(f"{where}: a JSON object, but not a faceprint (no 'format' or 'vector')")
    try:
        return Faceprint.from_dict(value)
    except FaceprintFormatError as err:
        raise FaceprintFormatError(f"{where}: {err.message}", details=err.details) from err
    except ValueError as err:  # Faceprint itself: a non-finite or empty vector
        raise FaceprintFormatError(f"{where}: {err}") from err


def read_faceprint_file(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_FACEPRINT_FILE_BYTES
) -> list[Faceprint]:
    """Every faceprint in a faceprint JSON file or a ``faceprint embed`` JSON Lines file, in file order.

    Args:
        path: The file.
        max_bytes: Refuse larger files.

    Returns:
        At least one faceprint (error records of ``embed`` are skipped).

    Raises:
        MissingFileError: no such file.
        NotRegularFileError: a FIFO, device or socket.
        FaceprintFormatError: anything else that is not a faceprint file (see the module doc); the message
            names the file and the line.

    Example:
        >>> import tempfile, pathlib
        >>> bad = pathlib.Path(tempfile.mkdtemp()) / "list.json"
        >>> _ = bad.write_text("[1, 2, 3]")
        >>> try:
        ...     read_faceprint_file(bad)
        ... except FaceprintFormatError as err:
        ...     err.message.endswith("a JSON list, not a faceprint object")
        True
    """
    source = Path(path)
    text = _decode(source, _read_bytes(source, max_bytes))
    if not text.strip():
        what = "empty (0 bytes)" if not text else "only blank lines"
        raise FaceprintFormatError(f"{source}: {what}, not a faceprint file", details={"path": str(source)})
    found: list[Faceprint | None]
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        found = _read_lines(source, text)
    else:
        found = [_faceprint_of(whole, str(source))]
    faceprints = [faceprint for faceprint in found if faceprint is not None]
    if not faceprints:
        raise FaceprintFormatError(
            f"{source}: holds no faceprint (only error records: no face was embedded)", details={"path": str(source)}
        )
    return faceprints


def _read_lines(source: Path, text: str) -> list[Faceprint | None]:
    found: list[Faceprint | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}: line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise FaceprintFormatError(
                f"{where}: not JSON ({err.msg} at column {err.colno})",
                details={"path": str(source), "line": number},
            ) from err
        found.append(_faceprint_of(value, where))
    return found


def check_comparable(a: Faceprint, b: Faceprint, *, names: tuple[str, str] = ("a", "b")) -> None:
    """Refuse two faceprints that cannot be compared: different contracts, or different sizes.

    A hand-made or edited file may claim the right contract with the wrong number of values; comparing
    would then fail inside numpy. Both are :class:`~faceprint.errors.ContractMismatchError`.

    Example:
        >>> import numpy as np
        >>> small = Faceprint(np.ones(64, np.float32), model_id="m", contract_id="m:1", package_version="0")
        >>> large = Faceprint(np.ones(128, np.float32), model_id="m", contract_id="m:1", package_version="0")
        >>> try:
        ...     check_comparable(small, large)
        ... except ContractMismatchError as err:
        ...     err.details["dims"]
        [64, 128]
    """
    if a.dim != b.dim:  # first: the message names the files (check_contract cannot)
        raise ContractMismatchError(
            f"cannot compare a {a.dim}-d faceprint ({names[0]}) with a {b.dim}-d one ({names[1]}): "
            "both must come from the same model",
            details={"dims": [a.dim, b.dim], "contract_id": a.contract_id},
        )
    a.check_contract(b)
