"""``--confidential`` on serve, worker, pairs, video, identify and gallery means FACEPRINT_CONFIDENTIAL=1.

Each command, run through typer's CliRunner with the weight-free fake pipeline, sees confidential mode in
its settings (``current_settings()``) and in the environment its child processes inherit and
``models.store.confidential_mode()`` reads; without the flag nothing changes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import types
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceprint import logs
from faceprint.cli.common import CliContext, current_settings
from faceprint.cli.main import build_app
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.models.store import confidential_mode
from faceprint.pipeline import PipelineConfig
from faceprint.settings import Settings
from faceprint.testing import FakePipeline, fake_embedding_spec, fake_pipeline_factory, make_face_png

runner = CliRunner()
seen: list[tuple[bool, bool]] = []


def recording_factory(config: PipelineConfig) -> FakePipeline:
    """The fake pipeline, noting what the run's settings and the environment say when the engine builds it."""
    seen.append((current_settings().confidential, confidential_mode()))
    return fake_pipeline_factory(config)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Off to begin with; the variable the flag sets, the record factory and the filters restored after."""
    monkeypatch.setenv("FACEPRINT_CONFIDENTIAL", "0")  # restored (removed) after the test, whatever it sets
    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path / "galleries"))
    monkeypatch.setenv("FACEPRINT_MODEL_DIR", str(tmp_path / "models"))
    seen.clear()
    factory = logging.getLogRecordFactory()
    named = [logging.getLogger(), *(logging.getLogger(name) for name in logs.LOGGERS)]
    filters = {id(target): list(target.filters) for lg in named for target in (lg, *lg.handlers)}
    yield
    logging.setLogRecordFactory(factory)
    for lg in named:
        for target in (lg, *lg.handlers):
            target.filters[:] = filters.get(id(target), [])


def invoke(command: str, *args: str, settings: Settings | None = None) -> tuple[int, str]:
    context = CliContext(settings=settings or Settings(), pipeline_factory=recording_factory)
    result = runner.invoke(build_app(only=command), [command, *args], obj=context, env={"COLUMNS": "200"})
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture
def staff(tmp_path: Path) -> Path:
    path = tmp_path / "galleries" / "staff.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    SqliteGallery.create(path, contract_id=fake_embedding_spec().contract_id).close()
    return path


def _photo(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    path.write_bytes(make_face_png((200, 30, 30)))
    return path


# --- pairs, identify, gallery: the engine is built under confidential mode ------------------------------


def test_pairs_confidential_reaches_the_settings_and_writes_no_model_cache(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "a.png").write_bytes(make_face_png((200, 30, 30)))
    (dataset / "b.png").write_bytes(make_face_png((200, 30, 30)))
    (dataset / "pairs.csv").write_text("a.png,b.png\n")
    out = tmp_path / "r.tar.gz"
    code, output = invoke("pairs", str(dataset), "-o", str(out), "-q", "--workers", "1", "--executor", "local")
    assert code == 0, output
    assert seen and not any(flag for pair in seen for flag in pair)
    seen.clear()
    code, output = invoke(
        "pairs", str(dataset), "-o", str(out), "-q", "--workers", "1", "--executor", "local", "--confidential"
    )
    assert code == 0, output
    assert seen and all(settings and environment for settings, environment in seen)
    assert os.environ["FACEPRINT_CONFIDENTIAL"] == "1"  # what worker processes inherit
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*"))


def test_identify_confidential(tmp_path: Path, staff: Path) -> None:
    code, output = invoke(
        "identify", str(_photo(tmp_path)), "-g", "staff", "--json", "--workers", "1", "--confidential"
    )
    assert code == 0, output
    assert seen and all(settings and environment for settings, environment in seen)


def test_gallery_confidential_holds_for_its_subcommands(tmp_path: Path, staff: Path) -> None:
    photo = _photo(tmp_path)
    code, output = invoke("gallery", "--confidential", "enroll", "staff", "--person", "Red", str(photo), "-q")
    assert code == 0, output
    assert seen and all(settings and environment for settings, environment in seen)


def test_the_flag_keeps_the_other_settings(tmp_path: Path, staff: Path) -> None:
    # A context's own settings (here the gallery directory) survive the override: one setting changes.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    SqliteGallery.create(elsewhere / "crew.sqlite", contract_id=fake_embedding_spec().contract_id).close()
    settings = Settings(gallery_dir=elsewhere, environ={})
    code, output = invoke("gallery", "--confidential", "list", "--json", settings=settings)
    assert code == 0, output
    assert [row["name"] for row in json.loads(output)] == ["crew"]


# --- video: no thumbnail unless asked --------------------------------------------------------------------


def test_video_confidential_has_no_thumbnails_unless_asked(tmp_path: Path) -> None:
    pytest.importorskip("av", reason="PyAV is in the video extra")
    from faceprint.video.synthetic import SceneFace, render_scene, write_video

    clip = tmp_path / "clip.mp4"
    face = SceneFace(np.full((40, 40, 3), (200, 30, 30), np.uint8), 5, 40, (20, 20), (100, 60), 40)
    write_video(clip, render_scene((160, 120), 50, [face]), fps=Fraction(25))

    def thumbnails(*flags: str) -> list[object]:
        out = tmp_path / "out.json"
        code, output = invoke("video", str(clip), "-o", str(out), "-q", "--workers", "1", *flags)
        assert code == 0, output
        data = json.loads(out.read_text())["data"]
        assert data
        return [segment["thumbnail"] for segment in data]

    assert all(t is not None for t in thumbnails())
    assert all(t is None for t in thumbnails("--confidential"))
    assert all(t is not None for t in thumbnails("--confidential", "--thumbnails"))
    assert all(t is None for t in thumbnails("--no-thumbnails"))


# --- serve and worker: the processes they start inherit it, and logs are scrubbed -----------------------


def _scrubbing() -> bool:
    return any(isinstance(f, logs.ConfidentialLogFilter) for f in logging.getLogger("uvicorn.error").filters)


def test_worker_confidential(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from faceprint.jobs.worker import JobWorker
    from faceprint.server.settings import ServerSettings

    ran: list[tuple[bool, str | None, bool]] = []

    def run_forever(self: JobWorker, stop: object) -> None:
        ran.append((self._config.confidential, os.environ.get("FACEPRINT_CONFIDENTIAL"), _scrubbing()))

    monkeypatch.setattr(JobWorker, "run_forever", run_forever)
    # The queue itself is not what this tests: an empty stand-in (the worker only closes it here).
    monkeypatch.setattr(ServerSettings, "open_job_store", lambda self: io.BytesIO())
    monkeypatch.setenv("FACEPRINT_PIPELINE_FACTORY", "faceprint.testing:fake_pipeline_factory")
    code, output = invoke("worker", "--data-dir", str(tmp_path / "data"))
    assert code == 0, output
    assert ran == [(False, "0", False)]
    code, output = invoke("worker", "--data-dir", str(tmp_path / "data"), "--confidential")
    assert code == 0, output
    assert ran[1] == (True, "1", True)


def test_serve_confidential(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    from faceprint.server.settings import ServerSettings
    from faceprint.server.supervisor import WorkerSupervisor

    started: list[tuple[str | None, bool]] = []
    served: list[bool] = []

    def create_app(settings: ServerSettings) -> object:
        served.append(settings.confidential)
        return object()

    def start(self: WorkerSupervisor) -> None:
        started.append((os.environ.get("FACEPRINT_CONFIDENTIAL"), _scrubbing()))

    def run(self: uvicorn.Server, sockets: object = None) -> None:
        self.started = True

    monkeypatch.setattr(WorkerSupervisor, "start", start)
    monkeypatch.setattr(WorkerSupervisor, "stop", lambda self, **kwargs: None)
    monkeypatch.setattr(uvicorn.Server, "run", run)
    # The API itself is tested in tests/server; here a stand-in module, so its routes are not even built.
    monkeypatch.setitem(sys.modules, "faceprint.server.app", types.SimpleNamespace(create_app=create_app))
    monkeypatch.setenv("FACEPRINT_API_KEYS", "k")
    code, output = invoke("serve", "--data-dir", str(tmp_path / "data"), "--workers", "0", "--confidential")
    assert code == 0, output
    assert started == [("1", True)] and served == [True]
