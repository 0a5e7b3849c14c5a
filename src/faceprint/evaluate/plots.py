"""PNG plots of an evaluation: ROC, DET, similarity histograms, reliability diagram.

matplotlib is imported inside each function (it is the optional ``eval`` extra and slow to import), and
figures are drawn on an explicit Agg canvas rather than through ``pyplot``: no global backend switch, no
figure registry to leak, safe in a server or worker thread. Files are written atomically.

Example:
    >>> from faceprint.evaluate.metrics import roc_curve
    >>> roc = roc_curve([0.9, 0.7, 0.4, 0.2], [True, False, True, False])
    >>> plot_roc(roc, "roc.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from faceprint.errors import BackendUnavailableError
from faceprint.evaluate.metrics import CalibrationQuality, RocCurve, as_labels, as_scores
from faceprint.io.atomic import open_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_FIGURE_SIZE_IN = (5.0, 4.0)
_DPI = 120
_GENUINE_COLOR = "tab:green"
_IMPOSTOR_COLOR = "tab:red"


def _new_figure() -> tuple[Figure, Axes]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise BackendUnavailableError(
            "plots need matplotlib: pip install 'faceprint[eval]'", details={"extra": "eval"}
        ) from err
    figure = Figure(figsize=_FIGURE_SIZE_IN, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    with open_atomic(path) as handle:
        figure.savefig(handle, format="png")
    return Path(path)


def plot_roc(roc: RocCurve, path: str | os.PathLike[str], *, title: str = "ROC") -> Path:
    """Draw TAR against FAR (linear axes) with the AUC in the legend.

    Args:
        roc: From :func:`faceprint.evaluate.metrics.roc_curve`.
        path: The PNG to write.
        title: The plot title.

    Returns:
        ``path``.

    Example:
        >>> plot_roc(roc, "out/roc.png")  # doctest: +SKIP
    """
    figure, axes = _new_figure()
    axes.plot(roc.false_accept_rate, roc.true_accept_rate, label=f"AUC = {roc.area_under_curve:.4f}")
    axes.plot([0.0, 1.0], [0.0, 1.0], linestyle=":", color="grey", label="chance")
    axes.set_xlabel(f"false accept rate (FAR, {roc.impostor_count} impostor pairs)")
    axes.set_ylabel(f"true accept rate (TAR, {roc.genuine_count} genuine pairs)")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_det(roc: RocCurve, path: str | os.PathLike[str], *, title: str = "DET") -> Path:
    """Draw FNMR against FMR on log axes (a DET curve).

    Points where either rate is 0 cannot appear on log axes and are left out; the axes start at one pair's
    worth of error (``1 / count``), the finest rate the data can show.

    Example:
        >>> plot_det(roc, "out/det.png")  # doctest: +SKIP
    """
    fmr, fnmr = roc.false_accept_rate, roc.false_reject_rate
    visible = (fmr > 0.0) & (fnmr > 0.0)
    figure, axes = _new_figure()
    axes.plot(fmr[visible], fnmr[visible])
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(1.0 / roc.impostor_count, 1.0)
    axes.set_ylim(1.0 / roc.genuine_count, 1.0)
    axes.set_xlabel("false match rate (FMR = FAR)")
    axes.set_ylabel("false non-match rate (FNMR = 1 - TAR)")
    axes.set_title(title)
    axes.grid(which="both", alpha=0.3)
    return _save(figure, path)


def plot_similarity_histograms(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    path: str | os.PathLike[str],
    *,
    min_similarity: float | None = None,
    title: str = "Similarity of genuine and impostor pairs",
    bin_count: int = 50,
) -> Path:
    """Overlaid density histograms of genuine and impostor similarities, with the threshold if given.

    Example:
        >>> plot_similarity_histograms([0.9, 0.2], [True, False], "out/hist.png")  # doctest: +SKIP
    """
    scores = as_scores(similarities)
    truth = as_labels(labels, length=scores.shape[0])
    # Shared bin edges: two histograms on different bins cannot be compared bar by bar.
    edges = np.histogram_bin_edges(scores, bins=bin_count).tolist()
    figure, axes = _new_figure()
    for mask, name, color in ((truth, "genuine", _GENUINE_COLOR), (~truth, "impostor", _IMPOSTOR_COLOR)):
        if mask.any():
            axes.hist(scores[mask], bins=edges, density=True, alpha=0.5, color=color, label=f"{name} ({mask.sum()})")
    if min_similarity is not None:
        axes.axvline(min_similarity, color="black", linestyle="--", label=f"threshold {min_similarity:.3f}")
    axes.set_xlabel("similarity (higher = more alike)")
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def plot_reliability(quality: CalibrationQuality, path: str | os.PathLike[str], *, title: str = "Reliability") -> Path:
    """Observed share of genuine pairs against mean predicted P(same), per probability bin.

    Empty bins are left out; each point is labelled with its pair count, since a bin of 3 pairs says little.

    Example:
        >>> from faceprint.evaluate.metrics import calibration_quality
        >>> plot_reliability(calibration_quality([0.9, 0.1], [True, False]), "out/rel.png")  # doctest: +SKIP
    """
    points = [
        (b.mean_probability, b.observed_same_rate, b.pair_count)
        for b in quality.bins
        if b.mean_probability is not None and b.observed_same_rate is not None
    ]
    predicted = [x for x, _, _ in points]
    observed = [y for _, y, _ in points]
    figure, axes = _new_figure()
    axes.plot([0.0, 1.0], [0.0, 1.0], linestyle=":", color="grey", label="perfectly calibrated")
    axes.plot(predicted, observed, marker="o", label=f"ECE = {quality.expected_calibration_error:.4f}")
    for x, y, count in points:
        axes.annotate(str(count), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("mean predicted P(same person)")
    axes.set_ylabel("observed share of genuine pairs")
    axes.set_title(f"{title} (Brier {quality.brier_score:.4f}, {quality.pair_count} pairs)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return _save(figure, path)
