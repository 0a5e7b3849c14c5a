"""The one path every entry point walks: detect -> landmarks -> align -> embed -> compare.

Example:
    >>> pipeline = load_pipeline(PipelineConfig())                # doctest: +SKIP
    >>> faceprint, faces_found = pipeline.embed_largest(image)    # doctest: +SKIP
    >>> pipeline.compare(faceprint, other).probability            # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceprint import __version__
from faceprint.align import DLIB_CHIP_150, TEMPLATES, extract_aligned_face
from faceprint.compare import Comparator
from faceprint.detect.base import Detector, Landmarker
from faceprint.detect.cascade import CascadeDetector
from faceprint.detect.center import CenterCropDetector
from faceprint.detect.dlib_hog import (
    HOG_MAX_UPSAMPLED_PX,
    LOW_CONFIDENCE,
    DlibHogDetector,
    load_frontal_face_detector,
)
from faceprint.detect.lazy import LazyDetector
from faceprint.embed.base import Embedder, check_chips
from faceprint.errors import BackendUnavailableError, ContractMismatchError, UsageError
from faceprint.io.image import ImageLimits
from faceprint.landmarks import DlibShapeLandmarker
from faceprint.models.catalog import DLIB_5_POINT_ID, DLIB_68_POINT_ID, DLIB_MMOD_ID, DLIB_RESNET_ID, builtin_specs
from faceprint.models.spec import Calibration, ModelSpec
from faceprint.models.store import ModelStore, default_model_dir
from faceprint.types import Comparison, Detection, Face, Faceprint, RGBImage

if TYPE_CHECKING:
    # Imported where a pipeline is built: importing this module (every CLI command does) stays cheap.
    from faceprint.models.dlib_to_onnx import ConvertedModelCache

DetectorName = Literal["hog", "mmod"]
BackendName = Literal["auto", "dlib", "onnx"]
FaceSelection = Literal["primary", "largest"]

MIN_DETECT_SIDE_PX = 64
"""The smallest longest side detection may downsize an image to (HOG finds nothing much smaller)."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Everything that builds a :class:`Pipeline`; picklable, so worker processes can build their own.

    ``upsample`` is the HOG upsampling for "all faces" detection (1 finds faces down to ~40 px).
    With ``fallback``, an image where nothing is found is retried at ``upsample + 1``, then with the MMOD
    CNN, then with HOG at a lowered threshold (flagged ``low_confidence``); with ``assume_cropped``, last,
    a face-sized centre box (flagged ``assumed_center_crop``).
    ``detect_max_side_px`` downsizes big photos for detection only; landmarks and chips use full pixels.
    """

    embedder: str = DLIB_RESNET_ID
    backend: BackendName = "auto"
    detector: DetectorName = "hog"
    upsample: int = 1
    fallback: bool = True
    face_selection: FaceSelection = "primary"
    """Which face comes first when a photo shows several (see :func:`face_prominence`)."""
    assume_cropped: bool = False
    """Inputs are pre-cropped face photos (ID photos, LFW): when every detector fails, use a flagged
    face-sized centre box rather than report ``no_face``. Off by default: on other photos it would
    invent a face."""
    detect_max_side_px: int = 1600
    landmarks: str = DLIB_5_POINT_ID
    flip_average: bool = True
    batch_size: int = 32
    intra_op_threads: int | None = None
    calibration_path: Path | None = None
    limits: ImageLimits = field(default_factory=ImageLimits)

    def __post_init__(self) -> None:
        """Every value is checked here, so a config that exists can be built (errors are ``usage_error``)."""
        _check_choice("detector", self.detector, get_args(DetectorName), hint=_DETECTOR_HINTS)
        _check_choice("backend", self.backend, get_args(BackendName), hint=_BACKEND_HINTS)
        _check_choice("face_selection", self.face_selection, get_args(FaceSelection))
        _check_choice("landmarks", self.landmarks, (DLIB_5_POINT_ID, DLIB_68_POINT_ID))
        if not isinstance(self.embedder, str) or not self.embedder:
            raise UsageError(f"embedder must be a model id, got {self.embedder!r}", details={"embedder": self.embedder})
        for name in ("upsample", "detect_max_side_px", "batch_size"):
            _check_int(name, getattr(self, name))
        for name in ("fallback", "assume_cropped", "flip_average"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.upsample < 0 or self.upsample > 3:
            raise UsageError(f"upsample must be 0-3, got {self.upsample}")
        if self.detect_max_side_px < MIN_DETECT_SIDE_PX:
            raise UsageError(f"detect_max_side_px must be at least {MIN_DETECT_SIDE_PX}")
        if self.batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        if self.intra_op_threads is not None:
            _check_int("intra_op_threads", self.intra_op_threads)
            if self.intra_op_threads < 1:
                raise UsageError("intra_op_threads must be at least 1")
        if not isinstance(self.limits, ImageLimits):
            raise UsageError(f"limits must be ImageLimits, got {type(self.limits).__name__}")


_DETECTOR_HINTS = {"cnn": "mmod", "dlib-cnn": "mmod", "dlib": "hog", "dlib-hog": "hog", "dlib-mmod": "mmod"}
_BACKEND_HINTS = {"gpu": "onnx", "cuda": "onnx", "cpu": "auto", "onnxruntime": "onnx"}


def _check_choice(name: str, value: object, allowed: Sequence[str], *, hint: dict[str, str] | None = None) -> None:
    if isinstance(value, str) and value in allowed:
        return
    message = f"unknown {name} {value!r}; choose one of {', '.join(allowed)}"
    suggestion = hint.get(value) if hint is not None and isinstance(value, str) else None
    if suggestion is not None:
        message += f" (did you mean {suggestion!r}?"
        if name == "backend":
            message += " ONNX Runtime runs on CUDA by itself when onnxruntime-gpu is installed"
        message += ")"
    raise UsageError(message, details={"field": name, "value": repr(value), "allowed": list(allowed)})


def _check_int(name: str, value: object) -> None:
    # bool is an int subclass: `upsample=True` is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, got {value!r}", details={"field": name, "value": repr(value)})


class Pipeline:
    """Detector, landmarker, embedder and comparator wired together.

    Build one with :func:`load_pipeline`; it owns its models and is not thread-safe (dlib objects are
    not): use one per thread or process.
    """

    def __init__(
        self,
        *,
        detector: Detector,
        fast_detector: Detector | None,
        landmarker: Landmarker,
        embedder: Embedder,
        comparator: Comparator,
        config: PipelineConfig,
    ) -> None:
        self.detector = detector
        self.fast_detector = fast_detector
        self.landmarker = landmarker
        self.embedder = embedder
        self.comparator = comparator
        self.config = config
        self.spec: ModelSpec = embedder.spec
        self.model_options: dict[str, Any] = {
            "backend": embedder.backend_name,
            "detector": detector.name,
            "landmarks": landmarker.name,
            "align_template": self.spec.align_template,
            "flip_average": config.flip_average,
        }

    # --- detection -------------------------------------------------------------------------------------

    def _run_detector(self, detector: Detector, image: RGBImage, *, max_side_px: int | None = None) -> list[Detection]:
        height, width = image.shape[:2]
        longest = max(height, width)
        limit = self.config.detect_max_side_px if max_side_px is None else max_side_px
        if longest <= limit:
            return detector.detect(image)
        scale = limit / longest
        small_wh = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(image).resize(small_wh, Image.Resampling.BILINEAR, reducing_gap=2.0))
        back_x, back_y = width / small_wh[0], height / small_wh[1]
        return [
            Detection(
                bbox_xyxy=(
                    d.bbox_xyxy[0] * back_x,
                    d.bbox_xyxy[1] * back_y,
                    d.bbox_xyxy[2] * back_x,
                    d.bbox_xyxy[3] * back_y,
                ),
                score=d.score,
                detector=d.detector,
                flags=d.flags,
            )
            for d in detector.detect(np.ascontiguousarray(small))
        ]

    def detect_faces(
        self,
        image: RGBImage,
        *,
        largest_only: bool = False,
        cheap_first: bool = False,
        selection: FaceSelection | None = None,
        max_side_px: int | None = None,
    ) -> list[Detection]:
        """All faces with landmarks, the selected face first (``config.face_selection``).

        ``"primary"`` (default) orders by :func:`face_prominence`, size discounted by distance from the
        centre; ``"largest"`` by :func:`face_size_px` alone.

        ``largest_only`` tries a cheaper detector first (HOG without upsampling, ~4x faster), which finds
        frontal faces of ~80 px and up; only when it finds nothing does the configured detector run. A
        face the cheap pass misses while it finds a smaller one is possible (a strongly turned head, say):
        callers that must see every face use the default, ``largest_only=False``.

        ``cheap_first`` runs that cheap pass first but returns every face it found; ``selection`` overrides
        ``config.face_selection`` for this call (a long-lived engine serves calls with different rules);
        ``max_side_px`` overrides ``config.detect_max_side_px`` (video's ``face_detection_scale``).

        Raises:
            UsageError: ``selection`` is not primary/largest, or ``max_side_px`` is below 64.
        """
        if selection is not None:
            _check_choice("selection", selection, get_args(FaceSelection))
        if max_side_px is not None:
            _check_int("max_side_px", max_side_px)
            if max_side_px < MIN_DETECT_SIDE_PX:
                raise UsageError(f"max_side_px must be at least {MIN_DETECT_SIDE_PX}, got {max_side_px}")
        ranked = self._ranked_detections(
            image, cheap_first=largest_only or cheap_first, selection=selection, max_side_px=max_side_px
        )
        return ranked[:1] if largest_only else ranked

    def _ranked_detections(
        self,
        image: RGBImage,
        *,
        cheap_first: bool,
        selection: FaceSelection | None = None,
        max_side_px: int | None = None,
    ) -> list[Detection]:
        """Every face of the detection pass that found any, with landmarks, the selected face first."""
        found: list[Detection] = []
        if cheap_first and self.fast_detector is not None:
            found = self._run_detector(self.fast_detector, image, max_side_px=max_side_px)
        if not found:
            found = self._run_detector(self.detector, image, max_side_px=max_side_px)
        detections = [d.with_landmarks(self.landmarker.landmarks(image, d)) for d in found]
        chosen = self.config.face_selection if selection is None else selection
        return rank_faces(detections, (image.shape[1], image.shape[0]), chosen)

    # --- alignment and embedding -----------------------------------------------------------------------

    def extract_aligned_face(self, image: RGBImage, detection: Detection, *, size: int | None = None) -> RGBImage:
        """The chip for ``detection``: the embedder's template by default, or ``size`` 150 / 112."""
        if size is None:
            template = self.spec.align_template or DLIB_CHIP_150
        else:
            matching = [t.name for t in TEMPLATES.values() if t.size_wh == (size, size)]
            if not matching:
                raise UsageError(f"no alignment template of size {size}; sizes: 150 (dlib), 112 (ArcFace)")
            template = matching[0]
        if detection.landmarks_xy is None:
            detection = detection.with_landmarks(self.landmarker.landmarks(image, detection))
        return extract_aligned_face(image, detection, template=template)

    def _vectors(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        check_chips(self.spec, chips)  # before mirroring, so errors name the caller's chip
        batch = list(chips)
        if self.config.flip_average:
            # Test-time flip: the mirror image is the same person; averaging both views removes part of
            # the pose/lighting asymmetry noise (measured in docs/accuracy.md).
            batch += [np.ascontiguousarray(chip[:, ::-1]) for chip in chips]
        rows: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(batch), self.config.batch_size):
            rows.append(self.embedder.embed_chips(batch[start : start + self.config.batch_size]))
        vectors = np.concatenate(rows, axis=0) if rows else np.zeros((0, self.spec.embedding_dim or 0), np.float32)
        if self.config.flip_average:
            count = len(chips)
            vectors = (vectors[:count] + vectors[count:]) / np.float32(2.0)
        return vectors.astype(np.float32)

    def _faceprint(self, vector: npt.NDArray[np.float32]) -> Faceprint:
        return Faceprint(
            vector=vector,
            model_id=self.spec.id,
            contract_id=self.spec.contract_id,
            package_version=__version__,
            model_options=self.model_options,
        )

    def embed_batch(self, chips: Sequence[RGBImage]) -> list[Faceprint]:
        """Faceprints for aligned chips, run in batches of ``config.batch_size``."""
        if not chips:
            return []
        return [self._faceprint(v) for v in self._vectors(chips)]

    def embed(self, chip: RGBImage) -> Faceprint:
        return self.embed_batch([chip])[0]

    def embed_faces(self, image: RGBImage, *, largest_only: bool = False) -> list[Face]:
        """Detect, align and embed every face (or only the largest), largest first."""
        detections = self.detect_faces(image, largest_only=largest_only)
        chips = [self.extract_aligned_face(image, d) for d in detections]
        faceprints = self.embed_batch(chips)
        return [Face(detection=d, faceprint=f) for d, f in zip(detections, faceprints, strict=True)]

    def embed_main_face(self, image: RGBImage) -> tuple[Face | None, int]:
        """The selected face, embedded, and how many faces the detection pass found.

        Only the selected face is aligned and embedded, and detection tries the cheap pass first (see
        :meth:`detect_faces`), so this is the fast path for 1:1 work on photos of one person.
        """
        ranked = self._ranked_detections(image, cheap_first=True)
        if not ranked:
            return None, 0
        chip = self.extract_aligned_face(image, ranked[0])
        return Face(detection=ranked[0], faceprint=self.embed(chip)), len(ranked)

    def embed_largest(self, image: RGBImage) -> tuple[Faceprint | None, bool]:
        """The faceprint of the main face and whether a face was found (the SDK's largest-face shortcut).

        The main face is the first of :meth:`detect_faces`: with ``face_selection="largest"`` literally the
        largest; with the default ``"primary"`` the largest once faces far from the centre are discounted.
        """
        face, _ = self.embed_main_face(image)
        if face is None:
            return None, False
        return face.faceprint, True

    # --- comparison ------------------------------------------------------------------------------------

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        if a.contract_id != self.spec.contract_id:
            raise ContractMismatchError(
                f"faceprint of contract {a.contract_id!r} given to a pipeline of {self.spec.contract_id!r}",
                details={"expected": self.spec.contract_id, "actual": a.contract_id},
            )
        return self.comparator.compare(a, b)


def rank_faces(detections: Sequence[Detection], size_wh: tuple[int, int], selection: FaceSelection) -> list[Detection]:
    """``detections`` with the selected face first: by :func:`face_prominence` or by :func:`face_size_px`.

    The sort is stable, so faces that tie keep the detector's order (best score first).

    Example:
        >>> big = Detection(bbox_xyxy=(0.0, 0.0, 40.0, 40.0), score=1.0, detector="d")
        >>> centred = Detection(bbox_xyxy=(80.0, 80.0, 110.0, 110.0), score=1.0, detector="d")
        >>> [d.width for d in rank_faces([big, centred], (200, 200), "primary")]
        [30.0, 40.0]
        >>> [d.width for d in rank_faces([big, centred], (200, 200), "largest")]
        [40.0, 30.0]
    """
    if selection == "primary":
        return sorted(detections, key=lambda d: face_prominence(d, size_wh), reverse=True)
    return sorted(detections, key=face_size_px, reverse=True)


def face_prominence(detection: Detection, size_wh: tuple[int, int]) -> float:
    """How much a face is the subject of the photo: ``size * max(0.05, 1 - (d / R)^2)``.

    ``d`` is the distance from the face's centre to the image centre and ``R`` half the image diagonal, so
    a face in a corner needs twice the size of a centred one to win. On LFW View 1 DevTrain (232 of 3,443
    photos show several people) picking by size alone chose a bystander often enough to cost 0.6 points
    of accuracy (98.7% vs 99.4%); this rule matches the labelled subject (docs/accuracy.md).
    """
    width, height = size_wh
    if detection.landmarks_xy:
        centre = np.asarray(detection.landmarks_xy, dtype=np.float64).mean(axis=0)
    else:
        left, top, right, bottom = detection.bbox_xyxy
        centre = np.array([(left + right) / 2, (top + bottom) / 2])
    radius = float(np.hypot(width, height)) / 2
    offset = float(np.hypot(centre[0] - width / 2, centre[1] - height / 2)) / radius
    return face_size_px(detection) * max(0.05, 1.0 - offset * offset)


def face_size_px(detection: Detection) -> float:
    """The face's size in pixels: the largest distance between two landmarks (box width without any)."""
    if not detection.landmarks_xy:
        return detection.width
    points = np.asarray(detection.landmarks_xy, dtype=np.float64)
    spans = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((spans**2).sum(axis=2)).max())


