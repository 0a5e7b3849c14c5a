"""In-process similarity indexes over unit vectors: exact numpy, and FAISS ``IndexFlatIP`` for large galleries.

Both are *exact* (a flat inner-product scan): FAISS only brings a faster, multi-threaded scan, so on any
gallery the two give the same top-k up to float rounding. :func:`build_vector_index` picks FAISS by itself
when it is importable and the gallery holds more than :data:`FAISS_MIN_TEMPLATES` templates; below that
numpy's single matrix product is as fast and saves the import.

:class:`PersonIndex` adds per-person aggregation: a person's similarity is the maximum over their
templates.

Example:
    >>> vectors = np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32)
    >>> index = PersonIndex(vectors, np.array([0, 0, 1]), backend="numpy")
    >>> [(person, round(sim, 3)) for person, sim in index.search(np.array([[1, 0]], np.float32), top_k=2)[0]]
    [(0, 1.0), (1, 0.0)]
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from faceprint.errors import BackendUnavailableError, InvalidArgumentError, UsageError

IndexBackend = Literal["auto", "numpy", "faiss"]

FAISS_MIN_TEMPLATES = 50_000
"""Above this many templates ``backend="auto"`` uses FAISS when installed (measured: benchmarks/identify.py)."""

_QUERY_BLOCK_FLOATS = 1 << 24
"""Bound on the (queries x templates) similarity block numpy materialises at once: 64 MiB of float32."""

FloatMatrix = npt.NDArray[np.float32]
IntMatrix = npt.NDArray[np.int64]


def normalize_rows(vectors: npt.ArrayLike) -> FloatMatrix:
    """Float32 C-contiguous copy of ``vectors`` with every row scaled to unit length (zero rows stay zero).

    Example:
        >>> normalize_rows([[3.0, 4.0], [0.0, 0.0]]).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    matrix = np.array(vectors, dtype=np.float32, ndmin=2, copy=True)
    if matrix.ndim != 2:
        raise InvalidArgumentError(f"expected an (n, d) matrix, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return np.ascontiguousarray(matrix)


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("faiss") is not None


class VectorIndex(Protocol):
    """Top-k inner-product search over fixed unit vectors (rows)."""

    @property
    def backend(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def nbytes(self) -> int:
        """Memory held by the index's vectors."""
        ...

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IntMatrix]:
        """``(similarities, rows)``, both ``(m, min(k, size))``, best first per query."""
        ...


class NumpyIndex:
    """Exact search by one matrix product per block of queries.

    Example:
        >>> index = NumpyIndex(np.eye(3, dtype=np.float32))
        >>> index.search(np.array([[0, 1, 0]], np.float32), 1)[1].tolist()
        [[1]]
    """

    def __init__(self, unit_vectors: FloatMatrix) -> None:
        self._vectors = np.ascontiguousarray(unit_vectors, dtype=np.float32)

    @property
    def backend(self) -> str:
        return "numpy"

    @property
    def size(self) -> int:
        return int(self._vectors.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self._vectors.nbytes)

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IntMatrix]:
        count = self.size
        k = min(k, count)
        m = int(queries.shape[0])
        out_sims = np.empty((m, k), dtype=np.float32)
        out_rows = np.empty((m, k), dtype=np.int64)
        if k == 0:
            return out_sims, out_rows
        block = max(1, _QUERY_BLOCK_FLOATS // count)
        for start in range(0, m, block):
            sims = queries[start : start + block] @ self._vectors.T
            if k < count:
                rows = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                rows = np.broadcast_to(np.arange(count), sims.shape)
            top = np.take_along_axis(sims, rows, axis=1)
            # Stable sort on -similarity, then row, so ties come out in a reproducible order.
            order = np.lexsort((rows, -top), axis=1)
            out_rows[start : start + block] = np.take_along_axis(rows, order, axis=1)
            out_sims[start : start + block] = np.take_along_axis(top, order, axis=1)
        return out_sims, out_rows


class FaissIndex:
    """Exact search with FAISS ``IndexFlatIP`` (inner product = cosine on unit vectors).

    Example:
        >>> index = FaissIndex(np.eye(3, dtype=np.float32))  # doctest: +SKIP
        >>> index.search(np.array([[0, 1, 0]], np.float32), 1)[1].tolist()  # doctest: +SKIP
        [[1]]
    """

    def __init__(self, unit_vectors: FloatMatrix) -> None:
        try:
            faiss: Any = importlib.import_module("faiss")
        except ImportError as err:
            raise BackendUnavailableError(
                "the FAISS index needs the optional 'faiss' extra: pip install 'faceprint[faiss]'",
                details={"extra": "faiss"},
            ) from err
        vectors = np.ascontiguousarray(unit_vectors, dtype=np.float32)
        self._index: Any = faiss.IndexFlatIP(int(vectors.shape[1]))
        self._index.add(vectors)
        self._dim = int(vectors.shape[1])

    @property
    def backend(self) -> str:
        return "faiss"

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        return self.size * self._dim * 4

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IntMatrix]:
        k = min(k, self.size)
        m = int(queries.shape[0])
        if k == 0:
            return np.empty((m, 0), np.float32), np.empty((m, 0), np.int64)
        sims, rows = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.asarray(sims, dtype=np.float32), np.asarray(rows, dtype=np.int64)


