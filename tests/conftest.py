"""Shared fixtures: where the real data lives, and one real pipeline per test session."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (CI has it there), or ``FACEPRINT_TEST_DATA``."""
    override = os.environ.get("FACEPRINT_TEST_DATA")
    return Path(override) if override else (REPO_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "lfw-view1").is_dir():
        pytest.skip(
            f"real test data not found at {path} (set FACEPRINT_TEST_DATA or place shared/data beside the repo)"
        )
    return path


@pytest.fixture(scope="session")
def examples_dir(data_dir: Path) -> Path:
    return data_dir / "faces-small" / "face_recognition" / "examples"


@pytest.fixture(scope="session")
def real_pipeline():  # type: ignore[no-untyped-def]
    """The default pipeline with the real dlib weights (skips when they are not installed)."""
    from faceprint.errors import ModelError
    from faceprint.pipeline import load_pipeline

    try:
        return load_pipeline()
    except ModelError as err:
        pytest.skip(f"real model weights unavailable: {err}")


@pytest.fixture(scope="session")
def postgres_url():  # type: ignore[no-untyped-def]
    """A PostgreSQL 16 + pgvector server for this test session, as a ``postgresql://`` URL.

    ``FACEPRINT_TEST_DATABASE_URL`` points the tests at an external server instead; otherwise a throwaway
    ``pgserver`` (PostgreSQL bundled in a wheel, from the dev extra) starts in a temp dir and is deleted at
    the end.
    """
    external = os.environ.get("FACEPRINT_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI containers)
        try:
            import pgserver
        except ImportError:
            pytest.skip("pgserver is not installed (pip install -e '.[dev]')")
        # Not under pytest's basetemp: another pytest session resets its root to 0700, which locks out the
        # unprivileged user pgserver runs PostgreSQL as (when started by root).
        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="faceprint-pg-")), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
