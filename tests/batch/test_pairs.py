"""The batch pairs job (faceprint.batch.pairs), with the weight-free FakePipeline and, marked
``integration``, with the real dlib pipeline on real photos."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint import __version__
from faceprint.batch.pairs import (
    ERROR_COLUMNS,
    PairsJobResult,
    PairsOptions,
    PairsPipeline,
    enclave_inputs,
    format_probability,
    run_enclave_job,
    run_pairs_job,
    worker_pipeline_config,
)
from faceprint.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, ModelNotFoundError, UsageError
from faceprint.pipeline import PipelineConfig
from faceprint.testing import (
    FakePipeline,
    crashing_pipeline_factory,
    fake_pipeline_factory,
    make_blank_png,
    make_face_png,
    make_two_face_png,
)

RED = (200, 30, 30)
BLUE = (30, 30, 200)
GREEN = (30, 200, 30)
QUIET_1 = PairsOptions(workers=1, quiet=True)


def write_dataset(root: Path, files: Mapping[str, bytes], pairs_csv: str | bytes | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    if pairs_csv is not None:
        (root / "pairs.csv").write_bytes(pairs_csv.encode() if isinstance(pairs_csv, str) else pairs_csv)
    return root


def tar_dataset(folder: Path, out: Path, *, gz: bool = True) -> Path:
    with tarfile.open(out, "w:gz" if gz else "w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return out


def read_results(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            info.name: extracted.read()
            for info in tar.getmembers()
            if info.isfile() and (extracted := tar.extractfile(info)) is not None
        }


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def basic_photos() -> dict[str, bytes]:
    return {
        "red.png": make_face_png(RED),
        "photos/red2.png": make_face_png(RED, size_wh=(40, 30)),
        "blue.png": make_face_png(BLUE),
    }


class CountingFactory:
    """Hands out one FakePipeline so the test can read its call counts (in-process runs only)."""

    def __init__(self) -> None:
        self.pipeline = FakePipeline()
        self.configs: list[PipelineConfig] = []

    def __call__(self, config: PipelineConfig) -> PairsPipeline:
        self.configs.append(config)
        return self.pipeline


def run_one(tmp_path: Path, dataset: Path, options: PairsOptions = QUIET_1) -> tuple[PairsJobResult, dict[str, bytes]]:
    out = tmp_path / "results.tar.gz"
    result = run_pairs_job([dataset], out, options=options, pipeline_factory=fake_pipeline_factory)
    return result, read_results(out)


# --- good pairs -------------------------------------------------------------------------------------------


def test_good_pairs_are_scored_in_input_order(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,red2.png\nred.png,blue.png\n")
    result, files = run_one(tmp_path, dataset)
    assert result.exit_code == EXIT_OK
    assert sorted(files) == ["input-0001/output.csv", "input-0001/run.json"]
    rows = read_csv(files["input-0001/output.csv"])
    assert rows[0] == ["file_a", "file_b", "probability"]
    assert [row[:2] for row in rows[1:]] == [["red.png", "red2.png"], ["red.png", "blue.png"]]
    same, different = (float(row[2].rstrip("%")) for row in rows[1:])
    assert same > 90.0 and different < 10.0
    assert all(row[2].endswith("%") for row in rows[1:])
    assert result.summary() == "1 dataset, 2 rows: 2 scored, 0 not scored"


def test_details_columns(tmp_path: Path) -> None:
    photos = basic_photos() | {"two.png": make_two_face_png(RED, BLUE)}
    dataset = write_dataset(tmp_path / "ds", photos, "red.png,red2.png\nred.png,blue.png\ntwo.png,red.png\n")
    _, files = run_one(tmp_path, dataset, PairsOptions(workers=1, quiet=True, details=True))
    rows = read_csv(files["input-0001/output.csv"])
    header = ["file_a", "file_b", "probability", "similarity", "match", "faces_a", "faces_b", "status", "flags"]
    assert rows[0] == header
    # The fake's faces carry qualities outside the shipped calibration's range: flagged, not hidden.
    assert rows[1][3:8] == ["1.0000", "true", "1", "1", "ok"]
    assert rows[2][4:8] == ["false", "1", "1", "ok"]
    assert float(rows[2][3]) < 0.5
    assert rows[3][5:8] == ["2", "1", "ok"]


@pytest.mark.parametrize(("face", "expect_match"), [("largest", False), ("best-match", True)])
def test_face_mode_with_two_faces(tmp_path: Path, face: str, expect_match: bool) -> None:
    # two.png: a small red face and a larger blue one.
    photos = {"two.png": make_two_face_png(RED, BLUE), "red.png": make_face_png(RED)}
    dataset = write_dataset(tmp_path / "ds", photos, "two.png,red.png\n")
    options = PairsOptions(workers=1, quiet=True, details=True, face=face)  # type: ignore[arg-type]
    _, files = run_one(tmp_path, dataset, options)
    row = read_csv(files["input-0001/output.csv"])[1]
    assert row[4] == ("true" if expect_match else "false")
    assert json.loads(files["input-0001/run.json"])["face"] == face


def test_extra_columns_pass_through_with_header_names(tmp_path: Path) -> None:
    pairs = "left;right;case;probability\nred.png;red2.png;c1;x\nred.png;blue.png\nred.png;missing.png;c3;y;extra\n"
    dataset = write_dataset(tmp_path / "ds", basic_photos(), pairs)
    _, files = run_one(tmp_path, dataset)
    rows = read_csv(files["input-0001/output.csv"])
    assert rows[0] == ["file_a", "file_b", "probability", "case", "input_probability", "extra_3"]
    assert rows[1][3:] == ["c1", "x", ""]
    assert rows[2][3:] == ["", "", ""]
    assert rows[3] == ["red.png", "missing.png", "", "c3", "y", "extra"]


def test_quoted_names_with_commas_and_spaces(tmp_path: Path) -> None:
    photos = {"Doe, John.png": make_face_png(RED), "my photo.png": make_face_png(RED)}
    dataset = write_dataset(tmp_path / "ds", photos, '"Doe, John.png","my photo.png"\n')
    result, files = run_one(tmp_path, dataset)
    assert result.exit_code == EXIT_OK
    assert read_csv(files["input-0001/output.csv"])[1][:2] == ["Doe, John.png", "my photo.png"]


# --- failures keep their row ------------------------------------------------------------------------------


def test_missing_corrupt_and_no_face_rows_keep_their_place(tmp_path: Path) -> None:
    photos = basic_photos() | {"corrupt.jpg": b"\xff\xd8\xff\xe0 not really a jpeg", "grey.png": make_blank_png()}
    pairs = (
        "red.png,red2.png\n"
        "red.png,missing.png\n"
        "corrupt.jpg,red.png\n"
        "red.png,grey.png\n"
        "just-one-column\n"
        "corrupt.jpg,nothing.png\n"
        "blue.png,red.png\n"
    )
    dataset = write_dataset(tmp_path / "ds", photos, pairs)
    result, files = run_one(tmp_path, dataset, PairsOptions(workers=1, quiet=True, details=True))
    assert result.exit_code == EXIT_PARTIAL
    assert (result.rows, result.scored, result.failed) == (7, 2, 5)
    rows = read_csv(files["input-0001/output.csv"])
    assert [row[:2] for row in rows[1:]] == [
        ["red.png", "red2.png"],
        ["red.png", "missing.png"],
        ["corrupt.jpg", "red.png"],
        ["red.png", "grey.png"],
        ["just-one-column", ""],
        ["corrupt.jpg", "nothing.png"],
        ["blue.png", "red.png"],
    ]
    assert [row[2] != "" for row in rows[1:]] == [True, False, False, False, False, False, True]
    assert [row[7] for row in rows[1:]] == [
        "ok",
        "missing_file",
        "decode_error",
        "no_face",
        "malformed_csv",
        "decode_error",
        "ok",
    ]
    assert rows[4][5:7] == ["1", "0"]  # faces found: red 1, grey 0
    assert rows[3][5:7] == ["", "1"]  # corrupt.jpg was never decoded: no face count, not 0
    assert rows[2][5:7] == ["1", ""]  # missing.png: no face count either

    errors = read_csv(files["input-0001/processing.error"])
    assert tuple(errors[0]) == ERROR_COLUMNS
    assert [(e[0], e[1], e[4], e[5]) for e in errors[1:]] == [
        ("2", "2", "missing.png", "missing_file"),
        ("3", "3", "corrupt.jpg", "decode_error"),
        ("4", "4", "grey.png", "no_face"),
        ("5", "5", "", "malformed_csv"),
        ("6", "6", "corrupt.jpg", "decode_error"),
        ("6", "6", "nothing.png", "missing_file"),
    ]
    assert all(e[6] for e in errors[1:])  # every line has a message
    run = json.loads(files["input-0001/run.json"])
    assert run["status"] == "partial" and run["error_file"] == "processing.error"
    assert run["counts"] == {
        "rows": 7,
        "scored": 2,
        "not_scored": 5,
        "images": 5,
        "embedded": 5,
        "problems": 6,
    }


def test_nothing_scored_is_exit_3(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", {"grey.png": make_blank_png()}, "grey.png,missing.png\n")
    result, files = run_one(tmp_path, dataset)
    assert result.exit_code == EXIT_INPUT
    assert read_csv(files["input-0001/output.csv"])[1] == ["grey.png", "missing.png", ""]


def test_ambiguous_name(tmp_path: Path) -> None:
    photos = {"a/x.png": make_face_png(RED), "b/x.png": make_face_png(RED), "red.png": make_face_png(RED)}
    dataset = write_dataset(tmp_path / "ds", photos, "x.png,red.png\na/x.png,red.png\n")
    _, files = run_one(tmp_path, dataset)
    errors = read_csv(files["input-0001/processing.error"])
    assert [(e[0], e[5]) for e in errors[1:]] == [("1", "ambiguous_file")]


# --- dataset-level problems -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_files", "code"),
    [({}, "pairs_file_error"), ({"sub/pairs.csv": b"a.png,b.png\n"}, "pairs_file_error")],
    ids=["no-pairs-csv", "two-pairs-csv"],
)
def test_pairs_file_problems(tmp_path: Path, extra_files: dict[str, bytes], code: str) -> None:
    pairs = "red.png,blue.png\n" if extra_files else None
    dataset = write_dataset(tmp_path / "ds", basic_photos() | extra_files, pairs)
    result, files = run_one(tmp_path, dataset)
    assert result.exit_code == EXIT_INPUT
    assert result.datasets[0].dataset_error == code
    assert read_csv(files["input-0001/output.csv"]) == [["file_a", "file_b", "probability"]]
    assert read_csv(files["input-0001/processing.error"])[1][5] == code
    assert json.loads(files["input-0001/run.json"])["status"] == "failed"


def test_corrupt_archive_is_a_dataset_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"this is not an archive at all" * 30)
    result, files = run_one(tmp_path, broken)
    assert result.exit_code == EXIT_INPUT
    error = read_csv(files["input-0001/processing.error"])[1]
    assert (error[4], error[5]) == ("broken.tar.gz", "archive_error")


def test_row_limit_is_a_dataset_error(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n" * 3)
    result, files = run_one(tmp_path, dataset, PairsOptions(workers=1, quiet=True, max_pairs=2))
    assert result.exit_code == EXIT_INPUT
    assert read_csv(files["input-0001/processing.error"])[1][5] == "malformed_csv"


def test_unsafe_archive_members_are_reported_and_never_used(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(make_face_png(RED))
    archive = tmp_path / "ds.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [
            ("pairs.csv", b"red.png,red2.png\nred.png,link.png\nred.png,evil.png\n"),
            ("red.png", make_face_png(RED)),
            ("red2.png", make_face_png(RED)),
            ("../evil.png", make_face_png(RED)),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = str(secret)
        tar.addfile(link)
    result, files = run_one(tmp_path, archive)
    assert result.exit_code == EXIT_PARTIAL
    rows = read_csv(files["input-0001/output.csv"])
    assert [row[2] != "" for row in rows[1:]] == [True, False, False]
    errors = [(e[0], e[4], e[5]) for e in read_csv(files["input-0001/processing.error"])[1:]]
    assert errors == [
        ("", "../evil.png", "unsafe_archive_member"),
        ("", "link.png", "unsafe_archive_member"),
        ("2", "link.png", "unsafe_archive_member"),
        ("3", "evil.png", "missing_file"),
    ]
    assert not (tmp_path.parent / "evil.png").exists()


# --- several datasets, layouts ------------------------------------------------------------------------------


def test_two_datasets_in_one_run_keep_their_order(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "first", basic_photos(), "red.png,blue.png\n")
    second_folder = write_dataset(tmp_path / "second", {"g.png": make_face_png(GREEN)}, "g.png,g.png\ng.png,x.png\n")
    second = tar_dataset(second_folder, tmp_path / "second.tgz")
    out = tmp_path / "results.tar.gz"
    result = run_pairs_job([second, first], out, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    files = read_results(out)
    assert [d.folder for d in result.datasets] == ["input-0001", "input-0002"]
    assert [d.source for d in result.datasets] == ["second.tgz", "first"]
    assert read_csv(files["input-0001/output.csv"])[1][:2] == ["g.png", "g.png"]
    assert read_csv(files["input-0002/output.csv"])[1][:2] == ["red.png", "blue.png"]
    assert "input-0001/processing.error" in files and "input-0002/processing.error" not in files
    assert result.exit_code == EXIT_PARTIAL
    assert json.loads(files["input-0001/run.json"])["input"]["kind"] == "tar.gz"


def test_enclave_layout(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    write_dataset(inputs / "input-0001", basic_photos(), "red.png,red2.png\n")
    packed = write_dataset(tmp_path / "packed", {"g.png": make_face_png(GREEN)}, "g.png,g.png\n")
    (inputs / "input-0002").mkdir()
    tar_dataset(packed, inputs / "input-0002" / "dataset.tar.gz")
    write_dataset(inputs / "input-0010", {"b.png": make_face_png(BLUE)}, "b.png,missing.png\n")
    (inputs / "input-abc").mkdir()  # not an input folder: ignored
    (inputs / "notes.txt").write_text("ignored")
    assert [(name, path.name) for name, path in enclave_inputs(inputs)] == [
        ("input-0001", "input-0001"),
        ("input-0002", "dataset.tar.gz"),
        ("input-0010", "input-0010"),
    ]

    outputs = tmp_path / "outputs"
    result = run_enclave_job(inputs, outputs, QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert result.output_dir == outputs
    assert result.output_path == outputs / "results.tar.gz"
    assert result.exit_code == EXIT_PARTIAL
    on_disk = {p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file()}
    assert on_disk == {
        "results.tar.gz",
        "input-0001/output.csv",
        "input-0001/run.json",
        "input-0002/output.csv",
        "input-0002/run.json",
        "input-0010/output.csv",
        "input-0010/run.json",
        "input-0010/processing.error",
    }
    packed_files = read_results(result.output_path)
    assert set(packed_files) == on_disk - {"results.tar.gz"}
    for name, data in packed_files.items():
        assert (outputs / name).read_bytes() == data

    # Fix the problem and run again: the stale processing.error must go.
    (inputs / "input-0010" / "missing.png").write_bytes(make_face_png(BLUE))
    again = run_enclave_job(inputs, outputs, QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert again.exit_code == EXIT_OK
    assert not (outputs / "input-0010" / "processing.error").exists()
    assert "input-0010/processing.error" not in read_results(again.output_path)


def test_enclave_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        run_enclave_job(tmp_path / "nope", tmp_path / "out", QUIET_1, pipeline_factory=fake_pipeline_factory)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no input-0001"):
        run_enclave_job(tmp_path / "empty", tmp_path / "out", QUIET_1, pipeline_factory=fake_pipeline_factory)
    write_dataset(tmp_path / "in" / "input-0001", basic_photos(), "red.png,blue.png\n")
    with pytest.raises(UsageError, match="must differ"):
        run_enclave_job(tmp_path / "in", tmp_path / "in", QUIET_1, pipeline_factory=fake_pipeline_factory)


# --- embedding once -------------------------------------------------------------------------------------------


def test_ten_thousand_rows_over_fifty_images_embed_each_image_once(tmp_path: Path) -> None:
    photos = {f"img/{i:02d}.png": make_face_png((i * 5, 250 - i * 5, (i * 37) % 256)) for i in range(50)}
    lines = [f"{i % 50:02d}.png,img/{(i * 7 + 3) % 50:02d}.png,{i}" for i in range(10_000)]
    dataset = write_dataset(tmp_path / "ds", photos, "\n".join(lines) + "\n")
    factory = CountingFactory()
    out = tmp_path / "results.tar.gz"
    result = run_pairs_job([dataset], out, options=QUIET_1, pipeline_factory=factory)
    assert factory.pipeline.embed_calls == 50
    assert len(factory.configs) == 1  # one pipeline for the whole job
    assert (result.rows, result.scored, result.exit_code) == (10_000, 10_000, EXIT_OK)
    rows = read_csv(read_results(out)["input-0001/output.csv"])
    assert len(rows) == 10_001
    assert [row[3] for row in rows[1:]] == [str(i) for i in range(10_000)]  # input order kept
    assert (result.datasets[0].images, result.datasets[0].embedded) == (50, 50)


def test_same_photo_under_two_names_is_embedded_once(tmp_path: Path) -> None:
    red = make_face_png(RED)
    photos = {"a.png": red, "copy/b.png": red, "blue.png": make_face_png(BLUE)}
    dataset = write_dataset(tmp_path / "ds", photos, "a.png,b.png\nb.png,blue.png\na.png,blue.png\n")
    factory = CountingFactory()
    result = run_pairs_job([dataset], tmp_path / "r.tar.gz", options=QUIET_1, pipeline_factory=factory)
    assert factory.pipeline.embed_calls == 2
    assert (result.datasets[0].images, result.datasets[0].embedded) == (3, 2)
    assert result.scored == 3


# --- determinism, workers, atomicity ---------------------------------------------------------------------------


def test_output_is_byte_identical_across_runs(tmp_path: Path) -> None:
    photos = basic_photos() | {"grey.png": make_blank_png()}
    dataset = write_dataset(tmp_path / "ds", photos, "red.png,red2.png\nred.png,grey.png\nred.png,blue.png\n")
    first = tmp_path / "one.tar.gz"
    second = tmp_path / "two.tar.gz"
    run_pairs_job([dataset], first, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    os.utime(dataset / "red.png", (1, 1))  # file times must not leak into the results
    run_pairs_job([dataset], second, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert first.read_bytes() == second.read_bytes()


def test_worker_processes_give_the_same_bytes(tmp_path: Path) -> None:
    photos = basic_photos() | {"two.png": make_two_face_png(RED, BLUE), "bad.png": b"garbage"}
    pairs = "red.png,red2.png\nred.png,blue.png\ntwo.png,red.png\nbad.png,red.png\nred.png,red.png\n"
    dataset = write_dataset(tmp_path / "ds", photos, pairs)
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.tar.gz"
        options = PairsOptions(workers=workers, quiet=True, details=True, face="best-match")
        result = run_pairs_job([dataset], out, options=options, pipeline_factory=fake_pipeline_factory)
        assert result.scored == 4
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_workers_use_one_inference_thread() -> None:
    assert worker_pipeline_config(PipelineConfig(intra_op_threads=None)).intra_op_threads == 1
    assert worker_pipeline_config(PipelineConfig(upsample=2)).upsample == 2


def test_a_few_photos_run_in_this_process_even_with_an_unpicklable_factory(tmp_path: Path) -> None:
    # Starting a worker costs a model load: a handful of photos is analysed here, so nothing is pickled.
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    result = run_pairs_job(
        [dataset],
        tmp_path / "r.tar.gz",
        options=PairsOptions(workers=2, quiet=True),
        pipeline_factory=lambda config: FakePipeline(config),
    )
    assert result.scored == 1 and (tmp_path / "r.tar.gz").exists()


def test_a_photo_that_kills_its_worker_is_marked_and_the_job_finishes(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    out = tmp_path / "results.tar.gz"
    options = PairsOptions(workers=2, quiet=True, executor="processes")
    # The parent's own pipeline is a crashing one too, but it only compares; the workers die on every photo.
    result = run_pairs_job([dataset], out, options=options, pipeline_factory=crashing_pipeline_factory)
    assert out.exists() and result.scored == 0 and result.rows == 1
    with tarfile.open(out) as tar:
        handle = tar.extractfile("input-0001/processing.error")
        assert handle is not None
        errors = handle.read().decode()
    assert "worker_crashed" in errors and "died on it twice" in errors


def test_model_failure_writes_nothing(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    out = tmp_path / "results.tar.gz"
    out.write_bytes(b"results of an earlier run")

    def broken_factory(config: PipelineConfig) -> PairsPipeline:
        raise ModelNotFoundError("dlib_face_recognition_resnet_model_v1.dat not found")

    with pytest.raises(ModelNotFoundError):
        run_pairs_job([dataset], out, options=QUIET_1, pipeline_factory=broken_factory)
    assert out.read_bytes() == b"results of an earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "results.tar.gz"]


def test_run_json_records_model_and_version(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "a;b\nred.png;blue.png\n")
    result, files = run_one(tmp_path, dataset)
    run = json.loads(files["input-0001/run.json"])
    spec = FakePipeline().spec
    assert run["faceprint_version"] == __version__
    assert (run["model_id"], run["contract_id"], run["threshold"]) == (spec.id, spec.contract_id, 0.95)
    assert (result.model_id, result.contract_id, result.threshold) == (spec.id, spec.contract_id, 0.95)
    assert run["input"] == {
        "name": "ds",
        "kind": "directory",
        "pairs_file": "pairs.csv",
        "delimiter": ";",
        "header": True,
        "encoding": "utf-8",
    }
    assert run["status"] == "ok" and run["error_file"] is None


def test_progress_bar_on_stderr_unless_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    loud = PairsOptions(workers=1)
    run_pairs_job([dataset], tmp_path / "a.tar.gz", options=loud, pipeline_factory=fake_pipeline_factory)
    shown = capsys.readouterr()
    assert "images/s" in shown.err and "2/2" in shown.err
    assert shown.out == ""
    run_pairs_job([dataset], tmp_path / "b.tar.gz", options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert capsys.readouterr().err == ""


# --- usage ---------------------------------------------------------------------------------------------------


def test_usage_errors(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    with pytest.raises(UsageError, match="at least one dataset"):
        run_pairs_job([], tmp_path / "r.tar.gz", options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    with pytest.raises(UsageError, match="does not exist"):
        run_pairs_job([tmp_path / "nope"], tmp_path / "r.tar.gz", options=QUIET_1)
    with pytest.raises(UsageError, match="is a folder"):
        run_pairs_job([dataset], tmp_path, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    with pytest.raises(UsageError, match="folder of output"):
        run_pairs_job([dataset], tmp_path / "no" / "r.tar.gz", options=QUIET_1)
    with pytest.raises(UsageError, match="largest"):
        PairsOptions(face="biggest")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="workers"):
        PairsOptions(workers=0)


@pytest.mark.parametrize(("probability", "text"), [(0.0, "0.0%"), (0.98234, "98.2%"), (0.5, "50.0%"), (1.0, "100.0%")])
def test_format_probability(probability: float, text: str) -> None:
    assert format_probability(probability) == text


# --- integration: the real pipeline on real photos ----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_real_pipeline_end_to_end(tmp_path: Path, examples_dir: Path, real_pipeline: object, workers: int) -> None:
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        if not (examples_dir / name).is_file():
            pytest.skip(f"{examples_dir / name} is not there")
    dataset = tmp_path / "ds"
    dataset.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        shutil.copy(examples_dir / name, dataset / name)
    (dataset / "corrupt.jpg").write_bytes((examples_dir / "obama.jpg").read_bytes()[:300])
    # A 3:1 strip: too elongated for the centre-crop fallback, small so the CNN fallback is quick.
    Image.fromarray(np.full((100, 300, 3), 128, np.uint8)).save(dataset / "grey.png")
    (dataset / "pairs.csv").write_text(
        "image_a,image_b\n"
        "obama.jpg,obama2.jpg\n"
        "obama.jpg,biden.jpg\n"
        "obama.jpg,corrupt.jpg\n"
        "grey.png,obama.jpg\n"
        "obama.jpg,missing.jpg\n"
    )
    out = tmp_path / "results.tar.gz"
    options = PairsOptions(workers=workers, quiet=True, details=True)
    result = run_pairs_job([dataset], out, options=options)
    files = read_results(out)
    rows = read_csv(files["input-0001/output.csv"])[1:]
    assert result.exit_code == EXIT_PARTIAL
    same = float(rows[0][2].rstrip("%"))
    different = float(rows[1][2].rstrip("%"))
    assert same > 80.0, rows[0]
    assert different < 20.0, rows[1]
    assert rows[0][4] == "true" and rows[1][4] == "false"
    assert [row[7] for row in rows] == ["ok", "ok", "decode_error", "no_face", "missing_file"]
    assert [row[2] for row in rows[2:]] == ["", "", ""]
    run = json.loads(files["input-0001/run.json"])
    assert run["model_id"] == "dlib-resnet-v1" and run["contract_id"].startswith("dlib-resnet-v1:")


# --- hostile-probe regressions (issue 15) ---------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_output_equal_to_an_input_is_refused_before_any_work(tmp_path: Path) -> None:
    # issue 15 #1: -o naming the input dataset overwrote it with the results (exit 0)
    dataset = tar_dataset(write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n"), tmp_path / "ds.tgz")
    before = dataset.read_bytes()
    factory = CountingFactory()
    with pytest.raises(UsageError) as caught:
        run_pairs_job([dataset], dataset, options=QUIET_1, pipeline_factory=factory)
    assert caught.value.code == "output_is_input"
    assert dataset.read_bytes() == before and factory.configs == []  # no model was even built


def test_output_naming_a_device_or_fifo_is_refused(tmp_path: Path) -> None:
    # issue 15 #2: -o /dev/null replaced the device node with a regular file
    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    for target in (Path("/dev/null"), fifo):
        with pytest.raises(UsageError) as caught:
            run_pairs_job([dataset], target, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
        assert caught.value.code == "output_not_regular"
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()


def test_disk_full_while_writing_is_a_clear_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 15 #12: ENOSPC gave a traceback and exit 1
    import errno

    from faceprint.errors import DiskFullError

    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    (tmp_path / "out").mkdir()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("faceprint.io.atomic.os.fsync", full)
    with pytest.raises(DiskFullError) as caught:
        out = tmp_path / "out" / "r.tar.gz"
        run_pairs_job([dataset], out, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert caught.value.exit_code == 73
    assert list((tmp_path / "out").iterdir()) == []


def test_a_row_with_a_folder_is_never_scored_against_another_folders_file(tmp_path: Path) -> None:
    # issue 15 #3: 2019/face.jpg (missing) was scored with 2020/face.jpg, status ok
    photos = {"2020/face.png": make_face_png(RED), "red.png": make_face_png(RED)}
    pairs = "2019/face.png,red.png\nfile:///x/face.png,red.png\n2020/face.png,red.png\n"
    result, files = run_one(tmp_path, write_dataset(tmp_path / "ds", photos, pairs))
    errors = read_csv(files["input-0001/processing.error"])[1:]
    assert [(e[0], e[4], e[5]) for e in errors] == [
        ("1", "2019/face.png", "missing_file"),
        ("2", "file:///x/face.png", "missing_file"),
    ]
    assert result.scored == 1


def test_an_unterminated_quote_keeps_every_later_row(tmp_path: Path) -> None:
    # issue 15 #5
    pairs = 'red.png,"blue.png\nred.png,red2.png\nred.png,blue.png\n'
    result, files = run_one(tmp_path, write_dataset(tmp_path / "ds", basic_photos(), pairs))
    assert (result.rows, result.scored) == (3, 2)
    errors = read_csv(files["input-0001/processing.error"])[1:]
    assert [(e[0], e[1], e[5]) for e in errors] == [("1", "1", "malformed_csv")]


def test_a_fifo_dataset_is_a_dataset_error_not_a_hang(tmp_path: Path) -> None:
    # issue 15 #6: open() on the FIFO blocked forever
    import signal

    fifo = tmp_path / "dataset.tgz"
    os.mkfifo(fifo)
    good = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    signal.alarm(20)  # a regression hangs; fail instead of stalling the suite
    try:
        out = tmp_path / "r.tar.gz"
        result = run_pairs_job([fifo, good], out, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    finally:
        signal.alarm(0)
    assert [d.dataset_error for d in result.datasets] == ["not_regular_file", None]
    assert result.exit_code == EXIT_PARTIAL


def test_a_targz_with_a_bad_crc_is_a_dataset_error(tmp_path: Path) -> None:
    # issue 15 #7: accepted with a silently corrupted photo
    archive = tar_dataset(write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n"), tmp_path / "d.tgz")
    data = bytearray(archive.read_bytes())
    data[-8] ^= 0xFF
    archive.write_bytes(bytes(data))
    result, files = run_one(tmp_path, archive)
    assert result.datasets[0].dataset_error == "archive_error" and result.exit_code == EXIT_INPUT
    assert "corrupt gzip" in read_csv(files["input-0001/processing.error"])[1][6]


@pytest.mark.parametrize(
    ("value", "cell"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
     ("'x", "''x"), ("a=b.jpg", "a=b.jpg"), ("", "")],
)
def test_escape_cell_round_trips(value: str, cell: str) -> None:
    from faceprint.batch.pairs import escape_cell, unescape_cell

    assert escape_cell(value) == cell and unescape_cell(cell) == value


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "'"])  # tab and CR: see test_escape_cell_round_trips
def test_formula_cells_are_escaped_and_recoverable(tmp_path: Path, trigger: str) -> None:
    # issue 15 #8: CSV injection into output.csv and processing.error
    from faceprint.batch.pairs import unescape_cell

    hostile = f"{trigger}HYPERLINK(1).png"
    photos = basic_photos() | {hostile: make_face_png(RED)}
    pairs = f'left,right,{trigger}note\n"{hostile}",red.png,{trigger}cmd\n"{trigger}missing.png",red.png,x\n'
    _, files = run_one(tmp_path, write_dataset(tmp_path / "ds", photos, pairs))
    rows = read_csv(files["input-0001/output.csv"])
    assert rows[0][3] == f"'{trigger}note"
    assert rows[1][0] == f"'{hostile}" and rows[1][3] == f"'{trigger}cmd" and rows[1][2].endswith("%")
    assert [unescape_cell(c) for c in (rows[1][0], rows[1][3])] == [hostile, f"{trigger}cmd"]
    error = read_csv(files["input-0001/processing.error"])[1]
    assert error[2] == error[4] == f"'{trigger}missing.png" and error[6].startswith(f"'{trigger}missing.png")
    for row in [*rows[1:], error]:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t")) for cell in row)
    run = json.loads(files["input-0001/run.json"])
    # 4 cells in output.csv (note header, name, extra, missing name), 3 in processing.error
    assert run["formula_escape"]["enabled"] is True and run["formula_escape"]["escaped_cells"] == 7

    raw_options = PairsOptions(workers=1, quiet=True, escape_formulas=False)
    _, raw_files = run_one(tmp_path, tmp_path / "ds", raw_options)
    assert read_csv(raw_files["input-0001/output.csv"])[1][0] == hostile


def test_an_unreadable_sub_folder_is_refused_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 15 #9: one unreadable folder failed the whole dataset (0 rows, exit 3)
    photos = basic_photos() | {"locked/x.png": make_face_png(GREEN)}
    dataset = write_dataset(tmp_path / "ds", photos, "red.png,blue.png\nlocked/x.png,red.png\n")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if os.path.basename(path) == "locked":  # root reads any folder, so the refusal is made here
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("faceprint.io.archive.os.scandir", scandir)
    result, files = run_one(tmp_path, dataset)
    assert (result.rows, result.scored, result.exit_code) == (2, 1, EXIT_PARTIAL)
    errors = read_csv(files["input-0001/processing.error"])[1:]
    assert [(e[0], e[4], e[5]) for e in errors] == [
        ("", "locked", "unreadable_member"),
        ("2", "locked/x.png", "unreadable_member"),
    ]


def test_identical_bytes_under_two_names_each_get_their_own_message(tmp_path: Path) -> None:
    # issue 15 #24: the message of b.jpg named a.gif
    broken = b"\xff\xd8\xff\xe0 not really a jpeg"
    photos = basic_photos() | {"a.jpg": broken, "b.jpg": broken}
    _, files = run_one(tmp_path, write_dataset(tmp_path / "ds", photos, "a.jpg,red.png\nb.jpg,red.png\n"))
    errors = read_csv(files["input-0001/processing.error"])[1:]
    assert [(e[4], e[5]) for e in errors] == [("a.jpg", "decode_error"), ("b.jpg", "decode_error")]
    assert errors[0][6].startswith("a.jpg: ") and errors[1][6].startswith("b.jpg: ")


@pytest.mark.parametrize("pairs", ["", "\n\n", "left,right\n", "\ufeffleft;right\r\n"])
def test_an_empty_or_header_only_pairs_csv_is_a_dataset_error(tmp_path: Path, pairs: str) -> None:
    # issue 15 #25: exit 0 with nothing scored and no processing.error
    result, files = run_one(tmp_path, write_dataset(tmp_path / "ds", basic_photos(), pairs))
    assert result.exit_code == EXIT_INPUT and result.datasets[0].dataset_error == "no_pairs"
    error = read_csv(files["input-0001/processing.error"])[1]
    assert (error[4], error[5]) == ("pairs.csv", "no_pairs")


def test_a_sliver_image_is_too_small_not_an_internal_error(tmp_path: Path) -> None:
    # issue 15 #14
    slivers = {"sliver.png": make_face_png(RED, size_wh=(1, 2000)), "dot.png": make_face_png(RED, size_wh=(1, 1))}
    photos = basic_photos() | slivers
    _, files = run_one(tmp_path, write_dataset(tmp_path / "ds", photos, "sliver.png,red.png\ndot.png,red.png\n"))
    errors = read_csv(files["input-0001/processing.error"])[1:]
    assert [(e[4], e[5]) for e in errors] == [("sliver.png", "image_too_small"), ("dot.png", "image_too_small")]


def test_enclave_output_that_is_a_file_or_inside_the_inputs_is_refused(tmp_path: Path) -> None:
    # issue 15 #13: a traceback
    inputs = tmp_path / "in"
    write_dataset(inputs / "input-0001", basic_photos(), "red.png,blue.png\n")
    before = _snapshot(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    cases = [(tmp_path / "file", "output_not_directory"), (inputs / "out", "output_is_input")]
    for output_dir, code in cases:
        with pytest.raises(UsageError) as caught:
            run_enclave_job(inputs, output_dir, QUIET_1, pipeline_factory=fake_pipeline_factory)
        assert caught.value.code == code
    (tmp_path / "out" / "input-0001").mkdir(parents=True)
    os.mkfifo(tmp_path / "out" / "input-0001" / "output.csv")
    with pytest.raises(UsageError) as fifo:
        run_enclave_job(inputs, tmp_path / "out", QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert fifo.value.code == "output_not_regular"
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k != "file"} == before


def test_progress_rises_to_one_and_a_long_lived_engine_serves_several_jobs(tmp_path: Path) -> None:
    from faceprint.analyze import Analyzer

    first = write_dataset(tmp_path / "a", basic_photos(), "red.png,photos/red2.png\n")
    second = write_dataset(tmp_path / "b", basic_photos(), "red.png,blue.png\n")
    seen: list[float] = []
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:
        for number in (1, 2):
            out = tmp_path / f"r{number}.tar.gz"
            result = run_pairs_job([first, second], out, options=QUIET_1, analyzer=analyzer, progress=seen.append)
            assert result.scored == 2
    assert seen == sorted(seen[: len(seen) // 2]) + sorted(seen[len(seen) // 2 :])  # never backwards within a job
    assert seen[-1] == 1.0 and 0.0 < min(seen) < 1.0
    assert (tmp_path / "r1.tar.gz").read_bytes() == (tmp_path / "r2.tar.gz").read_bytes()


def test_a_cancelled_job_writes_nothing(tmp_path: Path) -> None:
    import threading

    from faceprint.analyze import CancelledError

    dataset = write_dataset(tmp_path / "ds", basic_photos(), "red.png,blue.png\n")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        run_pairs_job([dataset], tmp_path / "r.tar.gz", options=QUIET_1, pipeline_factory=fake_pipeline_factory,
                      cancel=cancel)
    assert not (tmp_path / "r.tar.gz").exists()
