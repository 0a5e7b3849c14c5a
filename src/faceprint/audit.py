"""Audit a data dir for face data kept in clear: images, videos, embedding vectors, leftover uploads.

Every regular file under the directory is read as raw bytes (memory-mapped, never modified, symlinks not
followed) and searched for:

- **images and videos** by signature at any offset, each checked beyond its magic so that random or
  encrypted bytes do not match by chance: JPEG (``FF D8 FF`` + a marker whose segment length leads to the
  next marker), PNG, GIF, WebP, BMP (header fields checked), TIFF (its first directory checked),
  HEIF/AVIF and MP4/MOV (an ``ftyp`` box of a plausible size and a printable brand), Matroska/WebM (EBML
  with its doc type), AVI;
- **plaintext vectors**: runs of at least ``min_values`` (128) consecutive little-endian float32 or float64
  values, at every byte alignment, that each lie in ``1e-6 ≤ |x| ≤ 64``, with both signs present and many
  distinct values. A random or AES-GCM byte string has such a float with probability about 0.1 per value,
  so 128 in a row never happens by chance (about 1e-128); runs of zeros, integers, timestamps and text do
  not pass either; faceprint JSON (``[`` + 128 or more decimal numbers) and int16 faceprints (``FPI1``)
  too;
- inside **gzip and ZIP** files, the decompressed bytes (so a results archive is read, not skipped);
- inside **SQLite** files, every text and blob cell of every table (opened ``immutable``: read-only, no
  ``-shm`` written), besides the raw pages, which also hold deleted rows and free pages;
- **uploads** still stored under ``uploads/`` (the job service's upload store) once jobs are over.

:func:`audit_database` does the same for a PostgreSQL database: every ``bytea``, text and JSON value of
every table outside the system schemas is scanned, and every pgvector ``vector`` column holding rows is a
finding by itself (pgvector searches clear vectors: an encrypted gallery cannot live in such a column).

ONNX model files (``*.onnx``: weights, not face data) are skipped and listed as such. A file that cannot be
read is a finding too: an audit that could not look cannot say the directory is clean.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "notes.txt").write_text("nothing to see")
    >>> audit_data_dir(root).clean
    True
    >>> png = b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR" + bytes(30)
    >>> _ = (root / "kept.bin").write_bytes(b"header" + png)
    >>> [(f.kind, f.what) for f in audit_data_dir(root).findings]
    [('image', 'PNG')]
"""

from __future__ import annotations

import mmap
import os
import re
import sqlite3
import struct
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from faceprint.errors import MissingFileError, NotRegularFileError

__all__ = ["AuditFinding", "AuditReport", "audit_data_dir", "audit_database", "scan_bytes"]

FindingKind = Literal["image", "video", "vector", "upload", "unreadable"]

_CHUNK_BYTES = 16 << 20
_MAX_INFLATED_BYTES = 4 << 30
"""Decompressed bytes scanned per gzip/ZIP member; a larger stream is reported as not fully read."""


@dataclass(frozen=True, slots=True)
class AuditFinding:
    """One thing found: what, in which file, and where in it."""

    path: Path | str
    """The file, or the database URL (without its password)."""
    kind: FindingKind
    what: str
    """e.g. ``JPEG``, ``float32 x 128``, ``faceprint JSON x 128``, ``upload``."""
    offset: int | None = None
    """Byte offset in the file (or in its decompressed stream / SQLite cell, see ``where``)."""
    where: str | None = None
    """``gzip stream``, ``zip member NAME``, ``sqlite TABLE.COLUMN rowid=N``, ``SCHEMA.TABLE.COLUMN`` (a
    database), or ``None`` for the raw file."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "what": self.what,
            "offset": self.offset,
            "where": self.where,
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The verdict on one data dir: :attr:`clean` when nothing was found."""

    root: Path | str
    files_scanned: int
    """Files read (for a database: columns read)."""
    bytes_scanned: int
    skipped: tuple[str, ...]
    findings: tuple[AuditFinding, ...]

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "clean": self.clean,
            "files_scanned": self.files_scanned,
            "bytes_scanned": self.bytes_scanned,
            "skipped": list(self.skipped),
            "findings": [finding.to_dict() for finding in self.findings],
        }


# --- signatures ----------------------------------------------------------------------------------------

_Hit = tuple[FindingKind, str, int]
_Buffer = bytes | mmap.mmap

