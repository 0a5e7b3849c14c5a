"""Read a dataset's ``pairs.csv`` and resolve its file names against the dataset's files.

The format is forgiving, because people write these by hand and with spreadsheets:

- two columns of file names, then any number of extra columns (kept and passed through to the output);
- a header row or not: the first row is a header when it has two non-empty cells and neither looks like a
  file (no image suffix and, in a job, no such file in the dataset);
- comma, semicolon or tab separated (sniffed from the first rows; on a tie tab wins, then semicolon, since a
  semicolon file's names may contain unquoted commas but a comma file's names rarely all hold a semicolon);
- UTF-8 with or without BOM (UTF-16 with a BOM too, as "Unicode text" from a spreadsheet);
- quoted names with commas, quotes or spaces; blank lines skipped; spaces around a name are dropped.

A malformed row (one column, an empty name, bytes that are not UTF-8, a csv syntax error) becomes a row
with ``error_code`` set; the other rows are still read. An unterminated quote is one of them: when a quoted
cell runs over lines that read as further pair rows (the delimiter and a file name), the row is reported
alone, at its line, and reading resumes on the next line, so no later row is lost. Rows are numbered from 1
in data order (the output row), and ``line`` is where the row starts in the file, for people looking for it.

Example:
    >>> table = parse_pairs_csv(b'left,right,note\\r\\n"a, b.jpg",c.jpg,x\\n\\nd.png\\n')
    >>> table.header
    ('left', 'right', 'note')
    >>> [(r.row, r.line, r.file_a, r.file_b, r.extra, r.error_code) for r in table.rows]
    [(1, 2, 'a, b.jpg', 'c.jpg', ('x',), None), (2, 4, 'd.png', '', (), 'malformed_csv')]
"""

from __future__ import annotations

import codecs
import csv
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from faceprint.errors import (
    AmbiguousFileError,
    CsvFormatError,
    FaceprintError,
    InputError,
    MissingFileError,
    PairsFileError,
)

PAIRS_FILE_NAME = "pairs.csv"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp"})
DELIMITERS = ("\t", ";", ",")
"""Candidates in order of preference on a tie (see the module docstring)."""
_SNIFF_LINES = 50
_MALFORMED = CsvFormatError.code


@dataclass(frozen=True, slots=True)
class PairRow:
    """One data row of ``pairs.csv``.

    ``row`` is the 1-based position among data rows (= the output row), ``line`` the 1-based line of the
    file where the row starts. ``error_code``/``error_message`` are set for a malformed row; its names are
    then as much as could be read (possibly empty).
    """

    row: int
    line: int
    file_a: str
    file_b: str
    extra: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class PairsTable:
    """A parsed ``pairs.csv``: its rows, the header if there was one, and how it was read."""

    rows: tuple[PairRow, ...]
    header: tuple[str, ...] | None
    delimiter: str
    encoding: str
    _extra_width: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: the writer asks for it per output row, and a scan per row made output O(n²).
        widths = [len(row.extra) for row in self.rows]
        if self.header is not None:
            widths.append(max(0, len(self.header) - 2))
        object.__setattr__(self, "_extra_width", max(widths, default=0))

    @property
    def extra_width(self) -> int:
        """The largest number of extra columns in any row (or the header)."""
        return self._extra_width

    def extra_header(self) -> tuple[str, ...]:
        """Names for the extra columns: the header's, else ``extra_1``, ``extra_2``, …"""
        return _extra_header(self.header, self.extra_width)


def _extra_header(header: tuple[str, ...] | None, width: int) -> tuple[str, ...]:
    given = header[2:] if header is not None else ()
    return tuple(given[i] if i < len(given) and given[i].strip() else f"extra_{i + 1}" for i in range(width))


def looks_like_image_name(name: str) -> bool:
    """Whether ``name`` ends with an image suffix faceprint reads.

    Example:
        >>> looks_like_image_name("photos/A.JPG"), looks_like_image_name("image1")
        (True, False)
    """
    return posixpath.splitext(name.strip())[1].lower() in IMAGE_SUFFIXES


