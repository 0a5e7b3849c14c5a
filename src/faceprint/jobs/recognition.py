"""The ``face_recognition`` job: images (and videos) → faces identified against galleries → detailed results.

Images go through the engine and :func:`faceprint.identify.identify_images`; every face found is one
detailed-result item with ``media_type: "image"`` and its box (DeepVA's ``face_bbox``, 0-1 of the image).
Videos go through :mod:`faceprint.video.pipeline` and give DeepVA's segments.

Without clustering, images are done in chunks and each finished chunk is written with its items and a
*done* mark, so a job re-leased after its worker was killed resumes where it was and writes no item twice
(items are keyed by source and face). Clustering (``cluster_unknowns``, ``index_unknowns``) needs every face
at once, so it runs in one step.

Example:
    >>> face_bbox((0.1, 0.2, 0.5, 0.6))
    {'x': 0.1, 'y': 0.2, 'w': 0.4, 'h': 0.4}
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from faceprint.analyze import AnalyzeItem, AnalyzeProgress
from faceprint.errors import FaceprintError, InputError
from faceprint.gallery.base import Gallery, GalleryNotFoundError
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.identify import IdentifiedFace, identify_images
from faceprint.jobs.context import JobContext, JobOutcome
from faceprint.jobs.model import JobError, JobItem
from faceprint.jobs.uploads import UnsupportedMediaError, UploadRecord

__all__ = ["CHUNK_IMAGES", "MODULE", "RecognitionParams", "face_bbox", "run_face_recognition"]

MODULE = "face_recognition"
CHUNK_IMAGES = 8
"""Images identified and written per step (a killed worker's job loses at most one step's work)."""
_POSITION_STRIDE = 1_000_000
"""Item positions: source index × stride + the item's index within its source."""


@dataclass(frozen=True, slots=True)
class RecognitionParams:
    """DeepVA's ``face_recognition`` parameters, as the server validated them."""

    galleries: tuple[str, ...]
    max_distance: float | None
    cluster_unknowns: bool
    index_unknowns: bool
    face_detection_scale: int
    enable_top_k: bool
    top_k: int
    thumbnails: bool | None = None
    """Face thumbnails in video segments; None: on, except in confidential mode (asked for: on)."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> RecognitionParams:
        names: list[str] = []
        if params.get("model") is not None:
            names.append(str(params["model"]))
        names.extend(str(n) for n in params.get("models") or ())
        return cls(
            galleries=tuple(dict.fromkeys(names)),
            max_distance=None if params.get("max_distance") is None else float(params["max_distance"]),
            cluster_unknowns=bool(params.get("cluster_unknowns", False)),
            index_unknowns=bool(params.get("index_unknowns", False)),
            face_detection_scale=int(params.get("face_detection_scale", 600)),
            enable_top_k=bool(params.get("enable_top_k", False)),
            top_k=int(params.get("top_k", 3)),
            thumbnails=None if params.get("thumbnails") is None else bool(params["thumbnails"]),
        )

    @property
    def clusters(self) -> bool:
        return self.cluster_unknowns or self.index_unknowns

    @property
    def reported_top_k(self) -> int:
        return self.top_k if self.enable_top_k else 0


def face_bbox(normalized_xyxy: Sequence[float]) -> dict[str, float]:
    """DeepVA's ``{x, y, w, h}`` (0-1 of the image) from a normalised ``(x1, y1, x2, y2)``."""
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in normalized_xyxy)
    return {"x": round(x1, 6), "y": round(y1, 6), "w": round(x2 - x1, 6), "h": round(y2 - y1, 6)}


