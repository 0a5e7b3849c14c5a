"""The models faceprint knows: the built-in catalog plus ONNX embedding models the user registers.

A user model is described by a TOML file (``faceprint models add SPEC.toml``). Everything the pipeline
needs is stated there, never guessed from the graph: the file's full sha256 and size, the chip size and
alignment template, colour order, input scaling, embedding size and the operating threshold. For example,
a FaceTransformer "octuplet" model (112x112 RGB, raw 0-255 floats)::

    id = "facetransformer-octuplet-512"
    task = "embedding"
    backend = "onnx"
    input_size_wh = [112, 112]
    align_template = "arcface-112"
    color_order = "rgb"
    input_mean = [0.0, 0.0, 0.0]      # network input = (pixel - mean) / std, pixel in 0-255
    input_std = [1.0, 1.0, 1.0]       # an ArcFace-style model: mean 127.5, std 127.5 (or 128)
    embedding_dim = 512
    default_threshold = 0.35          # minimum cosine similarity for "same person"
    license = "MIT"
    source = "https://example.org/octuplet"     # optional, like description, input_name, output_name

    [file]
    name = "facetransformer_octuplet.onnx"
    sha256 = "<64 hex digits>"
    size_bytes = 367865321

    [far_thresholds]                  # optional: minimum similarity per false-accept rate
    "1e-3" = 0.42

    [calibration]                     # optional: Platt scaling; a provisional one is used otherwise
    slope = 12.0
    intercept = -4.5

``input_mean``/``input_std`` also take one number for all three channels. Registered specs are kept as
JSON in ``<model dir>/specs/<id>.json`` (written atomically); the ONNX file is found by
:class:`~faceprint.models.store.ModelStore` like any model file, so it lives in the model directory
(``FACEPRINT_MODEL_DIR``), where ``--file`` copies it after checking its digest.

Example:
    >>> registry = ModelRegistry(Path("/tmp/models"))                     # doctest: +SKIP
    >>> registry.add(Path("octuplet.toml"), file=Path("octuplet.onnx"))   # doctest: +SKIP
    >>> registry.get("facetransformer-octuplet-512").embedding_dim        # doctest: +SKIP
    512
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.align import TEMPLATES
from faceprint.errors import ChecksumMismatchError, ModelError, ModelNotFoundError, UsageError
from faceprint.io.atomic import open_atomic, write_atomic
from faceprint.models.catalog import builtin_specs
from faceprint.models.spec import Calibration, ModelFile, ModelSpec
from faceprint.models.store import ModelStore, default_model_dir, sha256_file

SPECS_DIRNAME = "specs"
STORED_FORMAT = "faceprint-model-spec/1"
PROVISIONAL_SLOPE = 40.0
"""Slope of the provisional calibration of a model registered without one: monotone, centred on the
threshold (P = 0.5 there), like the built-in dlib model's until a fitted one replaces it."""

_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_REQUIRED = (
    "id",
    "task",
    "backend",
    "file",
    "input_size_wh",
    "align_template",
    "input_mean",
    "input_std",
    "embedding_dim",
    "default_threshold",
    "license",
)
_OPTIONAL = (
    "color_order",
    "metric",
    "source",
    "description",
    "input_name",
    "output_name",
    "far_thresholds",
    "calibration",
)
_FILE_KEYS = ("name", "sha256", "size_bytes")
_COPY_CHUNK_BYTES = 1 << 20


# --- reading and writing one spec ------------------------------------------------------------------------


