"""Read dlib's serialized DNN files and write equivalent ONNX graphs.

dlib's prebuilt wheel has no BLAS, so its ResNet costs ~80 ms per face on two cores; the same network on
ONNX Runtime costs a fraction of that. This module reads the weights out of dlib's binary ``serialize()``
format in pure Python (numpy only), rebuilds the network as an ONNX graph and caches the result next to
the user's models.

The format is not self-describing: dlib writes a network as nested C++ templates, outermost first, and
neither the template kinds nor the tag ids are in the stream. So every supported network has an
*architecture* here, transcribed from the C++ type in dlib's example programs
(``dnn_face_recognition_ex.cpp``, ``dnn_mmod_face_detection_ex.cpp``); the layer parameters (filter counts,
strides, paddings, weights) are read from the file and checked against it. The whole file must be consumed,
so a different network fails loudly instead of converting into something wrong.

Example:
    >>> model = convert_dlib_resnet(Path("dlib_face_recognition_resnet_model_v1.dat"))  # doctest: +SKIP
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]       # doctest: +SKIP
    (['chips'], ['embeddings'])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from faceprint.errors import BackendUnavailableError, ChecksumMismatchError, ModelError, ModelNotFoundError
from faceprint.models.store import DIGESTS_FILE_NAME, DigestCache, confidential_mode

if TYPE_CHECKING:
    import onnx

FloatArray = npt.NDArray[np.float32]

CONVERTER_VERSION = 1
"""Bumped whenever the graphs written here change; cached conversions of an older version are redone."""

ONNX_OPSET = 17
ONNX_IR_VERSION = 8
"""IR 8 / opset 17 load on every onnxruntime since 1.13, so a cache written once keeps working."""

RESNET_INPUT = "chips"
RESNET_OUTPUT = "embeddings"
MMOD_INPUT = "tensor"
MMOD_OUTPUT = "scores"

METADATA_PREFIX = "faceprint."
INPUT_NORMALIZATION_KEY = "faceprint.input_normalization"
"""Metadata key of a graph that normalises its input itself: JSON ``{"mean": [r, g, b], "std": [r, g, b]}``.