def _decode(data: bytes) -> tuple[str, str]:
    """Text and encoding name. Invalid UTF-8 bytes survive as lone surrogates, flagged per row later."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as err:
            raise CsvFormatError(f"{PAIRS_FILE_NAME}: invalid UTF-16: {err}") from err
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", "surrogateescape"), "utf-8-sig"
    return data.decode("utf-8", "surrogateescape"), "utf-8"


def _has_bad_bytes(cells: Iterable[str]) -> bool:
    return any("\udc80" <= ch <= "\udcff" for cell in cells for ch in cell)


def _printable(cell: str) -> str:
    """Replace undecodable bytes by U+FFFD so the name can be written to UTF-8 output."""
    return cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits most of the first rows into two or more cells (comma if none does).

    Example:
        >>> sniff_delimiter("Doe, John.jpg;Doe, Jane.jpg\\n")
        ';'
    """
    # Only the head is split: a large file's full line list would cost memory for nothing.
    head = text[: 1 << 16].splitlines()
    sample = [line for line in head[: _SNIFF_LINES * 2] if line.strip()][:_SNIFF_LINES]
    best, best_score = ",", 0
    for delimiter in reversed(DELIMITERS):  # later (preferred) candidates win ties
        try:
            score = sum(1 for cells in csv.reader(sample, delimiter=delimiter) if len(cells) >= 2)
        except csv.Error:
            continue
        if score > best_score or (score == best_score and score > 0):
            best, best_score = delimiter, score
    return best


def _is_header(cells: list[str], looks_like_file: Callable[[str], bool]) -> bool:
    if len(cells) < 2 or _has_bad_bytes(cells[:2]):
        return False
    first, second = cells[0].strip(), cells[1].strip()
    return bool(first and second) and not looks_like_file(first) and not looks_like_file(second)


def parse_pairs_csv(
    data: bytes,
    *,
    has_header: bool | None = None,
    looks_like_file: Callable[[str], bool] | None = None,
    max_rows: int | None = None,
) -> PairsTable:
    """Parse ``pairs.csv`` bytes into rows; malformed rows are kept with an error code.

    Args:
        data: The file's bytes.
        has_header: Force header / no header; ``None`` detects it from the first row.
        looks_like_file: Whether a cell names a file, for header detection; defaults to
            :func:`looks_like_image_name`.
        max_rows: Refuse files with more data rows than this.

    Returns:
        The parsed table.

    Raises:
        CsvFormatError: a UTF-16 file that does not decode, or more than ``max_rows`` rows.

    Example:
        >>> parse_pairs_csv(b"a.jpg\\tb.jpg\\n").rows[0].file_b
        'b.jpg'
    """
    reader = PairsReader(data, has_header=has_header, looks_like_file=looks_like_file, max_rows=max_rows)
    rows = tuple(reader)
    return PairsTable(rows=rows, header=reader.header, delimiter=reader.delimiter, encoding=reader.encoding)


@dataclass(frozen=True, slots=True)
class PairsScan:
    """What one pass over ``pairs.csv`` learns without keeping its rows (see :func:`scan_pairs_csv`)."""

    header: tuple[str, ...] | None
    delimiter: str
    encoding: str
    rows: int
    """Data rows, malformed ones included."""
    extra_width: int
    names: frozenset[str]
    """Every file name of the well-formed rows."""

    def extra_header(self) -> tuple[str, ...]:
        """Names for the extra columns, as :meth:`PairsTable.extra_header`."""
        return _extra_header(self.header, self.extra_width)


def scan_pairs_csv(
    data: bytes,
    *,
    has_header: bool | None = None,
    looks_like_file: Callable[[str], bool] | None = None,
    max_rows: int | None = None,
) -> PairsScan:
    """Read ``pairs.csv`` once for what a job needs up front (names, row count, widths), keeping no row.

    With :class:`PairsReader` for a second pass that scores and writes row by row, a million-row file is
    never held as a million row objects.

    Example:
        >>> scan = scan_pairs_csv(b"a,b,note\\nx.jpg,y.jpg,1\\nx.jpg,z.jpg\\n")
        >>> (scan.rows, scan.extra_width, sorted(scan.names), scan.extra_header())
        (2, 1, ['x.jpg', 'y.jpg', 'z.jpg'], ('note',))
    """
    reader = PairsReader(data, has_header=has_header, looks_like_file=looks_like_file, max_rows=max_rows)
    rows = 0
    width = 0
    names: set[str] = set()
    for row in reader:
        rows += 1
        width = max(width, len(row.extra))
        if row.ok:
            names.add(row.file_a)
            names.add(row.file_b)
    if reader.header is not None:
        width = max(width, len(reader.header) - 2)
    return PairsScan(
        header=reader.header,
        delimiter=reader.delimiter,
        encoding=reader.encoding,
        rows=rows,
        extra_width=width,
        names=frozenset(names),
    )