def _build_embedder(
    spec: ModelSpec, config: PipelineConfig, store: ModelStore, converted: ConvertedModelCache
) -> Embedder:
    """ONNX Runtime on the converted dlib network when available (about 20x faster), else dlib itself.

    A registered ONNX model (``spec.backend == "onnx"``) runs on ONNX Runtime only.
    """
    if spec.backend == "onnx":
        if config.backend == "dlib":
            raise UsageError(f"{spec.id} is an ONNX model; it cannot run on the dlib backend")
        from faceprint.embed.onnx import OnnxEmbedder

        return OnnxEmbedder(
            spec,
            store.path_for(spec.files[0]),
            batch_size=config.batch_size,
            intra_op_threads=config.intra_op_threads,
        )
    dat_path = store.path_for(spec.files[0])
    if config.backend in ("auto", "onnx"):
        from faceprint.embed.onnx import OnnxEmbedder

        try:
            return OnnxEmbedder.from_dlib_resnet(
                spec,
                dat_path,
                converted,
                source_sha256=spec.files[0].sha256,
                batch_size=config.batch_size,
                intra_op_threads=config.intra_op_threads,
            )
        except BackendUnavailableError:
            if config.backend == "onnx":
                raise
    from faceprint.embed.dlib_resnet import DlibResnetEmbedder

    return DlibResnetEmbedder(spec, dat_path)


