"""Embedding models on ONNX Runtime: any ModelSpec'd ONNX embedder, and dlib's ResNet converted to ONNX.

Input normalisation is stated, never guessed. ``spec.input_mean``/``spec.input_std`` say what the network
sees, ``(pixel - mean) / std`` per channel; they are part of the contract id, so they do not depend on
where the subtraction happens. A graph that does the normalisation itself says so in its metadata
(:data:`~faceprint.models.dlib_to_onnx.INPUT_NORMALIZATION_KEY`, written by the dlib converter); the
embedder then feeds raw 0-255 values. That keeps one spec, and one contract, for dlib's ResNet on both
backends: its faceprints stay comparable whichever backend made them.

Example:
    >>> embedder = OnnxEmbedder(spec, Path("model.onnx"), batch_size=16)  # doctest: +SKIP
    >>> embedder.embed_chips([chip]).shape                                # doctest: +SKIP
    (1, 512)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceprint.embed.base import check_chips
from faceprint.errors import BackendUnavailableError, ModelError, ModelNotFoundError, UsageError
from faceprint.models.dlib_to_onnx import INPUT_NORMALIZATION_KEY, ConvertedModelCache
from faceprint.models.spec import ModelSpec
from faceprint.types import RGBImage

_IDENTITY_MEAN = (0.0, 0.0, 0.0)
_IDENTITY_STD = (1.0, 1.0, 1.0)
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    """Import onnxruntime lazily, with an actionable error when it is missing.

    Its telemetry is switched off first (``ORT_DISABLE_TELEMETRY``, read when the library loads): otherwise
    ONNX Runtime writes a device id and an event store under ``~/.cache/Microsoft`` and a session file in
    ``TMPDIR`` on every run, which confidential mode forbids (tests/confidential). A user's own setting wins.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(
            "onnxruntime is not installed: `pip install onnxruntime` (or `onnxruntime-gpu` for CUDA)",
            details={"package": "onnxruntime"},
        ) from err
    return onnxruntime


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the whole machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def create_session(
    model_path: Path,
    *,
    intra_op_threads: int | None = None,
    providers: Sequence[str] | None = None,
    allow_spinning: bool = False,
    variable_shapes: bool = False,
    optimized_cache: ConvertedModelCache | None = None,
) -> Any:
    """An onnxruntime session set up the one way faceprint runs networks (embedders and detectors).

    ``intra_op_threads`` defaults to every available core; one request runs at a time per session, so
    inter-op parallelism would only fight the intra-op threads. Spinning is off by default: with a core
    busy elsewhere, spinning threads halved throughput on a 2-core machine. CUDA is used when available.

    ``variable_shapes`` is for networks fed a new input shape on most calls (the MMOD detector sees each
    photo's own size): the CPU memory arena and memory patterns are turned off. With them, the arena
    keeps the largest block every shape ever needed, and a worker running MMOD over photos of varying
    sizes grew past 1 GB (``benchmarks/memory.py``); without them memory goes back after each call.

    With ``optimized_cache`` (CPU only), the graph ONNX Runtime optimises is kept in that cache, keyed by
    the model's digest, the onnxruntime version and the CPU, and loaded without optimising again: building
    the session of dlib's ResNet then costs ~0.03 s of CPU instead of ~0.17 s, in every process.
    """
    ort = import_onnxruntime()
    if not model_path.is_file():
        raise ModelNotFoundError(f"ONNX model {model_path} not found", details={"file": str(model_path)})
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads if intra_op_threads is not None else available_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    if variable_shapes:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    if providers is None:
        providers = [_CUDA, _CPU] if _CUDA in ort.get_available_providers() else [_CPU]
    if optimized_cache is not None and list(providers) == [_CPU]:
        optimized = _optimized_model(ort, model_path, optimized_cache)
        if optimized is not None:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(str(optimized), sess_options=options, providers=list(providers))
            except Exception:  # a cached graph this runtime refuses: optimise the model as usual
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=list(providers))
    except Exception as err:  # onnxruntime raises its own pybind exception types
        raise ModelError(f"cannot load ONNX model {model_path}: {err}", details={"file": str(model_path)}) from err


