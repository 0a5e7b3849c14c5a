"""Read labelled pair lists: the LFW ``pairs*.txt`` format and a ``file1,file2,label`` CSV.

LFW format (Huang et al., 2007), whitespace (tab) separated:

- first line ``N`` (View 1: ``pairsDevTrain.txt``, ``pairsDevTest.txt``): N genuine pairs, then N impostor
  pairs; or ``F N`` (View 2: ``10 300``): F folds, each N genuine pairs followed by N impostor pairs;
- genuine line ``name i j``, impostor line ``name1 i name2 j``;
- image number ``i`` of ``name`` is ``<name>/<name>_{i:04d}.jpg``, relative to the images folder.

The block structure is checked, not trusted: a genuine line where an impostor line is due, a missing or
extra line, is a :class:`PairsListFormatError` naming the line. A truncated file therefore cannot pass as a
smaller data set.

CSV format: ``file1,file2,label`` with an optional fourth ``fold`` column (integer); a header row is
recognised by its label column name (``label``, ``is_same``, ``match``, ...). Labels read ``1/0``,
``true/false``, ``same/different``, ``yes/no`` (any case).

Example:
    >>> pairs = parse_lfw_pairs("1\\nAnn 1 2\\nAnn 1 Bob 3\\n")
    >>> [(p.path_a, p.path_b, p.is_same) for p in pairs]
    [('Ann/Ann_0001.jpg', 'Ann/Ann_0002.jpg', True), ('Ann/Ann_0001.jpg', 'Bob/Bob_0003.jpg', False)]
    >>> parse_pairs_csv("file1,file2,label\\na.jpg,b.jpg,same\\n")[0].is_same
    True
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from faceprint.errors import CsvFormatError

TRUE_LABELS = frozenset({"1", "true", "same", "yes"})
FALSE_LABELS = frozenset({"0", "false", "different", "no"})
LABEL_COLUMN_NAMES = frozenset({"label", "is_same", "issame", "match", "is_match", "genuine"})
"""Header names of the label column: a first row whose third cell is one of these is a header.