def _mmod_on_onnx(config: PipelineConfig) -> bool:
    """Whether MMOD runs on ONNX Runtime: asked for, or ``auto`` with onnxruntime installed."""
    if config.backend == "dlib":
        return False
    if config.backend == "onnx":
        from faceprint.embed.onnx import import_onnxruntime

        import_onnxruntime()  # BackendUnavailableError now, at load, rather than on the first profile face
        return True
    return importlib.util.find_spec("onnxruntime") is not None


def _build_mmod_detector(
    path: Path, spec: ModelSpec, config: PipelineConfig, converted: ConvertedModelCache, *, upsample: int
) -> Detector:
    """dlib's MMOD CNN on ONNX Runtime when available (same boxes, ~15x faster), else dlib itself.

    The files are verified (and converted, once per installation) now; the session or dlib network is
    built by the first photo that reaches this stage (:class:`~faceprint.detect.lazy.LazyDetector`), so
    photos that HOG handles never pay for it.
    """
    if _mmod_on_onnx(config):
        onnx_path = converted.mmod(path, source_sha256=spec.files[0].sha256)
        intra_op_threads = config.intra_op_threads

        def build_onnx() -> Detector:
            from faceprint.detect.onnx_mmod import OnnxMmodDetector

            return OnnxMmodDetector(onnx_path, upsample=upsample, intra_op_threads=intra_op_threads)

        return LazyDetector(f"dlib-mmod-onnx@{upsample}", build_onnx)

    def build_dlib() -> Detector:
        from faceprint.detect.dlib_mmod import DlibMmodDetector  # its decoder imports the converter: not at start-up

        return DlibMmodDetector(path, upsample=upsample)

    return LazyDetector(f"dlib-mmod@{upsample}", build_dlib)