_JPEG_MARKERS = frozenset([0xC0, 0xC1, 0xC2, 0xC4, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)])
_BMP_DIB_SIZES = frozenset([12, 40, 52, 56, 64, 108, 124])
_IMAGE_BRANDS = frozenset([b"heic", b"heix", b"hevc", b"heim", b"heis", b"avif", b"avis", b"mif1", b"msf1"])


_Check = tuple[FindingKind, str] | None


def _jpeg(buf: _Buffer, pos: int) -> _Check:
    if pos + 6 > len(buf) or buf[pos + 3] not in _JPEG_MARKERS:
        return None
    (length,) = struct.unpack(">H", buf[pos + 4 : pos + 6])
    following = pos + 4 + length
    if length < 2 or following >= len(buf) or buf[following] != 0xFF:
        return None
    return "image", "JPEG"


def _png(buf: _Buffer, pos: int) -> _Check:
    return ("image", "PNG") if buf[pos + 12 : pos + 16] == b"IHDR" else None


def _gif(buf: _Buffer, pos: int) -> _Check:
    if pos + 10 > len(buf):
        return None
    width, height = struct.unpack("<HH", buf[pos + 6 : pos + 10])
    return ("image", "GIF") if width and height else None


def _riff(buf: _Buffer, pos: int) -> _Check:
    form = bytes(buf[pos + 8 : pos + 12])
    if form == b"WEBP":
        return "image", "WebP"
    return ("video", "AVI") if form == b"AVI " else None


def _bmp(buf: _Buffer, pos: int) -> _Check:
    if pos + 18 > len(buf):
        return None
    size, reserved, pixels, dib = struct.unpack("<IIII", buf[pos + 2 : pos + 18])
    return ("image", "BMP") if reserved == 0 and dib in _BMP_DIB_SIZES and 14 + dib <= pixels < size else None


def _tiff(buf: _Buffer, pos: int) -> _Check:
    order = "<" if buf[pos] == ord("I") else ">"
    if pos + 8 > len(buf):
        return None
    (ifd,) = struct.unpack(order + "I", buf[pos + 4 : pos + 8])
    at = pos + ifd
    if ifd < 8 or at + 4 > len(buf):
        return None
    count, first_tag = struct.unpack(order + "HH", buf[at : at + 4])
    # A real first directory has a few entries, sorted by tag, starting at NewSubfileType or ImageWidth.
    return ("image", "TIFF") if 1 <= count <= 512 and 254 <= first_tag <= 0x200 else None


def _printable(brand: bytes) -> bool:
    return all(48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 32 for c in brand)


def _ftyp(buf: _Buffer, pos: int) -> _Check:
    if pos < 4 or pos + 8 > len(buf):
        return None
    (size,) = struct.unpack(">I", buf[pos - 4 : pos])
    brand = bytes(buf[pos + 4 : pos + 8])
    if not 16 <= size <= 512 or size % 4 or not _printable(brand):
        return None
    if brand in _IMAGE_BRANDS:
        return "image", f"HEIF/AVIF ({brand.decode()})"
    return "video", f"MP4/MOV ({brand.decode().strip()})"


def _ebml(buf: _Buffer, pos: int) -> _Check:
    head = bytes(buf[pos : pos + 64])
    at = head.find(b"\x42\x82")  # the DocType element
    if at < 0:
        return None
    rest = head[at + 2 : at + 16]
    if b"webm" in rest:
        return "video", "WebM"
    return ("video", "Matroska") if b"matroska" in rest else None


def _int16_faceprint(buf: _Buffer, pos: int) -> _Check:
    if pos + 9 > len(buf):
        return None
    (length,) = struct.unpack("<I", buf[pos + 4 : pos + 8])
    return ("vector", "int16 faceprint") if 2 <= length <= 1 << 16 and buf[pos + 8] == ord("{") else None


_SIGNATURES: tuple[tuple[bytes, int, Callable[[_Buffer, int], _Check]], ...] = (
    # (magic, offset of the magic from the start of what it begins, checker)
    (b"\xff\xd8\xff", 0, _jpeg),
    (b"\x89PNG\r\n\x1a\n", 0, _png),
    (b"GIF87a", 0, _gif),
    (b"GIF89a", 0, _gif),
    (b"RIFF", 0, _riff),
    (b"BM", 0, _bmp),
    (b"II*\x00", 0, _tiff),
    (b"MM\x00*", 0, _tiff),
    (b"ftyp", 4, _ftyp),
    (b"\x1a\x45\xdf\xa3", 0, _ebml),
    (b"FPI1", 0, _int16_faceprint),
)


