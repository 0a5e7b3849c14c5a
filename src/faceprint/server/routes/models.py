"""``/api/v1/models/``: galleries (DeepVA's "models") and their persons; enrolment with the library's rule.

A gallery's id is its name (1-100 letters, digits, ``.``, ``_``, ``-``), so ``model``/``models`` in a job
name a gallery either way.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from faceprint.analyze import AnalyzeItem
from faceprint.enroll import enroll, plan_for_person
from faceprint.gallery.base import GalleryExistsError, GalleryNotFoundError, resolve_person
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.jobs.retention import release_uploads
from faceprint.jobs.uploads import parse_storage_uri
from faceprint.server.deps import ServiceDep, base_url
from faceprint.server.schemas import EnrollRequest, GalleryCreate, RenameRequest, page_to_dict
from faceprint.server.service import Service

router = APIRouter(prefix="/models", tags=["models"])


def _path(service: Service, gallery_id: str) -> Path:
    path = service.layout.gallery_dir / f"{gallery_id}.sqlite"
    if not _valid(gallery_id) or not path.is_file():
        raise GalleryNotFoundError(f"no model {gallery_id!r}", details={"model": gallery_id})
    return path


def _valid(name: str) -> bool:
    try:
        GalleryCreate(name=name)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def open_gallery(service: Service, gallery_id: str) -> Iterator[SqliteGallery]:
    with SqliteGallery.open(_path(service, gallery_id), name=gallery_id, cipher=service.cipher) as gallery:
        yield gallery


def gallery_dict(gallery: SqliteGallery) -> dict[str, Any]:
    persons = gallery.persons()
    return {
        "id": gallery.name,
        "name": gallery.name,
        "persons": len(persons),
        "templates": sum(p.template_count for p in persons),
        "model_id": gallery.model_id,
        "contract_id": gallery.contract_id,
    }


@router.get("/")
def list_galleries(request: Request, service: ServiceDep, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    from faceprint.jobs.model import Page

    folder = service.layout.gallery_dir
    names = sorted(p.stem for p in folder.glob("*.sqlite")) if folder.is_dir() else []
    chosen = names[offset : offset + limit]
    data = []
    for name in chosen:
        with open_gallery(service, name) as gallery:
            data.append(gallery_dict(gallery))
    page: Page[str] = Page(total=len(names), offset=offset, limit=limit, rows=tuple(chosen))
    return page_to_dict(page, url=f"{base_url(request)}/api/v1/models/", data=data)


@router.post("/", status_code=201)
def create_gallery(body: GalleryCreate, service: ServiceDep) -> dict[str, Any]:
    path = service.layout.gallery_dir / f"{body.name}.sqlite"
    with service.galleries_lock:
        if path.exists():
            raise GalleryExistsError(f"a model named {body.name!r} exists", details={"model": body.name})
        path.parent.mkdir(parents=True, exist_ok=True)
        with SqliteGallery.create(
            path, name=body.name, contract_id=service.analyzer.spec.contract_id, cipher=service.cipher
        ) as gallery:
            return gallery_dict(gallery)


@router.get("/{gallery_id}")
def get_gallery(gallery_id: str, service: ServiceDep) -> dict[str, Any]:
    with open_gallery(service, gallery_id) as gallery:
        return gallery_dict(gallery)


@router.delete("/{gallery_id}", status_code=204)
def delete_gallery(gallery_id: str, service: ServiceDep) -> None:
    path = _path(service, gallery_id)
    with service.galleries_lock:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@router.get("/{gallery_id}/persons/")
def list_persons(gallery_id: str, service: ServiceDep) -> dict[str, Any]:
    with open_gallery(service, gallery_id) as gallery:
        persons = [p.to_dict() for p in gallery.persons()]
    return {"total": len(persons), "data": persons}


@router.post("/{gallery_id}/persons/", status_code=201)
def enroll_person(gallery_id: str, body: EnrollRequest, service: ServiceDep) -> dict[str, Any]:
    """Enrol the person's photos (uploads) with the library's rule: one face per photo, else skipped.

    In confidential mode the photos are deleted once the call ends (enrolled or not), unless a waiting or
    running job uses them.
    """
    items = []
    upload_ids = []
    for uri in body.sources:
        upload_id = parse_storage_uri(uri)
        service.uploads.get(upload_id)  # an unknown upload is a 404 before any work
        upload_ids.append(upload_id)
        items.append(AnalyzeItem(key=uri, source=functools.partial(service.uploads.read_bytes, upload_id)))
    try:
        with open_gallery(service, gallery_id) as gallery:
            report = enroll(gallery, service.analyzer, plan_for_person(body.name, items))
            return {**report.to_dict(), "templates_added": report.templates_added}
    finally:
        if service.settings.confidential:
            release_uploads(upload_ids, service.store, service.uploads)


@router.patch("/{gallery_id}/persons/{person_id}")
def rename_person(gallery_id: str, person_id: str, body: RenameRequest, service: ServiceDep) -> dict[str, Any]:
    with open_gallery(service, gallery_id) as gallery:
        person = resolve_person(gallery, person_id)
        return gallery.rename_person(person.person_id, body.name).to_dict()


@router.delete("/{gallery_id}/persons/{person_id}", status_code=204)
def delete_person(gallery_id: str, person_id: str, service: ServiceDep) -> None:
    with open_gallery(service, gallery_id) as gallery:
        gallery.remove_person(resolve_person(gallery, person_id).person_id)