def build_detector(
    config: PipelineConfig,
    *,
    hog_native: Any,
    mmod: Callable[[int], Detector],
    hog_max_upsampled_px: int | None = HOG_MAX_UPSAMPLED_PX,
) -> tuple[Detector, Detector | None]:
    """The detection cascade for ``config`` and its cheap first pass (None when there is none).

    Every HOG stage runs the one native dlib detector ``hog_native`` (its parameters are per call);
    ``mmod(upsample)`` makes the MMOD stage. The seam lets tests check the cascade's order with fakes.
    ``hog_max_upsampled_px`` bounds the HOG stages' memory (see :data:`HOG_MAX_UPSAMPLED_PX`).

    With the HOG detector: HOG at ``upsample``; with ``fallback`` then HOG at ``upsample + 1``, MMOD at 1
    and HOG at a lowered threshold (flagged ``low_confidence``); with ``assume_cropped`` last a centre box.
    The cheap pass is HOG without upsampling (when ``upsample > 0``). With MMOD: MMOD at
    ``min(upsample, 1)``, then (``fallback``) HOG at ``upsample + 1`` and the low-threshold HOG.

    Example:
        >>> from faceprint.detect.center import CenterCropDetector
        >>> config = PipelineConfig(fallback=False, assume_cropped=True)
        >>> detector, fast = build_detector(config, hog_native=object(), mmod=lambda u: CenterCropDetector())
        >>> detector.name, fast.name
        ('cascade(dlib-hog@1,center-crop)', 'dlib-hog@0')
    """

    def hog(upsample: int, *, adjust_threshold: float = 0.0, flags: tuple[str, ...] = ()) -> Detector:
        return DlibHogDetector(
            upsample=upsample,
            adjust_threshold=adjust_threshold,
            flags=flags,
            native=hog_native,
            max_upsampled_px=hog_max_upsampled_px,
        )

    stages: list[Detector]
    fast: Detector | None = None
    if config.detector == "mmod":
        stages = [mmod(min(config.upsample, 1))]
        if config.fallback:
            stages.append(hog(min(config.upsample + 1, 3)))
    else:
        stages = [hog(config.upsample)]
        if config.upsample > 0:
            fast = hog(0)
        if config.fallback:
            stages.append(hog(min(config.upsample + 1, 3)))
            stages.append(mmod(1))
    if config.fallback:
        # A weak HOG response is still evidence of a face; it is flagged so reports can tell.
        stages.append(hog(min(config.upsample + 1, 3), adjust_threshold=-0.5, flags=(LOW_CONFIDENCE,)))
    if config.assume_cropped:
        stages.append(CenterCropDetector())
    detector: Detector = stages[0] if len(stages) == 1 else CascadeDetector(stages)
    return detector, fast