def _cpu_signature() -> str:
    """What the optimised graph depends on besides the model and runtime: the CPU model and features."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return f"{platform.machine()} {fields.get('model name', '')} {fields.get('flags', fields.get('Features', ''))}"


def _optimized_model(ort: Any, model_path: Path, cache: ConvertedModelCache) -> Path | None:
    """``model_path`` as ONNX Runtime optimises it for this CPU, written once into ``cache``; None if it fails."""
    recipe = {
        "source": model_path.name,
        "source_sha256": cache.digests.digest(model_path),
        "onnxruntime": str(ort.__version__),
        "cpu_sha256": hashlib.sha256(_cpu_signature().encode()).hexdigest(),
        "optimization": "ORT_ENABLE_ALL",
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def optimise() -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "optimized.onnx"
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.optimized_model_filepath = str(target)
            # The runtime warns that the file is for this machine only: the recipe's CPU key says so.
            options.log_severity_level = 3
            ort.InferenceSession(str(model_path), sess_options=options, providers=[_CPU])
            return target.read_bytes()

    try:
        return cache.built_file(f"{model_path.stem}.ort-{key}.onnx", recipe, optimise)
    except Exception:  # any failure here only costs the optimisation time: the model itself is fine
        return None


def _declared_normalization(metadata: dict[str, str]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    text = metadata.get(INPUT_NORMALIZATION_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
        mean = tuple(float(v) for v in data["mean"])
        std = tuple(float(v) for v in data["std"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ModelError(f"malformed {INPUT_NORMALIZATION_KEY} metadata in the ONNX model: {err}") from err
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"{INPUT_NORMALIZATION_KEY} must give 3 means and 3 stds")
    return mean, std


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    # Graph metadata holds float32 values (dlib stores its means as float), the spec decimal ones.
    return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6, atol=1e-4))


class OnnxEmbedder:
    """Runs an ONNX embedding model described by a :class:`ModelSpec` on ONNX Runtime.

    The model takes a float32 NCHW batch and returns ``(n, spec.embedding_dim)``. Chips are RGB uint8
    arrays of ``spec.input_size_wh``; the embedder reorders channels for ``color_order="bgr"``, normalises
    with ``input_mean``/``input_std`` unless the graph declares that it does so itself, and runs the chips
    in batches of ``batch_size`` (or of the model's fixed batch size, padding the last batch).

    Args:
        spec: the model's spec (its contract); ``backend`` is not checked, so dlib's spec can be reused.
        model_path: the ``.onnx`` file, already located and verified (``ModelStore.path_for`` or
            :class:`ConvertedModelCache`).
        batch_size: chips per ``run`` call.
        intra_op_threads: threads inside one operator; None means every core this process may use.
        providers: ONNX Runtime execution providers; None means CUDA when available, else CPU.
        allow_spinning: let idle intra-op threads busy-wait for work. Off by default: on shared cores
            (workers, containers, a laptop) spinning threads steal time from the ones computing; measured
            on 2 cores with one busy elsewhere, 2 spinning threads ran at half the speed of 1 thread.
        optimized_cache: keep the graph as ONNX Runtime optimises it in this cache, so the next session
            starts without optimising again (see :func:`create_session`); None optimises every time.

    Raises:
        BackendUnavailableError: onnxruntime is not installed.
        ModelNotFoundError: ``model_path`` does not exist.
        ModelError: the file is not a loadable ONNX model, or it disagrees with the spec.

    Example:
        >>> embedder = OnnxEmbedder(spec, Path("facenet.onnx"), intra_op_threads=2)  # doctest: +SKIP
        >>> vectors = embedder.embed_chips(chips)                                    # doctest: +SKIP
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        batch_size: int = 32,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
        allow_spinning: bool = False,
        optimized_cache: ConvertedModelCache | None = None,
    ) -> None:
        if spec.task != "embedding" or spec.input_size_wh is None or spec.embedding_dim is None:
            raise UsageError(f"model {spec.id} is not an embedding model")
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        if intra_op_threads is not None and intra_op_threads < 1:
            raise UsageError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        self._spec = spec
        self.model_path = model_path
        self._session = create_session(
            model_path,
            intra_op_threads=intra_op_threads,
            providers=providers,
            allow_spinning=allow_spinning,
            optimized_cache=optimized_cache,
        )
        self._input_name, self._output_name, self._fixed_batch = self._check_signature()
        self._mean, self._std = self._host_normalization(self._session.get_modelmeta().custom_metadata_map)
        self.batch_size = self._fixed_batch if self._fixed_batch is not None else batch_size

    @classmethod
    def from_dlib_resnet(
        cls,
        spec: ModelSpec,
        dat_path: Path,
        cache: ConvertedModelCache,
        *,
        source_sha256: str | None = None,
        batch_size: int = 32,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
        allow_spinning: bool = False,
    ) -> OnnxEmbedder:
        """dlib's ResNet (``spec`` is its catalog spec) converted to ONNX through ``cache`` and run here.

        The spec is reused with ``backend="onnx"``: the contract id leaves the backend out, so these
        faceprints compare with the ones :class:`DlibResnetEmbedder` makes.
        """
        onnx_path = cache.resnet(dat_path, source_sha256=source_sha256)
        return cls(
            dataclasses.replace(spec, backend="onnx"),
            onnx_path,
            batch_size=batch_size,
            intra_op_threads=intra_op_threads,
            providers=providers,
            allow_spinning=allow_spinning,
            optimized_cache=cache,
        )

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def backend_name(self) -> str:
        return "onnx"

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, best first."""
        return list(self._session.get_providers())

    def _check_signature(self) -> tuple[str, str, int | None]:
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        spec = self._spec
        by_name = {i.name: i for i in inputs}
        if spec.input_name is not None:
            if spec.input_name not in by_name:
                raise ModelError(f"{self.model_path} has no input {spec.input_name!r} (has {sorted(by_name)})")
            model_input = by_name[spec.input_name]
        elif len(inputs) == 1:
            model_input = inputs[0]
        else:
            raise ModelError(f"{self.model_path} has {len(inputs)} inputs; set input_name in the spec")
        output_names = [o.name for o in outputs]
        if spec.output_name is not None and spec.output_name not in output_names:
            raise ModelError(f"{self.model_path} has no output {spec.output_name!r} (has {output_names})")
        output_name = spec.output_name if spec.output_name is not None else output_names[0]

        if model_input.type != "tensor(float)":
            raise ModelError(f"{self.model_path}: input {model_input.name!r} is {model_input.type}, not float32")
        shape = list(model_input.shape)
        width, height = spec.input_size_wh or (0, 0)
        expected = [None, 3, height, width]
        if len(shape) != 4 or any(
            isinstance(dim, int) and want is not None and dim != want for dim, want in zip(shape, expected, strict=True)
        ):
            raise ModelError(
                f"{self.model_path}: input {model_input.name!r} has shape {shape}, "
                f"the spec needs NCHW (n, 3, {height}, {width})",
                details={"shape": [str(d) for d in shape]},
            )
        output = next(o for o in outputs if o.name == output_name)
        out_shape = list(output.shape)
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != spec.embedding_dim):
            raise ModelError(
                f"{self.model_path}: output {output_name!r} has shape {out_shape}, "
                f"the spec says (n, {spec.embedding_dim})"
            )
        fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        return model_input.name, output_name, fixed_batch

    def _host_normalization(self, metadata: dict[str, str]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        spec = self._spec
        declared = _declared_normalization(dict(metadata))
        mean, std = spec.input_mean, spec.input_std
        if declared is not None:
            spec_is_identity = _same(mean, _IDENTITY_MEAN) and _same(std, _IDENTITY_STD)
            if not (spec_is_identity or (_same(mean, declared[0]) and _same(std, declared[1]))):
                raise ModelError(
                    f"{self.model_path} normalises its input with mean {declared[0]} / std {declared[1]}, "
                    f"but spec {spec.id} says mean {mean} / std {std}",
                    details={"file": str(self.model_path), "model": spec.id},
                )
            mean, std = _IDENTITY_MEAN, _IDENTITY_STD
        return np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def _prepare(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        check_chips(self._spec, chips)
        batch = np.stack(chips).astype(np.float32)
        if self._spec.color_order == "bgr":
            batch = batch[..., ::-1]
        if np.any(self._mean != 0.0) or np.any(self._std != 1.0):
            batch = (batch - self._mean) / self._std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def embed_chips(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        """``(len(chips), embedding_dim)`` float32 embeddings, raw (not normalised).

        Raises:
            UsageError: a chip is not uint8 RGB of the spec's size.
            ModelError: the model returns something other than ``(n, embedding_dim)``.
        """
        dim = int(self._spec.embedding_dim or 0)
        if len(chips) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        rows: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(chips), self.batch_size):
            part = chips[start : start + self.batch_size]
            batch = self._prepare(part)
            count = batch.shape[0]
            if self._fixed_batch is not None and count < self._fixed_batch:
                filler = np.zeros((self._fixed_batch - count, *batch.shape[1:]), np.float32)
                batch = np.concatenate([batch, filler])
            (out,) = self._session.run([self._output_name], {self._input_name: batch})
            out = np.asarray(out)
            if out.ndim != 2 or out.shape[1] != dim or out.shape[0] < count:
                raise ModelError(f"{self.model_path} returned shape {out.shape}, expected ({batch.shape[0]}, {dim})")
            rows.append(out[:count].astype(np.float32, copy=False))
        return np.concatenate(rows)
