"""Frozen, slotted result types shared by every stage.

Boxes are ``bbox_xyxy`` in pixels of the decoded (EXIF-rotated) image: ``(left, top, right, bottom)``
with ``right``/``bottom`` exclusive. Landmarks are ``landmarks_xy``: ``(x, y)`` pixel pairs.

Example:
    >>> d = Detection(bbox_xyxy=(10.0, 20.0, 110.0, 120.0), score=1.2, detector="dlib-hog")
    >>> d.area
    10000.0
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceprint.errors import ContractMismatchError, FaceprintFormatError, InvalidArgumentError

RGBImage = npt.NDArray[np.uint8]
"""An ``(height, width, 3)`` uint8 RGB image, C-contiguous."""

Vector = npt.NDArray[np.float32]

FACEPRINT_JSON_FORMAT = "faceprint/1"
INT16_MAGIC = b"FPI1"
INT16_SCALE = 1.0 / 32767.0
"""int16 faceprints store the L2-normalised vector ``u`` as ``round(u / INT16_SCALE)``.

Every component of a unit vector lies in [-1, 1], so the fixed scale never clips; the cosine similarity
of two dequantised 128-d prints differs from the float32 one by about 1e-5 (measured in the tests).
"""


@dataclass(frozen=True, slots=True)
class Detection:
    """One face found in an image."""

    bbox_xyxy: tuple[float, float, float, float]
    score: float
    detector: str
    landmarks_xy: tuple[tuple[float, float], ...] | None = None
    flags: tuple[str, ...] = ()
    """Why this detection is special, e.g. ``("assumed_center_crop",)`` for the last-resort fallback."""

    def __post_init__(self) -> None:
        left, top, right, bottom = self.bbox_xyxy
        if not (right > left and bottom > top):
            raise InvalidArgumentError(f"bbox_xyxy must have positive size, got {self.bbox_xyxy}")

    @property
    def width(self) -> float:
        return self.bbox_xyxy[2] - self.bbox_xyxy[0]

    @property
    def height(self) -> float:
        return self.bbox_xyxy[3] - self.bbox_xyxy[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    def with_landmarks(self, landmarks_xy: tuple[tuple[float, float], ...]) -> Detection:
        return Detection(
            bbox_xyxy=self.bbox_xyxy,
            score=self.score,
            detector=self.detector,
            landmarks_xy=landmarks_xy,
            flags=self.flags,
        )

    def normalized_bbox(self, size_wh: tuple[int, int]) -> tuple[float, float, float, float]:
        """The box as fractions 0-1 of the image width and height (clipped)."""
        width, height = size_wh
        left, top, right, bottom = self.bbox_xyxy
        return (
            min(max(left / width, 0.0), 1.0),
            min(max(top / height, 0.0), 1.0),
            min(max(right / width, 0.0), 1.0),
            min(max(bottom / height, 0.0), 1.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "bbox_xyxy": [round(v, 2) for v in self.bbox_xyxy],
            "score": round(self.score, 4),
            "detector": self.detector,
            "landmarks_xy": (
                None if self.landmarks_xy is None else [[round(x, 2), round(y, 2)] for x, y in self.landmarks_xy]
            ),
            "flags": list(self.flags),
        }


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """How easy one face is to recognise, measured once by the engine (see :mod:`faceprint.quality`).

    Example:
        >>> q = FaceQuality(interocular_px=42.0, detector_score=1.1, detector_stage="hog@1",
        ...                 yaw_deg=5.0, pitch_deg=-2.0, blur_laplacian_var=310.0, exposure_mean=0.45,
        ...                 exposure_clipped_fraction=0.01)
        >>> FaceQuality.from_dict(q.to_dict()) == q
        True
    """

    interocular_px: float
    """Distance between the eye centres, in pixels of the decoded image."""
    detector_score: float
    """The detector's own score (HOG margin or MMOD confidence; 0 for an assumed crop)."""
    detector_stage: str
    """The cascade stage that found the face: ``hog@0``, ``hog@1``, ``hog@2``, ``mmod``, ``low_confidence``,
    ``assumed_crop``."""
    yaw_deg: float
    """Left-right head turn estimated from the 5 landmarks, degrees (0 frontal, about ±90 profile)."""
    pitch_deg: float
    """Up-down head tilt estimated from the 5 landmarks, degrees (0 level)."""
    blur_laplacian_var: float
    """Variance of the Laplacian of the grey chip (higher is sharper)."""
    exposure_mean: float
    """Mean luminance of the chip, 0-1."""
    exposure_clipped_fraction: float
    """Fraction of chip pixels at or near black or white (0-1)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "interocular_px": round(float(self.interocular_px), 3),
            "detector_score": round(float(self.detector_score), 4),
            "detector_stage": self.detector_stage,
            "yaw_deg": round(float(self.yaw_deg), 2),
            "pitch_deg": round(float(self.pitch_deg), 2),
            "blur_laplacian_var": round(float(self.blur_laplacian_var), 2),
            "exposure_mean": round(float(self.exposure_mean), 4),
            "exposure_clipped_fraction": round(float(self.exposure_clipped_fraction), 4),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaceQuality:
        try:
            return cls(
                interocular_px=float(data["interocular_px"]),
                detector_score=float(data["detector_score"]),
                detector_stage=str(data["detector_stage"]),
                yaw_deg=float(data["yaw_deg"]),
                pitch_deg=float(data["pitch_deg"]),
                blur_laplacian_var=float(data["blur_laplacian_var"]),
                exposure_mean=float(data["exposure_mean"]),
                exposure_clipped_fraction=float(data["exposure_clipped_fraction"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise FaceprintFormatError(f"malformed face quality: {err}") from err


@dataclass(frozen=True, slots=True, eq=False)
class Faceprint:
    """A face embedding and everything needed to compare it safely.

    ``contract_id`` names the embedding space (model weights, preprocessing, dimension, metric): only
    faceprints with the same contract are comparable.

    Example:
        >>> fp = Faceprint(np.ones(4, np.float32), model_id="m", contract_id="m:1", package_version="0")
        >>> Faceprint.from_json(fp.to_json()).same_as(fp)
        True
    """

    vector: Vector
    model_id: str
    contract_id: str
    package_version: str
    model_options: Mapping[str, Any] = field(default_factory=dict)
    quality: FaceQuality | None = None
    """The quality of the face it was made from, when the engine measured it (not part of equality)."""

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector)
        if vector.ndim != 1 or vector.size == 0:
            raise InvalidArgumentError(f"a faceprint vector must be 1-d and non-empty, got shape {vector.shape}")
        if vector.dtype != np.float32:
            vector = vector.astype(np.float32)
        if not np.all(np.isfinite(vector)):
            raise InvalidArgumentError("a faceprint vector must be finite")
        vector = np.ascontiguousarray(vector)
        vector.setflags(write=False)
        object.__setattr__(self, "vector", vector)
        object.__setattr__(self, "model_options", dict(self.model_options))

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    def unit(self) -> Vector:
        """The L2-normalised vector."""
        norm = float(np.linalg.norm(self.vector))
        if norm == 0.0:
            return self.vector.copy()
        return (self.vector / norm).astype(np.float32)

    def same_as(self, other: Faceprint) -> bool:
        """Exact equality of vector and metadata (``==`` is identity: arrays have no total order)."""
        return (
            self.model_id == other.model_id
            and self.contract_id == other.contract_id
            and self.package_version == other.package_version
            and dict(self.model_options) == dict(other.model_options)
            and np.array_equal(self.vector, other.vector)
        )

    def check_contract(self, other: Faceprint) -> None:
        """Refuse a faceprint of another embedding space: another contract, or (an edited file) another size."""
        if self.contract_id != other.contract_id:
            raise ContractMismatchError(
                f"cannot compare faceprints of different embedding contracts: "
                f"{self.contract_id!r} ({self.model_id}) vs {other.contract_id!r} ({other.model_id})",
                details={"a": self.contract_id, "b": other.contract_id},
            )
        if self.dim != other.dim:
            raise ContractMismatchError(
                f"cannot compare a {self.dim}-d faceprint with a {other.dim}-d one of the same contract "
                f"{self.contract_id!r}: one of them was altered",
                details={"a_dim": self.dim, "b_dim": other.dim},
            )

    # --- JSON -----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        # float32 -> Python float is exact and repr() round-trips, so the JSON form is lossless.
        return {
            "format": FACEPRINT_JSON_FORMAT,
            "model_id": self.model_id,
            "contract_id": self.contract_id,
            "package_version": self.package_version,
            "model_options": dict(self.model_options),
            "dim": self.dim,
            "vector": [float(v) for v in self.vector],
            **({"quality": self.quality.to_dict()} if self.quality is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faceprint:
        try:
            if data.get("format") != FACEPRINT_JSON_FORMAT:
                raise FaceprintFormatError(f"not a {FACEPRINT_JSON_FORMAT} faceprint: format={data.get('format')!r}")
            vector = np.asarray(data["vector"], dtype=np.float32)
            if vector.shape != (int(data["dim"]),):
                raise FaceprintFormatError(f"faceprint says dim={data['dim']} but holds {vector.size} values")
            return cls(
                vector=vector,
                model_id=str(data["model_id"]),
                contract_id=str(data["contract_id"]),
                package_version=str(data["package_version"]),
                model_options=dict(data.get("model_options", {})),
                quality=FaceQuality.from_dict(data["quality"]) if data.get("quality") is not None else None,
            )
        except FaceprintFormatError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise FaceprintFormatError(f"malformed faceprint: {err}") from err

    @classmethod
    def from_json(cls, text: str | bytes) -> Faceprint:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise FaceprintFormatError(f"faceprint is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise FaceprintFormatError("faceprint JSON must be an object")
        return cls.from_dict(data)

    # --- int16 ----------------------------------------------------------------------------------------

    def to_int16(self) -> bytes:
        """A compact binary form: ``FPI1``, header length (uint32 LE), JSON header, int16 LE values.

        The vector is L2-normalised and stored as ``round(u / INT16_SCALE)``; the norm is dropped (every
        comparison is cosine), so :meth:`from_int16` returns the unit vector.
        """
        values = np.clip(np.round(self.unit() / INT16_SCALE), -32767, 32767).astype("<i2")
        header = json.dumps(
            {
                "model_id": self.model_id,
                "contract_id": self.contract_id,
                "package_version": self.package_version,
                "model_options": dict(self.model_options),
                "dim": self.dim,
                "scale": INT16_SCALE,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return INT16_MAGIC + struct.pack("<I", len(header)) + header + values.tobytes()

    @classmethod
    def from_int16(cls, blob: bytes) -> Faceprint:
        if len(blob) < 8 or blob[:4] != INT16_MAGIC:
            raise FaceprintFormatError("not an int16 faceprint (bad magic)")
        (header_len,) = struct.unpack("<I", blob[4:8])
        try:
            header = json.loads(blob[8 : 8 + header_len])
            dim = int(header["dim"])
            scale = float(header["scale"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise FaceprintFormatError(f"malformed int16 faceprint header: {err}") from err
        payload = blob[8 + header_len :]
        if len(payload) != 2 * dim:
            raise FaceprintFormatError(f"int16 faceprint should hold {dim} values, holds {len(payload) // 2}")
        values = np.frombuffer(payload, dtype="<i2").astype(np.float32) * np.float32(scale)
        return cls(
            vector=values,
            model_id=str(header["model_id"]),
            contract_id=str(header["contract_id"]),
            package_version=str(header["package_version"]),
            model_options=dict(header.get("model_options", {})),
        )

    def to_base64_int16(self) -> str:
        return base64.b64encode(self.to_int16()).decode("ascii")


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """A detected face, its quality once measured and, once embedded, its faceprint."""

    detection: Detection
    faceprint: Faceprint | None = None
    quality: FaceQuality | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of comparing two faceprints."""

    similarity: float
    """Cosine similarity in [-1, 1]; higher means more alike."""
    distance: float
    """Euclidean distance between the unit vectors, ``sqrt(2 - 2 * similarity)``; lower means more alike."""
    probability: float
    """Calibrated P(same person) in [0, 1]."""
    is_match: bool
    """``similarity >= threshold`` at the model's operating threshold."""
    threshold: float
    """The minimum similarity this pair needed to match (quality-aware calibrations move it per pair)."""
    flags: tuple[str, ...] = ()
    """Why the probability deserves less trust, e.g. ``("low_quality",)`` (see :mod:`faceprint.compare`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": round(self.similarity, 6),
            "distance": round(self.distance, 6),
            "probability": round(self.probability, 6),
            "match": self.is_match,
            "threshold": self.threshold,
            "flags": list(self.flags),
        }
