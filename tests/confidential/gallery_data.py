"""Galleries of random unit vectors for the encryption tests of both gallery backends."""

from __future__ import annotations

import numpy as np

from faceprint.gallery.pgvector import PgvectorGallery
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.types import Faceprint

DIM = 128


def faceprints(count: int, *, seed: int) -> list[Faceprint]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Faceprint(v, model_id="m", contract_id="m:1", package_version="0") for v in vectors]


def fill(gallery: SqliteGallery | PgvectorGallery, people: int = 6, per_person: int = 3) -> list[Faceprint]:
    """Persons ``p00``, ``p01``… named "Person 0"…, each with ``per_person`` templates and their sources."""
    enrolled = faceprints(people * per_person, seed=1)
    for p in range(people):
        person = gallery.add_person(f"Person {p}", person_id=f"p{p:02d}")
        chunk = enrolled[p * per_person : (p + 1) * per_person]
        gallery.enroll(person.person_id, chunk, sources=[f"person{p}_{i}.jpg" for i in range(per_person)])
    return enrolled


def answers(gallery: SqliteGallery | PgvectorGallery, probes: list[Faceprint]) -> list[list[tuple[str, float]]]:
    return [
        [(m.name, round(float(m.similarity), 6)) for m in result.matches]
        for result in gallery.search(probes, top_k=3, min_similarity=-1.0)
    ]
