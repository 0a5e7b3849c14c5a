"""``faceprint calibrate --method platt|quality`` through typer's CliRunner, with the weight-free fake."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceprint.cli.evaluate import calibrate
from faceprint.evaluate.calibrate import load_calibration
from faceprint.testing import fake_pipeline_factory, make_face_png

runner = CliRunner()
PALETTE = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 120, 230), (120, 20, 230)]


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def root() -> None:
        """Keeps the command a subcommand, as in the real app."""

    app.command(name="calibrate")(calibrate)
    return app


@pytest.fixture(autouse=True)
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("faceprint.evaluate.run.default_pipeline_factory", fake_pipeline_factory)


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    rows = ["file1,file2,label"]
    for index, rgb in enumerate(PALETTE):
        (images / f"{index}a.png").write_bytes(make_face_png(rgb))
        (images / f"{index}b.png").write_bytes(make_face_png(rgb, size_wh=(40, 30)))
        rows.append(f"{index}a.png,{index}b.png,1")
        rows.append(f"{index}a.png,{(index + 1) % len(PALETTE)}b.png,0")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    return pairs, images


@pytest.mark.parametrize("method", ["platt", "quality"])
def test_calibrate_method(tmp_path: Path, method: str) -> None:
    pairs, images = _dataset(tmp_path)
    out = tmp_path / "calib.json"
    args = ["calibrate", str(pairs), "--images", str(images), "-o", str(out), "--workers", "1", "-q"]
    result = runner.invoke(_app(), [*args, "--method", method])
    assert result.exit_code == 0, result.output
    record = load_calibration(out)
    assert record.calibration.method == method
    if method == "quality":
        assert "reference pair" in result.output and "max_abs_yaw_deg" in result.output
    else:
        assert "threshold (best accuracy)" in result.output


def test_calibrate_refuses_an_unknown_method(tmp_path: Path) -> None:
    pairs, images = _dataset(tmp_path)
    args = ["calibrate", str(pairs), "--images", str(images), "-o", str(tmp_path / "c.json"), "--method", "isotonic"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 2
    assert "platt or quality" in result.output
    assert not (tmp_path / "c.json").exists()