def choose_backend(
    template_count: int, *, backend: IndexBackend = "auto", faiss_min_templates: int = FAISS_MIN_TEMPLATES
) -> Literal["numpy", "faiss"]:
    """The backend ``backend="auto"`` resolves to for a gallery of ``template_count`` templates.

    Example:
        >>> choose_backend(10)
        'numpy'
    """
    if backend == "auto":
        return "faiss" if template_count > faiss_min_templates and faiss_available() else "numpy"
    if backend in ("numpy", "faiss"):
        return backend
    raise UsageError(f"unknown index backend {backend!r}; choose auto, numpy or faiss")


def build_vector_index(
    unit_vectors: FloatMatrix, *, backend: IndexBackend = "auto", faiss_min_templates: int = FAISS_MIN_TEMPLATES
) -> VectorIndex:
    """An index over ``unit_vectors`` (rows already L2-normalised), numpy or FAISS as :func:`choose_backend` says.

    Example:
        >>> build_vector_index(np.eye(2, dtype=np.float32)).backend
        'numpy'
    """
    chosen = choose_backend(int(unit_vectors.shape[0]), backend=backend, faiss_min_templates=faiss_min_templates)
    if chosen == "faiss":
        return FaissIndex(unit_vectors)
    return NumpyIndex(unit_vectors)


class PersonIndex:
    """Top-k *persons* for probe vectors: a person's similarity is the max over their templates.

    Args:
        vectors: ``(n, d)`` template vectors (normalised here).
        person_rows: ``(n,)`` person number of each template, in ``0..person_count-1``.
        backend: ``"auto"``, ``"numpy"`` or ``"faiss"``.
        faiss_min_templates: the ``auto`` switch-over size.

    Example:
        >>> index = PersonIndex(np.eye(2, dtype=np.float32), np.array([0, 1]))
        >>> index.search(np.array([[0.0, 1.0]], np.float32), top_k=1)
        [[(1, 1.0)]]
    """

    def __init__(
        self,
        vectors: npt.ArrayLike,
        person_rows: npt.ArrayLike,
        *,
        backend: IndexBackend = "auto",
        faiss_min_templates: int = FAISS_MIN_TEMPLATES,
    ) -> None:
        unit = normalize_rows(vectors) if np.asarray(vectors).size else np.empty((0, 0), np.float32)
        rows = np.asarray(person_rows, dtype=np.int64).reshape(-1)
        if rows.shape[0] != unit.shape[0]:
            raise InvalidArgumentError(f"{unit.shape[0]} vectors but {rows.shape[0]} person numbers")
        self._person_rows = rows
        self._dim = int(unit.shape[1]) if unit.shape[0] else 0
        self._index: VectorIndex | None = (
            build_vector_index(unit, backend=backend, faiss_min_templates=faiss_min_templates)
            if unit.shape[0]
            else None
        )

    @property
    def backend(self) -> str:
        return "numpy" if self._index is None else self._index.backend

    @property
    def template_count(self) -> int:
        return int(self._person_rows.shape[0])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def nbytes(self) -> int:
        return (0 if self._index is None else self._index.nbytes) + int(self._person_rows.nbytes)

    def search(self, queries: npt.ArrayLike, *, top_k: int) -> list[list[tuple[int, float]]]:
        """For each query row, up to ``top_k`` ``(person number, similarity)`` pairs, best first."""
        return [[(person, sim) for person, sim, _ in hits] for hits in self.search_rows(queries, top_k=top_k)]

    def search_rows(self, queries: npt.ArrayLike, *, top_k: int) -> list[list[tuple[int, float, int]]]:
        """Like :meth:`search`, with the row of the template that gave each person's similarity.

        Example:
            >>> index = PersonIndex(np.eye(2, dtype=np.float32), np.array([0, 0]))
            >>> index.search_rows(np.array([[0.0, 1.0]], np.float32), top_k=1)
            [[(0, 1.0, 1)]]
        """
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        unit = normalize_rows(queries)
        m = int(unit.shape[0])
        if self._index is None:
            return [[] for _ in range(m)]
        if unit.shape[1] != self._dim:
            raise UsageError(f"probe has {unit.shape[1]} dimensions but the gallery holds {self._dim}-d templates")
        results: list[list[tuple[int, float, int]]] = [[] for _ in range(m)]
        pending = np.arange(m)
        count = self._index.size
        # A person can hold many templates, so the top-k persons may need more than k templates: widen the
        # template search until each query has k distinct persons or the whole gallery was scanned.
        fetch = min(count, max(4 * top_k, 16))
        while pending.size:
            sims, rows = self._index.search(unit[pending], fetch)
            still: list[int] = []
            for query_pos, query in enumerate(pending.tolist()):
                hits = self._aggregate(sims[query_pos], rows[query_pos], top_k)
                if len(hits) < top_k and fetch < count:
                    still.append(query)
                else:
                    results[query] = hits
            pending = np.asarray(still, dtype=np.int64)
            fetch = min(count, fetch * 4)
        return results

    def _aggregate(self, sims: FloatMatrix, rows: IntMatrix, top_k: int) -> list[tuple[int, float, int]]:
        hits: list[tuple[int, float, int]] = []
        seen: set[int] = set()
        # Rows come best first, so a person's first row carries their max similarity.
        for sim, row in zip(sims.tolist(), rows.tolist(), strict=True):
            if row < 0:  # FAISS pads missing results with -1
                continue
            person = int(self._person_rows[row])
            if person in seen:
                continue
            seen.add(person)
            hits.append((person, min(1.0, max(-1.0, float(sim))), int(row)))
            if len(hits) == top_k:
                break
        return hits
