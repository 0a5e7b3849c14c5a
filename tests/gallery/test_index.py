"""Vector and person indexes: exact numpy search, FAISS agreement, per-person max aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.errors import UsageError
from faceprint.gallery.index import (
    NumpyIndex,
    PersonIndex,
    build_vector_index,
    choose_backend,
    faiss_available,
    normalize_rows,
)

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (optional extra)")


def unit_rows(count: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).normal(size=(count, dim)))


def brute_force_persons(vectors: np.ndarray, owners: np.ndarray, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    sims = normalize_rows(vectors) @ normalize_rows(query)[0]
    best: dict[int, float] = {}
    for owner, sim in zip(owners.tolist(), sims.tolist(), strict=True):
        best[owner] = max(best.get(owner, -2.0), sim)
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]


def assert_same_hits(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [person for person, _ in actual] == [person for person, _ in expected]
    np.testing.assert_allclose([s for _, s in actual], [s for _, s in expected], atol=1e-5)


def test_normalize_rows_keeps_zero_rows() -> None:
    rows = normalize_rows([[3, 4], [0, 0]])
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0, 0]], rtol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 50, 200])
def test_numpy_index_matches_a_full_sort(k: int) -> None:
    vectors = unit_rows(100)
    queries = unit_rows(7, seed=1)
    sims, rows = NumpyIndex(vectors).search(queries, k)
    full = queries @ vectors.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, : min(k, 100)]
    assert rows.shape == (7, min(k, 100))
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_numpy_index_on_many_queries_blocks_the_product(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("faceprint.gallery.index._QUERY_BLOCK_FLOATS", 250)  # 2 queries per block
    vectors, queries = unit_rows(100), unit_rows(9, seed=2)
    _, rows = NumpyIndex(vectors).search(queries, 3)
    np.testing.assert_array_equal(rows, np.argsort(-(queries @ vectors.T), axis=1)[:, :3])


def test_person_similarity_is_the_max_over_templates() -> None:
    vectors = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], np.float32)
    owners = np.array([0, 0, 1, 2])
    hits = PersonIndex(vectors, owners, backend="numpy").search(np.array([[0.6, 0.8]], np.float32), top_k=3)[0]
    assert [person for person, _ in hits] == [0, 1, 2]
    assert hits[0][1] == pytest.approx(1.0)
    assert hits[1][1] == pytest.approx(0.96)
    assert hits[2][1] == pytest.approx(0.8)


def test_person_index_widens_the_search_when_one_person_holds_many_templates() -> None:
    rng = np.random.default_rng(5)
    crowd = normalize_rows(np.array([1.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(200, 3)))
    others = normalize_rows(rng.normal(size=(5, 3)))
    vectors = np.concatenate([crowd, others])
    owners = np.concatenate([np.zeros(200, np.int64), np.arange(1, 6)])
    query = np.array([[1.0, 0.0, 0.0]], np.float32)
    hits = PersonIndex(vectors, owners, backend="numpy").search(query, top_k=4)[0]
    assert_same_hits(hits, brute_force_persons(vectors, owners, query, 4))
    assert len({person for person, _ in hits}) == 4


def test_person_index_on_an_empty_gallery_and_bad_input() -> None:
    empty = PersonIndex(np.empty((0, 0), np.float32), np.empty(0, np.int64))
    assert empty.search(np.ones((2, 4), np.float32), top_k=3) == [[], []]
    index = PersonIndex(np.eye(4, dtype=np.float32), np.arange(4))
    with pytest.raises(UsageError):
        index.search(np.ones((1, 4), np.float32), top_k=0)
    with pytest.raises(UsageError):
        index.search(np.ones((1, 5), np.float32), top_k=1)
    with pytest.raises(ValueError):
        PersonIndex(np.eye(4, dtype=np.float32), np.arange(3))


def test_choose_backend() -> None:
    assert choose_backend(10) == "numpy"
    assert choose_backend(10, backend="faiss") == "faiss"
    expected = "faiss" if faiss_available() else "numpy"
    assert choose_backend(101, faiss_min_templates=100) == expected
    assert choose_backend(100, faiss_min_templates=100) == "numpy"
    with pytest.raises(UsageError):
        choose_backend(10, backend="annoy")  # type: ignore[arg-type]


@needs_faiss
def test_faiss_is_used_automatically_above_the_size() -> None:
    assert build_vector_index(unit_rows(20), faiss_min_templates=10).backend == "faiss"
    assert PersonIndex(unit_rows(20), np.arange(20), faiss_min_templates=10).backend == "faiss"
    assert PersonIndex(unit_rows(20), np.arange(20)).backend == "numpy"


@needs_faiss
@pytest.mark.parametrize("top_k", [1, 5, 20])
def test_numpy_and_faiss_give_the_same_top_k(top_k: int) -> None:
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    owners = rng.integers(0, 600, size=3000)
    queries = rng.normal(size=(25, 32)).astype(np.float32)
    exact = PersonIndex(vectors, owners, backend="numpy").search(queries, top_k=top_k)
    fast = PersonIndex(vectors, owners, backend="faiss").search(queries, top_k=top_k)
    for query, a, b in zip(queries, exact, fast, strict=True):
        assert_same_hits(a, brute_force_persons(vectors, owners, query[None, :], top_k))
        assert_same_hits(b, a)


def test_without_faiss_auto_stays_numpy_and_forcing_faiss_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from faceprint.errors import BackendUnavailableError
    from faceprint.gallery.index import FaissIndex

    real_import = importlib.import_module

    def no_faiss(name: str, package: str | None = None):  # type: ignore[no-untyped-def]
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, package)

    monkeypatch.setattr("faceprint.gallery.index.faiss_available", lambda: False)
    monkeypatch.setattr("faceprint.gallery.index.importlib.import_module", no_faiss)
    assert choose_backend(10**6) == "numpy"
    with pytest.raises(BackendUnavailableError, match=r"faceprint\[faiss\]"):
        FaissIndex(unit_rows(3))


def test_importing_the_gallery_does_not_import_faiss() -> None:
    import subprocess
    import sys

    code = "import sys, faceprint.gallery, faceprint.identify, faceprint.cluster; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
