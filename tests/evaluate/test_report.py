from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import UsageError
from faceprint.evaluate.metrics import kfold_accuracy
from faceprint.evaluate.report import FailedImage, build_evaluation_report, render_markdown, write_report
from faceprint.models.spec import Calibration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CALIBRATION = Calibration(slope=10.0, intercept=-4.5, provenance={"dataset": "synthetic-train"})


def _inputs(count: int = 400, seed: int = 0) -> tuple[list[float | None], list[bool], list[int]]:
    rng = np.random.default_rng(seed)
    labels = [bool(v) for v in rng.random(count) < 0.5]
    scores: list[float | None] = [float(rng.normal(0.7 if same else 0.2, 0.15)) for same in labels]
    folds = [i * 10 // count for i in range(count)]
    return scores, labels, folds


def test_unscored_pairs_are_counted_and_rejected_in_all_pairs_accuracy() -> None:
    scores: list[float | None] = [0.9, 0.8, None, 0.7, 0.1, 0.2, None, 0.3]
    labels = [True, True, True, True, False, False, False, False]
    report = build_evaluation_report(
        scores,
        labels,
        model_id="m",
        contract_id="m:1",
        dataset="toy",
        threshold=0.5,
        fold_count=2,
        failed_images=[FailedImage("x.jpg", "no_face"), FailedImage("y.jpg", "decode_error", "truncated")],
        image_count=10,
    )
    assert (report.pair_count, report.scored_pair_count, report.unscored_pair_count) == (8, 6, 2)
    assert (report.unscored_genuine_count, report.unscored_impostor_count) == (1, 1)
    assert report.at_threshold_scored.accuracy == 1.0
    # The unscored genuine pair is a false reject, the unscored impostor pair a true reject.
    all_pairs = report.at_threshold_all_pairs
    assert (all_pairs.false_reject_count, all_pairs.true_reject_count) == (1, 4)
    assert all_pairs.accuracy == pytest.approx(7 / 8)
    assert report.failure_to_enrol_count == 2
    assert report.failure_to_enrol_rate == pytest.approx(0.2)
    assert report.threshold_source == "given"
    assert report.min_similarity == 0.5


def test_threshold_defaults_to_the_best_on_these_pairs() -> None:
    scores, labels, _ = _inputs()
    report = build_evaluation_report(scores, labels, model_id="m", contract_id="m:1", dataset="toy")
    assert report.threshold_source == "best_accuracy_on_these_pairs"
    assert report.min_similarity == report.best_accuracy.min_similarity
    assert report.at_threshold_scored.accuracy == pytest.approx(report.best_accuracy.accuracy)


def test_given_folds_are_used_on_the_scored_pairs() -> None:
    scores, labels, folds = _inputs()
    scores[3] = None
    report = build_evaluation_report(scores, labels, folds=folds, model_id="m", contract_id="m:1", dataset="v2")
    kept = [(s, label, fold) for s, label, fold in zip(scores, labels, folds, strict=True) if s is not None]
    expected = kfold_accuracy([s for s, _, _ in kept], [label for _, label, _ in kept], folds=[f for _, _, f in kept])
    assert report.kfold == expected
    assert report.kfold.folds_source == "given"


def test_folds_must_be_all_or_nothing() -> None:
    with pytest.raises(UsageError, match="every pair or for none"):
        build_evaluation_report(
            [0.9, 0.1, 0.8, 0.2],
            [True, False, True, False],
            folds=[0, None, 1, 1],
            model_id="m",
            contract_id="m:1",
            dataset="x",
        )
    with pytest.raises(UsageError, match="2 folds for 4 pairs"):
        build_evaluation_report(
            [0.9, 0.1, 0.8, 0.2],
            [True, False, True, False],
            folds=[0, 1],
            model_id="m",
            contract_id="m:1",
            dataset="x",
        )


def test_lengths_must_match() -> None:
    with pytest.raises(UsageError, match="3 similarities for 2 labels"):
        build_evaluation_report([0.1, 0.2, 0.3], [True, False], model_id="m", contract_id="m:1", dataset="x")


def test_repeated_failed_images_count_once() -> None:
    scores, labels, _ = _inputs()
    report = build_evaluation_report(
        scores,
        labels,
        model_id="m",
        contract_id="m:1",
        dataset="x",
        failed_images=[FailedImage("a.jpg", "no_face"), FailedImage("b.jpg", "no_face"), FailedImage("a.jpg", "x")],
    )
    assert [(f.path, f.error_code) for f in report.failed_images] == [("a.jpg", "no_face"), ("b.jpg", "no_face")]
    assert report.failure_to_enrol_rate is None  # image count unknown


def test_write_report_files_and_keys(tmp_path: Path) -> None:
    scores, labels, folds = _inputs(count=1200)
    scores[0] = None
    report = build_evaluation_report(
        scores,
        labels,
        folds=folds,
        calibration=CALIBRATION,
        threshold=0.45,
        model_id="dlib-resnet-v1",
        contract_id="dlib-resnet-v1:0123456789ab",
        dataset="synthetic",
        failed_images=[FailedImage("Ann/Ann_0001.jpg", "no_face", "no face found")],
        image_count=2000,
        package_version="9.9.9",
        created_at=dt.datetime(2024, 5, 17, 12, 0, tzinfo=dt.UTC),
    )
    out = tmp_path / "eval" / "run1"  # created, parents included

    files = write_report(report, out)

    names = sorted(p.name for p in out.iterdir())
    assert names == ["det.png", "reliability.png", "report.json", "report.md", "roc.png", "similarity_histogram.png"]
    for path in files.plot_paths:
        assert path.read_bytes().startswith(PNG_SIGNATURE)

    data = json.loads(files.json_path.read_text())
    assert data["format"] == "faceprint-evaluation/1"
    assert (data["model_id"], data["contract_id"], data["package_version"]) == (
        "dlib-resnet-v1",
        "dlib-resnet-v1:0123456789ab",
        "9.9.9",
    )
    assert data["created_at"] == "2024-05-17T12:00:00+00:00"
    assert data["threshold"] == {"min_similarity": 0.45, "source": "given"}
    assert data["pairs"]["total"] == 1200 and data["pairs"]["unscored"] == 1
    assert data["failure_to_enrol"]["count"] == 1
    assert data["failure_to_enrol"]["failed_images"] == [
        {"path": "Ann/Ann_0001.jpg", "error_code": "no_face", "message": "no face found"}
    ]
    assert set(data["metrics"]) == {
        "area_under_roc",
        "equal_error",
        "tar_at_far",
        "best_accuracy",
        "at_threshold_scored",
        "at_threshold_all_pairs",
        "kfold_accuracy",
    }
    assert [r["target_false_accept_rate"] for r in data["metrics"]["tar_at_far"]] == [0.1, 0.01, 0.001]
    assert data["metrics"]["tar_at_far"][2]["true_accept_rate"] is None  # ~600 impostors cannot show 1e-3
    assert data["metrics"]["tar_at_far"][2]["note"].startswith("FAR 0.001 needs at least 1000")
    assert data["metrics"]["kfold_accuracy"]["fold_count"] == 10
    assert data["metrics"]["area_under_roc"] == pytest.approx(report.area_under_roc)
    assert data["calibration"]["slope"] == 10.0
    assert len(data["calibration_quality"]["bins"]) == 10
    assert data["plots"] == ["roc.png", "det.png", "similarity_histogram.png", "reliability.png"]

    markdown = files.markdown_path.read_text()
    assert markdown.startswith("# Evaluation: synthetic")
    assert "dlib-resnet-v1:0123456789ab" in markdown
    assert "| all pairs |" in markdown and "| scored pairs |" in markdown
    assert "`Ann/Ann_0001.jpg` | `no_face`" in markdown
    assert "needs at least 1000 impostor pairs" in markdown
    assert "![roc](roc.png)" in markdown
    assert "ECE" in markdown


def test_report_without_calibration_has_no_reliability_plot(tmp_path: Path) -> None:
    scores, labels, _ = _inputs()
    report = build_evaluation_report(scores, labels, model_id="m", contract_id="m:1", dataset="x")
    files = write_report(report, tmp_path)
    assert [p.name for p in files.plot_paths] == ["roc.png", "det.png", "similarity_histogram.png"]
    data = json.loads(files.json_path.read_text())
    assert data["calibration"] is None and data["calibration_quality"] is None
    assert "## Calibration" not in render_markdown(report)


def test_package_version_defaults_to_this_package() -> None:
    import faceprint

    scores, labels, _ = _inputs()
    report = build_evaluation_report(scores, labels, model_id="m", contract_id="m:1", dataset="x")
    assert report.package_version == faceprint.__version__
