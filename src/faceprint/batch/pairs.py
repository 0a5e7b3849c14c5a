"""Batch pair scoring: datasets of photos + ``pairs.csv`` in, one folder of results per dataset out.

Each input (a folder, ``.tar``, ``.tar.gz``/``.tgz``) holds JPG/PNG photos and exactly one ``pairs.csv``
(see :mod:`faceprint.batch.pairs_csv`). The output is a TAR.GZ with ``input-0001/``, ``input-0002/``, … in
the order given; each folder holds:

``output.csv``
    One row per input row, in input order, UTF-8 without BOM, comma separated, ``\\n`` line ends, always
    with a header: ``file_a,file_b,probability`` (names as written in ``pairs.csv``; probability as a
    percentage with one decimal, e.g. ``98.2%``), with ``--details`` also
    ``similarity,match,faces_a,faces_b,status`` (cosine similarity with 4 decimals, ``true``/``false`` at
    the model's threshold, faces found in each photo, ``ok`` or an error code), then the input's extra
    columns (named from its header, else ``extra_1``, …). A row that could not be scored keeps its place
    with an empty probability.
``processing.error``
    Present whenever something could not be scored or was refused. A CSV with the header
    ``row,line,file_a,file_b,failed_file,code,message``: ``row`` is the output row (1-based, empty for
    problems of the dataset itself, such as a refused archive member or a missing ``pairs.csv``), ``line``
    the line in ``pairs.csv``, ``failed_file`` the file the problem is about, ``code`` a stable
    :mod:`faceprint.errors` code (``missing_file``, ``decode_error``, ``no_face``, …). A row whose two
    files both fail has two lines.
``run.json``
    What produced the results, for reproducibility: package version, model id, contract id, threshold,
    calibration, face mode, the input's name and kind, and row/image counts. It holds no timestamps or
    host paths, so the same inputs give the same bytes (the archive is written deterministically too).

Spreadsheet formulas (CSV injection): a cell that came from the input (a file name, an extra column, a
header name, a message quoting a name) and starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is written with a ``'`` in front (OWASP's advice), so a spreadsheet shows it as text instead of
running it. A cell starting with ``'`` gets one more, so the rule can be undone without doubt: the raw
value is the cell without its first character when that is ``'`` (:func:`unescape_cell`). ``run.json``
says how many cells were escaped; ``PairsOptions(escape_formulas=False)`` (``--no-escape-formulas``)
writes every cell raw. Cells faceprint computes (probabilities, similarities, codes) are never escaped.

Output paths are checked before any work starts (:func:`faceprint.io.output.check_output_path`): the
archive may not be an input, a folder, a device or FIFO, or in a folder that cannot be written; a full
disk while writing is ``disk_full`` rather than a traceback.

How the work is done: the dataset is listed and checked (:class:`~faceprint.io.archive.Dataset`), every
name in ``pairs.csv`` is resolved, and each needed photo is read once, in storage order, and embedded by
the :class:`~faceprint.batch.engine.ImageEmbeddingEngine`: photos are keyed by the sha256 of their bytes,
so the same photo under two names is decoded and embedded once per dataset; only faceprints are kept in
memory, never images. With ``workers > 1`` a process pool embeds in parallel: each worker builds its own
pipeline once (with one inference thread, so N workers use N cores, not N²), photos travel as bytes and
come back as faceprints or an error code, and at most ``2 × workers`` photos are in flight, which bounds
memory. Rows are then scored in the main process (cosine + calibration: cheap), each distinct pair of
photos compared once. ``pairs.csv`` is read in two streaming passes
(:func:`~faceprint.batch.pairs_csv.scan_pairs_csv` for the names to embed, then
:class:`~faceprint.batch.pairs_csv.PairsReader` to score and write row by row), and ``output.csv`` is
written as UTF-8 bytes as it goes: the work is linear in the rows and the memory is the CSV bytes, not one
object per row (1M rows over 50 photos: about a minute and 325 MB with the real models;
``benchmarks/pairs_scale.py``).

Several faces in a photo: ``face="primary"`` (default) compares the main face of each photo, the largest
once faces far from the centre are discounted (:func:`faceprint.pipeline.face_prominence`);
``face="largest"`` the largest by size alone;
``face="best-match"`` compares every face of one with every face of the other and keeps the most similar
pair. Every face is embedded in both modes, so ``--details`` never changes a probability.

Example:
    >>> from faceprint.testing import fake_pipeline_factory
    >>> result = run_pairs_job(                                            # doctest: +SKIP
    ...     [Path("dataset.tar.gz")], Path("results.tar.gz"),
    ...     options=PairsOptions(workers=1, quiet=True), pipeline_factory=fake_pipeline_factory,
    ... )
    >>> result.exit_code, result.summary()                                  # doctest: +SKIP
    (0, '1 dataset, 3 rows: 3 scored, 0 not scored')
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import posixpath
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from faceprint import __version__
from faceprint.analyze import AnalyzeProgress, Analyzer, Compares, ExecutorName
from faceprint.batch.engine import (
    EmbeddingPipeline,
    FaceMode,
    ImageEmbeddingEngine,
    ImageFailedError,
    ImageOutcome,
    PipelineFactory,
    WorkerFailedError,
    available_cores,
    check_face_mode,
    compare_outcomes,
    default_pipeline_factory,
    embed_image,
    pipeline_config_for_face,
    worker_pipeline_config,
)
from faceprint.batch.pairs_csv import (
    PAIRS_FILE_NAME,
    NameResolver,
    PairRow,
    PairsReader,
    PairsScan,
    find_pairs_file,
    looks_like_image_name,
    scan_pairs_csv,
)
from faceprint.errors import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_PARTIAL,
    FaceprintError,
    InputError,
    InvalidSettingError,
    NoPairsError,
    OutputWriteError,
    UsageError,
)
from faceprint.execute.base import Executor
from faceprint.io.archive import ArchiveLimits, Dataset, DatasetSource, detect_kind, write_deterministic_targz
from faceprint.io.atomic import write_atomic
from faceprint.io.output import check_output_path, output_write_error
from faceprint.pipeline import ModelHead, PipelineConfig
from faceprint.types import Comparison

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_ARCHIVE_NAME",
    "DETAIL_COLUMNS",
    "ERROR_COLUMNS",
    "ERROR_FILE",
    "OUTPUT_CSV",
    "RUN_JSON",
    "DatasetSummary",
    "FaceMode",
    "ImageFailedError",
    "ImageOutcome",
    "PairsJobResult",
    "PairsOptions",
    "PairsPipeline",
    "PipelineFactory",
    "WorkerFailedError",
    "available_cores",
    "default_pipeline_factory",
    "embed_image",
    "enclave_inputs",
    "escape_cell",
    "format_probability",
    "run_enclave_job",
    "run_pairs_job",
    "unescape_cell",
    "worker_pipeline_config",
]

PairsPipeline = EmbeddingPipeline
"""What the job needs of a pipeline; the engine's protocol under the name this module has always used."""

