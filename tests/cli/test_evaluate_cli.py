"""``faceprint evaluate`` and ``faceprint calibrate`` through typer's CliRunner.

Unit tests swap in the weight-free FakePipeline; the integration test runs both commands with the real
models on subsets of LFW View 1 (``pairsDevTrain.txt`` to calibrate, ``pairsDevTest.txt`` to evaluate).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceprint.cli.evaluate import calibrate, evaluate
from faceprint.evaluate.calibrate import load_calibration
from faceprint.testing import FakePipeline, fake_pipeline_factory, make_blank_png, make_face_png

runner = CliRunner()

# Mean colours whose cosine similarity is below the fake's 0.95 threshold.
PALETTE = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 120, 230), (120, 20, 230)]


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def root() -> None:
        """Keeps the commands subcommands, as in the real app."""

    app.command(name="evaluate")(evaluate)
    app.command(name="calibrate")(calibrate)
    return app


@pytest.fixture(autouse=True)
def fake_models(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # The commands build the real pipeline by default; unit tests swap in the weight-free fake.
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setattr("faceprint.evaluate.run.default_pipeline_factory", fake_pipeline_factory)


def _dataset(tmp_path: Path, *, grey: bool = False) -> tuple[Path, Path]:
    """A labelled CSV over ``images/``: a genuine and an impostor pair per colour (optionally a grey image)."""
    images = tmp_path / "images"
    images.mkdir()
    rows = ["file1,file2,label"]
    for index, rgb in enumerate(PALETTE):
        (images / f"{index}a.png").write_bytes(make_face_png(rgb))
        (images / f"{index}b.png").write_bytes(make_face_png(rgb, size_wh=(40, 30)))
        rows.append(f"{index}a.png,{index}b.png,1")
        rows.append(f"{index}a.png,{(index + 1) % len(PALETTE)}b.png,0")
    if grey:
        (images / "grey.png").write_bytes(make_blank_png())
        rows.append("grey.png,0a.png,1")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    return pairs, images


def test_evaluate_writes_the_report_and_prints_a_summary(tmp_path: Path) -> None:
    pairs, images = _dataset(tmp_path)
    out = tmp_path / "eval"
    args = ["evaluate", str(pairs), "--images", str(images), "-o", str(out), "--workers", "1", "-q"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    for name in ("report.json", "report.md", "roc.png", "det.png", "similarity_histogram.png", "reliability.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"]["total"] == 2 * len(PALETTE)
    assert report["failure_to_enrol"]["count"] == 0
    for label in ("accuracy (", "AUC", "EER", "TAR @ FAR 1e-1", "TAR @ FAR 1e-3", "precision / recall"):
        assert label in result.output, label
    for label in ("specificity / F1", "ECE / Brier", "failure to enrol"):
        assert label in result.output, label
    assert "0 of 12 images" in result.output


def test_evaluate_counts_failure_to_enrol_and_exits_1(tmp_path: Path) -> None:
    pairs, images = _dataset(tmp_path, grey=True)
    out = tmp_path / "eval"
    args = ["evaluate", str(pairs), "--images", str(images), "-o", str(out), "--workers", "1", "-q"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 1, result.output
    assert "1 of 13 images" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["failure_to_enrol"]["failed_images"][0]["path"] == "grey.png"
    assert report["failure_to_enrol"]["failed_images"][0]["error_code"] == "no_face"
    assert report["pairs"]["unscored_genuine"] == 1


def test_calibrate_writes_a_file_evaluate_and_the_pipeline_accept(tmp_path: Path) -> None:
    pairs, images = _dataset(tmp_path)
    calib = tmp_path / "calib.json"
    args = ["calibrate", str(pairs), "--images", str(images), "-o", str(calib), "--workers", "1", "-q"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    record = load_calibration(calib, expected_contract_id=FakePipeline().spec.contract_id)
    assert record.calibration.slope > 0
    assert json.loads(calib.read_text())["calibration"]["slope"] == record.calibration.slope
    assert f"calibration: {calib}" in result.output
    assert "threshold @ FAR 1e-2" in result.output and "n/a" in result.output  # 6 impostors resolve none

    out = tmp_path / "eval"
    args = ["evaluate", str(pairs), "--images", str(images), "-o", str(out), "--calibration", str(calib), "-q"]
    result = runner.invoke(_app(), [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"] == {"min_similarity": record.threshold, "source": "given"}
    assert report["calibration"]["slope"] == record.calibration.slope


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["evaluate"], "give the pair list", 2),
        (["evaluate", "PAIRS", "-o", "OUT"], "--images", 2),
        (["evaluate", "PAIRS", "--images", "IMAGES"], "-o", 2),
        (["evaluate", "PAIRS", "--images", "IMAGES", "-o", "OUT", "--face", "biggest"], "--face must be", 2),
        (["evaluate", "MISSING", "--images", "IMAGES", "-o", "OUT"], "does not exist", 2),
        (["evaluate", "PAIRS", "--images", "MISSING", "-o", "OUT"], "images folder", 2),
        (["evaluate", "PAIRS", "--images", "IMAGES", "-o", "PAIRS"], "output_not_directory", 2),
        (["evaluate", "PAIRS", "--images", "IMAGES", "-o", "OUT", "--calibration", "MISSING"], "does not exist", 2),
        (["evaluate", "BADLIST", "--images", "IMAGES", "-o", "OUT"], "malformed_pairs_list", 3),
        (["calibrate", "PAIRS", "--images", "IMAGES"], "-o", 2),
        (["calibrate", "PAIRS", "--images", "IMAGES", "-o", "IMAGES"], "output_is_directory", 2),
        (["calibrate", "PAIRS", "--images", "IMAGES", "-o", "NOFOLDER/calib.json"], "does not exist", 2),
        (["calibrate", "GREYLIST", "--images", "IMAGES", "-o", "OUT"], "not_enough_pairs", 3),
    ],
    ids=[
        "nothing",
        "no-images",
        "no-output",
        "bad-face",
        "missing-list",
        "missing-images",
        "output-is-a-file",
        "missing-calibration",
        "malformed-list",
        "calibrate-no-output",
        "calibrate-output-folder",
        "calibrate-missing-folder",
        "calibrate-nothing-scored",
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str, code: int) -> None:
    pairs, images = _dataset(tmp_path)
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("3\nAnn 1 2\n")
    (images / "grey.png").write_bytes(make_blank_png())
    grey_list = tmp_path / "grey.csv"
    grey_list.write_text("grey.png,0a.png,1\n0a.png,grey.png,0\n")
    names = {
        "PAIRS": str(pairs),
        "IMAGES": str(images),
        "OUT": str(tmp_path / "out"),
        "MISSING": str(tmp_path / "nope"),
        "BADLIST": str(bad_list),
        "GREYLIST": str(grey_list),
        "NOFOLDER/calib.json": str(tmp_path / "nofolder" / "calib.json"),
    }
    result = runner.invoke(_app(), [*[names.get(a, a) for a in args], "--workers", "1", "-q"])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_evaluate_without_matplotlib_fails_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    pairs, images = _dataset(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    out = tmp_path / "eval"
    result = runner.invoke(_app(), ["evaluate", str(pairs), "--images", str(images), "-o", str(out), "-q"])
    assert result.exit_code == 4, result.output
    assert "faceprint[eval]" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


# --- integration: the real models on LFW View 1 ----------------------------------------------------------------


def _lfw_subset(source: Path, target: Path, *, step: int) -> int:
    """Every ``step``-th genuine and impostor pair of an LFW View 1 list, as a valid View 1 list."""
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    count = int(lines[0])
    genuine, impostor = lines[1 : 1 + count][::step], lines[1 + count : 1 + 2 * count][::step]
    kept = min(len(genuine), len(impostor))
    target.write_text("\n".join([str(kept), *genuine[:kept], *impostor[:kept]]) + "\n")
    return kept


@pytest.mark.integration
def test_calibrate_on_dev_train_then_evaluate_on_dev_test(tmp_path: Path, data_dir: Path) -> None:
    lfw = data_dir / "lfw-view1"
    images = lfw / "images"
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    assert _lfw_subset(lfw / "pairsDevTrain.txt", train, step=11) == 100  # 200 pairs
    assert _lfw_subset(lfw / "pairsDevTest.txt", test, step=5) == 100  # 200 pairs
    calib = tmp_path / "calib.json"

    result = runner.invoke(_app(), ["calibrate", str(train), "--images", str(images), "-o", str(calib), "-q"])
    assert result.exit_code == 0, result.output
    record = load_calibration(calib)
    assert record.contract_id.startswith("dlib-resnet-v1:")
    assert record.calibration.provenance["pairs"]["scored"] == 200

    out = tmp_path / "eval"
    args = ["evaluate", str(test), "--images", str(images), "-o", str(out), "--calibration", str(calib), "-q"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["failure_to_enrol"]["count"] == 0  # every image had a face
    assert report["pairs"]["scored"] == 200
    assert report["threshold"] == {"min_similarity": record.threshold, "source": "given"}
    assert report["metrics"]["at_threshold_scored"]["accuracy"] > 0.95
    assert report["metrics"]["kfold_accuracy"]["mean_accuracy"] > 0.95
