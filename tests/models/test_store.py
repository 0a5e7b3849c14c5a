from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from faceprint.errors import ChecksumMismatchError, ModelNotFoundError
from faceprint.models.catalog import builtin_specs
from faceprint.models.spec import ModelFile, ModelSpec
from faceprint.models.store import DIGESTS_FILE_NAME, DigestCache, ModelStore, dlib_models_dir


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


def test_digests_are_remembered_across_processes(tmp_path: Path) -> None:
    model_file = _file(tmp_path)
    first = ModelStore([tmp_path], digests=DigestCache(tmp_path / DIGESTS_FILE_NAME))
    first.path_for(model_file)
    first.path_for(model_file)
    assert first.digests.hashed_files == 1  # once per process
    # The next process (a new cache on the same file) verifies without reading the weights.
    later = DigestCache(tmp_path / DIGESTS_FILE_NAME)
    ModelStore([tmp_path], digests=later).path_for(model_file)
    assert later.hashed_files == 0
    document = json.loads((tmp_path / DIGESTS_FILE_NAME).read_text())
    (entry,) = document["files"].values()
    assert entry["sha256"] == model_file.sha256 and entry["size"] == model_file.size_bytes


def test_a_rewritten_file_is_hashed_again_even_with_its_old_mtime(tmp_path: Path) -> None:
    model_file = _file(tmp_path)
    path = tmp_path / "m.bin"
    ModelStore([tmp_path], digests=DigestCache(tmp_path / DIGESTS_FILE_NAME)).path_for(model_file)
    before = path.stat()
    path.write_bytes(b"weightz")  # same size, other bytes...
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the old mtime put back
    with pytest.raises(ChecksumMismatchError):
        ModelStore([tmp_path], digests=DigestCache(tmp_path / DIGESTS_FILE_NAME)).path_for(model_file)


@pytest.mark.parametrize("content", ["not json", '{"format": 99, "files": {}}', '{"format": 1, "files": {"x": 3}}'])
def test_a_damaged_digest_file_is_ignored(tmp_path: Path, content: str) -> None:
    model_file = _file(tmp_path)
    (tmp_path / DIGESTS_FILE_NAME).write_text(content)
    cache = DigestCache(tmp_path / DIGESTS_FILE_NAME)
    assert ModelStore([tmp_path], digests=cache).path_for(model_file) == tmp_path / "m.bin"
    assert cache.hashed_files == 1
    assert json.loads((tmp_path / DIGESTS_FILE_NAME).read_text())["format"] == 1  # rewritten whole


def test_an_unwritable_digest_file_keeps_digests_in_memory(tmp_path: Path) -> None:
    model_file = _file(tmp_path)
    # Root ignores permission bits: a path under a regular file cannot be written by anyone.
    cache = DigestCache(tmp_path / "m.bin" / DIGESTS_FILE_NAME)
    store = ModelStore([tmp_path], digests=cache)
    for _ in range(3):
        assert store.path_for(model_file) == tmp_path / "m.bin"
    assert cache.hashed_files == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


def test_the_default_store_keeps_digests_in_the_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_MODEL_DIR", str(tmp_path))
    assert ModelStore().digests.path == tmp_path / DIGESTS_FILE_NAME
    assert ModelStore([tmp_path]).digests.path is None  # explicit folders: nothing written behind the caller


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
