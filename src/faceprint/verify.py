"""1:1 verification of two inputs, each a photo or a faceprint file: the library behind ``faceprint compare``.

Photos go through the engine (:class:`~faceprint.analyze.Analyzer`) with the same face rule as
``faceprint pairs`` (``primary`` by default), so ``compare`` and ``pairs`` give the same similarity for
the same photos. A faceprint file (``.json`` / ``.jsonl``: :meth:`Faceprint.to_json` or
``faceprint embed`` output) is read with :func:`faceprint.io.faceprints.read_faceprint_file`; its first
faceprint is compared.

Example:
    >>> with Analyzer() as analyzer:                                               # doctest: +SKIP
    ...     result = compare_inputs(analyzer, Path("obama.jpg"), Path("obama2.jpg"))
    >>> result.comparison.is_match                                                 # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint import __version__
from faceprint.analyze import AnalyzeItem, AnalyzeOptions, Analyzer, FaceMode, ImageResult, compare_results
from faceprint.errors import error_for_code
from faceprint.io.faceprints import check_comparable, read_faceprint_file
from faceprint.types import Comparison, Faceprint

__all__ = ["FACEPRINT_FILE_SUFFIXES", "InputComparison", "compare_inputs"]

FACEPRINT_FILE_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True, slots=True)
class InputComparison:
    """The comparison of two inputs and what is needed to reproduce it."""

    comparison: Comparison
    model_id: str
    contract_id: str
    kinds: tuple[str, str]
    """``"image"`` or ``"faceprint file"`` for A and B."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.comparison.to_dict(),
            "inputs": list(self.kinds),
            "model_id": self.model_id,
            "contract_id": self.contract_id,
            "package_version": __version__,
        }


def _is_faceprint_file(path: Path | bytes) -> bool:
    return isinstance(path, Path) and path.suffix.lower() in FACEPRINT_FILE_SUFFIXES


def compare_inputs(
    analyzer: Analyzer, a: Path | bytes, b: Path | bytes, *, face: FaceMode = "primary"
) -> InputComparison:
    """Compare two photos or faceprint files (see the module doc); bytes are a photo's, already read.

    Raises:
        FaceprintError: The input's own error (``missing_file``, ``decode_error``, ``no_face``,
            ``faceprint_format``, ``contract_mismatch``, …): with one comparison there is nothing else to do.
    """
    # Bytes (an upload decrypted in memory) have no name: they are keyed by their side.
    key_a, key_b = (str(src) if isinstance(src, Path) else side for side, src in (("a", a), ("b", b)))
    # The same photo twice is analysed once (one key).
    images = {key: src for key, src in ((key_a, a), (key_b, b)) if not _is_faceprint_file(src)}
    results: dict[str, ImageResult] = {}
    if images:
        options = AnalyzeOptions(face=face)
        for result in analyzer.analyze([AnalyzeItem(key, src) for key, src in images.items()], options=options):
            if not result.ok:
                raise error_for_code(str(result.error_code), str(result.error_message))
            results[result.key] = result
    if key_a in images and key_b in images and face == "best-match":
        comparison = compare_results(analyzer, results[key_a], results[key_b], face=face)
    else:
        print_a, print_b = _first_print(key_a, a, results), _first_print(key_b, b, results)
        check_comparable(print_a, print_b, names=(key_a, key_b))
        comparison = analyzer.compare(print_a, print_b)
    kinds = tuple("faceprint file" if _is_faceprint_file(p) else "image" for p in (a, b))
    spec = analyzer.spec
    return InputComparison(comparison, spec.id, spec.contract_id, (kinds[0], kinds[1]))


def _first_print(key: str, source: Path | bytes, results: dict[str, ImageResult]) -> Faceprint:
    if isinstance(source, Path) and _is_faceprint_file(source):
        return read_faceprint_file(source)[0]
    return results[key].faceprints[0]
