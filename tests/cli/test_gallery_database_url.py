"""With FACEPRINT_DATABASE_URL set, gallery NAMEs live in PostgreSQL: the same CLI answers as SQLite."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.gallery import gallery_app, identify
from faceprint.settings import load_settings
from faceprint.testing import fake_pipeline_factory, make_face_png, make_two_face_png

runner = CliRunner()
RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (30, 200, 30)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(gallery_app, name="gallery")
    app.command(name="identify")(identify)
    return app


def run(database_url: str | None, *args: str) -> tuple[int, str]:
    context = CliContext(settings=load_settings(database_url=database_url), pipeline_factory=fake_pipeline_factory)
    result = runner.invoke(_app(), list(args), obj=context)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout


def session(database_url: str | None, tmp_path: Path, name: str) -> list[tuple[str, str]]:
    """Create, enrol and identify through the CLI; the (image, label) answers."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    (photos / "red.png").write_bytes(make_face_png(RED))
    (photos / "blue.png").write_bytes(make_face_png(BLUE))
    (photos / "pair.png").write_bytes(make_two_face_png(RED, GREEN))
    assert run(database_url, "gallery", "create", name)[0] == 0
    assert run(database_url, "gallery", "enroll", name, "--person", "Red", str(photos / "red.png"), "-q")[0] == 0
    assert run(database_url, "gallery", "enroll", name, "--person", "Blue", str(photos / "blue.png"), "-q")[0] == 0
    code, out = run(database_url, "identify", str(photos / "pair.png"), "--gallery", name, "--json", "-q")
    assert code == 0, out
    return [(Path(face["image"]).name, face["label"]) for face in json.loads(out)["faces"]]


def test_postgresql_galleries_answer_like_sqlite(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path / "galleries"))
    name = f"staff_{uuid.uuid4().hex[:8]}"
    in_sqlite = session(None, tmp_path, name)
    in_postgres = session(postgres_url, tmp_path, name)
    assert in_postgres == in_sqlite
    assert sorted(in_sqlite) == [("pair.png", "Red"), ("pair.png", "unknown")]
    # The PostgreSQL gallery is not a file in the gallery directory.
    assert sorted(p.name for p in (tmp_path / "galleries").iterdir()) == [f"{name}.sqlite"]
