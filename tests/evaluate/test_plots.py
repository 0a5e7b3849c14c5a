from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from faceprint.evaluate.metrics import calibration_quality, roc_curve
from faceprint.evaluate.plots import plot_det, plot_reliability, plot_roc, plot_similarity_histograms

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    rng = np.random.default_rng(0)
    labels = rng.random(600) < 0.5
    scores = np.clip(rng.normal(np.where(labels, 0.7, 0.2), 0.15), -1.0, 1.0)
    return scores, labels


def _plotters() -> list[tuple[str, Callable[[Path], Path]]]:
    scores, labels = _data()
    roc = roc_curve(scores, labels)
    quality = calibration_quality(1.0 / (1.0 + np.exp(-(10.0 * scores - 4.5))), labels)
    return [
        ("roc", lambda path: plot_roc(roc, path)),
        ("det", lambda path: plot_det(roc, path)),
        ("hist", lambda path: plot_similarity_histograms(scores, labels, path, min_similarity=0.45)),
        ("reliability", lambda path: plot_reliability(quality, path)),
    ]


@pytest.mark.parametrize(("name", "plot"), _plotters(), ids=[name for name, _ in _plotters()])
def test_plot_writes_a_png(tmp_path: Path, name: str, plot: Callable[[Path], Path]) -> None:
    path = tmp_path / f"{name}.png"
    assert plot(path) == path
    content = path.read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    assert len(content) > 5_000  # axes, labels and a curve, not an empty canvas
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_det_survives_a_perfect_separation(tmp_path: Path) -> None:
    # Every DET point has a zero rate here; the plot must still be written, just without a curve.
    roc = roc_curve([0.9, 0.8, 0.2, 0.1], [True, True, False, False])
    assert plot_det(roc, tmp_path / "det.png").read_bytes().startswith(PNG_SIGNATURE)


def test_histogram_of_one_class_only(tmp_path: Path) -> None:
    path = plot_similarity_histograms([0.1, 0.2, 0.3], [False, False, False], tmp_path / "h.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plotting_leaves_pyplot_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_roc(roc_curve([0.9, 0.1], [True, False]), tmp_path / "roc.png")
    assert plt.get_fignums() == before
