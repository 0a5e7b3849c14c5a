"""Face quality: how easy one detected face is to recognise, measured once from its landmarks and chip.

Every field of :class:`~faceprint.types.FaceQuality` is documented with its unit and range in
docs/quality.md. The measures are cheap on purpose (pure numpy on 5 points and one 150x150 chip, well
under a millisecond), because the engine measures every face it embeds:

- **size**: the distance between the two eye centres in pixels of the decoded image;
- **detector**: the score and the cascade stage that found the face (a profile found only by the MMOD
  CNN, a face found only at a lowered HOG threshold, or a centre box assumed for a pre-cropped photo);
- **pose**: yaw and pitch from the 5 dlib landmarks by a rigid head model (below);
- **blur**: the variance of the 4-neighbour Laplacian of the grey chip, on its central part;
- **exposure**: the mean luminance of the central part of the chip, and the share of its pixels that
  are (nearly) black or white.

Pose model. After removing roll (the eye line made level), the eye centres sit at ``±e`` and the nose
base ``d`` in front of them and ``h`` below. A head turned by yaw ``θ`` moves the nose base sideways by
``d sin θ`` while the projected eye half-distance shrinks to ``e cos θ``, so the nose offset in units of
the projected half-distance is ``(d / e) tan θ``: ``yaw = atan(offset / NOSE_DEPTH_RATIO)``. The eyes'
outer corners sit ``Z`` behind the inner ones, so the two eyes look ``W cos θ ± Z sin θ`` wide: their
width contrast is a second yaw estimate, averaged with the first. Pitch
``φ`` moves the nose base vertically to ``h cos φ - d sin φ`` (in units of the unforeshortened
inter-ocular distance), solved for ``φ``. The two head constants are fixed from LFW's frontal photos
(see docs/quality.md); the estimate saturates near ±90° and is only as good as the 5 landmarks, which
on a true profile are a guess: treat |yaw| above about 45° as "strongly turned", not as a measured angle.

Example:
    >>> import numpy as np
    >>> from faceprint.types import Detection
    >>> landmarks = ((70.0, 50.0), (60.0, 50.0), (30.0, 50.0), (40.0, 50.0), (50.0, 75.0))
    >>> detection = Detection((20.0, 20.0, 80.0, 90.0), 1.5, "dlib-hog@1", landmarks_xy=landmarks)
    >>> chip = np.full((150, 150, 3), 128, np.uint8)
    >>> image = np.zeros((100, 100, 3), np.uint8)
    >>> quality = assess_face(image, detection, chip)
    >>> quality.interocular_px, quality.detector_stage, round(quality.yaw_deg, 1)
    (30.0, 'hog@1', 0.0)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from faceprint.errors import InvalidArgumentError
from faceprint.types import Detection, FaceQuality, RGBImage

NOSE_DEPTH_RATIO = 0.6
"""Nose-base depth in front of the eye centres over half the inter-ocular distance (``d / e``).