Callers then feed raw 0-255 RGB values; see :class:`faceprint.embed.onnx.OnnxEmbedder`.
"""
MMOD_PARAMS_KEY = "faceprint.mmod"

_FLOAT_IS_INF = 32000
_FLOAT_IS_NINF = 32001
_FLOAT_IS_NAN = 32002


# --- the byte-level reader -----------------------------------------------------------------------------


class _Reader:
    """A cursor over the bytes of one dlib file, decoding dlib's portable encodings."""

    def __init__(self, data: bytes, source: str) -> None:
        self._data = data
        self._view = memoryview(data)
        self.pos = 0
        self.source = source

    def error(self, message: str) -> ModelError:
        return ModelError(
            f"{self.source}: {message} (at byte {self.pos}); not a dlib network file of the expected kind",
            details={"file": self.source, "offset": self.pos},
        )

    def at_end(self) -> bool:
        return self.pos == len(self._data)

    def _take(self, count: int) -> memoryview:
        if count < 0 or self.pos + count > len(self._data):
            raise self.error(f"truncated: wanted {count} more bytes")
        chunk = self._view[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def read_int(self) -> int:
        # A control byte (bit 7: negative, low nibble: byte count) then the magnitude, little endian.
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.error(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_uint(self) -> int:
        value = self.read_int()
        if value < 0:
            raise self.error(f"expected an unsigned integer, got {value}")
        return value

    def read_float(self) -> float:
        # dlib's float_details: a signed mantissa and a 16-bit exponent, value = mantissa * 2**exponent.
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _FLOAT_IS_INF:
            return math.inf
        if exponent == _FLOAT_IS_NINF:
            return -math.inf
        if exponent == _FLOAT_IS_NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def read_bool(self) -> bool:
        byte = self._take(1)[0]
        if byte not in (0x30, 0x31):
            raise self.error(f"bad bool byte 0x{byte:02x}")
        return byte == 0x31

    def read_byte(self) -> int:
        return int(self._take(1)[0])

    def read_string(self) -> str:
        length = self.read_uint()
        return bytes(self._take(length)).decode("utf-8", errors="replace")

    def read_tensor(self) -> FloatArray:
        """A ``resizable_tensor``: shape ``(num_samples, k, nr, nc)``, then little-endian float32 values."""
        version = self.read_int()
        if version != 2:
            raise self.error(f"unsupported dlib tensor serialization version {version} (only 2, dlib >= 19.3)")
        shape = (self.read_uint(), self.read_uint(), self.read_uint(), self.read_uint())
        count = shape[0] * shape[1] * shape[2] * shape[3]
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only a shape ``(num_samples, k, nr, nc)`` that views into a params tensor."""
        version = self.read_int()
        if version != 1:
            raise self.error(f"unsupported dlib alias_tensor version {version}")
        return (self.read_uint(), self.read_uint(), self.read_uint(), self.read_uint())

    def expect_string(self, *allowed: str) -> str:
        value = self.read_string()
        if value not in allowed:
            raise self.error(f"expected {' or '.join(map(repr, allowed))}, found {value!r}")
        return value


# --- what a dlib network is made of ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Conv:
    """``con_``: ``filters`` is ``(num_filters, k, nr, nc)``, as ONNX's Conv wants it."""

    filters: FloatArray
    bias: FloatArray
    stride_yx: tuple[int, int]
    padding_yx: tuple[int, int]


@dataclass(frozen=True, slots=True, eq=False)
class Affine:
    """``affine_`` (or a ``bn_`` in inference form): ``y = x * gamma + beta``.

    ``gamma``/``beta`` are ``(1, k, 1, 1)`` in convolution mode and ``(1, k, nr, nc)`` in fc mode.
    """

    gamma: FloatArray
    beta: FloatArray


@dataclass(frozen=True, slots=True)
class Relu:
    """``relu_``."""


@dataclass(frozen=True, slots=True)
class Pool:
    """``max_pool_`` or ``avg_pool_``; a zero window means "the whole input" (``*_pool_everything``)."""

    kind: Literal["max", "avg"]
    window_yx: tuple[int, int]
    stride_yx: tuple[int, int]
    padding_yx: tuple[int, int]


@dataclass(frozen=True, slots=True, eq=False)
class FullyConnected:
    """``fc_``: ``weights`` is ``(num_inputs, num_outputs)``; ``bias`` is None for ``fc_no_bias``."""

    weights: FloatArray
    bias: FloatArray | None


@dataclass(frozen=True, slots=True)
class Multiply:
    """``multiply_`` (also what a ``dropout_`` becomes at inference)."""

    value: float


@dataclass(frozen=True, slots=True)
class AddPrev:
    """``add_prev_<tagN>``: adds the output of the nearest ``tagN`` below, zero-padding the smaller one."""

    tag: int


@dataclass(frozen=True, slots=True)
class Tag:
    """``tagN``: remembers the tensor flowing through it."""

    tag: int


@dataclass(frozen=True, slots=True)
class Skip:
    """``skipN``: replaces the current tensor with the one remembered by the nearest ``tagN`` below."""

    tag: int


Layer = Conv | Affine | Relu | Pool | FullyConnected | Multiply | AddPrev | Tag | Skip


@dataclass(frozen=True, slots=True)
class RgbImageSizedInput:
    """``input_rgb_image_sized<NR, NC>``: ``(pixel - mean) / 256`` per channel."""

    mean_rgb: tuple[float, float, float]
    size_wh: tuple[int, int]


@dataclass(frozen=True, slots=True)
class RgbImagePyramidInput:
    """``input_rgb_image_pyramid<pyramid_down<N>>``: a tiled pyramid of ``(pixel - mean) / 256``."""

    mean_rgb: tuple[float, float, float]
    pyramid_padding: int
    pyramid_outer_padding: int


InputLayer = RgbImageSizedInput | RgbImagePyramidInput


@dataclass(frozen=True, slots=True)
class MetricLoss:
    """``loss_metric_``: the network output is the embedding; the margins only matter for training."""

    margin: float
    distance_threshold: float


@dataclass(frozen=True, slots=True)
class DetectorWindow:
    width: int
    height: int
    label: str = ""


@dataclass(frozen=True, slots=True)
class BoxOverlap:
    """dlib's ``test_box_overlap``: two boxes overlap when IoU > ``iou`` or either is covered > ``covered``."""

    iou: float
    covered: float


@dataclass(frozen=True, slots=True)
class MmodLoss:
    """``loss_mmod_``'s options: the sliding windows and the NMS rule a decoder needs."""

    detector_windows: tuple[DetectorWindow, ...]
    loss_per_false_alarm: float
    loss_per_missed_target: float
    truth_match_iou_threshold: float
    overlaps_nms: BoxOverlap
    overlaps_ignore: BoxOverlap
    assume_image_pyramid: bool
    use_bounding_box_regression: bool
    bbr_lambda: float


LossLayer = MetricLoss | MmodLoss


@dataclass(frozen=True, slots=True, eq=False)
class DlibNetwork:
    """A dlib network as read from its file: ``layers`` run from the input upwards."""

    input: InputLayer
    layers: tuple[Layer, ...]
    loss: LossLayer


# --- architectures, transcribed from the C++ types ---------------------------------------------------------

_Family = Literal["con", "affine", "relu", "max_pool", "avg_pool", "fc", "multiply", "add_prev"]


@dataclass(frozen=True, slots=True)
class _Slot:
    """One template in the nesting: an ``add_layer`` (with the family of its details), a tag or a skip."""

    kind: Literal["layer", "tag", "skip"]
    family: _Family | None = None
    tag: int = 0


def _layer(family: _Family, tag: int = 0) -> _Slot:
    return _Slot("layer", family, tag)


def _resnet_architecture() -> list[_Slot]:
    """``anet_type`` of ``dnn_face_recognition_ex.cpp``, outermost template first."""

    def block() -> list[_Slot]:
        # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>> with BN = affine
        return [_layer("affine"), _layer("con"), _layer("relu"), _layer("affine"), _layer("con")]

    def ares() -> list[_Slot]:
        # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
        return [_layer("relu"), _layer("add_prev", 1), *block(), _Slot("tag", tag=1)]

    def ares_down() -> list[_Slot]:
        # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
        return [
            _layer("relu"),
            _layer("add_prev", 2),
            _layer("avg_pool"),
            _Slot("skip", tag=1),
            _Slot("tag", tag=2),
            *block(),
            _Slot("tag", tag=1),
        ]

    level0 = ares_down()
    level1 = [*ares(), *ares(), *ares_down()]
    level2 = [*ares(), *ares(), *ares_down()]
    level3 = [*ares(), *ares(), *ares(), *ares_down()]
    level4 = [*ares(), *ares(), *ares()]
    return [
        _layer("fc"),
        _layer("avg_pool"),
        *level0,
        *level1,
        *level2,
        *level3,
        *level4,
        _layer("max_pool"),
        _layer("relu"),
        _layer("affine"),
        _layer("con"),
    ]


def _mmod_architecture() -> list[_Slot]:
    """``net_type`` of ``dnn_mmod_face_detection_ex.cpp``, outermost template first."""

    def rcon5() -> list[_Slot]:
        return [_layer("relu"), _layer("affine"), _layer("con")]

    downsampler = rcon5() * 3  # three relu<affine<con5d<...>>> (5x5, stride 2)
    return [_layer("con"), *rcon5(), *rcon5(), *rcon5(), *downsampler]


MMOD_PYRAMID_DOWN = 6
"""``pyramid_down<6>`` of the detector's input layer: each level is 5/6 the size of the one above.

It is a template argument, so it is not in the file; it comes from the C++ type like the architecture.
"""


# --- parsing ----------------------------------------------------------------------------------------------


def _read_layer_details(reader: _Reader, slot: _Slot) -> Layer:
    name = reader.read_string()
    family = slot.family
    if name == "con_4" and family == "con":
        params = reader.read_tensor().reshape(-1)
        num_filters, nr, nc = reader.read_int(), reader.read_int(), reader.read_int()
        stride_yx = (reader.read_int(), reader.read_int())
        padding_yx = (reader.read_int(), reader.read_int())
        filters_shape = reader.read_alias_tensor()
        bias_shape = reader.read_alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            reader.read_float()
        count = int(np.prod(filters_shape))
        if filters_shape[0] != num_filters or filters_shape[2:] != (nr, nc) or bias_shape[1] != num_filters:
            raise reader.error(f"con_ shapes disagree: filters {filters_shape}, biases {bias_shape}")
        if params.size != count + num_filters:
            raise reader.error(f"con_ has {params.size} parameters, its shapes need {count + num_filters}")
        return Conv(
            filters=params[:count].reshape(filters_shape).copy(),
            bias=params[count:].copy(),
            stride_yx=stride_yx,
            padding_yx=padding_yx,
        )
    if name == "affine_" and family == "affine":
        params = reader.read_tensor().reshape(-1)
        gamma_shape = reader.read_alias_tensor()
        beta_shape = reader.read_alias_tensor()
        reader.read_int()  # layer_mode: the gamma shape already says conv (1,k) or fc (1,k,nr,nc)
        size = int(np.prod(gamma_shape))
        if gamma_shape != beta_shape or params.size != 2 * size:
            raise reader.error(f"affine_ shapes disagree: gamma {gamma_shape}, beta {beta_shape}")
        return Affine(gamma=params[:size].reshape(gamma_shape).copy(), beta=params[size:].reshape(beta_shape).copy())
    if name in ("bn_con2", "bn_fc2") and family == "affine":
        # A network saved with bn_ layers loads into affine_ ones: dlib folds the running statistics.
        params = reader.read_tensor().reshape(-1)
        gamma_shape = reader.read_alias_tensor()
        reader.read_alias_tensor()
        reader.read_tensor()  # means of the last training batch
        reader.read_tensor()  # invstds of the last training batch
        running_means = reader.read_tensor().reshape(-1).astype(np.float64)
        running_variances = reader.read_tensor().reshape(-1).astype(np.float64)
        reader.read_uint()  # num_updates
        reader.read_uint()  # running_stats_window_size
        for _ in range(4):
            reader.read_float()
        eps = reader.read_float()
        size = int(np.prod(gamma_shape))
        scale = params[:size].astype(np.float64) / np.sqrt(running_variances + eps)
        shift = params[size : 2 * size].astype(np.float64) - scale * running_means
        return Affine(
            gamma=scale.astype(np.float32).reshape(gamma_shape), beta=shift.astype(np.float32).reshape(gamma_shape)
        )
    if name == "relu_" and family == "relu":
        return Relu()
    if name in ("max_pool_2", "avg_pool_2") and family in ("max_pool", "avg_pool"):
        if name[:3] != family[:3]:
            raise reader.error(f"expected a {family} layer, found {name!r}")
        window_yx = (reader.read_int(), reader.read_int())
        stride_yx = (reader.read_int(), reader.read_int())
        padding_yx = (reader.read_int(), reader.read_int())
        return Pool(
            kind="max" if family == "max_pool" else "avg",
            window_yx=window_yx,
            stride_yx=stride_yx,
            padding_yx=padding_yx,
        )
    if name == "fc_2" and family == "fc":
        num_outputs, num_inputs = reader.read_uint(), reader.read_uint()
        params = reader.read_tensor().reshape(-1)
        reader.read_alias_tensor()
        reader.read_alias_tensor()
        has_bias = reader.read_int() == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        for _ in range(4):
            reader.read_float()
        count = num_inputs * num_outputs
        if params.size != count + (num_outputs if has_bias else 0):
            raise reader.error(f"fc_ has {params.size} parameters for {num_inputs}x{num_outputs}")
        return FullyConnected(
            weights=params[:count].reshape(num_inputs, num_outputs).copy(),
            bias=params[count:].copy() if has_bias else None,
        )
    if name == "multiply_" and family == "multiply":
        return Multiply(value=reader.read_float())
    if name == "dropout_" and family == "multiply":
        drop_rate = reader.read_float()
        reader.read_tensor()  # the last training mask
        return Multiply(value=1.0 - drop_rate)
    if name == "add_prev_" and family == "add_prev":
        return AddPrev(tag=slot.tag)
    raise reader.error(f"expected a {family} layer, found {name!r}")


def _read_input(reader: _Reader, expected: type[InputLayer]) -> InputLayer:
    name = reader.read_string()
    if expected is RgbImageSizedInput and name == "input_rgb_image_sized":
        mean = (reader.read_float(), reader.read_float(), reader.read_float())
        nr, nc = reader.read_uint(), reader.read_uint()
        return RgbImageSizedInput(mean_rgb=mean, size_wh=(nc, nr))
    if expected is RgbImagePyramidInput and name in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        mean = (reader.read_float(), reader.read_float(), reader.read_float())
        padding, outer = 10, 11  # dlib's defaults, used by files written before the padding was stored
        if name == "input_rgb_image_pyramid2":
            padding, outer = reader.read_uint(), reader.read_uint()
        return RgbImagePyramidInput(mean_rgb=mean, pyramid_padding=padding, pyramid_outer_padding=outer)
    raise reader.error(f"expected a {expected.__name__} input layer, found {name!r}")


def _read_box_overlap(reader: _Reader) -> BoxOverlap:
    return BoxOverlap(iou=reader.read_float(), covered=reader.read_float())


def _read_loss(reader: _Reader, expected: type[LossLayer]) -> LossLayer:
    name = reader.read_string()
    if expected is MetricLoss and name == "loss_metric_2":
        return MetricLoss(margin=reader.read_float(), distance_threshold=reader.read_float())
    if expected is MmodLoss and name == "loss_mmod_":
        version = reader.read_int()
        if not 1 <= version <= 4:
            raise reader.error(f"unsupported mmod_options version {version}")
        if version == 1:
            windows: list[DetectorWindow] = [DetectorWindow(width=reader.read_uint(), height=reader.read_uint())]
        else:
            windows = []
            for _ in range(reader.read_uint()):
                window_version = reader.read_int()
                width, height = reader.read_uint(), reader.read_uint()
                label = reader.read_string() if window_version >= 2 else ""
                windows.append(DetectorWindow(width=width, height=height, label=label))
        loss_per_false_alarm = reader.read_float()
        loss_per_missed_target = reader.read_float()
        truth_match_iou_threshold = reader.read_float()
        overlaps_nms = _read_box_overlap(reader)
        overlaps_ignore = _read_box_overlap(reader)
        assume_image_pyramid = reader.read_byte() != 0 if version >= 3 else True
        use_bbr, bbr_lambda = False, 100.0
        if version >= 4:
            use_bbr, bbr_lambda = reader.read_bool(), reader.read_float()
        return MmodLoss(
            detector_windows=tuple(windows),
            loss_per_false_alarm=loss_per_false_alarm,
            loss_per_missed_target=loss_per_missed_target,
            truth_match_iou_threshold=truth_match_iou_threshold,
            overlaps_nms=overlaps_nms,
            overlaps_ignore=overlaps_ignore,
            assume_image_pyramid=assume_image_pyramid,
            use_bounding_box_regression=use_bbr,
            bbr_lambda=bbr_lambda,
        )
    raise reader.error(f"expected a {expected.__name__} loss layer, found {name!r}")


def _parse_network(
    data: bytes,
    source: str,
    architecture: Sequence[_Slot],
    input_type: type[InputLayer],
    loss_type: type[LossLayer],
) -> DlibNetwork:
    reader = _Reader(data, source)
    if reader.read_int() != 1:
        raise reader.error("unsupported add_loss_layer version")
    loss = _read_loss(reader, loss_type)

    # Each template writes its version, then its subnetwork, then its own fields: so all versions come
    # first (outermost first), then the input layer, then the fields from the innermost layer outwards.
    last = len(architecture) - 1
    bottom_version = 0
    for index, slot in enumerate(architecture):
        version = reader.read_int()
        on_input = index == last
        if slot.kind == "layer":
            allowed = (2, 3) if on_input else (2,)
        elif slot.kind == "tag":
            allowed = (1, 2) if on_input else (1,)
        else:
            allowed = (1,)
        if version not in allowed:
            raise reader.error(f"layer {index} ({slot.kind} {slot.family or slot.tag}): unexpected version {version}")
        if on_input:
            bottom_version = version
    network_input = _read_input(reader, input_type)

    layers: list[Layer] = []
    for index in range(last, -1, -1):
        slot = architecture[index]
        on_input = index == last
        if slot.kind == "layer":
            layers.append(_read_layer_details(reader, slot))
            reader.read_bool()  # this_layer_setup_called
            reader.read_bool()  # gradient_input_is_stale
            reader.read_bool()  # get_output_and_gradient_input_disabled
            reader.read_tensor()  # x_grad
            reader.read_tensor()  # cached_output
            if on_input:
                reader.read_tensor()  # grad_final
                if bottom_version >= 3:
                    reader.read_uint()  # sample_expansion_factor
            else:
                reader.read_tensor()  # params_grad
        elif slot.kind == "tag":
            if on_input:
                reader.read_tensor()  # cached_output
                reader.read_tensor()  # grad_final
                reader.read_bool()  # gradient_input_is_stale
                if bottom_version >= 2:
                    reader.read_uint()  # sample_expansion_factor
            layers.append(Tag(tag=slot.tag))
        else:
            layers.append(Skip(tag=slot.tag))
    if not reader.at_end():
        raise reader.error("unread bytes after the network: the file holds a different network")
    return DlibNetwork(input=network_input, layers=tuple(layers), loss=loss)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise ModelNotFoundError(f"dlib model file {path} not found", details={"file": str(path)}) from err
    except OSError as err:
        raise ModelError(f"cannot read dlib model file {path}: {err}", details={"file": str(path)}) from err


def read_dlib_resnet(dat_path: Path) -> DlibNetwork:
    """Read ``dlib_face_recognition_resnet_model_v1.dat`` (or a file with the same architecture).

    Raises:
        ModelNotFoundError: the file does not exist.
        ModelError: the file is not that network in dlib's format.
    """
    return _parse_network(_read_file(dat_path), str(dat_path), _resnet_architecture(), RgbImageSizedInput, MetricLoss)


def read_dlib_mmod(dat_path: Path) -> DlibNetwork:
    """Read ``mmod_human_face_detector.dat`` (or a file with the same architecture).

    Raises:
        ModelNotFoundError: the file does not exist.
        ModelError: the file is not that network in dlib's format.
    """
    return _parse_network(_read_file(dat_path), str(dat_path), _mmod_architecture(), RgbImagePyramidInput, MmodLoss)


# --- geometry of the detector -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MmodParams:
    """What a decoder needs besides the score map, all read from the ``.dat`` file (or the C++ type).

    A score-map cell ``(x, y)`` is the centre of a window at ``(feature_stride * x + feature_offset, ...)``
    in the input tensor (the tiled pyramid).

    Example:
        >>> params = MmodParams.from_onnx(onnx.load("mmod.onnx"))  # doctest: +SKIP
        >>> params.detector_windows[0].width                       # doctest: +SKIP
        80
    """

    mean_rgb: tuple[float, float, float]
    pyramid_down: int
    pyramid_padding: int
    pyramid_outer_padding: int
    detector_windows: tuple[DetectorWindow, ...]
    overlaps_nms: BoxOverlap
    feature_stride: int
    feature_offset: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "mean_rgb": list(self.mean_rgb),
                "pyramid_down": self.pyramid_down,
                "pyramid_padding": self.pyramid_padding,
                "pyramid_outer_padding": self.pyramid_outer_padding,
                "detector_windows": [[w.width, w.height, w.label] for w in self.detector_windows],
                "overlaps_nms": [self.overlaps_nms.iou, self.overlaps_nms.covered],
                "feature_stride": self.feature_stride,
                "feature_offset": self.feature_offset,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MmodParams:
        try:
            data = json.loads(text)
            mean = [float(v) for v in data["mean_rgb"]]
            nms = [float(v) for v in data["overlaps_nms"]]
            return cls(
                mean_rgb=(mean[0], mean[1], mean[2]),
                pyramid_down=int(data["pyramid_down"]),
                pyramid_padding=int(data["pyramid_padding"]),
                pyramid_outer_padding=int(data["pyramid_outer_padding"]),
                detector_windows=tuple(
                    DetectorWindow(width=int(w), height=int(h), label=str(label))
                    for w, h, label in data["detector_windows"]
                ),
                overlaps_nms=BoxOverlap(iou=nms[0], covered=nms[1]),
                feature_stride=int(data["feature_stride"]),
                feature_offset=int(data["feature_offset"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as err:
            raise ModelError(f"malformed MMOD parameters in model metadata: {err}") from err

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> MmodParams:
        for prop in model.metadata_props:
            if prop.key == MMOD_PARAMS_KEY:
                return cls.from_json(prop.value)
        raise ModelError(f"the ONNX model has no {MMOD_PARAMS_KEY!r} metadata: not converted by faceprint")


def mmod_params(network: DlibNetwork) -> MmodParams:
    """The decoder parameters of a network read by :func:`read_dlib_mmod`."""
    if not isinstance(network.input, RgbImagePyramidInput) or not isinstance(network.loss, MmodLoss):
        raise ModelError("not an MMOD detector network")
    # Compose dlib's map_output_to_input (p * stride - padding + window // 2) from the top layer down.
    stride, offset = 1, 0
    for layer in reversed(network.layers):
        if isinstance(layer, Conv):
            kernel, step, pad = layer.filters.shape[2], layer.stride_yx[0], layer.padding_yx[0]
            if (layer.filters.shape[3], layer.stride_yx[1], layer.padding_yx[1]) != (kernel, step, pad):
                raise ModelError("MMOD decoding assumes square kernels, strides and paddings")
        elif isinstance(layer, Pool):
            kernel, step, pad = layer.window_yx[0], layer.stride_yx[0], layer.padding_yx[0]
        else:
            continue
        # p_in = step * p_out - pad + kernel // 2, applied to p_out = stride * p + offset
        stride, offset = step * stride, step * offset - pad + kernel // 2
    return MmodParams(
        mean_rgb=network.input.mean_rgb,
        pyramid_down=MMOD_PYRAMID_DOWN,
        pyramid_padding=network.input.pyramid_padding,
        pyramid_outer_padding=network.input.pyramid_outer_padding,
        detector_windows=network.loss.detector_windows,
        overlaps_nms=network.loss.overlaps_nms,
        feature_stride=stride,
        feature_offset=offset,
    )


# --- the ONNX graph ---------------------------------------------------------------------------------------


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - onnx is a core dependency
        raise BackendUnavailableError("the onnx package is not installed: `pip install onnx`") from err
    return onnx


Shape = tuple[int | None, int | None, int | None]
"""Per-sample ``(k, nr, nc)``; None where it depends on the input size."""


@dataclass(slots=True)
class _GraphBuilder:
    onnx: Any
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    _count: int = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint: str, value: npt.NDArray[Any]) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], shape: Shape, **attrs: Any) -> str:
        output = self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], name=output, **attrs))
        self.shapes[output] = shape
        return output