OUTPUT_CSV = "output.csv"
ERROR_FILE = "processing.error"
RUN_JSON = "run.json"
ERROR_COLUMNS = ("row", "line", "file_a", "file_b", "failed_file", "code", "message")
BASE_COLUMNS = ("file_a", "file_b", "probability")
DETAIL_COLUMNS = ("similarity", "match", "faces_a", "faces_b", "status", "flags")
DEFAULT_ARCHIVE_NAME = "results.tar.gz"
_INPUT_FOLDER_RE = re.compile(r"^input-(\d+)$")


@dataclass(frozen=True, slots=True)
class PairsOptions:
    """How to run a pairs job.

    Example:
        >>> PairsOptions(face="best-match", workers=2).face
        'best-match'
    """

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    details: bool = False
    """Add similarity, match, faces found and status columns."""
    face: FaceMode = "primary"
    """``primary``/``largest`` pick one face per photo (they set ``pipeline.face_selection``);
    ``best-match`` compares every face with every face."""
    workers: int | None = None
    """Worker processes; ``None`` means every available core. 1 runs in this process."""
    quiet: bool = False
    """No progress bar."""
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    max_pairs: int = 1_000_000
    """Most rows one ``pairs.csv`` may have."""
    escape_formulas: bool = True
    """Prefix input cells that a spreadsheet would run as a formula with ``'`` (see the module doc)."""
    executor: ExecutorName | Executor = "auto"
    """Where photos are analysed: ``auto``, ``local``, ``processes`` or an executor (a distributed one)."""

    def __post_init__(self) -> None:
        check_face_mode(self.face)
        # Frozen, so the derived pipeline config is set the way a frozen dataclass allows.
        object.__setattr__(self, "pipeline", pipeline_config_for_face(self.pipeline, self.face))
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")
        if self.max_pairs < 1:
            raise InvalidSettingError(f"max_pairs must be at least 1, got {self.max_pairs}")

    def worker_count(self) -> int:
        return self.workers if self.workers is not None else available_cores()


