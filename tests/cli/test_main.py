from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceprint import __version__
from faceprint.cli.main import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_usage_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--detector", "nope"])
    assert result.exit_code == 2
    assert "usage_error" in result.output and "Traceback" not in result.output


@pytest.mark.integration
def test_missing_file_exit_code_via_console_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from faceprint.cli.main import run; run()", "compare", "nope.jpg", "nope2.jpg"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 3
    assert "missing_file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_detect_json(examples_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    result = runner.invoke(app, ["detect", "--json", str(examples_dir / "two_people.jpg"), str(bad)])
    assert result.exit_code == 1  # one image failed, output still written
    data = json.loads(result.stdout)
    assert len(data[0]["faces"]) == 2
    face = data[0]["faces"][0]
    assert len(face["landmarks_xy"]) == 5 and all(0 <= v <= 1 for v in face["bbox_normalized"])
    assert data[1]["error"]["code"] == "decode_error"


@pytest.mark.integration
def test_compare_json_and_faceprint_files(examples_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["compare", "--json", str(examples_dir / "obama.jpg"), str(examples_dir / "obama2.jpg")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["match"] is True and data["probability"] > 0.9 and data["contract_id"].startswith("dlib-resnet-v1:")

    prints = tmp_path / "prints.jsonl"
    result = runner.invoke(app, ["embed", str(examples_dir / "biden.jpg"), "-o", str(prints)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in prints.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["faceprint"]["dim"] == 128
    single = tmp_path / "biden.json"
    single.write_text(json.dumps(lines[0]))
    result = runner.invoke(app, ["compare", "--json", str(single), str(examples_dir / "obama.jpg")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["match"] is False


@pytest.mark.integration
def test_models_lists_verified_files() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows["dlib-resnet-v1"]["status"] == "ok"
    assert (
        rows["dlib-resnet-v1"]["files"][0]["sha256"]
        == "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
    )
    assert "NON-COMMERCIAL" in rows["dlib-landmarks-68"]["license"]