def _pooled(size: int | None, window: int, stride: int, pad: int) -> int | None:
    return None if size is None else (size + 2 * pad - window) // stride + 1


def _add_layer(graph: _GraphBuilder, layer: Layer, current: str, tags: dict[int, str]) -> str:
    k, nr, nc = graph.shapes[current]
    if isinstance(layer, Conv):
        filters, (sy, sx), (py, px) = layer.filters, layer.stride_yx, layer.padding_yx
        if k is not None and filters.shape[1] != k:
            raise ModelError(f"con_ expects {filters.shape[1]} channels, gets {k}")
        shape: Shape = (
            filters.shape[0],
            _pooled(nr, filters.shape[2], sy, py),
            _pooled(nc, filters.shape[3], sx, px),
        )
        inputs = [current, graph.constant("conv_w", filters), graph.constant("conv_b", layer.bias)]
        return graph.node(
            "Conv", inputs, shape, kernel_shape=list(filters.shape[2:]), strides=[sy, sx], pads=[py, px, py, px]
        )
    if isinstance(layer, Affine):
        gamma = layer.gamma.reshape(1, -1, *layer.gamma.shape[2:])
        beta = layer.beta.reshape(gamma.shape)
        scaled = graph.node("Mul", [current, graph.constant("gamma", gamma)], (k, nr, nc))
        return graph.node("Add", [scaled, graph.constant("beta", beta)], (k, nr, nc))
    if isinstance(layer, Relu):
        return graph.node("Relu", [current], (k, nr, nc))
    if isinstance(layer, Multiply):
        return graph.node("Mul", [current, graph.constant("scale", np.array(layer.value, np.float32))], (k, nr, nc))
    if isinstance(layer, Pool):
        op = "MaxPool" if layer.kind == "max" else "AveragePool"
        (wy, wx), (sy, sx), (py, px) = layer.window_yx, layer.stride_yx, layer.padding_yx
        if wy == 0 and wx == 0 and (py, px) == (0, 0):
            return graph.node("Global" + op, [current], (k, 1, 1))
        if wy == 0 or wx == 0:
            raise ModelError("pooling over the whole of only one axis is not supported")
        shape = (k, _pooled(nr, wy, sy, py), _pooled(nc, wx, sx, px))
        # dlib averages over the in-image part of a window only, like count_include_pad=0.
        return graph.node(op, [current], shape, kernel_shape=[wy, wx], strides=[sy, sx], pads=[py, px, py, px])
    if isinstance(layer, FullyConnected):
        num_inputs, num_outputs = layer.weights.shape
        if None not in (k, nr, nc) and (k or 0) * (nr or 0) * (nc or 0) != num_inputs:
            raise ModelError(f"fc_ expects {num_inputs} inputs, gets {k}x{nr}x{nc}")
        flat = graph.node("Flatten", [current], (num_inputs, 1, 1), axis=1)
        inputs = [flat, graph.constant("fc_w", layer.weights)]
        if layer.bias is not None:
            inputs.append(graph.constant("fc_b", layer.bias))
        product = graph.node("Gemm", inputs, (num_outputs, 1, 1))
        # dlib's fc output is (n, num_outputs, 1, 1); keep every tensor 4-d like dlib's.
        return graph.node(
            "Reshape",
            [product, graph.constant("shape", np.array([0, num_outputs, 1, 1], np.int64))],
            (num_outputs, 1, 1),
        )
    if isinstance(layer, Tag):
        tags[layer.tag] = current
        return current
    if isinstance(layer, Skip):
        if layer.tag not in tags:
            raise ModelError(f"skip{layer.tag} without a tag{layer.tag} below it")
        return tags[layer.tag]
    if isinstance(layer, AddPrev):
        if layer.tag not in tags:
            raise ModelError(f"add_prev{layer.tag} without a tag{layer.tag} below it")
        other = tags[layer.tag]
        a_shape, b_shape = graph.shapes[current], graph.shapes[other]
        if a_shape == b_shape:
            return graph.node("Add", [current, other], a_shape)
        if None in a_shape or None in b_shape:
            raise ModelError("add_prev of tensors whose sizes differ by input size is not supported")
        # dlib adds tensors of different sizes as if the smaller were zero-padded at the end of each axis.
        sizes = [max(int(a or 0), int(b or 0)) for a, b in zip(a_shape, b_shape, strict=True)]
        target: Shape = (sizes[0], sizes[1], sizes[2])
        padded = []
        for name, own in ((current, a_shape), (other, b_shape)):
            if own == target:
                padded.append(name)
                continue
            grow = [t - int(s or 0) for t, s in zip(sizes, own, strict=True)]
            pads = np.array([0, 0, 0, 0, 0, *grow], np.int64)
            padded.append(graph.node("Pad", [name, graph.constant("pads", pads)], target, mode="constant"))
        return graph.node("Add", padded, target)
    raise ModelError(f"unsupported layer {type(layer).__name__}")  # pragma: no cover - Layer is closed