Fixed so that the yaw spread of LFW's near-frontal photos matches their known head-pose spread; the
ranking of faces by |yaw|, which is what calibration uses, does not depend on it."""
EYE_CORNER_DEPTH_RATIO = 0.3
"""How far an eye's outer corner sits behind its inner corner, over the eye's width (``Z / W``): a head
turned by yaw shows the eyes ``W cos θ ± Z sin θ`` wide. Anatomically about 0.3 (outer canthus ~9 mm
behind the inner on a ~30 mm eye)."""
NOSE_DROP_RATIO = 0.71
"""Vertical distance from the eye line to the nose base over the inter-ocular distance, frontal and level
(``h / (2 e)``): the median over LFW View 1 DevTrain photos."""

STAGES = ("hog@0", "hog@1", "hog@2", "hog@3", "mmod", "low_confidence", "assumed_crop", "other")
"""Every value :func:`detector_stage` returns."""

_CENTRAL_FRACTION = 0.6  # the middle 60% of the chip is the face; its border is background and hair
_DARK_LEVEL = 8.0  # grey levels (0-255) at or below which a pixel counts as crushed black
_BRIGHT_LEVEL = 247.0  # and at or above which it counts as blown-out white
_POSE_ROUNDS = 6
_MIN_NOSE_DEPTH = 0.05  # keeps yaw defined when the nose base is estimated in the eye plane
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def detector_stage(detection: Detection) -> str:
    """The cascade stage that found a face, from the detector's name and flags.

    Example:
        >>> detector_stage(Detection((0.0, 0.0, 9.0, 9.0), 0.1, "dlib-hog@2-0.5", flags=("low_confidence",)))
        'low_confidence'
        >>> detector_stage(Detection((0.0, 0.0, 9.0, 9.0), 0.9, "dlib-mmod-onnx@1"))
        'mmod'
    """
    flags = set(detection.flags)
    if "assumed_center_crop" in flags or detection.detector == "center-crop":
        return "assumed_crop"
    if "low_confidence" in flags:
        return "low_confidence"
    name = detection.detector
    if name.startswith("dlib-mmod"):
        return "mmod"
    if name.startswith("dlib-hog@"):
        upsample = name[len("dlib-hog@") :]
        if upsample[:1].isdigit() and len(upsample) == 1:
            return f"hog@{upsample}"
        # A HOG stage at an adjusted threshold ("dlib-hog@2-0.5") is the low-confidence fallback.
        return "low_confidence" if len(upsample) > 1 else "other"
    return "other"


def _eye_centres(landmarks: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    # dlib's 5 points: 0-1 one eye's corners, 2-3 the other's, 4 the nose base (faceprint.landmarks).
    eye_a, eye_b = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)
    return (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)


def estimate_pose(landmarks_xy: npt.ArrayLike) -> tuple[float, float]:
    """Yaw and pitch in degrees from dlib's 5 landmarks (see the module docstring for the head model).

    Yaw is positive when the nose base lies right of the eye midpoint in the image, pitch positive when
    the nose base rises toward the eye line (chin up). 68-point landmarks are reduced to the same 5.

    Example:
        >>> yaw, pitch = estimate_pose([(70, 50), (60, 50), (30, 50), (40, 50), (50, 50 + 0.71 * 30)])
        >>> abs(round(yaw, 3)), abs(round(pitch, 3))
        (0.0, 0.0)
    """
    points = np.asarray(landmarks_xy, dtype=np.float64)
    if points.shape == (68, 2):
        points = np.array(
            [points[45], points[42], points[36], points[39], points[33]], dtype=np.float64
        )  # dlib's own 68 -> 5 correspondence
    if points.shape != (5, 2):
        raise InvalidArgumentError(f"pose needs 5 (or 68) landmarks, got shape {points.shape}")
    left, right = _eye_centres(points)
    axis = right - left
    interocular = float(np.hypot(axis[0], axis[1]))
    if interocular == 0.0:
        return 0.0, 0.0
    cos_roll, sin_roll = axis / interocular
    offset = points[4] - (left + right) / 2.0
    # Coordinates of the nose base in the eye-line frame (roll removed), in units of the projected
    # inter-ocular distance.
    along = (offset[0] * cos_roll + offset[1] * sin_roll) / interocular
    below = (-offset[0] * sin_roll + offset[1] * cos_roll) / interocular
    width_yaw = _eye_width_yaw(points, left_first=bool(points[0:2, 0].mean() <= points[2:4, 0].mean()))
    depth = NOSE_DEPTH_RATIO / 2.0
    radius = math.hypot(NOSE_DROP_RATIO, depth)
    offset_angle = math.atan2(depth, NOSE_DROP_RATIO)
    yaw = pitch = 0.0
    # Yaw and pitch each change what the other sees (pitch moves the nose base in depth, yaw foreshortens
    # the eye distance): a few fixed-point rounds solve both; 6 reach 0.01 degrees on the head model.
    for _ in range(_POSE_ROUNDS):
        nose_depth = max(_MIN_NOSE_DEPTH, NOSE_DROP_RATIO * math.sin(pitch) + depth * math.cos(pitch))
        nose_yaw = math.atan2(along, nose_depth)
        # Two independent cues, averaged: on real faces each alone is noisy, and the 5-point model's
        # nose point on a strongly turned head is the weaker one (measured on CFP, docs/quality.md).
        yaw = (nose_yaw + width_yaw) / 2.0
        # The projected inter-ocular distance is foreshortened by cos(yaw); undo it for the vertical measure.
        drop = below * math.cos(yaw)
        pitch = math.acos(min(1.0, max(-1.0, drop / radius))) - offset_angle
    return math.degrees(yaw), math.degrees(pitch)


def _eye_width_yaw(points: npt.NDArray[np.float64], *, left_first: bool) -> float:
    """Yaw from how much narrower one eye looks than the other (outer corners sit behind the inner ones)."""
    first, second = float(np.hypot(*(points[0] - points[1]))), float(np.hypot(*(points[2] - points[3])))
    left_width, right_width = (first, second) if left_first else (second, first)
    total = left_width + right_width
    if total == 0.0:
        return 0.0
    # Widths W cos(yaw) +/- Z sin(yaw) for the image-left / image-right eye: their contrast is (Z/W) tan(yaw).
    return math.atan((left_width - right_width) / total / EYE_CORNER_DEPTH_RATIO)


def _central(chip: RGBImage) -> npt.NDArray[np.float32]:
    height, width = chip.shape[:2]
    margin_y = round(height * (1.0 - _CENTRAL_FRACTION) / 2.0)
    margin_x = round(width * (1.0 - _CENTRAL_FRACTION) / 2.0)
    region = chip[margin_y : height - margin_y, margin_x : width - margin_x]
    grey: npt.NDArray[np.float32] = region.astype(np.float32) @ _LUMA
    return grey


def blur_laplacian_variance(grey: npt.NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (0-255 levels); higher is sharper.

    Example:
        >>> blur_laplacian_variance(np.full((8, 8), 100, np.float32))
        0.0
    """
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    return float(laplacian.var())


