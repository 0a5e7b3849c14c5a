"""ModelRegistry: user ONNX embedding models registered from spec TOML files, and `faceprint models add`.

Every test works in its own model directory (FACEPRINT_MODEL_DIR points into tmp_path). The ONNX files are
tiny linear graphs built here; the registry only hashes and copies them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from faceprint.cli.main import app
from faceprint.cli.models_cmd import models_add
from faceprint.errors import EXIT_MODEL, EXIT_USAGE, ChecksumMismatchError, ModelError, UsageError
from faceprint.models.catalog import DLIB_RESNET_ID, builtin_specs
from faceprint.models.registry import (
    ModelRegistry,
    load_spec_toml,
    provisional_calibration,
    spec_from_mapping,
    spec_to_mapping,
)
from faceprint.models.store import ModelStore
from faceprint.testing import tiny_embedder_onnx

MODEL_ID = "tiny-linear-512"


def tiny_onnx_bytes(seed: int = 0, dim: int = 512) -> bytes:
    return tiny_embedder_onnx(np.random.default_rng(seed).normal(0, 0.05, (588, dim)).astype(np.float32))


def spec_text(data: bytes, *, model_id: str = MODEL_ID, name: str = "tiny.onnx", extra: str = "") -> str:
    return f"""
id = "{model_id}"
task = "embedding"
backend = "onnx"
input_size_wh = [112, 112]
align_template = "arcface-112"
color_order = "rgb"
input_mean = 127.5
input_std = [128.0, 128.0, 128.0]
embedding_dim = 512
default_threshold = 0.3
license = "MIT (test fixture)"
description = "linear test model"
{extra}
[file]
name = "{name}"
sha256 = "{hashlib.sha256(data).hexdigest()}"
size_bytes = {len(data)}
"""


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    monkeypatch.setenv("FACEPRINT_MODEL_DIR", str(directory))
    return directory


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "downloads" / "tiny.onnx"
    path.parent.mkdir()
    path.write_bytes(tiny_onnx_bytes())
    return path


@pytest.fixture
def spec_file(tmp_path: Path, onnx_file: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(spec_text(onnx_file.read_bytes()))
    return path


# --- parsing and validation -----------------------------------------------------------------------------------


def test_spec_toml_is_read_into_a_full_spec(spec_file: Path, onnx_file: Path) -> None:
    spec = load_spec_toml(spec_file)
    assert spec.id == MODEL_ID and spec.task == "embedding" and spec.backend == "onnx"
    assert spec.files[0].name == "tiny.onnx"
    assert spec.files[0].sha256 == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert spec.files[0].size_bytes == onnx_file.stat().st_size
    assert spec.input_size_wh == (112, 112) and spec.align_template == "arcface-112"
    assert spec.input_mean == (127.5, 127.5, 127.5)  # one number means every channel
    assert spec.input_std == (128.0, 128.0, 128.0)
    assert spec.embedding_dim == 512 and spec.default_threshold == 0.3
    assert spec.license == "MIT (test fixture)" and spec.description == "linear test model"
    # No calibration given: a provisional, monotone one with P = 0.5 at the threshold.
    assert spec.calibration == provisional_calibration(0.3)
    assert spec.contract_id.startswith(f"{MODEL_ID}:")
    assert spec.contract_id != builtin_specs()[DLIB_RESNET_ID].contract_id


def test_octuplet_style_raw_pixels_and_bgr(onnx_file: Path, tmp_path: Path) -> None:
    text = spec_text(onnx_file.read_bytes()).replace("input_mean = 127.5", "input_mean = [0, 0, 0]")
    text = text.replace("input_std = [128.0, 128.0, 128.0]", "input_std = 1").replace('"rgb"', '"bgr"')
    path = tmp_path / "octuplet.toml"
    path.write_text(text)
    spec = load_spec_toml(path)
    assert spec.input_mean == (0.0, 0.0, 0.0) and spec.input_std == (1.0, 1.0, 1.0)
    assert spec.color_order == "bgr"
    # Scaling is part of the contract: the same file read differently is a different embedding space.
    assert spec.contract_id != load_spec_toml_from(spec_text(onnx_file.read_bytes()), tmp_path).contract_id


def load_spec_toml_from(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "other.toml"
    path.write_text(text)
    return load_spec_toml(path)


def test_optional_tables_calibration_and_far_thresholds(onnx_file: Path, tmp_path: Path) -> None:
    extra = """source = "https://example.org"
