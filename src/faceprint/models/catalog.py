"""Built-in model specs, pinned by sha256.

The dlib weights come from the ``face-recognition-models`` distribution on PyPI (dlib's own models,
redistributed by Adam Geitgey under CC0 / Boost licences; the 68-point predictor is trained on iBUG 300-W,
whose licence excludes commercial use, so it is never a default).

Example:
    >>> builtin_specs()["dlib-resnet-v1"].embedding_dim
    128
"""

from __future__ import annotations

from faceprint.models.spec import Calibration, ModelFile, ModelSpec

DLIB_RESNET_ID = "dlib-resnet-v1"
DLIB_HOG_ID = "dlib-hog"
DLIB_MMOD_ID = "dlib-mmod"
DLIB_5_POINT_ID = "dlib-landmarks-5"
DLIB_68_POINT_ID = "dlib-landmarks-68"

# Provisional until a fitted calibration is stored below (see docs/calibration.md).
_PROVISIONAL_CALIBRATION = Calibration(
    slope=40.0,
    intercept=-40.0 * 0.88,
    provenance={"method": "provisional", "note": "monotone placeholder centred on the default threshold"},
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
            default_threshold=0.88,
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
    return {spec.id: spec for spec in specs}