def image_face_item(job_id: str, index: int, uri: str, face: IdentifiedFace, *, top_k: int) -> JobItem:
    """One face of an image as a detailed-result item (the fields of DeepVA's video segment that apply)."""
    closest = face.matches[0] if face.matches else None
    data = {
        "id": f"{job_id}:{index}:{face.face_index}",
        "media_type": "image",
        "source": uri,
        "module": MODULE,
        "face_index": face.face_index,
        "meta": {
            "person": face.label,
            "class_id": face.person_id,
            "closest_person": None if closest is None else closest.name,
            "mean_distance": None if face.distance is None else round(face.distance, 6),
            "mean_similarity": None if face.similarity is None else round(face.similarity, 6),
            "probability": None if face.probability is None else round(face.probability, 6),
            "indexed_identity": face.is_unknown and face.person_id is not None,
            "closest_k_persons": [
                {"person": hit.name, "similarity": round(hit.similarity, 6)} for hit in face.matches[:top_k]
            ],
        },
        "thumbnail": None,
        "detections": [
            {"type": "face_bbox", "data": None if face.bbox_normalized is None else face_bbox(face.bbox_normalized)}
        ],
        "bbox_xyxy": None if face.bbox_xyxy is None else [round(float(v), 2) for v in face.bbox_xyxy],
    }
    return JobItem(
        key=f"{index:06d}:{face.face_index:04d}", position=index * _POSITION_STRIDE + face.face_index, data=data
    )


def _unit(index: int, error: FaceprintError | tuple[str, str] | None) -> str:
    if isinstance(error, FaceprintError):
        error = (error.code, error.message)
    return json.dumps(
        {"source": index, "error": None if error is None else {"code": error[0], "message": error[1]}}, sort_keys=True
    )


def _open_galleries(ctx: JobContext, names: Sequence[str], stack: ExitStack) -> list[Gallery]:
    galleries: list[Gallery] = []
    for name in names:
        path = ctx.layout.gallery_dir / f"{name}.sqlite"
        if not name or "/" in name or name.startswith(".") or not path.is_file():
            raise GalleryNotFoundError(f"no model (gallery) {name!r}", details={"model": name})
        galleries.append(stack.enter_context(SqliteGallery.open(path, name=name, cipher=ctx.cipher)))
    return galleries


def run_face_recognition(ctx: JobContext) -> JobOutcome:
    """Run a ``face_recognition`` job (see the module doc)."""
    params = RecognitionParams.from_dict(ctx.job.params)
    sources = list(ctx.job.sources)
    records: list[UploadRecord | InputError] = []
    for uri in sources:
        try:
            records.append(ctx.uploads.resolve(uri))
        except InputError as err:
            records.append(err)
    done: dict[int, dict[str, Any] | None] = {}
    for unit in ctx.done_units():
        entry = json.loads(unit)
        done[int(entry["source"])] = entry["error"]
    with ExitStack() as stack:
        galleries = _open_galleries(ctx, params.galleries, stack)
        index_into = None
        if params.index_unknowns:
            ctx.layout.index_gallery.parent.mkdir(parents=True, exist_ok=True)
            index_into = stack.enter_context(
                SqliteGallery(ctx.layout.index_gallery, create=True, name="index", cipher=ctx.cipher)
            )
            # The index is searched too, so a face indexed (or renamed) by an earlier job is recognised.
            galleries = [*galleries, index_into]
        images: list[int] = []
        videos: list[int] = []
        for index, record in enumerate(records):
            if index in done:
                continue
            if isinstance(record, InputError):
                ctx.put_items((), done_units=[_unit(index, record)])
                done[index] = {"code": record.code, "message": record.message}
            elif record.media_type == "image":
                images.append(index)
            elif record.media_type == "video":
                videos.append(index)
            else:
                wrong = UnsupportedMediaError(
                    f"source {index + 1}: a {record.media_type}, not an image or video (use face_pairs)"
                )
                ctx.put_items((), done_units=[_unit(index, wrong)])
                done[index] = {"code": wrong.code, "message": wrong.message}
        total = len(sources)

        def report(extra: float) -> None:
            ctx.progress.set((len(done) + extra) / total)

        chunks = (
            [images] if params.clusters else [images[i : i + CHUNK_IMAGES] for i in range(0, len(images), CHUNK_IMAGES)]
        )
        for chunk in chunks:
            if not chunk:
                continue
            _identify_chunk(ctx, params, chunk, records, galleries, index_into, done, report)
        for index in videos:
            record = records[index]
            if not isinstance(record, InputError):  # always so: errors were recorded above
                _analyze_video(ctx, params, index, record, galleries, index_into, done, report)
    return _outcome(ctx, records, done)


