"""Model specifications: everything about a model, stated, never guessed from tensor shapes.

Example:
    >>> spec = ModelSpec(
    ...     id="tiny", task="embedding", backend="onnx",
    ...     files=(ModelFile("tiny.onnx", sha256="0" * 64, size_bytes=10),),
    ...     input_size_wh=(112, 112), align_template="arcface-112", embedding_dim=8,
    ... )
    >>> spec.contract_id.startswith("tiny:")
    True
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from faceprint.errors import InvalidArgumentError

Task = Literal["embedding", "detection", "landmarks"]
Backend = Literal["dlib", "onnx"]
ColorOrder = Literal["rgb", "bgr"]

PREPROCESSING_VERSION = 1
"""Bumped whenever decode/align changes in a way that moves embeddings: it is part of every contract id."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file a model needs, pinned by its full sha256."""

    name: str
    sha256: str
    size_bytes: int

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise InvalidArgumentError(f"sha256 of {self.name} must be 64 lowercase hex digits")
        if self.size_bytes <= 0:
            raise InvalidArgumentError(f"size_bytes of {self.name} must be positive")


@dataclass(frozen=True, slots=True)
class QualityTerm:
    """One pair-quality feature of a quality-aware calibration (see docs/calibration.md).

    The feature (named as in :data:`faceprint.compare.PAIR_FEATURES`) is clamped to ``[low, high]``, the
    range it was fitted on, and enters centred on ``reference``: it adds ``slope * (x - reference)`` to the
    similarity coefficient and ``intercept * (x - reference)`` to the intercept.
    """

    feature: str
    reference: float
    low: float
    high: float
    slope: float
    intercept: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "reference": self.reference,
            "low": self.low,
            "high": self.high,
            "slope": self.slope,
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityTerm:
        return cls(
            feature=str(data["feature"]),
            reference=float(data["reference"]),
            low=float(data["low"]),
            high=float(data["high"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
        )


@dataclass(frozen=True, slots=True)
class QualityModel:
    """The quality part of a quality-aware calibration: the terms and the face quality it was fitted on.

    ``face_ranges`` maps a :class:`~faceprint.types.FaceQuality` measure (``interocular_px``,
    ``abs_yaw_deg``, ``blur_laplacian_var``, ...) to the range of the faces fitted; ``stages`` lists the
    detector stages seen in fitting. A face outside them still gets a probability, but flagged.
    ``far_*`` describe where impostor similarities lie for a pair of given quality (location and scale
    linear in the clamped features): the FAR thresholds per pair.
    """

    terms: tuple[QualityTerm, ...]
    face_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    far_location: tuple[float, ...] = ()
    """Impostor similarity mean: a constant, then one coefficient per term on its clamped feature."""
    far_scale: tuple[float, ...] = ()
    """Impostor similarity mean absolute deviation, same layout as ``far_location``."""
    far_quantiles: dict[str, float] = field(default_factory=dict)
    """Per FAR key (``"1e-3"``): the standardised impostor residual that ``far`` of impostors exceed."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": [term.to_dict() for term in self.terms],
            "face_ranges": {name: [low, high] for name, (low, high) in sorted(self.face_ranges.items())},
            "stages": list(self.stages),
            "far_location": list(self.far_location),
            "far_scale": list(self.far_scale),
            "far_quantiles": dict(sorted(self.far_quantiles.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityModel:
        ranges = {str(name): (float(pair[0]), float(pair[1])) for name, pair in dict(data["face_ranges"]).items()}
        return cls(
            terms=tuple(QualityTerm.from_dict(dict(term)) for term in data["terms"]),
            face_ranges=ranges,
            stages=tuple(str(stage) for stage in data.get("stages", ())),
            far_location=tuple(float(v) for v in data.get("far_location", ())),
            far_scale=tuple(float(v) for v in data.get("far_scale", ())),
            far_quantiles={str(k): float(v) for k, v in dict(data.get("far_quantiles", {})).items()},
        )


@dataclass(frozen=True, slots=True)
class Calibration:
    """A fitted map from similarity to P(same person): ``p = 1 / (1 + exp(-(slope * s + intercept)))``.

    With ``method="quality"`` the slope and intercept are those of a pair of faces at the reference
    quality, and ``quality`` moves both with the pair's face quality (``faceprint.compare``); without
    known face quality the reference sigmoid applies. ``provenance`` records where the numbers come from
    (data set, pair counts, date, method).
    """

    slope: float
    intercept: float
    method: Literal["platt", "quality"] = "platt"
    provenance: dict[str, Any] = field(default_factory=dict)
    quality: QualityModel | None = None

    def __post_init__(self) -> None:
        if (self.method == "quality") != (self.quality is not None):
            raise InvalidArgumentError("a 'quality' calibration needs a quality model, and only it has one")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "slope": self.slope,
            "intercept": self.intercept,
            "provenance": dict(self.provenance),
        }
        if self.quality is not None:
            data["quality"] = self.quality.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        method = data.get("method", "platt")
        if method not in ("platt", "quality"):
            raise InvalidArgumentError(f"unknown calibration method {method!r}")
        quality = QualityModel.from_dict(dict(data["quality"])) if method == "quality" else None
        return cls(
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            method="quality" if method == "quality" else "platt",
            provenance=dict(data.get("provenance", {})),
            quality=quality,
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything about one model. Embedding models also fix the embedding contract."""

    id: str
    task: Task
    backend: Backend
    files: tuple[ModelFile, ...]
    input_size_wh: tuple[int, int] | None = None
    align_template: str | None = None
    color_order: ColorOrder = "rgb"
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    input_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Network input is ``(pixel - input_mean) / input_std`` per channel, pixel in 0-255."""
    embedding_dim: int | None = None
    metric: Literal["cosine"] = "cosine"
    default_threshold: float | None = None
    """Operating point as a minimum cosine similarity."""
    far_thresholds: dict[str, float] = field(default_factory=dict)
    """Minimum similarity for a target false-accept rate, keyed like ``"1e-3"``."""
    calibration: Calibration | None = None
    license: str = "unknown"
    source: str = ""
    description: str = ""
    input_name: str | None = None
    output_name: str | None = None

    def __post_init__(self) -> None:
        if self.task == "embedding":
            if self.embedding_dim is None or self.embedding_dim <= 0:
                raise InvalidArgumentError(f"embedding model {self.id} needs a positive embedding_dim")
            if self.input_size_wh is None or self.align_template is None:
                raise InvalidArgumentError(f"embedding model {self.id} needs input_size_wh and align_template")
        if not self.files and self.backend != "dlib":
            # Only dlib's HOG detector has no file: its weights are compiled into dlib.
            raise InvalidArgumentError(f"model {self.id} lists no files")

    @property
    def contract_id(self) -> str:
        """``<id>:<12 hex>``: a digest of all that fixes the embedding space.

        Backends are left out on purpose: the ONNX conversion of a dlib network computes the same
        function on the same weights, so its faceprints are comparable with dlib's. Computed once (it is
        read for every comparison of a batch job).
        """
        return _contract_id(
            self.id,
            tuple(sorted(f.sha256 for f in self.files)),
            self.input_size_wh,
            self.align_template,
            self.color_order,
            tuple(self.input_mean) if self.input_mean is not None else None,
            tuple(self.input_std) if self.input_std is not None else None,
            self.embedding_dim,
            self.metric,
        )


@functools.lru_cache(maxsize=256)
def _contract_id(
    model_id: str,
    file_digests: tuple[str, ...],
    input_size_wh: Any,
    align_template: str | None,
    color_order: str,
    input_mean: tuple[float, ...] | None,
    input_std: tuple[float, ...] | None,
    dim: int | None,
    metric: str,
) -> str:
    # A pure function of immutable values: a cache of results, not state (frozen slotted specs cannot
    # memoise on themselves).
    payload = {
        "id": model_id,
        "files": list(file_digests),
        "preprocessing": PREPROCESSING_VERSION,
        "input_size_wh": list(input_size_wh) if isinstance(input_size_wh, tuple) else input_size_wh,
        "align_template": align_template,
        "color_order": color_order,
        "input_mean": list(input_mean) if input_mean is not None else None,
        "input_std": list(input_std) if input_std is not None else None,
        "dim": dim,
        "metric": metric,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"{model_id}:{digest[:12]}"