class PairsReader:
    """The rows of ``pairs.csv`` bytes, one at a time (see the module doc for the format).

    ``header`` is set once the header row has been read (None when there is none); ``delimiter`` and
    ``encoding`` are known from the start. Two readers of the same bytes and arguments give the same rows.

    Raises:
        CsvFormatError: a UTF-16 file that does not decode (at construction), or more than ``max_rows``
            rows (while iterating).

    Example:
        >>> reader = PairsReader(b"left,right\\na.jpg,b.jpg\\n")
        >>> [(row.row, row.file_a) for row in reader], reader.header
        ([(1, 'a.jpg')], ('left', 'right'))
    """

    def __init__(
        self,
        data: bytes,
        *,
        has_header: bool | None = None,
        looks_like_file: Callable[[str], bool] | None = None,
        max_rows: int | None = None,
    ) -> None:
        self._text, self.encoding = _decode(data)
        self.delimiter = sniff_delimiter(self._text)
        self.header: tuple[str, ...] | None = None
        self._has_header = has_header
        self._is_file = looks_like_file if looks_like_file is not None else looks_like_image_name
        self._max_rows = max_rows

    def __iter__(self) -> Iterator[PairRow]:
        delimiter, is_file, has_header, max_rows = self.delimiter, self._is_file, self._has_header, self._max_rows
        lines = _Lines(self._text)
        reader = csv.reader(lines, delimiter=delimiter)
        count = 0
        header_decided = has_header is not None
        self.header = None

        def check_limit() -> None:
            if max_rows is not None and count >= max_rows:
                raise CsvFormatError(
                    f"{PAIRS_FILE_NAME}: more than {max_rows} rows (the limit)", details={"max_rows": max_rows}
                )

        while True:
            lines.start_row()
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                start = lines.row_start
                check_limit()
                count += 1
                yield PairRow(
                    row=count,
                    line=start,
                    file_a="",
                    file_b="",
                    error_code=_MALFORMED,
                    error_message=f"line {start}: cannot parse: {err}",
                )
                continue
            start = lines.row_start
            if lines.row_spans_lines() and _swallowed_lines(cells, delimiter, is_file):
                # An unterminated quote: report this line alone and read the lines it swallowed again.
                lines.reread_after_first()
                check_limit()
                count += 1
                first_line = _printable(lines.first_line_of_row().rstrip("\r\n"))
                yield PairRow(
                    row=count,
                    line=start,
                    file_a=_printable(cells[0].strip()) if cells and not _LINE_BREAK_RE.search(cells[0]) else "",
                    file_b="",
                    error_code=_MALFORMED,
                    error_message=f"line {start}: unterminated quote (a quoted name must end on its line): "
                    f"{first_line[:200]}",
                )
                continue
            if not any(cell.strip() for cell in cells):
                continue  # blank line (or only separators)
            if not header_decided:
                header_decided = True
                if _is_header(cells, is_file):
                    self.header = tuple(_printable(cell.strip()) for cell in cells)
                    continue
            elif has_header and self.header is None:
                self.header = tuple(_printable(cell.strip()) for cell in cells)
                continue
            check_limit()
            count += 1
            yield _make_row(count, start, cells, delimiter)


_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
"""One line with its ending (universal newlines, as ``open(newline="")`` reads them); the last may lack one."""


