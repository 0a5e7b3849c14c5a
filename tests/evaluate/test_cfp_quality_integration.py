"""The shipped quality-aware calibration on real CFP frontal-profile pairs (real models, a small subset)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from faceprint.evaluate.report import write_report
from faceprint.evaluate.run import EvaluationOptions, evaluate_pairs
from faceprint.models.catalog import builtin_specs

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~50 s on 2 cores: 70 photos, models loaded

PAIRS_PER_KIND = 20


def _subset(data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The first genuine and impostor frontal-profile pairs of CFP fold 0 (a handful of people)."""
    root = data_dir / "cfp-train"
    if not (root / "pairs_FP.csv").is_file():
        pytest.skip(f"CFP data not found at {root}")
    with (root / "pairs_FP.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["fold"] == "0"]
    chosen = [r for r in rows if r["label"] == "1"][:PAIRS_PER_KIND] + [r for r in rows if r["label"] == "0"][
        :PAIRS_PER_KIND
    ]
    pairs = tmp_path / "fp.csv"
    pairs.write_text("file1,file2,label\n" + "".join(f"{r['file1']},{r['file2']},{r['label']}\n" for r in chosen))
    return pairs, root / "images"


def test_profile_pairs_get_their_own_sigmoid_and_thresholds(data_dir: Path, tmp_path: Path) -> None:
    pairs, images = _subset(data_dir, tmp_path)
    report = evaluate_pairs(pairs, images, options=EvaluationOptions(workers=1, quiet=True))
    calibration = builtin_specs()["dlib-resnet-v1"].calibration
    assert calibration is not None and calibration.method == "quality"
    assert report.calibration == calibration
    # Every scored face carries quality: no pair falls in the "unknown" bin.
    bins = {b.key: b for b in report.quality_bins}
    assert bins["quality_unknown"].pair_count == 0
    assert sum(b.pair_count for b in report.quality_bins if b.group == "pose") == report.scored_pair_count
    assert bins["pose_turned"].pair_count + bins["pose_profile"].pair_count > 0
    # At the 50% cut most genuine frontal-profile pairs are accepted; the similarity-only LFW sigmoid
    # rejected many (recall 0.62 on all of CFP FP). Each pair's threshold is below the frontal one.
    assert report.at_50_percent is not None and report.at_50_percent.recall is not None
    assert report.at_50_percent.recall > 0.7
    reference_recall = float(np.mean(report.scored_similarities[report.scored_labels] >= report.min_similarity))
    assert report.at_threshold_scored.recall == pytest.approx(report.at_50_percent.recall)
    assert report.at_threshold_scored.recall >= reference_recall
    files = write_report(report, tmp_path / "out")
    names = {path.name for path in files.plot_paths}
    assert {f"reliability_{b.key}.png" for b in report.quality_bins if b.pair_count} <= names
    assert "Per face-quality bin" in files.markdown_path.read_text()