def _make_model(
    graph: _GraphBuilder,
    *,
    input_name: str,
    input_shape: list[int | str],
    output: str,
    output_name: str,
    output_shape: list[int | str],
    graph_name: str,
    metadata: dict[str, str],
) -> onnx.ModelProto:
    helper = graph.onnx.helper
    graph.nodes.append(helper.make_node("Identity", [output], [output_name], name="output"))
    proto = helper.make_graph(
        graph.nodes,
        graph_name,
        [helper.make_tensor_value_info(input_name, graph.onnx.TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output_name, graph.onnx.TensorProto.FLOAT, output_shape)],
        initializer=graph.initializers,
    )
    model = helper.make_model(
        proto, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="faceprint.dlib_to_onnx"
    )
    model.ir_version = ONNX_IR_VERSION
    model.producer_version = str(CONVERTER_VERSION)
    helper.set_model_props(model, metadata)
    graph.onnx.checker.check_model(model)
    checked: onnx.ModelProto = model
    return checked


def network_to_onnx(network: DlibNetwork, *, graph_name: str = "dlib") -> onnx.ModelProto:
    """The ONNX graph of a network read by :func:`read_dlib_resnet` or :func:`read_dlib_mmod`.

    Sized-input networks take raw 0-255 RGB as float32 NCHW and normalise inside the graph (the metadata
    key :data:`INPUT_NORMALIZATION_KEY` says so). Pyramid-input networks take the normalised tiled
    pyramid, since building it is not a graph operation; the metadata key :data:`MMOD_PARAMS_KEY` holds
    what is needed to build it and to decode the score map.
    """
    onnx = _import_onnx()
    graph = _GraphBuilder(onnx)
    metadata: dict[str, str] = {"faceprint.converter_version": str(CONVERTER_VERSION)}
    input_shape: list[int | str]
    output_shape: list[int | str]
    if isinstance(network.input, RgbImageSizedInput):
        width, height = network.input.size_wh
        input_name, input_shape = RESNET_INPUT, ["batch", 3, height, width]
        graph.shapes[input_name] = (3, height, width)
        mean = np.array(network.input.mean_rgb, np.float32).reshape(1, 3, 1, 1)
        centred = graph.node("Sub", [input_name, graph.constant("mean", mean)], (3, height, width))
        # 1/256 is a power of two, so multiplying is bit-identical to dlib's division.
        current = graph.node(
            "Mul", [centred, graph.constant("inv_std", np.array(1 / 256, np.float32))], (3, height, width)
        )
        metadata[INPUT_NORMALIZATION_KEY] = json.dumps(
            {"mean": list(network.input.mean_rgb), "std": [256.0, 256.0, 256.0]}
        )
    else:
        input_name, input_shape = MMOD_INPUT, ["batch", 3, "height", "width"]
        graph.shapes[input_name] = (3, None, None)
        current = input_name
        metadata[MMOD_PARAMS_KEY] = mmod_params(network).to_json()
    tags: dict[int, str] = {}
    for layer in network.layers:
        current = _add_layer(graph, layer, current, tags)
    k, nr, nc = graph.shapes[current]
    if isinstance(network.loss, MetricLoss):
        if (nr, nc) != (1, 1) or k is None:
            raise ModelError(f"a metric network should end in a vector, not {k}x{nr}x{nc}")
        current = graph.node("Flatten", [current], (k, 1, 1), axis=1)
        output_name, output_shape = RESNET_OUTPUT, ["batch", k]
    else:
        output_name = MMOD_OUTPUT
        output_shape = ["batch", k if k is not None else "channels", "out_height", "out_width"]
    return _make_model(
        graph,
        input_name=input_name,
        input_shape=input_shape,
        output=current,
        output_name=output_name,
        output_shape=output_shape,
        graph_name=graph_name,
        metadata=metadata,
    )