# --- one dataset ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """Counts for one dataset of a job."""

    folder: str
    """The output folder, ``input-0001`` …"""
    source: str
    """The input's file or folder name (no host path)."""
    rows: int
    scored: int
    error_lines: int
    """Lines in ``processing.error`` (0: the file is absent)."""
    images: int
    """Distinct photo files the rows refer to."""
    embedded: int
    """Distinct photo contents decoded and embedded."""
    dataset_error: str | None = None
    """Error code when the dataset as a whole could not be read (no pairs.csv, corrupt archive, …)."""

    @property
    def failed(self) -> int:
        return self.rows - self.scored

    @property
    def status(self) -> Literal["ok", "partial", "failed"]:
        if self.error_lines == 0:
            return "ok"
        return "failed" if self.scored == 0 else "partial"


@dataclass(frozen=True, slots=True)
class _Problem:
    failed_file: str
    code: str
    message: str
    row: PairRow | None = None

    def cells(self, escape: _Escaper) -> list[str]:
        if self.row is None:
            return ["", "", "", "", escape(self.failed_file), self.code, escape(self.message)]
        row = self.row
        return [
            str(row.row),
            str(row.line),
            escape(row.file_a),
            escape(row.file_b),
            escape(self.failed_file),
            self.code,
            escape(self.message),
        ]


@dataclass(frozen=True, slots=True)
class _Scored:
    comparison: Comparison | None
    faces_a: int | None
    faces_b: int | None
    problems: tuple[_Problem, ...]


@dataclass(frozen=True, slots=True)
class _ModelInfo:
    model_id: str
    contract_id: str
    threshold: float
    calibration: dict[str, Any]

    @classmethod
    def of(cls, pipeline: ModelHead) -> _ModelInfo:
        comparator = pipeline.comparator
        return cls(
            model_id=pipeline.spec.id,
            contract_id=pipeline.spec.contract_id,
            threshold=comparator.threshold,
            calibration=comparator.calibration.to_dict(),
        )


_MAX_MEMO_PAIRS = 200_000
"""Most distinct photo pairs whose comparison is remembered (1M rows over 50 photos are 2,500 pairs)."""


class _ComparisonMemo:
    """Comparisons by the pair of photos compared: a row repeating a pair is not compared again.

    Comparing is deterministic, so this changes no result; it turns 1M rows over 50 photos into at most
    2,500 comparisons. Bounded: when full it is emptied (rows of distinct pairs gain nothing from it).
    """

    __slots__ = ("_face", "_known", "_pipeline")

    def __init__(self, pipeline: Compares, face: FaceMode) -> None:
        self._pipeline = pipeline
        self._face = face
        self._known: dict[tuple[str, str], Comparison] = {}

    def compare(self, target_a: str, target_b: str, outcome_a: ImageOutcome, outcome_b: ImageOutcome) -> Comparison:
        key = (target_a, target_b)
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= _MAX_MEMO_PAIRS:
                self._known.clear()
            known = self._known[key] = compare_outcomes(self._pipeline, outcome_a, outcome_b, face=self._face)
        return known