class _Fields:
    """Typed access to one spec's keys; every problem becomes a UsageError naming the key and the source."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def error(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.source}: {key}: {message}", details={"file": self.source, "field": key})

    def text(self, key: str, *, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (key in _REQUIRED and not value.strip()):
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, value: Any = None) -> int:
        value = self.data.get(key) if value is None else value
        # bool is an int subclass in Python; `true` is never a size.
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(key, f"must be a positive integer, got {value!r}")
        return value

    def number(self, key: str, value: Any = None) -> float:
        value = self.data.get(key) if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value!r}")
        return float(value)

    def triple(self, key: str) -> tuple[float, float, float]:
        value = self.data.get(key)
        values = [value] * 3 if isinstance(value, int | float) and not isinstance(value, bool) else value
        if not isinstance(values, list) or len(values) != 3:
            raise self.error(key, f"must be one number or a list of 3 (R, G, B), got {value!r}")
        r, g, b = (self.number(key, v) for v in values)
        return (r, g, b)


def spec_from_mapping(data: Mapping[str, Any], *, source: str = "spec") -> ModelSpec:
    """A validated user :class:`ModelSpec` from the TOML keys documented in this module.

    Args:
        data: the parsed TOML (or the stored JSON) table.
        source: where it comes from, for error messages (a file path).

    Raises:
        UsageError: a key is missing, unknown, of the wrong type or inconsistent with another.

    Example:
        >>> spec = spec_from_mapping(tomllib.loads(Path("octuplet.toml").read_text()))  # doctest: +SKIP
    """
    fields = _Fields(data, source)
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise fields.error(
            unknown[0], f"unknown key (known: {', '.join(sorted((*_REQUIRED, *_OPTIONAL)))}); is it misspelt?"
        )
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise fields.error(missing[0], "missing; a model spec must state " + ", ".join(_REQUIRED))

    model_id = fields.text("id")
    if not _ID_PATTERN.fullmatch(model_id):
        raise fields.error("id", f"{model_id!r} must be 1-64 of a-z 0-9 . _ - starting with a letter or digit")
    if fields.text("task") != "embedding":
        raise fields.error("task", f"only embedding models can be registered, got {data['task']!r}")
    if fields.text("backend") != "onnx":
        raise fields.error("backend", f"only ONNX models can be registered, got {data['backend']!r}")

    model_file = _model_file(fields)
    size = data["input_size_wh"]
    if not isinstance(size, list) or len(size) != 2:
        raise fields.error("input_size_wh", f"must be [width, height], got {size!r}")
    input_size_wh = (fields.integer("input_size_wh", size[0]), fields.integer("input_size_wh", size[1]))
    template = fields.text("align_template")
    if template not in TEMPLATES:
        raise fields.error("align_template", f"unknown template {template!r}; known: {', '.join(sorted(TEMPLATES))}")
    if TEMPLATES[template].size_wh != input_size_wh:
        chip_wh = list(TEMPLATES[template].size_wh)
        raise fields.error("input_size_wh", f"{list(input_size_wh)} differs from the {template} chip size {chip_wh}")
    color_order = fields.text("color_order", default="rgb")
    if color_order not in ("rgb", "bgr"):
        raise fields.error("color_order", f"must be 'rgb' or 'bgr', got {color_order!r}")
    if fields.text("metric", default="cosine") != "cosine":
        raise fields.error("metric", "only 'cosine' is supported")
    input_mean, input_std = fields.triple("input_mean"), fields.triple("input_std")
    if any(v <= 0 for v in input_std):
        raise fields.error("input_std", f"must be positive, got {list(input_std)}")
    threshold = fields.number("default_threshold")
    if not -1.0 <= threshold <= 1.0:
        raise fields.error("default_threshold", f"is a minimum cosine similarity, so within [-1, 1]; got {threshold}")

    try:
        return ModelSpec(
            id=model_id,
            task="embedding",
            backend="onnx",
            files=(model_file,),
            input_size_wh=input_size_wh,
            align_template=template,
            color_order="bgr" if color_order == "bgr" else "rgb",
            input_mean=input_mean,
            input_std=input_std,
            embedding_dim=fields.integer("embedding_dim"),
            default_threshold=threshold,
            far_thresholds=_far_thresholds(fields),
            calibration=_calibration(fields, threshold),
            license=fields.text("license"),
            source=fields.optional_text("source") or "",
            description=fields.optional_text("description") or "",
            input_name=fields.optional_text("input_name"),
            output_name=fields.optional_text("output_name"),
        )
    except ValueError as err:  # ModelSpec's own checks; the ones above should have caught everything
        raise UsageError(f"{source}: {err}", details={"file": source}) from err


def _model_file(fields: _Fields) -> ModelFile:
    table = fields.data["file"]
    if not isinstance(table, Mapping):
        raise fields.error("file", "must be a table with name, sha256 and size_bytes")
    unknown = sorted(set(table) - set(_FILE_KEYS))
    if unknown:
        raise fields.error(f"file.{unknown[0]}", f"unknown key (known: {', '.join(_FILE_KEYS)})")
    name = table.get("name")
    if not isinstance(name, str) or Path(name).name != name or name.startswith(".") or "\\" in name:
        raise fields.error("file.name", f"must be a plain file name (no folders), got {name!r}")
    if not name.endswith(".onnx"):
        raise fields.error("file.name", f"must name an .onnx file, got {name!r}")
    sha256 = table.get("sha256")
    if not isinstance(sha256, str) or not _SHA256_PATTERN.fullmatch(sha256.lower()):
        raise fields.error("file.sha256", f"must be the full sha256, 64 hex digits, got {sha256!r}")
    if "size_bytes" not in table:
        raise fields.error("file.size_bytes", "missing; state the file size in bytes")
    size_bytes = fields.integer("file.size_bytes", table["size_bytes"])
    return ModelFile(name=name, sha256=sha256.lower(), size_bytes=size_bytes)


def _far_thresholds(fields: _Fields) -> dict[str, float]:
    table = fields.data.get("far_thresholds", {})
    if not isinstance(table, Mapping):
        raise fields.error("far_thresholds", 'must be a table like {"1e-3" = 0.42}')
    thresholds: dict[str, float] = {}
    for key, value in table.items():
        try:
            rate = float(key)
        except ValueError:
            rate = -1.0
        if not 0.0 < rate < 1.0:
            raise fields.error("far_thresholds", f"key {key!r} is not a false-accept rate like '1e-3'")
        thresholds[str(key)] = fields.number("far_thresholds", value)
    return thresholds


def _calibration(fields: _Fields, threshold: float) -> Calibration:
    table = fields.data.get("calibration")
    if table is None:
        return provisional_calibration(threshold)
    if not isinstance(table, Mapping):
        raise fields.error("calibration", "must be a table with slope and intercept")
    unknown = sorted(set(table) - {"method", "slope", "intercept", "provenance"})
    if unknown:
        raise fields.error(f"calibration.{unknown[0]}", "unknown key (known: slope, intercept, provenance)")
    if table.get("method", "platt") != "platt":
        raise fields.error("calibration.method", "only 'platt' is supported")
    provenance = table.get("provenance", {})
    if not isinstance(provenance, Mapping):
        raise fields.error("calibration.provenance", "must be a table")
    if "slope" not in table or "intercept" not in table:
        raise fields.error("calibration", "needs both slope and intercept")
    slope = fields.number("calibration.slope", table["slope"])
    intercept = fields.number("calibration.intercept", table["intercept"])
    if slope <= 0:
        raise fields.error("calibration.slope", "must be positive: more similar must mean more likely the same")
    return Calibration(slope=slope, intercept=intercept, provenance=dict(provenance))


def provisional_calibration(threshold: float) -> Calibration:
    """A monotone placeholder with P(same) = 0.5 at ``threshold``, until the user fits one."""
    return Calibration(
        slope=PROVISIONAL_SLOPE,
        intercept=-PROVISIONAL_SLOPE * threshold,
        provenance={"method": "provisional", "note": "not fitted: centred on the default threshold"},
    )


def _is_provisional(calibration: Calibration | None) -> bool:
    return calibration is None or calibration.provenance.get("method") == "provisional"


def spec_to_mapping(spec: ModelSpec) -> dict[str, Any]:
    """The spec as the keys of a spec TOML (what :func:`spec_from_mapping` reads back to an equal spec)."""
    if len(spec.files) != 1:
        raise UsageError(f"{spec.id}: user models have exactly one file")
    model_file = spec.files[0]
    data: dict[str, Any] = {
        "id": spec.id,
        "task": spec.task,
        "backend": spec.backend,
        "file": {"name": model_file.name, "sha256": model_file.sha256, "size_bytes": model_file.size_bytes},
        "input_size_wh": list(spec.input_size_wh or ()),
        "align_template": spec.align_template,
        "color_order": spec.color_order,
        "input_mean": list(spec.input_mean),
        "input_std": list(spec.input_std),
        "embedding_dim": spec.embedding_dim,
        "metric": spec.metric,
        "default_threshold": spec.default_threshold,
        "license": spec.license,
    }
    if spec.far_thresholds:
        data["far_thresholds"] = dict(spec.far_thresholds)
    if spec.calibration is not None and not _is_provisional(spec.calibration):
        data["calibration"] = spec.calibration.to_dict()
    for key in ("source", "description", "input_name", "output_name"):
        value = getattr(spec, key)
        if value:
            data[key] = value
    return data


def load_spec_toml(path: Path) -> ModelSpec:
    """Read and validate one spec TOML file.

    Raises:
        UsageError: the file is missing, not TOML, or not a valid spec.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise UsageError(f"model spec {path} does not exist", details={"file": str(path)}) from err
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read model spec {path}: {err}", details={"file": str(path)}) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML: {err}", details={"file": str(path)}) from err
    return spec_from_mapping(data, source=str(path))