def convert_dlib_resnet(dat_path: Path) -> onnx.ModelProto:
    """dlib's face-recognition ResNet as ONNX.

    Input ``chips``: float32 ``(n, 3, 150, 150)``, RGB values 0-255 (the mean/256 normalisation is in the
    graph). Output ``embeddings``: float32 ``(n, 128)``, what ``compute_face_descriptor`` returns.

    Raises:
        ModelNotFoundError: the file does not exist.
        ModelError: the file is not that network.
    """
    return network_to_onnx(read_dlib_resnet(dat_path), graph_name="dlib_face_recognition_resnet_model_v1")


def convert_dlib_mmod(dat_path: Path) -> onnx.ModelProto:
    """dlib's MMOD face detector CNN as ONNX.

    Input ``tensor``: float32 ``(n, 3, H, W)``, the normalised tiled image pyramid dlib builds. Output
    ``scores``: ``(n, windows, H', W')``, the final convolution's score map (> 0 means a detection before
    NMS). :meth:`MmodParams.from_onnx` reads the windows, pyramid and NMS settings back from the model.

    Raises:
        ModelNotFoundError: the file does not exist.
        ModelError: the file is not that network.
    """
    return network_to_onnx(read_dlib_mmod(dat_path), graph_name="mmod_human_face_detector")