@dataclass(frozen=True, slots=True)
class ModelHead:
    """What comparing needs of a model, without its networks: the spec and the calibrated comparator.

    A process that only compares (the parent of worker processes, a server answering ``/compare`` on
    stored faceprints) loads this in milliseconds instead of a pipeline; :func:`load_model_head` verifies
    every file the pipeline would load, so a missing or corrupt model still fails before any photo.
    """

    spec: ModelSpec
    comparator: Comparator

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        return self.comparator.compare(a, b)


@dataclass(frozen=True, slots=True)
class _Resolved:
    spec: ModelSpec
    landmarks: tuple[str, Path]
    mmod: tuple[ModelSpec, Path]
    comparator: Comparator


def _resolve(config: PipelineConfig, store: ModelStore) -> _Resolved:
    """Every model file ``config`` needs, located and verified, and the comparator (no network is loaded)."""
    from faceprint.models.registry import ModelRegistry

    specs = builtin_specs()
    # Only the asked-for user spec is read: a broken registration of another model does not get in the way.
    spec = ModelRegistry(store=store).get(config.embedder)
    if spec.task != "embedding":
        raise UsageError(f"{config.embedder} is not an embedding model")
    landmark_spec = specs[config.landmarks]
    landmark_path = store.path_for(landmark_spec.files[0])
    mmod_spec = specs[DLIB_MMOD_ID]
    mmod_path = store.path_for(mmod_spec.files[0])
    for model_file in spec.files:
        store.path_for(model_file)
    calibration: Calibration | None = None
    threshold: float | None = None
    if config.calibration_path is not None:
        from faceprint.evaluate.calibrate import load_calibration

        if not config.calibration_path.is_file():
            raise UsageError(f"calibration file {config.calibration_path} does not exist")
        record = load_calibration(config.calibration_path, expected_contract_id=spec.contract_id)
        calibration, threshold = record.calibration, record.threshold
    comparator = Comparator(spec, calibration=calibration, threshold=threshold)
    return _Resolved(spec, (landmark_spec.id, landmark_path), (mmod_spec, mmod_path), comparator)