class _Lines:
    """The lines of a text for ``csv.reader``, numbered, with the lines of the current row kept for a re-read."""

    def __init__(self, text: str) -> None:
        # Lines are sliced out of the text one at a time: io.StringIO(text) would first copy the whole
        # file into a 4-bytes-a-character buffer (200 MB for a 1M-row pairs.csv).
        self._source = (match.group() for match in _LINE_RE.finditer(text))
        self._pushed: list[tuple[int, str]] = []
        self._row: list[tuple[int, str]] = []
        self._next_number = 1
        self.row_start = 1

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._pushed:
            number, line = self._pushed.pop()
        else:
            line = next(self._source)
            number = self._next_number
            self._next_number += 1
        if not self._row:
            self.row_start = number
        self._row.append((number, line))
        return line

    def start_row(self) -> None:
        self._row = []
        self.row_start = self._pushed[-1][0] if self._pushed else self._next_number

    def row_spans_lines(self) -> bool:
        return len(self._row) > 1

    def first_line_of_row(self) -> str:
        return self._row[0][1] if self._row else ""

    def reread_after_first(self) -> None:
        """Hand every line of the current row but its first back, to be read again."""
        self._pushed.extend(reversed(self._row[1:]))
        self._row = self._row[:1]


def _swallowed_lines(cells: list[str], delimiter: str, is_file: Callable[[str], bool]) -> bool:
    """Whether a row read over several lines is an unterminated quote rather than a quoted multi-line cell.

    A quoted cell may hold line breaks (a note from a spreadsheet, even a name); it is an unterminated quote
    when a line it swallowed reads as a further pair row: the delimiter, and a file name on either side.
    """
    for cell in cells:
        for continuation in _LINE_BREAK_RE.split(cell)[1:]:
            parts = [part.strip().strip('"') for part in continuation.split(delimiter)]
            if len(parts) >= 2 and (is_file(parts[0]) or is_file(parts[1])):
                return True
    return False


def _make_row(number: int, line: int, cells: list[str], delimiter: str) -> PairRow:
    bad_bytes = _has_bad_bytes(cells)
    clean = [_printable(cell) for cell in cells]
    # Interned: a million rows over a few hundred photos then hold each name once, not once per row.
    file_a = sys.intern(clean[0].strip()) if clean else ""
    file_b = sys.intern(clean[1].strip()) if len(clean) > 1 else ""
    extra = tuple(clean[2:])
    message: str | None = None
    if bad_bytes:
        message = f"line {line}: not valid UTF-8 (save the file as UTF-8)"
    elif len(clean) < 2:
        shown = {"\t": "tab", ";": "semicolon", ",": "comma"}[delimiter]
        message = f"line {line}: expected two file names separated by a {shown}, found one column"
    elif not file_a or not file_b:
        column = 1 if not file_a else 2
        message = f"line {line}: empty file name in column {column}"
    elif "\0" in file_a or "\0" in file_b:
        message = f"line {line}: NUL character in a file name"
    if message is not None:
        return PairRow(number, line, file_a, file_b, extra, error_code=_MALFORMED, error_message=message)
    return PairRow(number, line, file_a, file_b, extra)


def find_pairs_file(names: Iterable[str]) -> str:
    """The one ``pairs.csv`` (any depth, any letter case) among a dataset's file names.

    macOS resource forks (``__MACOSX/…``) are ignored.

    Raises:
        PairsFileError: none, or more than one.

    Example:
        >>> find_pairs_file(["x/a.jpg", "x/Pairs.CSV"])
        'x/Pairs.CSV'
    """
    found = sorted(
        name
        for name in names
        if posixpath.basename(name).lower() == PAIRS_FILE_NAME and not name.startswith("__MACOSX/")
    )
    if not found:
        raise PairsFileError(f"no {PAIRS_FILE_NAME} in the dataset", details={"found": []})
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise PairsFileError(
            f"{len(found)} {PAIRS_FILE_NAME} files in the dataset ({shown}); it must hold exactly one",
            details={"found": found},
        )
    return found[0]


