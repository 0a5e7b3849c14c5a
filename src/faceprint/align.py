"""Cut aligned face chips: named templates, a similarity transform, one warp.

Templates:
- ``dlib-chip-150``: dlib's own chip for its ResNet (150x150, padding 0.25), cut by dlib from the 5 points
  so the embedding sees exactly what the network was trained on.
- ``arcface-112``: the 112x112 ArcFace/InsightFace template. dlib's 5 points carry no mouth corners and
  mark the nose *base*, not its tip, so the transform is fitted on the two eye centres (which fix a
  similarity transform exactly); :func:`estimate_similarity` also fits more points (least squares, Umeyama)
  for landmarkers that give the ArcFace five.

Example:
    >>> import numpy as np
    >>> m = estimate_similarity(np.array([[0.0, 0], [1, 0]]), np.array([[0.0, 0], [2, 0]]))
    >>> np.allclose(m @ np.array([1.0, 0, 1]), [2, 0])
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceprint.detect.dlib_hog import import_dlib
from faceprint.errors import InvalidArgumentError, UsageError
from faceprint.types import Detection, RGBImage

DLIB_CHIP_150 = "dlib-chip-150"
ARCFACE_112 = "arcface-112"

ARCFACE_112_POINTS = np.array(
    [
        [38.2946, 51.6963],  # eye on the image's left
        [73.5318, 51.5014],  # eye on the image's right
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth corner, image left
        [70.7299, 92.2041],  # mouth corner, image right
    ],
    dtype=np.float64,
)


@dataclass(frozen=True, slots=True)
class AlignTemplate:
    name: str
    size_wh: tuple[int, int]


TEMPLATES = {
    DLIB_CHIP_150: AlignTemplate(DLIB_CHIP_150, (150, 150)),
    ARCFACE_112: AlignTemplate(ARCFACE_112, (112, 112)),
}


def estimate_similarity(src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping src to dst.

    Returns the 2x3 matrix ``M`` with ``dst ≈ M @ [x, y, 1]`` (Umeyama, 1991).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise InvalidArgumentError("need two matching (n>=2, 2) point arrays")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / src.shape[0]
    u, s, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / src.shape[0]
    scale = float((s * d).sum() / src_var) if src_var > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def _eye_centres(landmarks: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The two eye centres from dlib's 5 points, ordered image-left then image-right."""
    eye_a = landmarks[0:2].mean(axis=0)
    eye_b = landmarks[2:4].mean(axis=0)
    return np.array([eye_a, eye_b]) if eye_a[0] <= eye_b[0] else np.array([eye_b, eye_a])


def warp_affine(image: RGBImage, matrix: npt.NDArray[np.float64], size_wh: tuple[int, int]) -> RGBImage:
    """Warp with a 2x3 matrix mapping source to destination pixels (bilinear)."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)
    # PIL samples pixel centres at +0.5; shift so both sides use the same convention.
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    coeffs = (unshift @ inverse @ shift)[:2].ravel()
    warped = Image.fromarray(image).transform(
        size_wh, Image.Transform.AFFINE, tuple(float(c) for c in coeffs), resample=Image.Resampling.BILINEAR
    )
    return np.ascontiguousarray(np.asarray(warped, dtype=np.uint8))


def _dlib_chip(image: RGBImage, detection: Detection, size: int) -> RGBImage:
    dlib = import_dlib()
    landmarks_xy = detection.landmarks_xy or ()
    left, top, right, bottom = (round(v) for v in detection.bbox_xyxy)
    points = dlib.points()
    for x, y in landmarks_xy:
        points.append(dlib.point(round(x), round(y)))
    shape = dlib.full_object_detection(dlib.rectangle(left, top, right - 1, bottom - 1), points)
    chip = dlib.get_face_chip(image, shape, size=size, padding=0.25)
    return np.ascontiguousarray(np.asarray(chip, dtype=np.uint8))


def extract_aligned_face(image: RGBImage, detection: Detection, *, template: str = DLIB_CHIP_150) -> RGBImage:
    """Cut the aligned chip for ``detection`` (which must carry landmarks) with the named template.

    Example:
        >>> chip = extract_aligned_face(image, detection, template="arcface-112")  # doctest: +SKIP
        >>> chip.shape  # doctest: +SKIP
        (112, 112, 3)
    """
    if detection.landmarks_xy is None:
        raise UsageError("alignment needs landmarks: run a landmarker on the detection first")
    if template not in TEMPLATES:
        raise UsageError(f"unknown alignment template {template!r}; known: {', '.join(sorted(TEMPLATES))}")
    landmarks = np.asarray(detection.landmarks_xy, dtype=np.float64)
    size_wh = TEMPLATES[template].size_wh
    if template == DLIB_CHIP_150:
        if landmarks.shape[0] not in (5, 68):
            raise UsageError(f"the dlib chip needs 5 or 68 dlib landmarks, got {landmarks.shape[0]}")
        return _dlib_chip(image, detection, size_wh[0])
    if landmarks.shape[0] == 5:
        matrix = estimate_similarity(_eye_centres(landmarks), ARCFACE_112_POINTS[:2])
    elif landmarks.shape[0] == 68:
        eyes = np.array([landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)])
        matrix = estimate_similarity(eyes, ARCFACE_112_POINTS[:2])
    else:
        raise UsageError(f"cannot align {landmarks.shape[0]} landmarks to {template}")
    return warp_affine(image, matrix, size_wh)
