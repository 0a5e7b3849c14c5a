from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faceprint.errors import ChecksumMismatchError, ModelNotFoundError
from faceprint.models.catalog import builtin_specs
from faceprint.models.spec import ModelFile, ModelSpec
from faceprint.models.store import ModelStore, dlib_models_dir


def _file(tmp_path: Path, content: bytes = b"weights") -> ModelFile:
    (tmp_path / "m.bin").write_bytes(content)
    return ModelFile("m.bin", sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content))


def test_locate_and_verify(tmp_path: Path) -> None:
    model_file = _file(tmp_path)
    assert ModelStore([tmp_path]).path_for(model_file) == tmp_path / "m.bin"


def test_missing_file_names_the_search_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        ModelStore([tmp_path]).path_for(ModelFile("absent.dat", sha256="0" * 64, size_bytes=1))
    assert str(tmp_path) in info.value.message


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    model_file = _file(tmp_path)
    (tmp_path / "m.bin").write_bytes(b"weightz")  # same size, other bytes
    with pytest.raises(ChecksumMismatchError) as info:
        ModelStore([tmp_path]).path_for(model_file)
    assert info.value.code == "checksum_mismatch"
    (tmp_path / "m.bin").write_bytes(b"short")
    with pytest.raises(ChecksumMismatchError):
        ModelStore([tmp_path]).path_for(model_file)


def test_digest_cache_follows_mtime(tmp_path: Path) -> None:
    model_file = _file(tmp_path)
    store = ModelStore([tmp_path])
    store.path_for(model_file)
    path = tmp_path / "m.bin"
    path.write_bytes(b"weightz")
    with pytest.raises(ChecksumMismatchError):
        store.path_for(model_file)


def test_contract_id_changes_with_what_fixes_the_space() -> None:
    spec = builtin_specs()["dlib-resnet-v1"]
    assert spec.contract_id.startswith("dlib-resnet-v1:")
    other = ModelSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "embedding_dim": 64})
    assert other.contract_id != spec.contract_id
    same_but_onnx = ModelSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "backend": "onnx"})
    assert same_but_onnx.contract_id == spec.contract_id


def test_68_point_model_is_flagged_non_commercial() -> None:
    assert "NON-COMMERCIAL" in builtin_specs()["dlib-landmarks-68"].license


@pytest.mark.integration
def test_installed_dlib_weights_verify() -> None:
    if dlib_models_dir() is None:
        pytest.skip("face-recognition-models is not installed")
    store = ModelStore()
    for spec in builtin_specs().values():
        for model_file in spec.files:
            assert store.path_for(model_file).is_file()
