"""A user-registered ONNX embedding model through the whole pipeline.

The model is a tiny linear graph built here (112x112x3 -> 8x8 average pooling -> 588 x 512 matrix), so
numpy computes the exact faceprint the pipeline must produce from the aligned ArcFace chip; registering it
goes through the TOML spec and the registry like `faceprint models add` does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from faceprint.errors import ChecksumMismatchError, ContractMismatchError, ModelNotFoundError, UsageError
from faceprint.models.catalog import DLIB_RESNET_ID, builtin_specs
from faceprint.models.registry import ModelRegistry
from faceprint.pipeline import Pipeline, PipelineConfig, load_pipeline
from faceprint.testing import tiny_embedder_onnx

MODEL_ID = "tiny-arcface-512"
DIM = 512
MEAN, STD = 127.5, 128.0


@pytest.fixture(scope="module")
def weights() -> npt.NDArray[np.float32]:
    return np.random.default_rng(7).normal(0, 0.05, (3 * 14 * 14, DIM)).astype(np.float32)


def write_model(path: Path, weights: npt.NDArray[np.float32]) -> Path:
    path.write_bytes(tiny_embedder_onnx(weights, name="tiny_arcface"))
    return path


def expected_vector(chip: npt.NDArray[np.uint8], weights: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """What the graph computes on a normalised RGB chip, in float64."""
    x = (chip.astype(np.float64) - MEAN) / STD
    pooled = x.reshape(14, 8, 14, 8, 3).mean(axis=(1, 3))  # (14, 14, 3)
    flat = pooled.transpose(2, 0, 1).reshape(-1)  # NCHW order, as Flatten sees it
    return np.asarray(flat @ weights.astype(np.float64), dtype=np.float64)


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: npt.NDArray[np.float32]) -> Path:
    """Registers the tiny model from a TOML spec with --file; returns the installed ONNX path."""
    monkeypatch.setenv("FACEPRINT_MODEL_DIR", str(tmp_path / "models"))
    onnx_path = write_model(tmp_path / "tiny_arcface.onnx", weights)
    data = onnx_path.read_bytes()
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(
        f"""id = "{MODEL_ID}"
task = "embedding"
backend = "onnx"
input_size_wh = [112, 112]
align_template = "arcface-112"
color_order = "rgb"
input_mean = {MEAN}
input_std = {STD}
embedding_dim = {DIM}
default_threshold = 0.5
license = "test fixture"

[file]
name = "tiny_arcface.onnx"
sha256 = "{hashlib.sha256(data).hexdigest()}"
size_bytes = {len(data)}
"""
    )
    result = ModelRegistry().add(spec_path, file=onnx_path)
    assert result.model_path is not None
    return result.model_path


def test_an_unknown_embedder_is_a_usage_error_before_anything_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEPRINT_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(UsageError, match="unknown model 'not-registered'"):
        load_pipeline(PipelineConfig(embedder="not-registered"))


def _user_pipeline(**changes: object) -> Pipeline:
    try:
        return load_pipeline(PipelineConfig(embedder=MODEL_ID, intra_op_threads=1, **changes))  # type: ignore[arg-type]
    except ModelNotFoundError as err:
        if str(err.details.get("file", "")).endswith(".dat"):
            pytest.skip(f"real dlib weights unavailable: {err}")
        raise


@pytest.mark.integration
def test_user_onnx_model_end_to_end(registered: Path, examples_dir: Path, weights: npt.NDArray[np.float32]) -> None:
    from faceprint.io.image import load_image

    pipeline = _user_pipeline()
    assert pipeline.spec.id == MODEL_ID and pipeline.embedder.backend_name == "onnx"
    assert pipeline.model_options["align_template"] == "arcface-112"
    image = load_image(examples_dir / "obama.jpg")
    faceprint, found = pipeline.embed_largest(image)
    assert found and faceprint is not None
    assert faceprint.dim == DIM
    assert faceprint.model_id == MODEL_ID
    assert faceprint.contract_id == pipeline.spec.contract_id
    assert faceprint.contract_id != builtin_specs()[DLIB_RESNET_ID].contract_id

    # The vector is the graph applied to the ArcFace-aligned 112 px chip (and its mirror, averaged).
    (face,) = pipeline.detect_faces(image, largest_only=True)
    chip = pipeline.extract_aligned_face(image, face)
    assert chip.shape == (112, 112, 3)
    expected = (expected_vector(chip, weights) + expected_vector(np.ascontiguousarray(chip[:, ::-1]), weights)) / 2
    np.testing.assert_allclose(faceprint.vector, expected, rtol=1e-4, atol=1e-4)

    same = pipeline.compare(faceprint, faceprint)
    assert same.similarity == pytest.approx(1.0) and same.is_match
    assert same.probability > 0.99  # the provisional calibration, centred on the 0.5 threshold

    dlib_pipeline = load_pipeline(PipelineConfig(backend="dlib"))
    dlib_print, _ = dlib_pipeline.embed_largest(image)
    assert dlib_print is not None and dlib_print.dim == 128
    with pytest.raises(ContractMismatchError) as caught:
        pipeline.compare(faceprint, dlib_print)
    assert caught.value.code == "contract_mismatch"
    with pytest.raises(ContractMismatchError):
        dlib_pipeline.compare(dlib_print, faceprint)
    with pytest.raises(ContractMismatchError):
        pipeline.compare(dlib_print, faceprint)


@pytest.mark.integration
def test_user_onnx_model_refuses_the_dlib_backend(registered: Path) -> None:
    with pytest.raises(UsageError, match="cannot run on the dlib backend"):
        _user_pipeline(backend="dlib")


@pytest.mark.integration
def test_a_model_file_changed_after_registration_is_refused_at_load(registered: Path) -> None:
    data = bytearray(registered.read_bytes())
    data[-1] ^= 0xFF
    registered.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError):
        _user_pipeline()


@pytest.mark.integration
def test_a_registered_model_without_its_file_is_model_not_found(registered: Path) -> None:
    registered.unlink()
    with pytest.raises(ModelNotFoundError, match=r"tiny_arcface\.onnx"):
        _user_pipeline()