def _score_row(
    row: PairRow,
    resolved: Mapping[str, str | FaceprintError],
    outcomes: Mapping[str, ImageOutcome],
    memo: _ComparisonMemo,
) -> _Scored:
    if not row.ok:
        problem = _Problem("", row.error_code or "malformed_csv", row.error_message or "malformed row", row)
        return _Scored(None, None, None, (problem,))
    found: list[ImageOutcome | None] = []
    problems: list[_Problem] = []
    for name in dict.fromkeys((row.file_a, row.file_b)):  # a photo paired with itself fails once
        target = resolved[name]
        if isinstance(target, FaceprintError):
            problems.append(_Problem(name, target.code, target.message, row))
            continue
        outcome = outcomes[target]
        if outcome.error_code is not None:
            problems.append(_Problem(name, outcome.error_code, outcome.error_message or outcome.error_code, row))
    for name in (row.file_a, row.file_b):
        target = resolved[name]
        found.append(None if isinstance(target, FaceprintError) else outcomes[target])
    outcome_a, outcome_b = found
    faces_a = None if outcome_a is None else outcome_a.faces_found
    faces_b = None if outcome_b is None else outcome_b.faces_found
    if problems or outcome_a is None or outcome_b is None:
        return _Scored(None, faces_a, faces_b, tuple(problems))
    target_a, target_b = resolved[row.file_a], resolved[row.file_b]
    if isinstance(target_a, FaceprintError) or isinstance(target_b, FaceprintError):
        return _Scored(None, faces_a, faces_b, tuple(problems))  # not reached: such a row has a problem
    return _Scored(memo.compare(target_a, target_b, outcome_a, outcome_b), faces_a, faces_b, ())


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
"""OWASP's formula triggers, and the escape character itself so that escaping can be undone."""


def escape_cell(value: str) -> str:
    """``value`` made safe to open in a spreadsheet: a ``'`` in front when it could start a formula.

    Example:
        >>> escape_cell("=1+1"), escape_cell("a.jpg"), escape_cell("'quoted")
        ("'=1+1", 'a.jpg', "''quoted")
    """
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def unescape_cell(cell: str) -> str:
    """The raw value of a cell written by :func:`escape_cell` (drops one leading ``'``).

    Example:
        >>> unescape_cell("'=1+1"), unescape_cell("''quoted"), unescape_cell("a.jpg")
        ('=1+1', "'quoted", 'a.jpg')
    """
    return cell[1:] if cell.startswith("'") else cell


class _Escaper:
    """Escapes input cells (or not) and counts how many it changed, for run.json."""

    __slots__ = ("enabled", "escaped")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.escaped = 0

    def __call__(self, value: str) -> str:
        if not self.enabled or not value.startswith(_FORMULA_STARTS):
            return value
        self.escaped += 1
        return "'" + value


def _own_messages(outcomes: Mapping[str, ImageOutcome]) -> dict[str, ImageOutcome]:
    """Outcomes whose message names the photo itself.

    Photos are embedded once per content, so two names with identical bytes share one outcome, whose
    message names whichever came first ("a.gif: …"); each name gets a message naming itself instead.
    """
    fixed = dict(outcomes)
    for key, outcome in outcomes.items():
        message = outcome.error_message
        if message is None or message.startswith(f"{key}: "):
            continue
        named, separator, rest = message.partition(": ")
        if separator and named != key and named in outcomes:
            fixed[key] = dataclasses.replace(outcome, error_message=f"{key}: {rest}")
    return fixed


def format_probability(probability: float) -> str:
    """A probability as a percentage with one decimal.

    Example:
        >>> format_probability(0.98234)
        '98.2%'
    """
    return f"{probability * 100.0:.1f}%"


def _output_header(table: PairsScan | None, details: bool, escape: _Escaper) -> list[str]:
    columns = list(BASE_COLUMNS) + (list(DETAIL_COLUMNS) if details else [])
    taken = set(columns)
    for name in table.extra_header() if table is not None else ():
        unique = name
        while unique in taken:  # an input column called "probability" must not shadow ours
            unique = f"input_{unique}"
        taken.add(unique)
        columns.append(escape(unique))
    return columns


def _output_cells(row: PairRow, scored: _Scored, details: bool, extra_width: int, escape: _Escaper) -> list[str]:
    comparison = scored.comparison
    probability = "" if comparison is None else format_probability(comparison.probability)
    cells = [escape(row.file_a), escape(row.file_b), probability]
    if details:
        cells += [
            "" if comparison is None else f"{comparison.similarity:.4f}",
            "" if comparison is None else ("true" if comparison.is_match else "false"),
            "" if scored.faces_a is None else str(scored.faces_a),
            "" if scored.faces_b is None else str(scored.faces_b),
            "ok" if not scored.problems else scored.problems[0].code,
            # Honest flags: a face outside the quality range the calibration was fitted on (docs/quality.md).
            "" if comparison is None else ";".join(comparison.flags),
        ]
    return cells + [escape(cell) for cell in row.extra] + [""] * (extra_width - len(row.extra))