# --- the on-disk cache ------------------------------------------------------------------------------------


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


Converter = Callable[[Path], "onnx.ModelProto"]

LOCK_FILE_NAME = ".lock"
"""The file in a cache directory that conversions hold an exclusive ``flock`` on."""


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/.lock``, so one process converts while others wait.

    Without ``fcntl`` (Windows), or in a directory that cannot be written (a read-only install), there
    is no lock: a process that must convert there fails on writing anyway, and one that finds the
    conversion done needs none.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = os.open(directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


class ConvertedModelMissingError(ModelNotFoundError):
    """Confidential mode needs a conversion the cache does not hold, and may not write it."""

    code = "converted_model_missing"


class ConvertedModelCache:
    """Converts dlib networks to ONNX once and keeps the result in a directory.

    Each conversion is ``<name>.onnx`` plus ``<name>.json``, a sidecar with the source file's sha256, the
    ONNX file's sha256 and the converter version. A conversion is redone when the source digest or the
    converter version changes; an ONNX file whose digest disagrees with its sidecar is refused. Both files
    are written atomically (temp file + ``os.replace``), the ONNX file first, so a crash leaves either the
    old pair or an ONNX file without a matching sidecar, which is converted again.

    Conversions hold an exclusive file lock on the directory (``.lock``), so N workers starting together
    on an empty cache convert once: the first converts, the others wait and then find its result. The
    ONNX file's digest is checked through ``digests`` (a :class:`~faceprint.models.store.DigestCache`),
    so a file seen before in the same version is not hashed again, in this process or the next.

    Args:
        directory: where conversions are kept, e.g. ``default_model_dir() / "converted"``.
        digests: the digest cache to check files with; None means one kept in ``directory``.
        converter_version: recorded in each sidecar; a conversion recorded with another version is redone
            (tests pass a new one to see that happen).

    Example:
        >>> cache = ConvertedModelCache(default_model_dir() / "converted")       # doctest: +SKIP
        >>> path = cache.resnet(Path("dlib_face_recognition_resnet_model_v1.dat"))  # doctest: +SKIP
    """

    def __init__(
        self, directory: Path, *, digests: DigestCache | None = None, converter_version: int = CONVERTER_VERSION
    ) -> None:
        self.directory = directory
        self.converter_version = converter_version
        self.digests = digests if digests is not None else DigestCache(directory / DIGESTS_FILE_NAME)
        self._lock = threading.Lock()
        self.conversions = 0
        """How many files this object converted or built (tests check that a warm cache converts none)."""

    def onnx_path(self, name: str) -> Path:
        return self.directory / f"{name}.onnx"

    def sidecar_path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def path_for(self, name: str, source: Path, convert: Converter, *, source_sha256: str | None = None) -> Path:
        """The verified ONNX conversion of ``source``, converting it first when missing or stale.

        Args:
            name: file stem in the cache directory, e.g. ``"dlib_face_recognition_resnet_model_v1"``.
            source: the dlib ``.dat`` file.
            convert: the converter, e.g. :func:`convert_dlib_resnet`.
            source_sha256: the source digest when the caller already verified it (saves reading it again).

        Raises:
            ChecksumMismatchError: the cached ONNX file does not match the digest in its sidecar.
            ModelError: the source cannot be read or converted, or the cache cannot be written.
        """
        _check_entry_name(name)
        if not source.is_file():
            raise ModelNotFoundError(f"dlib model file {source} not found", details={"file": str(source)})
        source_digest = source_sha256 if source_sha256 is not None else self.digests.digest(source)
        recipe: dict[str, Any] = {
            "source": source.name,
            "source_sha256": source_digest,
            "converter_version": self.converter_version,
        }
        return self.built_file(
            f"{name}.onnx",
            recipe,
            lambda: bytes(convert(source).SerializeToString()),
            digest_key="onnx_sha256",
            sidecar=self.sidecar_path(name),
        )

    def built_file(
        self,
        file_name: str,
        recipe: dict[str, Any],
        build: Callable[[], bytes],
        *,
        digest_key: str = "sha256",
        sidecar: Path | None = None,
    ) -> Path:
        """A file derived from ``recipe``, built by ``build`` once and reused while the recipe is unchanged.

        The sidecar (``<file stem>.json`` unless given) records the recipe and the file's sha256 under
        ``digest_key``. Used for the ONNX conversions and for dlib's built-in HOG detector serialised
        to a file (:func:`faceprint.detect.dlib_hog.load_frontal_face_detector`).

        Raises:
            ChecksumMismatchError: the cached file does not match the digest in its sidecar.
            ModelError: ``build`` failed, or the directory cannot be written.
        """
        _check_entry_name(file_name)
        path = self.directory / file_name
        sidecar = sidecar if sidecar is not None else self.directory / f"{Path(file_name).stem}.json"
        with self._lock:
            if self._fresh(path, sidecar, recipe, digest_key):
                return path
            if confidential_mode():
                raise ConvertedModelMissingError(
                    f"{path} is missing or stale, and confidential mode (FACEPRINT_CONFIDENTIAL) writes no cache: "
                    "load the models once without it (e.g. `faceprint embed` of any photo) to prepare the model dir",
                    details={"file": str(path)},
                )
            with _directory_lock(self.directory):
                # Another process may have built it while we waited for the lock.
                if self._fresh(path, sidecar, recipe, digest_key):
                    return path
                self._build(path, sidecar, recipe, build, digest_key)
            return path

    def resnet(self, source: Path, *, source_sha256: str | None = None) -> Path:
        """:meth:`path_for` of dlib's face-recognition ResNet."""
        return self.path_for(source.stem, source, convert_dlib_resnet, source_sha256=source_sha256)

    def mmod(self, source: Path, *, source_sha256: str | None = None) -> Path:
        """:meth:`path_for` of dlib's MMOD face detector."""
        return self.path_for(source.stem, source, convert_dlib_mmod, source_sha256=source_sha256)

    def _fresh(self, path: Path, sidecar: Path, recipe: dict[str, Any], digest_key: str) -> bool:
        """Whether ``path`` is built from ``recipe``; raises when it is but its bytes changed since."""
        recorded = _read_json(sidecar)
        if recorded is None or any(recorded.get(k) != v for k, v in recipe.items()) or not path.is_file():
            return False
        actual = self.digests.digest(path)
        if actual != recorded.get(digest_key):
            raise ChecksumMismatchError(
                f"{path} has sha256 {actual}, its sidecar records {recorded.get(digest_key)}; "
                "delete both files to convert again",
                details={"file": str(path), "expected": recorded.get(digest_key), "actual": actual},
            )
        return True

    def _build(
        self, path: Path, sidecar: Path, recipe: dict[str, Any], build: Callable[[], bytes], digest_key: str
    ) -> None:
        payload = build()
        self.conversions += 1
        sha256 = _sha256_bytes(payload)
        document = {**recipe, digest_key: sha256}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, payload)
            self.digests.remember(path, sha256)
            _write_atomically(sidecar, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        except OSError as err:
            raise ModelError(
                f"cannot write the converted model to {self.directory}: {err}",
                details={"directory": str(self.directory)},
            ) from err


def _check_entry_name(name: str) -> None:
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"bad cache entry name {name!r}")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