_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def _normalize_reference(name: str) -> str | None:
    """A name from the CSV as a dataset-relative POSIX path, or None if it leaves the dataset."""
    path = name.strip().replace("\\", "/")
    if not path or path.startswith("/") or _URI_RE.match(path) or _DRIVE_RE.match(path):
        return None
    normalized = posixpath.normpath(path)
    if normalized == ".." or normalized.startswith("../"):
        return None
    return normalized


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class NameResolver:
    """Maps the names written in ``pairs.csv`` to dataset members.

    Order: the exact path relative to the folder holding ``pairs.csv``, then relative to the dataset root,
    then the unique member whose path ends with the name: for a bare name (no folder) the unique basename
    match; for a name with a folder (``2019/face.jpg``) only a member under that same folder
    (``photos/2019/face.jpg``), never a file of another folder that shares the basename (``2020/face.jpg``).
    Several candidates at that last step is :class:`~faceprint.errors.AmbiguousFileError`; none is
    :class:`~faceprint.errors.MissingFileError`; a member refused as unsafe raises its own error.
    Absolute paths, ``..`` out of the dataset, drive letters and URIs (``file:///x/a.jpg``) are missing:
    they do not name a file of the dataset.

    Example:
        >>> resolver = NameResolver(["data/a.jpg", "data/x/b.jpg", "data/y/b.jpg"], base_dir="data")
        >>> resolver.resolve("a.jpg"), resolver.resolve("x/b.jpg")
        ('data/a.jpg', 'data/x/b.jpg')
        >>> try:
        ...     resolver.resolve("b.jpg")
        ... except AmbiguousFileError as err:
        ...     err.code
        'ambiguous_file'
    """

    def __init__(
        self,
        names: Iterable[str],
        *,
        base_dir: str = "",
        rejected: Mapping[str, FaceprintError] | None = None,
    ) -> None:
        self._names = frozenset(names)
        self._base_dir = base_dir.strip("/")
        self._rejected = dict(rejected) if rejected is not None else {}
        self._by_basename: dict[str, list[str]] = {}
        for name in sorted(self._names):
            self._by_basename.setdefault(posixpath.basename(name), []).append(name)
        self._rejected_by_basename: dict[str, str] = {}
        for name in sorted(self._rejected):
            self._rejected_by_basename.setdefault(posixpath.basename(name), name)

    def exists(self, name: str) -> bool:
        """Whether ``name`` resolves to a member (used to tell a header row from a data row)."""
        try:
            self.resolve(name)
        except InputError:
            return False
        return True

    def resolve(self, name: str) -> str:
        """The member name for ``name`` as written in the CSV.

        Raises:
            MissingFileError: no member matches (or the name points outside the dataset).
            AmbiguousFileError: several members match by path suffix / basename.
            UnsafeArchiveMemberError: the matching entry was refused when the dataset was opened.
        """
        details = {"name": name}
        reference = _normalize_reference(name)
        if reference is None:
            hint = "a URL" if _URI_RE.match(name.strip()) else "an absolute path or one leaving the dataset"
            raise MissingFileError(
                f"{name}: {hint}, not a path inside the dataset (write it relative to the dataset)", details=details
            )
        exact = [posixpath.join(self._base_dir, reference), reference] if self._base_dir else [reference]
        for candidate in exact:
            if candidate in self._rejected:
                raise self._rejected[candidate]
            if candidate in self._names:
                return candidate
        basename = posixpath.basename(reference)
        candidates = self._by_basename.get(basename, [])
        has_folder = "/" in reference
        if has_folder:
            # The row names a folder: a file of another folder with the same basename is a different photo.
            candidates = [c for c in candidates if c.endswith("/" + reference)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            shown = ", ".join(candidates[:3]) + (", …" if len(candidates) > 3 else "")
            raise AmbiguousFileError(
                f"{name}: {len(candidates)} files in the dataset have this name ({shown}); "
                "write its path relative to the dataset",
                details={"name": name, "candidates": candidates},
            )
        if has_folder:
            for rejected in self._rejected:
                if rejected.endswith("/" + reference):
                    raise self._rejected[rejected]
            for candidate in exact:
                # A file inside a refused (unreadable) folder: that folder's error says why.
                for folder in _parents(candidate):
                    if folder in self._rejected:
                        raise self._rejected[folder]
        elif basename in self._rejected_by_basename:
            raise self._rejected[self._rejected_by_basename[basename]]
        raise MissingFileError(f"{name}: no such file in the dataset", details=details)