def _csv_bytes(rows: Iterable[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8", "replace")


def _is_pairs_candidate(name: str) -> bool:
    return posixpath.basename(name).lower() == PAIRS_FILE_NAME


@dataclass(frozen=True, slots=True)
class _DatasetOutput:
    summary: DatasetSummary
    files: dict[str, bytes]


def _process_dataset(
    folder: str,
    source: Path | DatasetSource,
    *,
    engine: ImageEmbeddingEngine,
    model: _ModelInfo,
    options: PairsOptions,
    progress: Callable[[AnalyzeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> _DatasetOutput:
    problems: list[_Problem] = []
    table: PairsScan | None = None
    rows_of: Callable[[], Iterable[PairRow]] = tuple
    resolved: dict[str, str | FaceprintError] = {}
    outcomes: Mapping[str, ImageOutcome] = {}
    dataset_error: FaceprintError | None = None
    kind: str | None = None
    pairs_name: str | None = None
    embedded = 0
    escape = _Escaper(options.escape_formulas)
    # "." or "dir/" have no .name; the resolved name is still only the last component, never a host path.
    source_name = source.name if isinstance(source, DatasetSource) else (source.name or source.resolve().name)
    try:
        with Dataset(source, limits=options.archive_limits, preload=_is_pairs_candidate) as dataset:
            kind = dataset.kind
            for refused in dataset.rejected:
                problems.append(_Problem(str(refused.details.get("name", "")), refused.code, refused.message))
            pairs_name = find_pairs_file(dataset.names)
            resolver = NameResolver(
                dataset.names, base_dir=posixpath.dirname(pairs_name), rejected=dataset.rejected_names
            )
            pairs_bytes = dataset.read(pairs_name)

            def looks_like_file(cell: str) -> bool:
                return looks_like_image_name(cell) or resolver.exists(cell)

            # Two passes over the CSV, none holding its rows: this one learns the names to embed, the one
            # below scores and writes row by row (1M rows are never 1M row objects in memory).
            table = scan_pairs_csv(pairs_bytes, looks_like_file=looks_like_file, max_rows=options.max_pairs)
            has_header = table.header is not None

            def rows_of() -> Iterable[PairRow]:
                return PairsReader(pairs_bytes, has_header=has_header, looks_like_file=looks_like_file)

            if not table.rows:
                what = "only a header" if table.header is not None else "no rows"
                raise NoPairsError(
                    f"{pairs_name}: {what}; nothing to score (one pair of file names a line)",
                    details={"name": pairs_name},
                )
            for name in sorted(table.names):
                try:
                    resolved[name] = resolver.resolve(name)
                except InputError as err:
                    resolved[name] = err
            needed = sorted({target for target in resolved.values() if isinstance(target, str)})
            # Read in storage order (a .tar.gz is decompressed forward once), one photo in memory at a time.
            embedded_images = engine.embed(
                dataset.iter_read(needed), total=len(needed), description=folder, progress=progress, cancel=cancel
            )
            outcomes, embedded = _own_messages(embedded_images), embedded_images.embedded
    except InputError as err:
        dataset_error = err
        problems.append(_Problem(pairs_name or source_name, err.code, err.message))

    # Computed once: asking the table per row is what made writing 1M rows quadratic.
    extra_width = table.extra_width if table is not None else 0
    # Rows go straight into UTF-8 bytes, one at a time: no list of every output row is ever held, and a
    # BytesIO keeps 1 byte a character where a StringIO keeps 4 (1M rows: 70 MB, not 280 MB).
    output_bytes = io.BytesIO()
    output_text = io.TextIOWrapper(output_bytes, encoding="utf-8", errors="replace", newline="")
    output_writer = csv.writer(output_text, lineterminator="\n")
    output_writer.writerow(_output_header(table, options.details, escape))
    scored_count = 0
    if table is not None and dataset_error is None:
        memo = _ComparisonMemo(engine.head, options.face)
        for row in rows_of():
            scored = _score_row(row, resolved, outcomes, memo)
            problems.extend(scored.problems)
            if scored.comparison is not None:
                scored_count += 1
            output_writer.writerow(_output_cells(row, scored, options.details, extra_width, escape))
    rows = table.rows if table is not None else 0
    if table is not None and dataset_error is not None:
        # The table was read but the photos could not be: every row keeps its place, unscored.
        empty = _Scored(None, None, None, ())
        for row in rows_of():
            output_writer.writerow(_output_cells(row, empty, options.details, extra_width, escape))

    summary = DatasetSummary(
        folder=folder,
        source=source_name,
        rows=rows,
        scored=scored_count,
        error_lines=len(problems),
        images=len({target for target in resolved.values() if isinstance(target, str)}),
        embedded=embedded,
        dataset_error=None if dataset_error is None else dataset_error.code,
    )
    output_text.flush()
    files = {f"{folder}/{OUTPUT_CSV}": output_bytes.getvalue()}
    output_text.detach()
    del output_text, output_writer, output_bytes  # the bytes in ``files`` are all that is kept
    if problems:
        files[f"{folder}/{ERROR_FILE}"] = _csv_bytes([list(ERROR_COLUMNS)] + [p.cells(escape) for p in problems])
    files[f"{folder}/{RUN_JSON}"] = _run_json(summary, model, options, table, kind, pairs_name, escape)
    return _DatasetOutput(summary=summary, files=files)


def _run_json(
    summary: DatasetSummary,
    model: _ModelInfo,
    options: PairsOptions,
    table: PairsScan | None,
    kind: str | None,
    pairs_name: str | None,
    escape: _Escaper,
) -> bytes:
    record = {
        "format": "faceprint-pairs/1",
        "faceprint_version": __version__,
        "model_id": model.model_id,
        "contract_id": model.contract_id,
        "threshold": model.threshold,
        "calibration": model.calibration,
        "face": options.face,
        "details": options.details,
        "input": {
            "name": summary.source,
            "kind": kind,
            "pairs_file": pairs_name,
            "delimiter": None if table is None else table.delimiter,
            "header": None if table is None else table.header is not None,
            "encoding": None if table is None else table.encoding,
        },
        "counts": {
            "rows": summary.rows,
            "scored": summary.scored,
            "not_scored": summary.failed,
            "images": summary.images,
            "embedded": summary.embedded,
            "problems": summary.error_lines,
        },
        "status": summary.status,
        "dataset_error": summary.dataset_error,
        "formula_escape": {
            "enabled": escape.enabled,
            "escaped_cells": escape.escaped,
            "prefix": "'",
            "rule": "input cells starting with = + - @ tab CR or ' get a ' in front; "
            "the raw value is the cell without its first character when that is '",
        },
        "error_file": ERROR_FILE if summary.error_lines else None,
    }
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# --- the job --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairsJobResult:
    """What a pairs job wrote and how it went; ``exit_code`` is the CLI's exit status."""

    output_path: Path
    datasets: tuple[DatasetSummary, ...]
    model_id: str
    contract_id: str
    threshold: float
    output_dir: Path | None = None

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.datasets)

    @property
    def scored(self) -> int:
        return sum(d.scored for d in self.datasets)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.datasets)

    @property
    def exit_code(self) -> int:
        """0 all scored; 1 some problems but output written; 3 problems and nothing scored."""
        if not any(d.error_lines for d in self.datasets):
            return EXIT_OK
        return EXIT_INPUT if self.scored == 0 else EXIT_PARTIAL

    def summary(self) -> str:
        """One line for people.

        Example:
            >>> PairsJobResult(Path("r.tar.gz"), (), "m", "m:1", 0.5).summary()
            '0 datasets, 0 rows: 0 scored, 0 not scored'
        """
        count = len(self.datasets)
        text = (
            f"{count} dataset{'' if count == 1 else 's'}, {self.rows} row{'' if self.rows == 1 else 's'}: "
            f"{self.scored} scored, {self.failed} not scored"
        )
        if any(d.error_lines for d in self.datasets):
            text += f" (see {ERROR_FILE})"
        return text


def _run(
    sources: Sequence[tuple[str, Path | DatasetSource]],
    options: PairsOptions,
    pipeline_factory: PipelineFactory | None,
    analyzer: Analyzer | None = None,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[dict[str, bytes], tuple[DatasetSummary, ...], _ModelInfo]:
    # Looked up here, not bound as a default argument, so tests can swap this module's default.
    factory = pipeline_factory if pipeline_factory is not None else default_pipeline_factory
    files: dict[str, bytes] = {}
    summaries: list[DatasetSummary] = []
    # Entering builds the pipeline: a missing or corrupt model fails the job before any dataset is read.
    with ImageEmbeddingEngine(
        options.pipeline,
        workers=options.workers,
        quiet=options.quiet,
        pipeline_factory=factory,
        keep_all_faces=options.face == "best-match",
        executor=options.executor,
        analyzer=analyzer,
    ) as engine:
        model = _ModelInfo.of(engine.head)
        for number, (folder, source) in enumerate(sources):

            def dataset_progress(state: AnalyzeProgress, number: int = number) -> None:
                # Each dataset is an equal share of the job: the photo counts of later ones are not known yet.
                if progress is not None and state.total:
                    progress((number + state.done / state.total) / len(sources))

            output = _process_dataset(
                folder, source, engine=engine, model=model, options=options, progress=dataset_progress, cancel=cancel
            )
            if progress is not None:
                progress((number + 1) / len(sources))
            files.update(output.files)
            summaries.append(output.summary)
    return files, tuple(summaries), model


def _check_inputs(inputs: Sequence[Path | DatasetSource]) -> list[Path | DatasetSource]:
    checked = [p if isinstance(p, DatasetSource) else Path(p) for p in inputs]
    if not checked:
        raise UsageError("give at least one dataset (a folder, .tar, .tar.gz or .tgz)")
    for path in checked:
        if isinstance(path, Path) and not path.exists():
            raise UsageError(f"input {path} does not exist")
    return checked


def run_pairs_job(
    inputs: Sequence[Path | DatasetSource],
    output_path: Path,
    *,
    options: PairsOptions | None = None,
    pipeline_factory: PipelineFactory | None = None,
    analyzer: Analyzer | None = None,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    output_cipher: RecordCipher | None = None,
    output_context: str = "",
) -> PairsJobResult:
    """Score the pairs of every dataset in ``inputs`` and write one TAR.GZ of results.

    Args:
        inputs: Datasets: folders, ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip`` files (told apart by content),
            or archives held elsewhere (:class:`~faceprint.io.archive.DatasetSource`: a job's uploads).
        output_path: The TAR.GZ to write (replaced atomically); its folder must exist.
        options: Details, face mode, workers, limits, pipeline config.
        pipeline_factory: Builds the pipeline (tests pass :func:`faceprint.testing.fake_pipeline_factory`).
        analyzer: A long-lived engine to run on (a job worker's), instead of one built for this job; it
            must have been built from ``options.pipeline`` (the face rule is applied per call).
        progress: Called with the job's progress, 0-1, as photos are embedded.
        cancel: When set, the job stops (:class:`~faceprint.analyze.CancelledError`) and writes nothing.
        output_cipher: Seal the output archive at rest, bound to ``output_context`` (the job service with
            an encryption key); the clear archive is never written.

    Returns:
        Counts per dataset and the exit status to report.

    Raises:
        UsageError: no inputs, an input that does not exist, an unusable output path
            (:class:`~faceprint.errors.OutputPathError`: an input, a folder, a device, a missing folder).
        OutputWriteError: the output cannot be written (read-only, no permission, disk full), before any
            work when the probe finds it, else when writing.
        ModelError: the models cannot be loaded.

    Example:
        >>> result = run_pairs_job([Path("faces")], Path("out.tar.gz"))   # doctest: +SKIP
        >>> result.exit_code                                               # doctest: +SKIP
        0
    """
    options = options if options is not None else PairsOptions()
    paths = _check_inputs(inputs)
    # Before any work: a bad -o must cost nothing, and must never overwrite an input or a device.
    output_path = check_output_path(output_path, inputs=[p for p in paths if isinstance(p, Path)])
    sources = [(f"input-{index:04d}", path) for index, path in enumerate(paths, start=1)]
    files, summaries, model = _run(sources, options, pipeline_factory, analyzer, progress, cancel)
    write_deterministic_targz(files, output_path, cipher=output_cipher, context=output_context)
    return PairsJobResult(
        output_path=output_path,
        datasets=summaries,
        model_id=model.model_id,
        contract_id=model.contract_id,
        threshold=model.threshold,
    )


def _enclave_source(folder: Path) -> Path:
    """The dataset inside an ``input-NNNN`` folder: its lone archive file, else the folder itself."""
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_file() and not entries[0].is_symlink():
        try:
            if detect_kind(entries[0]) in ("tar", "tar.gz", "zip"):
                return entries[0]
        except InputError:
            pass  # a lone non-archive file: the folder is the dataset (and will lack pairs.csv)
    return folder


def enclave_inputs(inputs_dir: Path) -> list[tuple[str, Path]]:
    """The ``input-NNNN`` folders of ``inputs_dir`` in numeric order, each with its dataset path.

    Raises:
        UsageError: ``inputs_dir`` is not a folder or holds no ``input-NNNN`` folder.
    """
    if not inputs_dir.is_dir():
        raise UsageError(f"inputs folder {inputs_dir} does not exist")
    found: list[tuple[int, str, Path]] = []
    for entry in inputs_dir.iterdir():
        match = _INPUT_FOLDER_RE.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            found.append((int(match.group(1)), entry.name, entry))
    if not found:
        raise UsageError(f"no input-0001, input-0002, … folders in {inputs_dir}")
    found.sort()
    return [(name, _enclave_source(path)) for _, name, path in found]


def _check_enclave_outputs(inputs_dir: Path, output_dir: Path, folders: Sequence[str], archive_name: str) -> None:
    """Every folder and file the enclave layout will write, checked before any work (see io.output)."""
    check_output_path(output_dir, kind="dir", inputs=[inputs_dir])
    if not output_dir.is_dir():
        return  # created below; nothing in it yet that could be a device or a folder
    check_output_path(output_dir / archive_name, inputs=[inputs_dir])
    for folder in folders:
        target = output_dir / folder
        if target.exists() or target.is_symlink():
            check_output_path(target, kind="dir", inputs=[inputs_dir])
            for file_name in (OUTPUT_CSV, RUN_JSON, ERROR_FILE):
                if (target / file_name).exists() or (target / file_name).is_symlink():
                    check_output_path(target / file_name, inputs=[inputs_dir])


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        mapped = output_write_error(err, folder)
        raise (mapped if mapped is not None else OutputWriteError(f"cannot create {folder}: {err}")) from err


def _remove_stale(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        mapped = output_write_error(err, path)
        raise (mapped if mapped is not None else OutputWriteError(f"cannot remove {path}: {err}")) from err


def run_enclave_job(
    inputs_dir: Path,
    output_dir: Path,
    options: PairsOptions | None = None,
    *,
    pipeline_factory: PipelineFactory | None = None,
    archive_name: str = DEFAULT_ARCHIVE_NAME,
) -> PairsJobResult:
    """The enclave layout: ``inputs_dir/input-NNNN/`` in, ``output_dir/input-NNNN/`` and a TAR.GZ out.

    Each ``input-NNNN`` folder holds a dataset's files, or one archive. The results for it go to
    ``output_dir/input-NNNN/`` (same name as the input folder: ``output.csv``, ``run.json`` and, when
    something failed, ``processing.error``; a stale one from an earlier run is removed), and all of them
    packed into ``output_dir/<archive_name>``. Every file is written atomically.

    Example:
        >>> run_enclave_job(Path("/inputs"), Path("/outputs"))   # doctest: +SKIP
    """
    options = options if options is not None else PairsOptions()
    inputs_dir, output_dir = Path(inputs_dir), Path(output_dir)
    sources = enclave_inputs(inputs_dir)
    if output_dir.exists() and output_dir.resolve() == inputs_dir.resolve():
        raise UsageError("the output folder must differ from the inputs folder")
    if "/" in archive_name or archive_name in ("", ".", ".."):
        raise UsageError(f"archive name must be a plain file name, not {archive_name!r}")
    _check_enclave_outputs(inputs_dir, output_dir, [folder for folder, _ in sources], archive_name)
    _make_folder(output_dir)
    files, summaries, model = _run(sources, options, pipeline_factory)
    for folder, _ in sources:
        target = output_dir / folder
        _make_folder(target)
        for file_name in (OUTPUT_CSV, RUN_JSON, ERROR_FILE):
            data = files.get(f"{folder}/{file_name}")
            if data is not None:
                write_atomic(target / file_name, data)
            elif (target / file_name).exists():
                _remove_stale(target / file_name)
    archive_path = write_deterministic_targz(files, output_dir / archive_name)
    return PairsJobResult(
        output_path=archive_path,
        datasets=summaries,
        model_id=model.model_id,
        contract_id=model.contract_id,
        threshold=model.threshold,
        output_dir=output_dir,
    )
