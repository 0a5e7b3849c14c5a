"""What only the PostgreSQL backend has: schema layout, HNSW index, search in the database, URLs, errors."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from faceprint.gallery.base import GalleryExistsError, GalleryFormatError, GalleryNotFoundError
from faceprint.gallery.pgvector import MIGRATIONS, SCHEMA_VERSION, PgvectorGallery, list_galleries
from faceprint.gallery.search import MultiGalleryIndex
from faceprint.postgres import DatabaseUnavailableError, connect, redact_url
from faceprint.types import Faceprint

CONTRACT = "test-model:000000000001"


def fp(values: Any) -> Faceprint:
    return Faceprint(
        np.asarray(values, np.float32), model_id="test-model", contract_id=CONTRACT, package_version="0.0.test"
    )


@pytest.fixture
def make(postgres_url: str) -> Iterator[Any]:
    made: list[PgvectorGallery] = []

    def create(dim: int | None = None, name: str | None = None, **options: Any) -> PgvectorGallery:
        gallery = PgvectorGallery.create(postgres_url, name or f"t-{uuid.uuid4().hex[:10]}", **options)
        made.append(gallery)
        if dim is not None:
            gallery.enroll(gallery.add_person("seed").person_id, [fp(np.ones(dim))])
        return gallery

    yield create
    for gallery in made:
        gallery.close()


def _column_type_and_indexes(url: str, schema: str) -> tuple[str, list[str]]:
    with contextlib.closing(connect(url)) as conn:
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'embedding'",
            (f"{schema}.templates",),
        ).fetchone()
        indexes = [
            str(r[0]) for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s", (schema,))
        ]
    assert row is not None
    return str(row[0]), indexes


@pytest.mark.parametrize("dim", [128, 512])
def test_the_vector_column_is_sized_to_the_contract_and_hnsw_indexed(make: Any, postgres_url: str, dim: int) -> None:
    gallery = make()
    column, indexes = _column_type_and_indexes(postgres_url, gallery.schema)
    assert column == "vector" and not any("hnsw" in i for i in indexes)  # unbound: no size yet
    gallery.enroll(gallery.add_person("A").person_id, [fp(np.arange(dim) + 1.0)])
    column, indexes = _column_type_and_indexes(postgres_url, gallery.schema)
    assert column == f"vector({dim})"
    assert any("USING hnsw (embedding vector_cosine_ops)" in i for i in indexes)
    assert gallery.dim() == dim and gallery.has_index()


def test_migrations_are_numbered_recorded_and_idempotent(make: Any, postgres_url: str) -> None:
    gallery = make()
    for _ in range(3):
        with PgvectorGallery.open(postgres_url, gallery.name) as again:
            assert again.schema_version() == SCHEMA_VERSION
    with contextlib.closing(connect(postgres_url)) as conn:
        versions = [r[0] for r in conn.execute(f"SELECT version FROM {gallery.schema}.schema_version ORDER BY 1")]
        catalog = [r[0] for r in conn.execute("SELECT version FROM faceprint.schema_version ORDER BY 1")]
    assert versions == [version for version, _ in MIGRATIONS]
    assert catalog == [1]


def test_a_newer_schema_is_refused(make: Any, postgres_url: str) -> None:
    gallery = make()
    with contextlib.closing(connect(postgres_url)) as conn:
        conn.execute(f"INSERT INTO {gallery.schema}.schema_version VALUES (%s, 'future')", (SCHEMA_VERSION + 1,))
    with pytest.raises(GalleryFormatError, match="newer"):
        PgvectorGallery.open(postgres_url, gallery.name)


def test_create_refuses_an_existing_name_and_open_a_missing_one(make: Any, postgres_url: str) -> None:
    gallery = make()
    with pytest.raises(GalleryExistsError):
        PgvectorGallery.create(postgres_url, gallery.name)
    with pytest.raises(GalleryNotFoundError):
        PgvectorGallery.open(postgres_url, "never-made-" + uuid.uuid4().hex[:6])
    assert gallery.name in list_galleries(postgres_url)


def test_drop_removes_the_gallery(make: Any, postgres_url: str) -> None:
    gallery = make(dim=4)
    name, schema = gallery.name, gallery.schema
    gallery.drop()
    assert name not in list_galleries(postgres_url)
    with contextlib.closing(connect(postgres_url)) as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone() == (None,)


def test_search_runs_in_the_database_without_a_snapshot(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gallery = make()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 32)).astype(np.float32)
    for i in range(50):
        gallery.enroll(gallery.add_person(f"P{i:02d}").person_id, [fp(vectors[i])])

    def no_download(self: PgvectorGallery) -> Any:
        raise AssertionError("search must not download the gallery")

    monkeypatch.setattr(PgvectorGallery, "snapshot", no_download)
    index = MultiGalleryIndex([gallery])
    assert index.backend == "database"
    results = index.search([fp(v) for v in vectors[:10]], top_k=2, min_similarity=0.99)
    assert [r.best.name for r in results if r.best] == [f"P{i:02d}" for i in range(10)]


def test_hnsw_and_exact_scans_agree_after_exact_reranking(make: Any) -> None:
    gallery = make()
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    for start in range(0, 600, 3):
        person = gallery.add_person(f"P{start:03d}", person_id=f"p{start:03d}")
        gallery.enroll(person.person_id, [fp(v) for v in vectors[start : start + 3]])
    queries = vectors[::37] + rng.normal(scale=0.05, size=(len(vectors[::37]), 16)).astype(np.float32)
    approx = gallery.nearest_persons(queries, top_k=5)
    exact = gallery.nearest_persons(queries, top_k=5, exact=True)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for query, a, e in zip(queries, approx, exact, strict=True):
        truth = (unit @ (query / np.linalg.norm(query))).reshape(200, 3).max(axis=1)
        assert [round(c.similarity, 5) for c in e] == [round(float(s), 5) for s in np.sort(truth)[::-1][:5]]
        assert a[0].person_id == e[0].person_id  # the true nearest person is found through the index
        # Whatever the index returned carries its exact similarity.
        for candidate in a:
            assert round(candidate.similarity, 5) == round(float(truth[int(candidate.person_id[1:]) // 3]), 5)


def test_dropping_the_index_falls_back_to_an_exact_scan(make: Any) -> None:
    gallery = make()
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    for i in range(30):
        gallery.enroll(gallery.add_person(f"P{i}").person_id, [fp(vectors[i])])
    gallery.drop_index()
    assert not gallery.has_index()
    before = [[c.person_id for c in hits] for hits in gallery.nearest_persons(vectors[:5], top_k=3)]
    gallery.build_index(m=8, ef_construction=32, maintenance_work_mem="64MB")
    assert gallery.has_index()
    after = [[c.person_id for c in hits] for hits in gallery.nearest_persons(vectors[:5], top_k=3)]
    assert before == after


def test_galleries_of_one_database_are_searched_in_one_query(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = make(), make()
    one.enroll(one.add_person("One").person_id, [fp([1, 0, 0])])
    two.enroll(two.add_person("Two").person_id, [fp([0, 1, 0])])
    calls: list[int] = []
    original = PgvectorGallery._candidate_rows

    def counting(self: PgvectorGallery, galleries: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(galleries))
        return original(self, galleries, *args, **kwargs)

    monkeypatch.setattr(PgvectorGallery, "_candidate_rows", counting)
    (result,) = MultiGalleryIndex([one, two]).search([fp([0.1, 1, 0])], top_k=2, min_similarity=0.9)
    assert [h.name for h in result.matches] == ["Two", "One"]
    assert [h.gallery for h in result.matches] == [two.name, one.name]
    assert calls == [2]


def test_a_mix_of_sqlite_and_postgres_galleries_is_searched_together(make: Any, tmp_path: Any) -> None:
    from faceprint.gallery.sqlite import SqliteGallery

    pg = make()
    pg.enroll(pg.add_person("In Postgres").person_id, [fp([1, 0, 0])])
    with SqliteGallery.create(tmp_path / "local.sqlite") as lite:
        lite.enroll(lite.add_person("In SQLite").person_id, [fp([0, 1, 0])])
        index = MultiGalleryIndex([lite, pg])
        results = index.search([fp([0, 1, 0.1]), fp([1, 0, 0.1])], top_k=2, min_similarity=0.9)
    assert [r.best.name for r in results if r.best] == ["In SQLite", "In Postgres"]
    assert [len(r.matches) for r in results] == [2, 2]


def test_wrong_dimension_probes_are_refused(make: Any) -> None:
    from faceprint.errors import UsageError

    gallery = make(dim=4)
    with pytest.raises(UsageError, match="dimensions"):
        gallery.search([fp([1, 0, 0])], top_k=1, min_similarity=0.5)


def test_an_unreachable_server_is_a_clear_error(tmp_path: Any) -> None:
    url = f"postgresql://nobody:secret@/faces?host={tmp_path}&connect_timeout=1"
    with pytest.raises(DatabaseUnavailableError) as caught:
        PgvectorGallery.open(url, "staff")
    assert "secret" not in caught.value.message
    assert caught.value.code == "database_unavailable" and caught.value.http_status == 503


def test_passwords_are_hidden() -> None:
    assert redact_url("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("postgresql://app@db/x") == "postgresql://app@db/x"
