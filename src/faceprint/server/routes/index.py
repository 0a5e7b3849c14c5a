"""``/api/v1/index/``: the index of unknowns (persistent unknown persons made by ``index_unknowns`` jobs).

Renaming an indexed person makes them known in later jobs; merging folds several into one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter

from faceprint.gallery.base import resolve_person
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.server.deps import ServiceDep
from faceprint.server.schemas import MergeRequest, RenameRequest
from faceprint.server.service import Service

router = APIRouter(prefix="/index", tags=["index"])


@contextlib.contextmanager
def _index(service: Service) -> Iterator[SqliteGallery | None]:
    path = service.layout.index_gallery
    if not path.is_file():
        yield None
        return
    with SqliteGallery.open(path, name="index", cipher=service.cipher) as gallery:
        yield gallery


def _missing(person_id: str) -> Exception:
    from faceprint.gallery.base import PersonNotFoundError

    return PersonNotFoundError(f"no indexed person {person_id!r}", details={"person_id": person_id})


@router.get("/")
def list_index(service: ServiceDep) -> dict[str, Any]:
    with _index(service) as gallery:
        persons = [] if gallery is None else [p.to_dict() for p in gallery.persons()]
    return {"total": len(persons), "data": persons}


@router.patch("/{person_id}")
def rename_indexed(person_id: str, body: RenameRequest, service: ServiceDep) -> dict[str, Any]:
    with _index(service) as gallery:
        if gallery is None:
            raise _missing(person_id)
        person = resolve_person(gallery, person_id)
        return gallery.rename_person(person.person_id, body.name).to_dict()


@router.post("/merge")
def merge_indexed(body: MergeRequest, service: ServiceDep) -> dict[str, Any]:
    with _index(service) as gallery:
        if gallery is None:
            raise _missing(body.into)
        into = resolve_person(gallery, body.into)
        sources = [resolve_person(gallery, ref).person_id for ref in body.sources]
        return gallery.merge_persons(into.person_id, sources).to_dict()
