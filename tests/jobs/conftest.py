"""Fixtures for job tests: a data dir with uploads, a fake-pipeline engine, and a gallery."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceprint.analyze import AnalyzeItem, Analyzer
from faceprint.enroll import enroll, plan_for_person
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.uploads import UploadRecord, UploadStore
from faceprint.testing import fake_pipeline_factory, make_face_png

RED = (200, 20, 20)
BLUE = (20, 20, 200)
GREEN = (20, 200, 20)


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data")


@pytest.fixture
def analyzer() -> Iterator[Analyzer]:
    with Analyzer(workers=1, executor="local", pipeline_factory=fake_pipeline_factory) as engine:
        yield engine


@pytest.fixture
def job_store(layout: DataLayout) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(layout.jobs_db) as store:
        yield store


def upload(layout: DataLayout, data: bytes, name: str = "photo.png") -> UploadRecord:
    return UploadStore(layout.uploads_dir).save(io.BytesIO(data), filename=name, max_bytes=10_000_000)


@pytest.fixture
def staff(layout: DataLayout, analyzer: Analyzer) -> str:
    """A gallery ``staff`` with Ruby (a red face) enrolled."""
    layout.gallery_dir.mkdir(parents=True, exist_ok=True)
    with SqliteGallery.create(layout.gallery_dir / "staff.sqlite", name="staff") as gallery:
        enroll(gallery, analyzer, plan_for_person("Ruby", [AnalyzeItem("ruby.png", make_face_png(RED))]))
    return "staff"