def assess_face(image: RGBImage, detection: Detection, chip: RGBImage) -> FaceQuality:
    """Measure the quality of one detected face.

    Args:
        image: The decoded image the detection belongs to. Its size bounds the landmarks; every measure
            is taken from the landmarks (size, pose) or the chip (blur, exposure), so this stays cheap on
            large photos.
        detection: The face, with its landmarks (5 dlib points; 68 are reduced to 5). Without landmarks
            the size falls back to 0.4 of the box width and the pose to 0.
        chip: The aligned chip the embedder saw (any size, RGB uint8).

    Returns:
        The :class:`~faceprint.types.FaceQuality` (units and ranges in docs/quality.md).

    Example:
        >>> assess_face(image, detection, chip).detector_stage  # doctest: +SKIP
        'hog@1'
    """
    if detection.landmarks_xy is not None and len(detection.landmarks_xy) in (5, 68):
        points = np.asarray(detection.landmarks_xy, dtype=np.float64)
        height, width = image.shape[:2]
        # Landmarks a shape predictor put beyond the image edge are clamped to it.
        points = np.clip(points, [0.0, 0.0], [float(width), float(height)])
        five = (
            points
            if points.shape[0] == 5
            else np.array([points[45], points[42], points[36], points[39], points[33]], dtype=np.float64)
        )
        left, right = _eye_centres(five)
        interocular = float(np.hypot(*(right - left)))
        yaw, pitch = estimate_pose(five)
    else:
        # An eye distance of about 0.4 box widths is what dlib's detectors give on frontal faces.
        interocular, yaw, pitch = 0.4 * detection.width, 0.0, 0.0
    grey = _central(chip)
    clipped = float(np.mean((grey <= _DARK_LEVEL) | (grey >= _BRIGHT_LEVEL))) if grey.size else 0.0
    return FaceQuality(
        interocular_px=interocular,
        detector_score=float(detection.score),
        detector_stage=detector_stage(detection),
        yaw_deg=yaw,
        pitch_deg=pitch,
        blur_laplacian_var=blur_laplacian_variance(grey),
        exposure_mean=float(grey.mean() / 255.0) if grey.size else 0.0,
        exposure_clipped_fraction=clipped,
    )