Only names that are not label values (``same`` is one) qualify, so a data row is never taken for a header.
"""


class PairsListFormatError(CsvFormatError):
    """A pair list (LFW ``pairs*.txt`` or pairs CSV) that cannot be read; ``details["line"]`` says where."""

    code: ClassVar[str] = "malformed_pairs_list"


@dataclass(frozen=True, slots=True)
class LabeledPair:
    """Two image paths and whether they show the same person.

    Paths are as written in the list (LFW: relative to the images folder, ``/``-separated). ``fold`` is the
    LFW View 2 fold (0-based) or the CSV ``fold`` column, ``None`` when the list defines no folds.
    CSV paths are kept verbatim: whoever opens them decides what base folder they may resolve under.
    """

    path_a: str
    path_b: str
    is_same: bool
    fold: int | None = None


def lfw_image_path(name: str, number: int) -> str:
    """The LFW relative path of image ``number`` of ``name``.

    Example:
        >>> lfw_image_path("Aaron_Peirsol", 1)
        'Aaron_Peirsol/Aaron_Peirsol_0001.jpg'
    """
    return f"{name}/{name}_{number:04d}.jpg"


def read_pairs_list(path: str | os.PathLike[str]) -> list[LabeledPair]:
    """Read a pair list file, LFW or CSV, chosen by content.

    A file is CSV when its suffix is ``.csv`` or its first non-blank line holds a comma (LFW names never
    do); otherwise it is read as an LFW pairs file.

    Args:
        path: The pair list.

    Returns:
        The pairs in file order.

    Raises:
        PairsListFormatError: On the first malformed line (``details`` has ``line`` and ``source``).

    Example:
        >>> read_pairs_list("pairsDevTest.txt")  # doctest: +SKIP
    """
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise PairsListFormatError(
            f"{file_path}: not UTF-8 text: {err}", details={"source": str(file_path), "line": None}
        ) from err
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if file_path.suffix.lower() == ".csv" or "," in first_line:
        return parse_pairs_csv(text, source=str(file_path))
    return parse_lfw_pairs(text, source=str(file_path))


def _fail(source: str, line_number: int | None, message: str) -> PairsListFormatError:
    where = f"{source}, line {line_number}" if line_number is not None else source
    return PairsListFormatError(f"{where}: {message}", details={"source": source, "line": line_number})


def _parse_lfw_header(fields: list[str], *, source: str, line_number: int) -> tuple[int | None, int]:
    """``(fold_count or None, pairs of each kind per block)`` from the first line."""
    try:
        numbers = [int(field) for field in fields]
    except ValueError:
        numbers = []
    if len(numbers) == 1 and numbers[0] > 0:
        return None, numbers[0]
    if len(numbers) == 2 and numbers[0] > 0 and numbers[1] > 0:
        return numbers[0], numbers[1]
    raise _fail(source, line_number, f"expected a header 'N' or 'FOLDS N' (positive integers), got {fields!r}")


def _parse_lfw_number(field: str, *, source: str, line_number: int) -> int:
    try:
        number = int(field)
    except ValueError:
        raise _fail(source, line_number, f"image number {field!r} is not an integer") from None
    if number < 1:
        raise _fail(source, line_number, f"image number {number} must be 1 or more")
    return number


def _check_lfw_name(name: str, *, source: str, line_number: int) -> str:
    # The name becomes a folder and file name: refuse anything that could leave the images folder.
    if name in {".", ".."} or "/" in name or "\\" in name:
        raise _fail(source, line_number, f"person name {name!r} is not a plain folder name")
    return name


def parse_lfw_pairs(text: str, *, source: str = "<string>") -> list[LabeledPair]:
    """Parse the text of an LFW pairs file (View 1 ``N`` or View 2 ``FOLDS N`` header).

    Args:
        text: The whole file.
        source: A name for error messages (usually the file path).

    Returns:
        The pairs in file order; ``fold`` is 0-based for View 2 and ``None`` for View 1.

    Raises:
        PairsListFormatError: A bad header, a bad line, a line of the wrong kind for its block, or a
            pair count that disagrees with the header.

    Example:
        >>> pairs = parse_lfw_pairs("2 1\\nA 1 2\\nA 1 B 1\\nC 1 2\\nC 2 D 1\\n")
        >>> [(p.is_same, p.fold) for p in pairs]
        [(True, 0), (False, 0), (True, 1), (False, 1)]
    """
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise _fail(source, None, "empty pairs file")
    header_line, header_fields = lines[0]
    fold_count, per_kind = _parse_lfw_header(header_fields, source=source, line_number=header_line)
    block_size = 2 * per_kind
    expected_total = (fold_count or 1) * block_size
    body = lines[1:]
    if len(body) > expected_total:
        extra_line = body[expected_total][0]
        raise _fail(source, extra_line, f"header promises {expected_total} pairs but the file has more")

    pairs: list[LabeledPair] = []
    for index, (line_number, fields) in enumerate(body):
        # The official lists put each block's N genuine pairs first: position decides the expected kind.
        expect_same = index % block_size < per_kind
        if expect_same:
            if len(fields) != 3:
                raise _fail(source, line_number, f"expected a genuine pair 'name i j', got {len(fields)} fields")
            name = _check_lfw_name(fields[0], source=source, line_number=line_number)
            path_a = lfw_image_path(name, _parse_lfw_number(fields[1], source=source, line_number=line_number))
            path_b = lfw_image_path(name, _parse_lfw_number(fields[2], source=source, line_number=line_number))
        else:
            if len(fields) != 4:
                raise _fail(
                    source, line_number, f"expected an impostor pair 'name1 i name2 j', got {len(fields)} fields"
                )
            name_a = _check_lfw_name(fields[0], source=source, line_number=line_number)
            name_b = _check_lfw_name(fields[2], source=source, line_number=line_number)
            path_a = lfw_image_path(name_a, _parse_lfw_number(fields[1], source=source, line_number=line_number))
            path_b = lfw_image_path(name_b, _parse_lfw_number(fields[3], source=source, line_number=line_number))
        fold = None if fold_count is None else index // block_size
        pairs.append(LabeledPair(path_a=path_a, path_b=path_b, is_same=expect_same, fold=fold))

    if len(pairs) < expected_total:
        last_line = body[-1][0] if body else header_line
        raise _fail(
            source, last_line + 1, f"header promises {expected_total} pairs but the file ends after {len(pairs)}"
        )
    return pairs


def parse_label(cell: str) -> bool | None:
    """``True``/``False`` for a recognised label, ``None`` otherwise.

    Example:
        >>> parse_label(" Yes "), parse_label("0"), parse_label("maybe")
        (True, False, None)
    """
    value = cell.strip().lower()
    if value in TRUE_LABELS:
        return True
    if value in FALSE_LABELS:
        return False
    return None


def parse_pairs_csv(text: str, *, source: str = "<string>") -> list[LabeledPair]:
    """Parse a ``file1,file2,label[,fold]`` CSV; the header row is optional.

    Args:
        text: The whole file.
        source: A name for error messages (usually the file path).

    Returns:
        The pairs in file order.

    Raises:
        PairsListFormatError: A row with the wrong number of columns, an empty path, an unknown label, a
            non-integer fold, or no pairs at all.

    Example:
        >>> [p.is_same for p in parse_pairs_csv("a.jpg,b.jpg,1\\nc.jpg,d.jpg,no\\n")]
        [True, False]
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    pairs: list[LabeledPair] = []
    column_count: int | None = None
    try:
        for row in reader:
            line_number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if column_count is None:
                if len(row) not in (3, 4):
                    raise _fail(
                        source, line_number, f"expected 3 or 4 columns (file1,file2,label[,fold]), got {len(row)}"
                    )
                column_count = len(row)
                if not pairs and row[2].strip().lower() in LABEL_COLUMN_NAMES:
                    continue
            if len(row) != column_count:
                raise _fail(source, line_number, f"expected {column_count} columns, got {len(row)}")
            pairs.append(_parse_csv_row(row, source=source, line_number=line_number))
    except csv.Error as err:
        raise _fail(source, reader.line_num, f"unreadable CSV: {err}") from err
    if not pairs:
        raise _fail(source, None, "no pairs in the CSV")
    return pairs


def _parse_csv_row(row: list[str], *, source: str, line_number: int) -> LabeledPair:
    path_a, path_b = row[0].strip(), row[1].strip()
    if not path_a or not path_b:
        raise _fail(source, line_number, "empty file path")
    is_same = parse_label(row[2])
    if is_same is None:
        known = ", ".join(sorted(TRUE_LABELS | FALSE_LABELS))
        raise _fail(
            source,
            line_number,
            f"label {row[2]!r} is not one of {known}"
            + (
                f" (a header's label column is one of {', '.join(sorted(LABEL_COLUMN_NAMES))})"
                if line_number == 1
                else ""
            ),
        )
    fold: int | None = None
    if len(row) == 4:
        try:
            fold = int(row[3])
        except ValueError:
            raise _fail(source, line_number, f"fold {row[3]!r} is not an integer") from None
    return LabeledPair(path_a=path_a, path_b=path_b, is_same=is_same, fold=fold)