input_name = "x"
output_name = "y"
[far_thresholds]
"1e-3" = 0.45
[calibration]
slope = 12.5
intercept = -4.0
"""
    spec = load_spec_toml_from(spec_text(onnx_file.read_bytes(), extra=extra), tmp_path)
    assert spec.far_thresholds == {"1e-3": 0.45}
    assert (spec.calibration.slope, spec.calibration.intercept) == (12.5, -4.0)
    assert (spec.input_name, spec.output_name, spec.source) == ("x", "y", "https://example.org")
    assert spec_from_mapping(spec_to_mapping(spec)) == spec


GOOD = spec_text(b"x")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda t: t.replace(f'id = "{MODEL_ID}"', 'id = "Has Spaces"'), "id"),
        (lambda t: t.replace(f'id = "{MODEL_ID}"', f'id = "{DLIB_RESNET_ID}"'), "id"),  # refused on register
        (lambda t: t.replace(f'id = "{MODEL_ID}"\n', ""), "id"),
        (lambda t: t.replace('task = "embedding"', 'task = "detection"'), "task"),
        (lambda t: t.replace('backend = "onnx"', 'backend = "dlib"'), "backend"),
        (lambda t: t.replace("input_size_wh = [112, 112]", "input_size_wh = [150, 150]"), "input_size_wh"),
        (lambda t: t.replace("input_size_wh = [112, 112]", "input_size_wh = [112]"), "input_size_wh"),
        (lambda t: t.replace('"arcface-112"', '"arcface-128"'), "align_template"),
        (lambda t: t.replace('color_order = "rgb"', 'color_order = "rgba"'), "color_order"),
        (lambda t: t.replace("input_std = [128.0, 128.0, 128.0]", "input_std = [128.0, 0.0, 128.0]"), "input_std"),
        (lambda t: t.replace("input_mean = 127.5", "input_mean = [1, 2]"), "input_mean"),
        (lambda t: t.replace("input_mean = 127.5", 'input_mean = "127.5"'), "input_mean"),
        (lambda t: t.replace("embedding_dim = 512", "embedding_dim = 0"), "embedding_dim"),
        (lambda t: t.replace("embedding_dim = 512", "embedding_dim = true"), "embedding_dim"),
        (lambda t: t.replace("default_threshold = 0.3", "default_threshold = 3"), "default_threshold"),
        (lambda t: t.replace('license = "MIT (test fixture)"', 'license = ""'), "license"),
        (lambda t: t.replace("embedding_dim = 512", "embedding_dim = 512\ninput_stdd = 1"), "input_stdd"),
        (lambda t: t.replace("embedding_dim = 512", 'embedding_dim = 512\nmetric = "l2"'), "metric"),
        (lambda t: t.replace('name = "tiny.onnx"', 'name = "../tiny.onnx"'), "file.name"),
        (lambda t: t.replace('name = "tiny.onnx"', 'name = "tiny.bin"'), "file.name"),
        (lambda t: t.replace("sha256 = ", 'sha256 = "abc"\nx = '), "file.x"),
        (lambda t: t.replace('sha256 = "', 'sha256 = "zz'), "file.sha256"),
        (lambda t: t.replace("size_bytes = 1", "size_bytes = -1"), "file.size_bytes"),
        (lambda t: t + "[far_thresholds]\nlow = 0.5\n", "far_thresholds"),
        (lambda t: t + "[calibration]\nslope = -1.0\nintercept = 0.0\n", "calibration.slope"),
        (lambda t: t + "[calibration]\nslope = 1.0\n", "calibration"),
    ],
)
def test_invalid_specs_are_usage_errors_naming_the_field(
    change: Any, field: str, tmp_path: Path, model_dir: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(change(GOOD))
    with pytest.raises(UsageError) as caught:
        ModelRegistry().add(path)
    assert field in caught.value.message
    assert not (model_dir / "specs").exists()  # nothing registered


def test_spec_file_problems(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_spec_toml(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('id = "unterminated\n')
    with pytest.raises(UsageError, match="not valid TOML"):
        load_spec_toml(broken)


# --- registering --------------------------------------------------------------------------------------------------


def test_add_with_file_verifies_copies_and_stores_the_spec(spec_file: Path, onnx_file: Path, model_dir: Path) -> None:
    result = ModelRegistry().add(spec_file, file=onnx_file)
    assert result.copied and not result.unchanged
    assert result.model_path == model_dir / "tiny.onnx" == result.install_path
    assert (model_dir / "tiny.onnx").read_bytes() == onnx_file.read_bytes()
    assert result.spec_path == model_dir / "specs" / f"{MODEL_ID}.json"
    stored = json.loads(result.spec_path.read_text())
    assert stored["format"] == "faceprint-model-spec/1" and stored["spec"]["id"] == MODEL_ID
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in model_dir.iterdir()) == ["specs", "tiny.onnx"]
    assert sorted(p.name for p in (model_dir / "specs").iterdir()) == [f"{MODEL_ID}.json"]

    registry = ModelRegistry()  # a fresh registry reads it back from disk
    assert registry.get(MODEL_ID) == result.spec
    assert registry.is_user_model(MODEL_ID) and not registry.is_user_model(DLIB_RESNET_ID)
    specs = registry.specs()
    assert MODEL_ID in specs and DLIB_RESNET_ID in specs
    # The store finds and verifies the installed file like any model file.
    assert ModelStore().path_for(result.spec.files[0]) == model_dir / "tiny.onnx"


def test_add_is_idempotent_and_refuses_silent_replacement(
    spec_file: Path, onnx_file: Path, tmp_path: Path, model_dir: Path
) -> None:
    registry = ModelRegistry()
    first = registry.add(spec_file, file=onnx_file)
    again = registry.add(spec_file, file=onnx_file)
    assert again.unchanged and not again.copied and again.spec == first.spec

    changed = tmp_path / "changed.toml"
    changed.write_text(spec_file.read_text().replace("default_threshold = 0.3", "default_threshold = 0.4"))
    # The threshold is not part of the contract, but the spec still differs: say so, do not overwrite.
    with pytest.raises(UsageError, match="already registered"):
        registry.add(changed)
    replaced = registry.add(changed, replace=True)
    assert registry.get(MODEL_ID).default_threshold == 0.4 and not replaced.unchanged


def test_add_without_file_registers_and_verifies_a_file_already_there(
    spec_file: Path, onnx_file: Path, model_dir: Path
) -> None:
    registry = ModelRegistry()
    pending = registry.add(spec_file)
    assert pending.model_path is None and pending.install_path == model_dir / "tiny.onnx"
    assert registry.get(MODEL_ID).id == MODEL_ID

    (model_dir / "tiny.onnx").write_bytes(onnx_file.read_bytes())
    assert registry.add(spec_file).model_path == model_dir / "tiny.onnx"


@pytest.mark.parametrize("tamper", ["flip_a_byte", "append"])
def test_a_file_that_is_not_the_pinned_one_is_refused(
    tamper: str, spec_file: Path, onnx_file: Path, model_dir: Path
) -> None:
    data = bytearray(onnx_file.read_bytes())
    if tamper == "flip_a_byte":
        data[len(data) // 2] ^= 0xFF  # same size, different digest
    else:
        data += b"\x00"
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError) as caught:
        ModelRegistry().add(spec_file, file=onnx_file)
    assert caught.value.code == "checksum_mismatch"
    assert not (model_dir / "tiny.onnx").exists()  # the wrong file was not installed
    assert not (model_dir / "specs").exists()  # nor the spec registered

    # A wrong file already in the model directory is refused the same way.
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "tiny.onnx").write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError):
        ModelRegistry().add(spec_file)


def test_add_refuses_a_missing_file_argument(spec_file: Path, tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        ModelRegistry().add(spec_file, file=tmp_path / "absent.onnx")


def test_builtin_ids_and_file_name_clashes_are_refused(onnx_file: Path, tmp_path: Path, model_dir: Path) -> None:
    registry = ModelRegistry()
    builtin = tmp_path / "builtin.toml"
    builtin.write_text(spec_text(onnx_file.read_bytes(), model_id=DLIB_RESNET_ID))
    with pytest.raises(UsageError, match="built-in"):
        registry.add(builtin)

    first = tmp_path / "first.toml"
    first.write_text(spec_text(onnx_file.read_bytes(), model_id="first-model"))
    registry.add(first)
    other = tmp_path / "other.toml"
    other.write_text(spec_text(tiny_onnx_bytes(seed=1), model_id="second-model"))  # same name, other bytes
    with pytest.raises(UsageError, match=r"already uses a different tiny\.onnx"):
        registry.add(other)
    # Two ids may share one file when it is the same file.
    same = tmp_path / "same.toml"
    same.write_text(spec_text(onnx_file.read_bytes(), model_id="third-model"))
    assert registry.add(same).spec.files == registry.get("first-model").files


def test_unknown_ids_list_the_models_there_are(spec_file: Path, model_dir: Path) -> None:
    registry = ModelRegistry()
    registry.add(spec_file)
    with pytest.raises(UsageError) as caught:
        registry.get("no-such-model")
    assert DLIB_RESNET_ID in caught.value.message and MODEL_ID in caught.value.message
    assert "dlib-hog" not in caught.value.details["known"]  # only embedding models are offered


def test_a_corrupt_stored_spec_is_a_model_error_only_for_that_model(spec_file: Path, model_dir: Path) -> None:
    registry = ModelRegistry()
    registry.add(spec_file)
    (model_dir / "specs" / "broken-model.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read"):
        registry.get("broken-model")
    assert registry.get(MODEL_ID).id == MODEL_ID  # the other registration still works
    with pytest.raises(ModelError):
        registry.user_specs()
    (model_dir / "specs" / "broken-model.json").write_text(json.dumps({"format": "other", "spec": {}}))
    with pytest.raises(ModelError, match="not a faceprint model spec"):
        registry.get("broken-model")


def test_remove_forgets_the_spec_but_keeps_the_file(spec_file: Path, onnx_file: Path, model_dir: Path) -> None:
    registry = ModelRegistry()
    registry.add(spec_file, file=onnx_file)
    registry.remove(MODEL_ID)
    assert registry.user_ids() == [] and (model_dir / "tiny.onnx").is_file()
    with pytest.raises(UsageError):
        registry.remove(MODEL_ID)
    with pytest.raises(UsageError, match="built-in"):
        registry.remove(DLIB_RESNET_ID)


# --- the CLI command ------------------------------------------------------------------------------------------------


def test_models_add_function_and_command(spec_file: Path, onnx_file: Path, model_dir: Path) -> None:
    assert models_add(spec_file).model_path is None
    runner = CliRunner()
    result = runner.invoke(app, ["models", "add", str(spec_file), "--file", str(onnx_file), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["id"] == MODEL_ID and payload["copied"] is True
    assert payload["model_path"] == str(model_dir / "tiny.onnx")
    assert payload["contract_id"] == ModelRegistry().get(MODEL_ID).contract_id

    text = runner.invoke(app, ["models", "add", str(spec_file)])
    assert text.exit_code == 0 and "already registered" in text.output and "sha256 ok" in text.output


def test_models_add_command_exit_codes(spec_file: Path, onnx_file: Path, tmp_path: Path, model_dir: Path) -> None:
    runner = CliRunner()
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\x00")
    mismatch = runner.invoke(app, ["models", "add", str(spec_file), "--file", str(onnx_file)])
    assert mismatch.exit_code == EXIT_MODEL
    assert "checksum_mismatch" in mismatch.output
    missing = runner.invoke(app, ["models", "add", str(tmp_path / "absent.toml")])
    assert missing.exit_code == EXIT_USAGE