def load_model_head(config: PipelineConfig | None = None, *, store: ModelStore | None = None) -> ModelHead:
    """The spec and comparator of ``config``'s model, every file verified, no network loaded.

    Cheap: the digests are remembered across processes (:class:`ModelStore`).
    """
    config = config if config is not None else PipelineConfig()
    resolved = _resolve(config, store if store is not None else ModelStore())
    return ModelHead(spec=resolved.spec, comparator=resolved.comparator)


def load_pipeline(config: PipelineConfig | None = None, *, store: ModelStore | None = None) -> Pipeline:
    """Build a pipeline from verified model files (nothing is downloaded).

    Cheap to call again: each file's digest is remembered across processes (:class:`ModelStore`), dlib's
    HOG detector is loaded from its serialised copy and shared by every stage, and the MMOD network is
    built only when a photo first reaches it.
    """
    from faceprint.models.dlib_to_onnx import ConvertedModelCache

    config = config if config is not None else PipelineConfig()
    store = store if store is not None else ModelStore()
    converted = ConvertedModelCache(default_model_dir() / "converted", digests=store.digests)
    resolved = _resolve(config, store)
    spec = resolved.spec
    landmark_id, landmark_path = resolved.landmarks
    landmarker = DlibShapeLandmarker(landmark_path, name=landmark_id)

    mmod_spec, mmod_path = resolved.mmod
    detector, fast = build_detector(
        config,
        hog_native=load_frontal_face_detector(converted),
        mmod=lambda upsample: _build_mmod_detector(mmod_path, mmod_spec, config, converted, upsample=upsample),
    )
    embedder = _build_embedder(spec, config, store, converted)
    return Pipeline(
        detector=detector,
        fast_detector=fast,
        landmarker=landmarker,
        embedder=embedder,
        comparator=resolved.comparator,
        config=config,
    )


def with_overrides(config: PipelineConfig, **changes: Any) -> PipelineConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return replace(config, **changes)