# --- the registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """What :meth:`ModelRegistry.add` did: the spec, where it is stored, and the verified model file.

    ``model_path`` is None when the ONNX file is not in the model directory yet (the spec is registered
    anyway; put the file at ``install_path`` before using the model). ``copied``: ``--file`` was copied
    there; ``unchanged``: the same spec was already registered.
    """

    spec: ModelSpec
    spec_path: Path
    model_path: Path | None
    install_path: Path
    copied: bool
    unchanged: bool


class ModelRegistry:
    """Built-in specs plus the user's registered ONNX embedding models.

    Args:
        model_dir: the user's model directory; ``default_model_dir()`` (``FACEPRINT_MODEL_DIR``) when None.
        store: finds and verifies model files; a store searching ``model_dir`` first when None.

    Example:
        >>> registry = ModelRegistry()                                    # doctest: +SKIP
        >>> sorted(registry.specs())                                      # doctest: +SKIP
        ['dlib-hog', 'dlib-landmarks-5', ..., 'facetransformer-octuplet-512']
    """

    def __init__(self, model_dir: Path | None = None, *, store: ModelStore | None = None) -> None:
        self.model_dir = model_dir if model_dir is not None else default_model_dir()
        self.store = store if store is not None else ModelStore([self.model_dir])

    @property
    def specs_dir(self) -> Path:
        return self.model_dir / SPECS_DIRNAME

    def spec_path(self, model_id: str) -> Path:
        if not _ID_PATTERN.fullmatch(model_id):
            raise UsageError(f"{model_id!r} is not a model id")
        return self.specs_dir / f"{model_id}.json"

    def user_ids(self) -> list[str]:
        """Ids of registered user models, sorted (from the file names; nothing is parsed)."""
        if not self.specs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.specs_dir.glob("*.json") if _ID_PATTERN.fullmatch(p.stem))

    def user_specs(self) -> dict[str, ModelSpec]:
        """Every registered user spec, by id.

        Raises:
            ModelError: a stored spec is corrupt.
        """
        return {model_id: self._load_stored(model_id) for model_id in self.user_ids()}

    def specs(self) -> dict[str, ModelSpec]:
        """Built-in and user specs, by id (built-ins first)."""
        return {**builtin_specs(), **self.user_specs()}

    def get(self, model_id: str) -> ModelSpec:
        """One spec by id; only that user spec is read, so a corrupt other one does not get in the way.

        Raises:
            UsageError: no such model (the message lists the embedding models there are).
            ModelError: the stored spec is corrupt.
        """
        builtins = builtin_specs()
        if model_id in builtins:
            return builtins[model_id]
        if _ID_PATTERN.fullmatch(model_id) and self.spec_path(model_id).is_file():
            return self._load_stored(model_id)
        known = sorted([s.id for s in builtins.values() if s.task == "embedding"] + self.user_ids())
        raise UsageError(
            f"unknown model {model_id!r}; known embedding models: {', '.join(known)} "
            "(register an ONNX model with `faceprint models add SPEC.toml`)",
            details={"model": model_id, "known": known},
        )

    def is_user_model(self, model_id: str) -> bool:
        return model_id not in builtin_specs() and model_id in self.user_ids()

    def _load_stored(self, model_id: str) -> ModelSpec:
        path = self.spec_path(model_id)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(
                f"registered model spec {path} cannot be read: {err}", details={"file": str(path)}
            ) from err
        if (
            not isinstance(stored, dict)
            or stored.get("format") != STORED_FORMAT
            or not isinstance(stored.get("spec"), dict)
        ):
            raise ModelError(f"{path} is not a faceprint model spec ({STORED_FORMAT})", details={"file": str(path)})
        try:
            spec = spec_from_mapping(stored["spec"], source=str(path))
        except UsageError as err:
            raise ModelError(f"registered model spec is invalid: {err.message}", details=err.details) from err
        if spec.id != model_id:
            raise ModelError(f"{path} holds model {spec.id!r}, not {model_id!r}", details={"file": str(path)})
        return spec

    def register(self, spec: ModelSpec, *, replace: bool = False) -> tuple[Path, bool]:
        """Store ``spec`` (atomically). Returns its path and whether an identical spec was already there.

        Raises:
            UsageError: the id is a built-in one, another model of that id is registered (without
                ``replace``), or another registered model pins a different file of the same name.
        """
        if spec.id in builtin_specs():
            raise UsageError(f"{spec.id!r} is a built-in model id; choose another id")
        data = spec_to_mapping(spec)
        spec_from_mapping(data, source=spec.id)  # what is stored must read back
        path = self.spec_path(spec.id)
        if path.is_file():
            existing = self._load_stored(spec.id)
            if existing == spec:
                return path, True
            if not replace:
                raise UsageError(
                    f"model {spec.id!r} is already registered with a different spec; faceprints of the old "
                    f"one ({existing.contract_id}) would not compare with the new one ({spec.contract_id}). "
                    "Choose another id, or replace it on purpose",
                    details={"model": spec.id, "old_contract": existing.contract_id, "new_contract": spec.contract_id},
                )
        model_file = spec.files[0]
        for other_id in self.user_ids():
            if other_id == spec.id:
                continue
            other_file = self._load_stored(other_id).files[0]
            if other_file.name == model_file.name and other_file.sha256 != model_file.sha256:
                raise UsageError(
                    f"model {other_id!r} already uses a different {model_file.name}; rename the file",
                    details={"model": other_id, "file": model_file.name},
                )
        payload = {"format": STORED_FORMAT, "spec": data}
        self.specs_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
        return path, False

    def add(self, spec_path: Path, *, file: Path | None = None, replace: bool = False) -> RegisteredModel:
        """Register the model a spec TOML describes (``faceprint models add SPEC.toml [--file F]``).

        With ``file``, its size and sha256 must match the spec; it is then copied (atomically) into the
        model directory under the spec's file name. Without, a file already in the model directory is
        verified; if there is none yet the spec is registered and ``model_path`` is None.

        Raises:
            UsageError: the spec is invalid or clashes with a registered one, or ``file`` does not exist.
            ChecksumMismatchError: the ONNX file's size or sha256 is not the one the spec pins (nothing is
                registered then).
        """
        spec = load_spec_toml(spec_path)
        model_file = spec.files[0]
        model_path: Path | None
        copied = False
        if file is not None:
            model_path, copied = self._install(file, model_file)
        else:
            try:
                model_path = self.store.path_for(model_file)
            except ModelNotFoundError:
                model_path = None
        stored_at, unchanged = self.register(spec, replace=replace)
        return RegisteredModel(
            spec=spec,
            spec_path=stored_at,
            model_path=model_path,
            install_path=self.model_dir / model_file.name,
            copied=copied,
            unchanged=unchanged,
        )

    def _install(self, source: Path, model_file: ModelFile) -> tuple[Path, bool]:
        if not source.is_file():
            raise UsageError(f"model file {source} does not exist", details={"file": str(source)})
        # Checked before copying: a wrong file must not land where the store would find it.
        self.store.verify(source, model_file)
        target = self.model_dir / model_file.name
        if (
            target.is_file()
            and target.stat().st_size == model_file.size_bytes
            and sha256_file(target) == model_file.sha256
        ):
            return target, False
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as reader, open_atomic(target) as writer:
            shutil.copyfileobj(reader, writer, _COPY_CHUNK_BYTES)
        # The copy is what will be used: verify it too (a full disk or a changing source shows here).
        actual = sha256_file(target)
        if actual != model_file.sha256:
            target.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"the copy of {source} at {target} has sha256 {actual}, expected {model_file.sha256}",
                details={"file": str(target), "expected": model_file.sha256, "actual": actual},
            )
        return target, True

    def remove(self, model_id: str) -> Path:
        """Forget a user model's spec (its ONNX file stays). Returns the removed spec's path.

        Raises:
            UsageError: built-in or unknown id.
        """
        if model_id in builtin_specs():
            raise UsageError(f"{model_id!r} is a built-in model and cannot be removed")
        path = self.spec_path(model_id)
        if not path.is_file():
            raise UsageError(f"no registered model {model_id!r}", details={"model": model_id})
        path.unlink()
        return path
