"""Gallery fixtures: one factory per backend, so the same behaviour tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Backend:
    """Makes galleries of one backend; everything it made is closed (and dropped) at the end of the test."""

    kind: str
    tmp_path: Path
    url: str | None
    opened: list[Any]

    def create(self, name: str | None = None, *, contract_id: str | None = None) -> Any:
        name = f"g{uuid.uuid4().hex[:10]}" if name is None else name
        if self.kind == "sqlite":
            from faceprint.gallery.sqlite import SqliteGallery

            gallery: Any = SqliteGallery.create(self.tmp_path / f"{name}.sqlite", contract_id=contract_id)
        else:
            from faceprint.gallery.pgvector import PgvectorGallery

            assert self.url is not None
            gallery = PgvectorGallery.create(self.url, name, contract_id=contract_id)
        self.opened.append(gallery)
        return gallery

    def reopen(self, gallery: Any) -> Any:
        """A second, independent handle on the same gallery (another connection)."""
        if self.kind == "sqlite":
            from faceprint.gallery.sqlite import SqliteGallery

            other: Any = SqliteGallery.open(gallery.path)
        else:
            from faceprint.gallery.pgvector import PgvectorGallery

            assert self.url is not None
            other = PgvectorGallery.open(self.url, gallery.name)
        self.opened.append(other)
        return other


@pytest.fixture(params=["sqlite", "pgvector"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = request.getfixturevalue("postgres_url") if request.param == "pgvector" else None
    made = Backend(kind=request.param, tmp_path=tmp_path, url=url, opened=[])
    yield made
    for gallery in reversed(made.opened):
        gallery.close()


@pytest.fixture
def gallery(backend: Backend) -> Any:
    return backend.create()