def _signature_hits(buf: _Buffer, start: int, end: int) -> Iterator[_Hit]:
    for magic, back, check in _SIGNATURES:
        # A magic that begins in [start, end) and straddles ``end`` belongs to this chunk.
        limit = min(len(buf), end + len(magic) - 1)
        pos = buf.find(magic, start, limit)
        while pos >= 0:
            found = check(buf, pos)
            if found is not None:
                yield found[0], found[1], pos - back
            pos = buf.find(magic, pos + 1, limit)


# --- vectors -------------------------------------------------------------------------------------------

_JSON_NUMBER = rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_JSON_VECTOR = re.compile(rb"\[\s*(?:" + _JSON_NUMBER + rb"\s*,\s*){127,}" + _JSON_NUMBER + rb"\s*\]")


def _looks_like_embedding(values: np.ndarray) -> bool:
    """Both signs, many distinct non-integer values, a norm an embedding can have.

    Not a constant, a ramp, integers stored as floats, or a histogram (one sign).
    """
    positive = int(np.count_nonzero(values > 0))
    negative = values.size - positive
    if min(positive, negative) < values.size // 10:
        return False
    if np.unique(values).size < values.size // 2:
        return False
    if np.count_nonzero(values == np.round(values)) > values.size // 10:
        return False
    norm = float(np.linalg.norm(values))
    return 0.05 <= norm <= 1000.0


_TOP_BYTE_RANGE = {4: (0x35, 0x42), 8: (0x3E, 0x40)}
"""``top byte & 0x7F`` of a little-endian float32/float64 with ``1e-6 <= |x| <= 64`` (its sign and high exponent)."""


def _candidate_spans(maybe: np.ndarray, block: int) -> list[tuple[int, int]]:
    """Element ranges that may hold a run of ``2 * block`` or more plausible values.

    A run that long contains a whole aligned block, and ``maybe`` is True wherever a value is plausible, so
    runs can only lie around blocks that are all True, at most one block beyond them on either side.
    """
    count = maybe.size // block
    if count == 0:
        return []
    full = np.flatnonzero(maybe[: count * block].reshape(count, block).all(axis=1))
    if full.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(full) > 1)
    firsts = np.concatenate((full[:1], full[breaks + 1]))
    lasts = np.concatenate((full[breaks], full[-1:]))
    return [
        (max(0, int(first - 1) * block), min(maybe.size, int(last + 2) * block))
        for first, last in zip(firsts, lasts, strict=True)
    ]


