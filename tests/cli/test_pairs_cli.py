"""``faceprint pairs`` through typer's CliRunner, with the FakePipeline standing in for the models."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceprint.cli.pairs import pairs
from faceprint.testing import fake_pipeline_factory, make_blank_png, make_face_png

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def root() -> None:
        """Keeps ``pairs`` a subcommand, as in the real app."""

    app.command(name="pairs")(pairs)
    return app


@pytest.fixture(autouse=True)
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    # The command builds the real pipeline by default; unit tests swap in the weight-free fake (in-process
    # runs only, hence --workers 1 below).
    monkeypatch.setattr("faceprint.batch.pairs.default_pipeline_factory", fake_pipeline_factory)


def _dataset(root: Path, pairs_csv: str) -> Path:
    root.mkdir(parents=True)
    (root / "red.png").write_bytes(make_face_png((200, 30, 30)))
    (root / "red2.png").write_bytes(make_face_png((200, 30, 30), size_wh=(20, 20)))
    (root / "grey.png").write_bytes(make_blank_png())
    (root / "pairs.csv").write_text(pairs_csv)
    return root


def _output_rows(archive: Path, folder: str = "input-0001") -> list[list[str]]:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(f"{folder}/output.csv")
        assert handle is not None
        return list(csv.reader(io.StringIO(handle.read().decode())))


def test_scores_and_reports_where_the_results_are(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "ds", "red.png,red2.png\n")
    out = tmp_path / "results.tar.gz"
    result = runner.invoke(_app(), ["pairs", str(dataset), "-o", str(out), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"results: {out}" in result.output
    assert "1 dataset, 1 row: 1 scored, 0 not scored" in result.output
    rows = _output_rows(out)
    assert rows[0] == ["file_a", "file_b", "probability"]
    assert float(rows[1][2].rstrip("%")) > 90


def test_details_and_face_options_reach_the_job(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "ds", "red.png,red2.png\n")
    out = tmp_path / "r.tar.gz"
    args = ["pairs", str(dataset), "-o", str(out), "--workers", "1", "-q", "--details", "--face", "best-match"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert _output_rows(out)[0][3:] == ["similarity", "match", "faces_a", "faces_b", "status", "flags"]


def test_some_rows_failed_is_exit_1(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "ds", "red.png,red2.png\nred.png,grey.png\n")
    out = tmp_path / "r.tar.gz"
    result = runner.invoke(_app(), ["pairs", str(dataset), "-o", str(out), "--workers", "1", "-q"])
    assert result.exit_code == 1
    assert "1 scored, 1 not scored (see processing.error)" in result.output
    assert out.is_file()


def test_nothing_scored_is_exit_3(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "ds", "grey.png,red.png\n")
    result = runner.invoke(_app(), ["pairs", str(dataset), "-o", str(tmp_path / "r.tar.gz"), "--workers", "1", "-q"])
    assert result.exit_code == 3


def test_enclave_layout(tmp_path: Path) -> None:
    _dataset(tmp_path / "in" / "input-0001", "red.png,red2.png\n")
    out_dir = tmp_path / "out"
    args = ["pairs", "--inputs-dir", str(tmp_path / "in"), "--output-dir", str(out_dir), "--workers", "1", "-q"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert (out_dir / "input-0001" / "output.csv").is_file()
    assert _output_rows(out_dir / "results.tar.gz")[1][:2] == ["red.png", "red2.png"]
    assert str(out_dir) in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give one or more datasets"),
        (["DATASET"], "-o"),
        (["DATASET", "-o", "OUT", "--inputs-dir", "DATASET"], "not both"),
        (["--inputs-dir", "DATASET"], "go together"),
        (["DATASET", "-o", "OUT", "--face", "biggest"], "face must be 'primary', 'largest' or 'best-match'"),
        (["MISSING", "-o", "OUT"], "does not exist"),
        (["DATASET", "-o", "NOFOLDER/r.tar.gz"], "does not exist"),
    ],
    ids=["nothing", "no-output", "both-modes", "half-enclave", "bad-face", "missing-input", "missing-out-folder"],
)
def test_usage_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    dataset = _dataset(tmp_path / "ds", "red.png,red2.png\n")
    names = {
        "DATASET": str(dataset),
        "OUT": str(tmp_path / "r.tar.gz"),
        "MISSING": str(tmp_path / "nope"),
        "NOFOLDER/r.tar.gz": str(tmp_path / "nofolder" / "r.tar.gz"),
    }
    result = runner.invoke(_app(), ["pairs", *[names.get(a, a) for a in args], "--workers", "1", "-q"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_workers_must_be_positive(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "ds", "red.png,red2.png\n")
    result = runner.invoke(_app(), ["pairs", str(dataset), "-o", str(tmp_path / "r.tar.gz"), "--workers", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_registered_in_the_faceprint_app() -> None:
    from faceprint.cli.main import app

    result = runner.invoke(app, ["pairs", "--help"])
    assert result.exit_code == 0
    for option in ("--output", "--inputs-dir", "--output-dir", "--details", "--face", "--workers", "--quiet"):
        assert option in result.output
