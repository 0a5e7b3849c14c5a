"""FACEPRINT_ENCRYPTION_KEY reaches the gallery commands: templates are encrypted, answers unchanged."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.gallery import gallery_app, identify
from faceprint.settings import load_settings
from faceprint.testing import fake_pipeline_factory, make_face_png, make_two_face_png

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(gallery_app, name="gallery")
    app.command(name="identify")(identify)
    context = CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory)
    result = runner.invoke(app, list(args), obj=context)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout


def test_an_encryption_key_in_the_environment_encrypts_the_gallery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path / "g"))
    (tmp_path / "red.png").write_bytes(make_face_png((200, 30, 30)))
    (tmp_path / "pair.png").write_bytes(make_two_face_png((200, 30, 30), (30, 200, 30)))
    answers = {}
    for name, key in (("clear", None), ("secret", base64.b64encode(bytes(range(32))).decode())):
        if key is None:
            monkeypatch.delenv("FACEPRINT_ENCRYPTION_KEY", raising=False)
        else:
            monkeypatch.setenv("FACEPRINT_ENCRYPTION_KEY", key)
        assert run("gallery", "create", name)[0] == 0
        assert run("gallery", "enroll", name, "--person", "Red", str(tmp_path / "red.png"), "-q")[0] == 0
        code, out = run("identify", str(tmp_path / "pair.png"), "--gallery", name, "--json", "-q")
        assert code == 0, out
        answers[name] = [(f["label"], round(f["similarity"], 6)) for f in json.loads(out)["faces"]]
    assert answers["secret"] == answers["clear"]
    def stored(name: str) -> bytes:  # the database and its write-ahead log, as a disk thief would read them
        return b"".join(p.read_bytes() for p in (tmp_path / "g").glob(f"{name}.sqlite*"))

    assert b"red.png" not in stored("secret")  # the source name is encrypted too
    assert b"red.png" in stored("clear")