def _identify_chunk(
    ctx: JobContext,
    params: RecognitionParams,
    chunk: Sequence[int],
    records: Sequence[UploadRecord | InputError],
    galleries: Sequence[Gallery],
    index_into: Gallery | None,
    done: dict[int, dict[str, Any] | None],
    report: Any,
) -> None:
    items = []
    for index in chunk:
        record = records[index]
        if isinstance(record, InputError):
            continue
        # Read when analysed (decrypted in memory when sealed): never a file in clear.
        items.append(AnalyzeItem(key=str(index), source=functools.partial(ctx.uploads.read_bytes, record.id)))

    def progress(p: AnalyzeProgress) -> None:
        report(p.done * 0.95)

    run = identify_images(
        items,
        ctx.analyzer,
        galleries,
        face="all",
        top_k=max(1, params.top_k),
        max_distance=params.max_distance,
        cluster_unknowns=params.clusters,
        index_unknowns_into=index_into,
        progress=progress,
        cancel=ctx.cancel,
        total=len(items),
    )
    uris = ctx.job.sources
    new_items = [
        image_face_item(ctx.job.id, int(face.image_id), uris[int(face.image_id)], face, top_k=params.reported_top_k)
        for face in run.faces
    ]
    failures = {int(f.image_id): (f.code, f.message) for f in run.failures}
    units = [_unit(index, failures.get(index)) for index in chunk]
    ctx.put_items(new_items, done_units=units)
    for index in chunk:
        failure = failures.get(index)
        done[index] = None if failure is None else {"code": failure[0], "message": failure[1]}
    report(0.0)


def _analyze_video(
    ctx: JobContext,
    params: RecognitionParams,
    index: int,
    record: UploadRecord,
    galleries: Sequence[Gallery],
    index_into: Gallery | None,
    done: dict[int, dict[str, Any] | None],
    report: Any,
) -> None:
    from faceprint.jobs.video import analyze_video_source

    uri = ctx.job.sources[index]
    error, new_items, summary_extra = analyze_video_source(
        ctx, params, index, uri, record, galleries, index_into, report
    )
    unit = json.loads(_unit(index, error))
    if summary_extra is not None:
        unit["summary"] = summary_extra
    ctx.put_items(new_items, done_units=[json.dumps(unit, sort_keys=True)])
    done[index] = unit["error"]
    report(0.0)


def _outcome(
    ctx: JobContext,
    records: Sequence[UploadRecord | InputError],
    done: dict[int, dict[str, Any] | None],
) -> JobOutcome:
    labels: dict[int, list[str]] = {}
    counts: dict[int, int] = {}
    offset = 0
    while True:
        page = ctx.store.items(ctx.job.id, offset=offset, limit=1000)
        for item in page.rows:
            index = item.position // _POSITION_STRIDE
            labels.setdefault(index, [])
            label = str(item.data["meta"]["person"])
            if label not in labels[index]:
                labels[index].append(label)
            counts[index] = counts.get(index, 0) + 1
        offset += len(page.rows)
        if not page.rows or offset >= page.total:
            break
    extras: dict[int, dict[str, Any]] = {}
    for unit in ctx.done_units():
        mark = json.loads(unit)
        if "summary" in mark:
            extras[int(mark["source"])] = mark["summary"]
    spec = ctx.analyzer.spec
    summary: list[dict[str, Any]] = []
    errors: list[JobError] = []
    for index, uri in enumerate(ctx.job.sources):
        record = records[index]
        error = done.get(index)
        media_type = None if isinstance(record, InputError) else record.media_type
        entry: dict[str, Any] = {
            "source": uri,
            "media_type": media_type,
            "items": [{"type": "face", "label": label, "module": MODULE} for label in labels.get(index, [])],
        }
        entry.update(extras.get(index, {}))
        entry["processing"] = {
            **entry.get("processing", {}),
            "error": error,
            "detailed_items": counts.get(index, 0),
            "model_id": spec.id,
            "contract_id": spec.contract_id,
        }
        summary.append(entry)
        if error is not None:
            errors.append(JobError(code=str(error["code"]), message=str(error["message"]), source=uri))
    return JobOutcome(summary=tuple(summary), errors=tuple(errors))