def _float_runs(buf: _Buffer, start: int, end: int, min_values: int) -> Iterator[_Hit]:
    """Runs of plausible floats beginning in ``[start, end)``; the run may go on past ``end``."""
    block = max(1, min_values // 2)
    for width in (4, 8):
        back = 0 if start == 0 else width  # one value before: a run that began earlier is not reported again
        lo = start - back
        hi = min(len(buf), end + width * min_values)
        region = memoryview(buf)[lo:hi]
        raw = np.frombuffer(region, dtype=np.uint8)
        low, high = _TOP_BYTE_RANGE[width]
        # One cheap pass over the bytes first: random or encrypted data has no candidate at all.
        maybe = ((raw & 0x7F) - np.uint8(low)) <= np.uint8(high - low)
        del raw
        for align in range(width):
            count = (len(region) - align) // width
            if count < min_values:
                continue
            for first, last in _candidate_spans(maybe[align + width - 1 :: width][:count], block):
                values = np.frombuffer(region, dtype=f"<f{width}", count=last - first, offset=align + first * width)
                with np.errstate(all="ignore"):
                    magnitude = np.abs(values)
                    ok = (magnitude >= 1e-6) & (magnitude <= 64.0)
                edges = np.diff(np.concatenate((np.zeros(1, np.int8), ok.view(np.int8), np.zeros(1, np.int8))))
                run_starts = np.flatnonzero(edges == 1)
                run_ends = np.flatnonzero(edges == -1)
                long_runs = (run_ends - run_starts) >= min_values
                for run_start, run_end in zip(run_starts[long_runs], run_ends[long_runs], strict=True):
                    length = int(run_end - run_start)
                    offset = lo + align + (first + int(run_start)) * width
                    if offset < start or offset >= end:
                        continue
                    window = values[run_start : run_start + min(length, 512)].astype(np.float64)
                    if _looks_like_embedding(window):
                        yield "vector", f"float{width * 8} x {length}", offset
                del values
        region.release()


def _json_vectors(buf: _Buffer, start: int, end: int) -> Iterator[_Hit]:
    data = bytes(buf[start : min(len(buf), end + 65536)])
    for match in _JSON_VECTOR.finditer(data):
        if match.start() >= end - start:
            break
        numbers = np.array([float(x) for x in re.findall(_JSON_NUMBER, match.group())], dtype=np.float64)
        if np.all(np.abs(numbers) <= 64.0) and _looks_like_embedding(numbers[:512]):
            yield "vector", f"faceprint JSON x {numbers.size}", start + match.start()


def scan_bytes(buf: _Buffer, *, min_values: int = 128) -> list[_Hit]:
    """``(kind, what, offset)`` of every image, video and plaintext vector in ``buf``, by offset.

    Example:
        >>> vector = np.random.default_rng(0).normal(size=128).astype("<f4")
        >>> scan_bytes(b"xyz" + vector.tobytes() + b"tail")
        [('vector', 'float32 x 128', 3)]
        >>> scan_bytes(os.urandom(1 << 16))
        []
    """
    hits: list[_Hit] = []
    for start in range(0, max(len(buf), 1), _CHUNK_BYTES):
        end = min(len(buf), start + _CHUNK_BYTES)
        hits.extend(_signature_hits(buf, start, end))
        hits.extend(_float_runs(buf, start, end, min_values))
        hits.extend(_json_vectors(buf, start, end))
    return sorted(set(hits), key=lambda hit: (hit[2], hit[0], hit[1]))


# --- containers ----------------------------------------------------------------------------------------


def _inflated(path: Path, head: bytes) -> Iterator[tuple[str, bytes]]:
    """``(where, bytes)`` of a gzip stream or each ZIP member, bounded by ``_MAX_INFLATED_BYTES``."""
    if head.startswith(b"\x1f\x8b"):
        decompressor = zlib.decompressobj(wbits=47)
        parts: list[bytes] = []
        total = 0
        with path.open("rb") as handle:
            while total < _MAX_INFLATED_BYTES and (chunk := handle.read(1 << 20)):
                piece = decompressor.decompress(chunk, _MAX_INFLATED_BYTES - total)
                total += len(piece)
                parts.append(piece)
                while decompressor.unconsumed_tail and total < _MAX_INFLATED_BYTES:
                    piece = decompressor.decompress(decompressor.unconsumed_tail, _MAX_INFLATED_BYTES - total)
                    total += len(piece)
                    parts.append(piece)
                if decompressor.eof:
                    break
        yield "gzip stream", b"".join(parts)
    elif head.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as member:
                        yield f"zip member {info.filename}", member.read(_MAX_INFLATED_BYTES)


def _sqlite_cells(path: Path, *, min_bytes: int = 4) -> Iterator[tuple[str, bytes]]:
    """``(where, bytes)`` of every text and blob cell of ``min_bytes`` or more, the file opened immutable."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            try:
                cursor = conn.execute(f"SELECT rowid, * FROM {quoted}")  # names from sqlite_master, quoted
                with_rowid = True
            except sqlite3.OperationalError:
                cursor = conn.execute(f"SELECT * FROM {quoted}")  # a WITHOUT ROWID table
                with_rowid = False
            columns = [d[0] for d in cursor.description][1 if with_rowid else 0 :]
            for row in cursor:
                rowid = row[0] if with_rowid else None
                for column, value in zip(columns, row[1 if with_rowid else 0 :], strict=True):
                    if isinstance(value, str):
                        value = value.encode("utf-8", "surrogatepass")
                    if isinstance(value, bytes) and len(value) >= min_bytes:
                        yield f"sqlite {table}.{column} rowid={rowid}", value
    finally:
        conn.close()


def _upload_findings(root: Path) -> Iterator[AuditFinding]:
    uploads = root / "uploads"
    if not uploads.is_dir():
        return
    for entry in sorted(uploads.iterdir()):
        if entry.is_dir() and re.fullmatch(r"[0-9a-f]{32}", entry.name) and any(entry.iterdir()):
            yield AuditFinding(path=entry, kind="upload", what="upload still stored")
        elif entry.is_file() and entry.name.startswith(".upload."):
            yield AuditFinding(path=entry, kind="upload", what="partial upload")


def _scan_file(path: Path, min_values: int) -> tuple[int, list[AuditFinding]]:
    """Bytes read and findings of one regular file."""
    size = path.stat().st_size
    if size == 0:
        return 0, []
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        head = bytes(data[:100])
        raw = [AuditFinding(path, kind, what, offset) for kind, what, offset in scan_bytes(data, min_values=min_values)]
    findings: list[AuditFinding] = []
    if head.startswith(b"SQLite format 3\x00"):
        # A cell that fits its page lies whole in the raw bytes, which were scanned: the cells are read one
        # by one only to locate what the raw scan found, and for values spread over overflow pages (the
        # 4-byte link at the start of each overflow page would break a run or a signature).
        (page_size,) = struct.unpack(">H", head[16:18]) if len(head) >= 18 else (4096,)
        local_max = (65536 if page_size == 1 else page_size) - 35
        for where, cell in _sqlite_cells(path, min_bytes=4 if raw else local_max):
            findings += [AuditFinding(path, k, w, o, where) for k, w, o in scan_bytes(cell, min_values=min_values)]
    elif head.startswith((b"\x1f\x8b", b"PK\x03\x04")):
        for where, inflated in _inflated(path, head):
            size += len(inflated)
            findings += [AuditFinding(path, k, w, o, where) for k, w, o in scan_bytes(inflated, min_values=min_values)]
    # Raw hits the structured read explained are not repeated; the rest (free pages, WAL frames) stay.
    explained = {(f.kind, f.what) for f in findings}
    findings += [f for f in raw if (f.kind, f.what) not in explained]
    return size, findings


def audit_data_dir(root: str | os.PathLike[str], *, min_values: int = 128) -> AuditReport:
    """Scan every file under ``root`` (see the module doc); nothing under it is written.

    Raises:
        MissingFileError: ``root`` does not exist.
        NotRegularFileError: ``root`` is not a directory.
    """
    base = Path(root)
    if not base.exists():
        raise MissingFileError(f"no data dir at {base}", details={"path": str(base)})
    if not base.is_dir():
        raise NotRegularFileError(f"{base} is not a directory", details={"path": str(base)})
    findings: list[AuditFinding] = list(_upload_findings(base))
    skipped: list[str] = []
    files = 0
    total = 0
    for folder, dirs, names in os.walk(base, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                skipped.append(f"{path} (not a regular file)")
                continue
            if path.suffix == ".onnx":
                skipped.append(f"{path} (ONNX model weights)")
                continue
            try:
                size, found = _scan_file(path, min_values)
            except (OSError, ValueError, sqlite3.Error, zipfile.BadZipFile, zlib.error) as err:
                findings.append(AuditFinding(path, "unreadable", f"cannot be fully read: {err}"))
                continue
            files += 1
            total += size
            findings.extend(found)
    return AuditReport(
        root=base, files_scanned=files, bytes_scanned=total, skipped=tuple(skipped), findings=tuple(findings)
    )


_SCANNED_TYPES = ("bytea", "text", "character varying", "character", "json", "jsonb")


def audit_database(url: str, *, min_values: int = 128) -> AuditReport:
    """Scan a PostgreSQL database (see the module doc); it is only read.

    Raises:
        DatabaseUnavailableError: the server cannot be reached.
    """
    from faceprint.postgres import connect, redact_url

    shown = redact_url(url)
    findings: list[AuditFinding] = []
    columns_read = 0
    total = 0
    with connect(url, application_name="faceprint-audit") as conn:
        columns = conn.execute(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.udt_name "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
            "WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY c.table_schema, c.table_name, c.ordinal_position"
        ).fetchall()
        for schema, table, column, data_type, udt in columns:
            name = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
            field = '"' + column.replace('"', '""') + '"'
            where = f"{schema}.{table}.{column}"
            if udt in ("vector", "halfvec"):
                counted = conn.execute(f"SELECT COUNT({field}) FROM {name}").fetchone()
                rows = 0 if counted is None else int(counted[0])
                columns_read += 1
                if rows:
                    findings.append(AuditFinding(shown, "vector", f"pgvector column ({rows} vectors)", None, where))
                continue
            if data_type not in _SCANNED_TYPES:
                continue
            columns_read += 1
            cast = field if data_type == "bytea" else f"convert_to({field}::text, 'UTF8')"
            # A server-side cursor (inside a transaction, as PostgreSQL wants) streams a big table.
            with conn.transaction(), conn.cursor(name=f"audit_{columns_read}") as cursor:
                cursor.execute(f"SELECT {cast} FROM {name} WHERE {field} IS NOT NULL")
                for (value,) in cursor:
                    data = bytes(value)
                    total += len(data)
                    findings += [
                        AuditFinding(shown, kind, what, offset, where)
                        for kind, what, offset in scan_bytes(data, min_values=min_values)
                    ]
    return AuditReport(
        root=shown, files_scanned=columns_read, bytes_scanned=total, skipped=(), findings=tuple(findings)
    )
