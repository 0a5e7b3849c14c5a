"""Built-in model specs, pinned by sha256.

The dlib weights come from the ``face-recognition-models`` distribution on PyPI (dlib's own models,
redistributed by Adam Geitgey under CC0 / Boost licences; the 68-point predictor is trained on iBUG 300-W,
whose licence excludes commercial use, so it is never a default).

Example:
    >>> builtin_specs()["dlib-resnet-v1"].embedding_dim
    128
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

from faceprint.errors import ModelError
from faceprint.models.spec import Calibration, ModelFile, ModelSpec

DLIB_RESNET_ID = "dlib-resnet-v1"
DLIB_HOG_ID = "dlib-hog"
DLIB_MMOD_ID = "dlib-mmod"
DLIB_5_POINT_ID = "dlib-landmarks-5"
DLIB_68_POINT_ID = "dlib-landmarks-68"

# Used only if the packaged calibration file is missing (a broken install): a monotone placeholder.
_PROVISIONAL_CALIBRATION = Calibration(
    slope=40.0,
    intercept=-40.0 * 0.91,
    provenance={"method": "provisional", "note": "placeholder: packaged calibration file missing"},
)


def with_packaged_calibration(spec: ModelSpec) -> ModelSpec:
    """``spec`` with the calibration, threshold and FAR thresholds fitted for it, if the package has them.

    They live in ``faceprint/models/calibrations/<id>.json``, written by ``faceprint calibrate`` on LFW View 1
    DevTrain (docs/calibration.md), with their provenance; data, not code, so a refit is a file change.
    """
    resource = resources.files("faceprint.models").joinpath("calibrations", f"{spec.id}.json")
    if not resource.is_file():
        return spec
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
        contract_id = str(data["contract_id"])
        calibration = Calibration.from_dict(data["calibration"])
        threshold = float(data["threshold"])
        far_thresholds = {str(key): float(value) for key, value in data.get("far_thresholds", {}).items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ModelError(f"packaged calibration for {spec.id} is unreadable: {err}") from err
    if contract_id != spec.contract_id:
        raise ModelError(
            f"packaged calibration for {spec.id} was fitted for {contract_id}, not {spec.contract_id}: refit it"
        )
    return dataclasses.replace(
        spec, calibration=calibration, default_threshold=threshold, far_thresholds=far_thresholds
    )


def builtin_specs() -> dict[str, ModelSpec]:
    """All models faceprint knows without any user registration, by id."""
    specs = [
        ModelSpec(
            id=DLIB_RESNET_ID,
            task="embedding",
            backend="dlib",
            files=(
                ModelFile(
                    "dlib_face_recognition_resnet_model_v1.dat",
                    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                    size_bytes=22466066,
                ),
            ),
            input_size_wh=(150, 150),
            align_template="dlib-chip-150",
            color_order="rgb",
            input_mean=(122.782, 117.001, 104.298),
            input_std=(256.0, 256.0, 256.0),
            embedding_dim=128,
            default_threshold=0.91,
            calibration=_PROVISIONAL_CALIBRATION,
            license="CC0-1.0 (dlib model, via face-recognition-models)",
            source="pypi:face-recognition-models==0.3.0",
            description="dlib ResNet-29 face descriptor, 128-d, 150x150 chips (dlib reports 99.38% on LFW)",
        ),
        ModelSpec(
            id=DLIB_HOG_ID,
            task="detection",
            backend="dlib",
            files=(),
            license="BSL-1.0 (built into dlib)",
            source="dlib.get_frontal_face_detector",
            description="dlib HOG + linear SVM frontal face detector (weights built into dlib)",
        ),
        ModelSpec(
            id=DLIB_MMOD_ID,
            task="detection",
            backend="dlib",
            files=(
                ModelFile(
                    "mmod_human_face_detector.dat",
                    sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
                    size_bytes=729940,
                ),
            ),
            license="CC0-1.0 (dlib model, via face-recognition-models)",
            source="pypi:face-recognition-models==0.3.0",
            description="dlib MMOD CNN face detector (slow on CPU without BLAS; opt-in and fallback)",
        ),
        ModelSpec(
            id=DLIB_5_POINT_ID,
            task="landmarks",
            backend="dlib",
            files=(
                ModelFile(
                    "shape_predictor_5_face_landmarks.dat",
                    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                    size_bytes=9150489,
                ),
            ),
            license="CC0-1.0 (dlib model, via face-recognition-models)",
            source="pypi:face-recognition-models==0.3.0",
            description="dlib 5-point landmarks (eye corners, nose base)",
        ),
        ModelSpec(
            id=DLIB_68_POINT_ID,
            task="landmarks",
            backend="dlib",
            files=(
                ModelFile(
                    "shape_predictor_68_face_landmarks.dat",
                    sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
                    size_bytes=99693937,
                ),
            ),
            license="iBUG 300-W terms: NON-COMMERCIAL use only (never a default)",
            source="pypi:face-recognition-models==0.3.0",
            description="dlib 68-point landmarks; opt-in only because of its training-data licence",
        ),
    ]
    return {spec.id: with_packaged_calibration(spec) for spec in specs}
