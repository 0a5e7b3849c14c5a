"""evaluate_pairs / calibrate_pairs (faceprint.evaluate.run) with the weight-free FakePipeline.

The fake's "faceprint" is the mean colour of the image: two images of one colour are the same person
(similarity 1), images of different colours are different people. Images are built in ``tmp_path``.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from faceprint import __version__
from faceprint.batch.engine import EmbeddingPipeline
from faceprint.errors import ContractMismatchError, UsageError
from faceprint.evaluate.calibrate import (
    CalibrationRecord,
    apply_calibration,
    load_calibration,
    save_calibration,
)
from faceprint.evaluate.pairs_list import PairsListFormatError
from faceprint.evaluate.quality_calibration import DEFAULT_FEATURES
from faceprint.evaluate.report import write_report
from faceprint.evaluate.run import (
    EvaluationOptions,
    NotEnoughPairsError,
    calibrate_pairs,
    evaluate_pairs,
)
from faceprint.models.spec import Calibration
from faceprint.pipeline import PipelineConfig
from faceprint.testing import (
    FAKE_THRESHOLD,
    FakePipeline,
    fake_embedding_spec,
    fake_pipeline_factory,
    make_blank_png,
    make_face_png,
    make_two_face_png,
)

QUIET_1 = EvaluationOptions(workers=1, quiet=True)
PEOPLE = 8


# Mean colours whose cosine similarity is at most 0.925, below the fake's 0.95 threshold.
PALETTE = [
    (230, 20, 20),
    (20, 230, 20),
    (20, 20, 230),
    (230, 230, 20),
    (20, 120, 230),
    (120, 20, 230),
    (230, 20, 120),
    (20, 230, 120),
]


def colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def write_people(images: Path) -> None:
    """Two images per person (same colour, different size): ``p0/a.png``, ``p0/b.png``, ..."""
    for index in range(PEOPLE):
        (images / f"p{index}").mkdir(parents=True, exist_ok=True)
        (images / f"p{index}" / "a.png").write_bytes(make_face_png(colour(index)))
        (images / f"p{index}" / "b.png").write_bytes(make_face_png(colour(index), size_wh=(40, 30)))


def write_csv(tmp_path: Path, *, with_failures: bool = True) -> tuple[Path, Path]:
    images = tmp_path / "images"
    write_people(images)
    rows = ["file1,file2,label"]
    rows += [f"p{i}/a.png,p{i}/b.png,same" for i in range(PEOPLE)]
    rows += [f"p{i}/a.png,p{(i + 1) % PEOPLE}/b.png,different" for i in range(PEOPLE)]
    if with_failures:
        (images / "grey.png").write_bytes(make_blank_png())
        (images / "bad.png").write_bytes(b"not an image at all")
        rows += ["grey.png,p0/a.png,same", "bad.png,p1/a.png,different", "missing.png,p2/a.png,different"]
        rows += ["grey.png,p3/b.png,different"]  # a failed image in two pairs counts once
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    return pairs, images


def write_lfw(tmp_path: Path, header: str, blocks: int) -> tuple[Path, Path]:
    """An LFW-format list over fake people ``Person_0``…: ``Person_0/Person_0_0001.jpg`` (PNG bytes)."""
    images = tmp_path / "lfw"
    per_block = 2
    lines = [header]
    person = 0
    for _ in range(blocks):
        genuine, impostor = [], []
        for _ in range(per_block):
            name, other = f"Person_{person}", f"Person_{person + 1}"
            for who, index in ((name, person), (other, person + 1)):
                (images / who).mkdir(parents=True, exist_ok=True)
                for number, size in ((1, (32, 32)), (2, (40, 30))):
                    (images / who / f"{who}_{number:04d}.jpg").write_bytes(make_face_png(colour(index), size_wh=size))
            genuine.append(f"{name}\t1\t2")
            impostor.append(f"{name}\t1\t{other}\t2")
            person += 2
        lines += genuine + impostor
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs, images


class CountingFactory:
    """Hands out one FakePipeline so the test can read its call counts (in-process runs only)."""

    def __init__(self) -> None:
        self.pipeline = FakePipeline()

    def __call__(self, config: PipelineConfig) -> EmbeddingPipeline:
        return self.pipeline


# --- evaluate -----------------------------------------------------------------------------------------------


def test_failed_images_are_counted_with_their_codes_and_their_pairs_unscored(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path)
    report = evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)

    assert (report.pair_count, report.genuine_count, report.impostor_count) == (20, 9, 11)
    assert (report.unscored_genuine_count, report.unscored_impostor_count) == (1, 3)
    assert {image.path: image.error_code for image in report.failed_images} == {
        "grey.png": "no_face",
        "bad.png": "decode_error",
        "missing.png": "missing_file",
    }
    assert report.failure_to_enrol_count == 3
    assert report.image_count == 2 * PEOPLE + 3
    # The fake model's own calibration and threshold: nothing was given.
    assert (report.min_similarity, report.threshold_source) == (FAKE_THRESHOLD, "given")
    assert report.calibration == fake_embedding_spec().calibration
    assert (report.model_id, report.contract_id) == (FakePipeline().spec.id, FakePipeline().spec.contract_id)
    assert report.at_threshold_scored.accuracy == 1.0
    # Unscored pairs count as rejections: the unscored genuine pair is a false reject.
    assert report.at_threshold_all_pairs.false_reject_count == 1
    assert report.kfold.folds_source == "assigned"
    assert report.dataset == "pairs.csv"


def test_report_files_are_written_and_not_empty(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path)
    report = evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    files = write_report(report, tmp_path / "out")

    names = {path.name for path in (tmp_path / "out").iterdir()}
    base = {"det.png", "reliability.png", "report.json", "report.md", "roc.png", "similarity_histogram.png"}
    assert base <= names
    # Faces with quality add one reliability plot per non-empty quality bin.
    per_bin = {f"reliability_{b.key}.png" for b in report.quality_bins if b.pair_count}
    assert names - base == per_bin
    assert all(path.stat().st_size > 0 for path in (files.json_path, files.markdown_path, *files.plot_paths))
    data = json.loads(files.json_path.read_text())
    assert data["failure_to_enrol"]["count"] == 3
    assert data["pairs"]["unscored"] == 4
    assert "missing.png" in files.markdown_path.read_text()


def test_every_distinct_image_is_embedded_once(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path)
    factory = CountingFactory()
    evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=factory)
    # 16 face images and the grey one reach the pipeline; the missing and undecodable ones cannot.
    assert factory.pipeline.embed_calls == 2 * PEOPLE + 1


def test_lfw_view1_list(tmp_path: Path) -> None:
    pairs, images = write_lfw(tmp_path, "4", blocks=1)
    # View 1 has one block of N genuine then N impostor pairs; write_lfw made 2 + 2, so rewrite as N=2.
    pairs.write_text(pairs.read_text().replace("4\n", "2\n", 1))
    report = evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert (report.pair_count, report.failure_to_enrol_count) == (4, 0)
    assert report.kfold.folds_source == "assigned"
    assert report.at_threshold_scored.accuracy == 1.0


def test_lfw_view2_folds_are_used(tmp_path: Path) -> None:
    pairs, images = write_lfw(tmp_path, "3 2", blocks=3)
    report = evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert report.pair_count == 12
    assert (report.kfold.folds_source, report.kfold.fold_count) == ("given", 3)
    assert report.kfold.fold_ids == (0, 1, 2)


@pytest.mark.parametrize(("face", "match"), [("primary", False), ("largest", False), ("best-match", True)])
def test_face_modes(tmp_path: Path, face: str, match: bool) -> None:
    images = tmp_path / "images"
    images.mkdir()
    red, blue, green, yellow = PALETTE[:4]
    # The larger face of two.png is blue; its smaller one is red.
    (images / "two.png").write_bytes(make_two_face_png(red, blue))
    (images / "red.png").write_bytes(make_face_png(red))
    (images / "green.png").write_bytes(make_face_png(green))
    (images / "green2.png").write_bytes(make_face_png(green, size_wh=(40, 30)))
    (images / "yellow.png").write_bytes(make_face_png(yellow))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("two.png,red.png,1\ngreen.png,green2.png,1\nred.png,green.png,0\nyellow.png,green.png,0\n")
    options = EvaluationOptions(workers=1, quiet=True, face=face)  # type: ignore[arg-type]
    report = evaluate_pairs(pairs, images, options=options, pipeline_factory=fake_pipeline_factory)
    genuine_similarity = float(report.scored_similarities[0])
    assert (genuine_similarity >= FAKE_THRESHOLD) is match


def test_worker_processes_give_the_same_similarities(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path)
    reports = [
        evaluate_pairs(
            pairs,
            images,
            options=EvaluationOptions(workers=workers, quiet=True, face="best-match"),
            pipeline_factory=fake_pipeline_factory,
        )
        for workers in (1, 2)
    ]
    np.testing.assert_array_equal(reports[0].scored_similarities, reports[1].scored_similarities)
    assert reports[0].failed_images == reports[1].failed_images


def test_paths_outside_the_images_folder_are_refused_unread(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path, with_failures=False)
    secret = tmp_path / "secret.png"
    secret.write_bytes(make_face_png((1, 2, 3)))
    with pairs.open("a") as handle:
        handle.write(f"../secret.png,p0/a.png,different\n{secret},p1/a.png,different\n")
    factory = CountingFactory()
    report = evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=factory)
    codes = {image.path: image.error_code for image in report.failed_images}
    assert codes == {"../secret.png": "unsafe_path", str(secret): "unsafe_path"}
    assert report.unscored_impostor_count == 2
    assert factory.pipeline.embed_calls == 2 * PEOPLE


def test_too_few_scored_pairs_is_a_clear_error(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "grey.png").write_bytes(make_blank_png())
    (images / "red.png").write_bytes(make_face_png((200, 30, 30)))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("grey.png,red.png,1\nred.png,missing.png,0\n")
    with pytest.raises(NotEnoughPairsError, match=r"missing_file 1, no_face 1") as info:
        evaluate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert info.value.exit_code == 3


def test_input_problems(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path)
    with pytest.raises(UsageError, match="pair list"):
        evaluate_pairs(tmp_path / "nope.csv", images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    with pytest.raises(UsageError, match="images folder"):
        calibrate_pairs(pairs, tmp_path / "nope", options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    bad = tmp_path / "bad.txt"
    bad.write_text("2\nAnn 1 2\n")
    with pytest.raises(PairsListFormatError):
        evaluate_pairs(bad, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    with pytest.raises(UsageError, match="face"):
        EvaluationOptions(face="biggest")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="workers"):
        EvaluationOptions(workers=0)


# --- calibrate ----------------------------------------------------------------------------------------------


def write_calibration_set(tmp_path: Path) -> tuple[Path, Path]:
    """Genuine pairs plus every cross-person impostor pair: 112 impostors resolve FAR 1e-2."""
    images = tmp_path / "images"
    write_people(images)
    rows = [f"p{i}/a.png,p{i}/b.png,1" for i in range(PEOPLE)]
    rows += [f"p{i}/{x}.png,p{j}/{y}.png,0" for i, j in combinations(range(PEOPLE), 2) for x in "ab" for y in "ab"]
    (images / "grey.png").write_bytes(make_blank_png())
    rows.append("grey.png,p0/a.png,1")
    pairs = tmp_path / "train.csv"
    pairs.write_text("\n".join(rows) + "\n")
    return pairs, images


def test_calibration_is_loadable_and_monotone(tmp_path: Path) -> None:
    pairs, images = write_calibration_set(tmp_path)
    record = calibrate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    path = save_calibration(record, tmp_path / "calib.json")

    loaded = load_calibration(path, expected_contract_id=FakePipeline().spec.contract_id)
    assert loaded == record
    probabilities = apply_calibration(loaded.calibration, np.linspace(-1.0, 1.0, 201))
    assert np.all(np.diff(probabilities) >= 0.0) and probabilities[-1] > probabilities[0]
    # 112 impostor pairs resolve 1e-2 (one false accept allowed), not 1e-3 or 1e-4.
    assert sorted(loaded.far_thresholds) == ["1e-2"]
    # Genuine pairs have similarity 1, impostors at most ~0.925: the best threshold separates them.
    assert 0.9 < loaded.threshold <= 1.0


def test_calibration_provenance(tmp_path: Path) -> None:
    pairs, images = write_calibration_set(tmp_path)
    options = EvaluationOptions(workers=1, quiet=True, face="largest", pipeline=PipelineConfig(flip_average=False))
    record = calibrate_pairs(pairs, images, options=options, pipeline_factory=fake_pipeline_factory)
    provenance = record.calibration.provenance
    assert provenance["dataset_file"] == "train.csv"
    assert provenance["pairs"] == {
        "total": 121,
        "genuine": 9,
        "impostor": 112,
        "scored": 120,
        "scored_genuine": 8,
        "scored_impostor": 112,
        "unscored": 1,
    }
    assert (provenance["genuine_pairs"], provenance["impostor_pairs"]) == (8, 112)  # what the fit saw
    assert provenance["failure_to_enrol"]["count"] == 1
    assert provenance["failure_to_enrol"]["failed_images"][0]["error_code"] == "no_face"
    assert (provenance["face"], provenance["flip_average"]) == ("largest", False)
    assert provenance["package_version"] == __version__
    assert provenance["method"] == "platt-newton"
    assert provenance["threshold_method"] == "best_accuracy_on_these_pairs"
    assert len(provenance["fitted_on"]) == 10  # ISO date
    assert record.contract_id == FakePipeline().spec.contract_id


def test_the_pipeline_reads_the_calibration_file(tmp_path: Path) -> None:
    pairs, images = write_calibration_set(tmp_path)
    record = calibrate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    path = save_calibration(record, tmp_path / "calib.json")
    loaded = load_calibration(path)  # what PipelineConfig(calibration_path=...) reads
    assert (loaded.calibration, loaded.contract_id, loaded.threshold) == (
        record.calibration,
        record.contract_id,
        record.threshold,
    )


def test_evaluate_uses_a_calibration_file(tmp_path: Path) -> None:
    pairs, images = write_csv(tmp_path)
    calibration = Calibration(slope=20.0, intercept=-10.0, provenance={"dataset": "elsewhere"})
    record = CalibrationRecord(calibration, contract_id=FakePipeline().spec.contract_id, threshold=0.5)
    path = save_calibration(record, tmp_path / "calib.json")
    options = EvaluationOptions(workers=1, quiet=True, pipeline=PipelineConfig(calibration_path=path))
    report = evaluate_pairs(pairs, images, options=options, pipeline_factory=fake_pipeline_factory)
    assert (report.min_similarity, report.threshold_source, report.calibration) == (0.5, "given", calibration)

    other = save_calibration(
        CalibrationRecord(calibration, contract_id="another-model:1", threshold=0.5), tmp_path / "other.json"
    )
    options = EvaluationOptions(workers=1, quiet=True, pipeline=PipelineConfig(calibration_path=other))
    with pytest.raises(ContractMismatchError, match="another-model:1"):
        evaluate_pairs(pairs, images, options=options, pipeline_factory=fake_pipeline_factory)


def test_calibrate_ignores_an_old_calibration(tmp_path: Path) -> None:
    pairs, images = write_calibration_set(tmp_path)
    options = EvaluationOptions(workers=1, quiet=True, pipeline=PipelineConfig(calibration_path=tmp_path / "gone"))
    record = calibrate_pairs(pairs, images, options=options, pipeline_factory=fake_pipeline_factory)
    assert record.calibration.slope > 0


def test_quality_calibration_through_the_engine(tmp_path: Path) -> None:
    pairs, images = write_calibration_set(tmp_path)
    record = calibrate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory, method="quality")
    calibration = record.calibration
    assert calibration.method == "quality" and calibration.quality is not None
    assert [term.feature for term in calibration.quality.terms] == list(DEFAULT_FEATURES)
    assert calibration.provenance["pairs"]["scored"] == len(pairs.read_text().splitlines()) - 1  # not the grey one
    loaded = load_calibration(save_calibration(record, tmp_path / "calib.json"))
    assert loaded.calibration == calibration
    # The report of an evaluation with it scores pairs per quality bin.
    options = EvaluationOptions(
        workers=1, quiet=True, pipeline=PipelineConfig(calibration_path=tmp_path / "calib.json")
    )
    report = evaluate_pairs(pairs, images, options=options, pipeline_factory=fake_pipeline_factory)
    assert report.calibration == calibration and report.at_50_percent is not None
    pose = [b for b in report.quality_bins if b.group == "pose"]
    assert sum(b.pair_count for b in pose) == report.scored_pair_count
    with pytest.raises(UsageError, match="platt or quality"):
        calibrate_pairs(pairs, images, options=QUIET_1, pipeline_factory=fake_pipeline_factory, method="isotonic")  # type: ignore[arg-type]
