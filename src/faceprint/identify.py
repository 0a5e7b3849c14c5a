"""Identification: who is each face, searched in one or several galleries.

:func:`identify_faces` works on faceprints (with the image and box they came from);
:func:`identify_images` is the thin layer that runs the engine (:class:`~faceprint.analyze.Analyzer`) first.

For each face the answer holds the box (pixels and 0-1), the person or ``unknown``, the similarity and
distance to the closest person, the top-k persons, and, when the caller passes a similarity-to-probability
function (a calibration), P(same person). Unknown faces can be clustered across the whole run
(``Unknown #1``, ``Unknown #2``, … by first appearance; two faces of one image are never put together)
and stored as persistent unknowns so that later runs recognise them.

With a comparator (:func:`identify_images` always passes the pipeline's) the decision is quality-aware per
candidate: the cut-off is the probability level that the reference cut-off gives two frontal faces, and
each candidate must reach it under the sigmoid of (probe quality, quality of the person's most similar
template), the probability ``faceprint compare`` gives the same two faces (docs/identification.md).

Example:
    >>> faces = [ProbeFace(faceprint=fp, image_id="team.jpg", bbox_xyxy=(10, 20, 110, 120))]  # doctest: +SKIP
    >>> [f.label for f in identify_faces(faces, [staff], max_distance=0.45)]  # doctest: +SKIP
    ['Jane Doe']
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceprint.analyze import AnalyzeItem, AnalyzeOptions, AnalyzeProgress, Analyzer, FaceMode
from faceprint.cluster import cluster_faces, group_by_label, index_unknowns, unknown_label
from faceprint.compare import Comparator
from faceprint.errors import FaceprintError, NoFaceError
from faceprint.gallery.base import Gallery, IdentifyResult, Person, SearchHit
from faceprint.gallery.index import FAISS_MIN_TEMPLATES, IndexBackend
from faceprint.gallery.search import (
    MultiGalleryIndex,
    ProbabilityFn,
    catalog_min_similarity,
    resolve_min_similarity,
)
from faceprint.models.spec import ModelSpec
from faceprint.types import Face, Faceprint

UNKNOWN = "unknown"
"""The label of a face that matches nobody (when unknowns are not clustered)."""

BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True, eq=False)
class ProbeFace:
    """A faceprint to identify and where it was found.

    ``image_id`` names the image (a path, a frame, a URL id): faces sharing one are never clustered
    together.
    """

    faceprint: Faceprint
    image_id: str
    face_index: int = 0
    bbox_xyxy: BBox | None = None
    """Pixels of the decoded image."""
    bbox_normalized: BBox | None = None
    """Fractions 0-1 of the image width and height."""

    @classmethod
    def from_face(cls, face: Face, *, image_id: str, size_wh: tuple[int, int], face_index: int) -> ProbeFace:
        """Wrap a pipeline :class:`~faceprint.types.Face` (which must carry a faceprint)."""
        if face.faceprint is None:
            raise FaceprintError(f"face {face_index} of {image_id} has no faceprint")
        return cls(
            faceprint=face.faceprint,
            image_id=image_id,
            face_index=face_index,
            bbox_xyxy=face.detection.bbox_xyxy,
            bbox_normalized=face.detection.normalized_bbox(size_wh),
        )


@dataclass(frozen=True, slots=True)
class IdentifiedFace:
    """The identification of one face."""

    image_id: str
    face_index: int
    bbox_xyxy: BBox | None
    bbox_normalized: BBox | None
    label: str
    """The person's name; ``unknown``; or ``Unknown #n`` when unknowns are clustered."""
    person_id: str | None
    """The matched person (a persistent unknown's id when one was matched or created), else None."""
    is_unknown: bool
    """True unless a *named* person was matched (persistent unknowns count as unknown)."""
    similarity: float | None
    """Cosine similarity to the matched person, else to the closest one; None when the galleries are empty."""
    distance: float | None
    """``sqrt(2 - 2 * similarity)``."""
    probability: float | None
    """P(same person) for that person, when the caller gave a calibration (quality-aware with a comparator)."""
    matches: tuple[SearchHit, ...]
    """The top-k persons, best first."""
    gallery: str | None = None
    """The gallery of the matched (or newly indexed) person."""
    cluster: int | None = None
    """``n`` of ``Unknown #n`` (1-based) for a clustered unknown face."""

    def to_dict(self) -> dict[str, Any]:
        def box(values: BBox | None, digits: int) -> list[float] | None:
            return None if values is None else [round(float(v), digits) for v in values]

        return {
            "image": self.image_id,
            "face_index": self.face_index,
            "bbox_xyxy": box(self.bbox_xyxy, 2),
            "bbox_normalized": box(self.bbox_normalized, 4),
            "label": self.label,
            "person_id": self.person_id,
            "is_unknown": self.is_unknown,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
            "distance": None if self.distance is None else round(self.distance, 6),
            "probability": None if self.probability is None else round(self.probability, 6),
            "gallery": self.gallery,
            "cluster": self.cluster,
            "matches": [hit.to_dict() for hit in self.matches],
        }


@dataclass(frozen=True, slots=True)
class ImageFailure:
    """An image that could not be read; the run goes on without it."""

    image_id: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image_id, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class IdentifyRun:
    """Everything :func:`identify_images` found, with what is needed to reproduce it."""

    faces: tuple[IdentifiedFace, ...]
    failures: tuple[ImageFailure, ...]
    images_without_faces: tuple[str, ...]
    min_similarity: float | None
    """The cut-off used; None when no face was searched."""
    contract_id: str | None
    model_id: str | None
    galleries: tuple[str, ...]
    new_unknowns: tuple[Person, ...] = ()
    """Persistent unknowns created by ``index_unknowns_into``."""

    def to_dict(self) -> dict[str, Any]:
        from faceprint import __version__

        return {
            "package_version": __version__,
            "model_id": self.model_id,
            "contract_id": self.contract_id,
            "min_similarity": self.min_similarity,
            "galleries": list(self.galleries),
            "faces": [face.to_dict() for face in self.faces],
            "images_without_faces": list(self.images_without_faces),
            "failures": [failure.to_dict() for failure in self.failures],
            "new_unknowns": [person.to_dict() for person in self.new_unknowns],
        }


@dataclass(frozen=True, slots=True)
class _Outcome:
    faces: list[IdentifiedFace]
    min_similarity: float | None
    contract_id: str | None
    model_id: str | None
    galleries: tuple[str, ...]
    new_unknowns: tuple[Person, ...]


def _identify(
    faces: Sequence[ProbeFace],
    galleries: Sequence[Gallery],
    *,
    top_k: int,
    min_similarity: float | None,
    max_distance: float | None,
    probability: ProbabilityFn | None,
    default_min_similarity: float | None,
    comparator: Comparator | None,
    cluster_unknowns: bool,
    cluster_min_similarity: float | None,
    index_unknowns_into: Gallery | None,
    max_templates_per_unknown: int,
    backend: IndexBackend,
    faiss_min_templates: int,
) -> _Outcome:
    index = MultiGalleryIndex(galleries, backend=backend, faiss_min_templates=faiss_min_templates)
    results = index.search(
        [face.faceprint for face in faces],
        top_k=top_k,
        min_similarity=min_similarity,
        max_distance=max_distance,
        probability=probability,
        default_min_similarity=default_min_similarity,
        comparator=comparator,
    )
    contract_id = index.contract_id
    model_id = index.model_id
    if faces and contract_id is None:
        contract_id = faces[0].faceprint.contract_id
        model_id = faces[0].faceprint.model_id
    if results:
        cutoff: float | None = results[0].min_similarity
    elif min_similarity is not None or max_distance is not None:
        cutoff = resolve_min_similarity(min_similarity=min_similarity, max_distance=max_distance, model_id=None)
    elif default_min_similarity is not None:
        cutoff = default_min_similarity
    else:
        cutoff = catalog_min_similarity(model_id)

    unmatched = [i for i, result in enumerate(results) if result.best is None]
    cluster_of: dict[int, int] = {}
    person_of: dict[int, Person] = {}
    new_unknowns: list[Person] = []
    if unmatched and (cluster_unknowns or index_unknowns_into is not None):
        threshold = cluster_min_similarity if cluster_min_similarity is not None else cutoff
        if threshold is None:  # cannot happen: unmatched faces imply a search with a cut-off
            raise FaceprintError("no clustering threshold")
        labels = cluster_faces(
            np.stack([faces[i].faceprint.vector for i in unmatched]),
            image_ids=[faces[i].image_id for i in unmatched],
            min_similarity=threshold,
        )
        cluster_of = dict(zip(unmatched, labels, strict=True))
        if index_unknowns_into is not None:
            groups = group_by_label([faces[i].faceprint for i in unmatched], labels)
            sources: list[list[str | None]] = [[] for _ in groups]
            for i, label in zip(unmatched, labels, strict=True):
                sources[label].append(f"{faces[i].image_id}#{faces[i].face_index}")
            new_unknowns = index_unknowns(
                index_unknowns_into, groups, max_templates=max_templates_per_unknown, sources=sources
            )
            person_of = {i: new_unknowns[label] for i, label in cluster_of.items()}

    identified = [
        _identified(
            face,
            result,
            cluster=cluster_of.get(i),
            new_person=person_of.get(i),
            new_gallery=None if index_unknowns_into is None else index_unknowns_into.name,
        )
        for i, (face, result) in enumerate(zip(faces, results, strict=True))
    ]
    return _Outcome(
        faces=identified,
        min_similarity=cutoff,
        contract_id=contract_id,
        model_id=model_id,
        galleries=index.gallery_names,
        new_unknowns=tuple(new_unknowns),
    )


def _identified(
    face: ProbeFace, result: IdentifyResult, *, cluster: int | None, new_person: Person | None, new_gallery: str | None
) -> IdentifiedFace:
    best = result.best
    # The matched person (with a comparator not always the most similar one), else the closest.
    top = best if best is not None else result.top
    person_id: str | None
    gallery: str | None
    if best is not None:
        label, person_id, gallery, is_unknown = best.name, best.person_id, best.gallery, best.is_unknown
    elif new_person is not None:
        label, person_id, gallery, is_unknown = new_person.name, new_person.person_id, new_gallery, True
    else:
        label = UNKNOWN if cluster is None else unknown_label(cluster)
        person_id, gallery, is_unknown = None, None, True
    return IdentifiedFace(
        image_id=face.image_id,
        face_index=face.face_index,
        bbox_xyxy=face.bbox_xyxy,
        bbox_normalized=face.bbox_normalized,
        label=label,
        person_id=person_id,
        is_unknown=is_unknown,
        similarity=None if top is None else top.similarity,
        distance=None if top is None else top.distance,
        probability=None if top is None else top.probability,
        matches=result.matches,
        gallery=gallery,
        cluster=None if cluster is None else cluster + 1,
    )


def identify_faces(
    faces: Sequence[ProbeFace],
    galleries: Sequence[Gallery],
    *,
    top_k: int = 3,
    min_similarity: float | None = None,
    max_distance: float | None = None,
    probability: ProbabilityFn | None = None,
    default_min_similarity: float | None = None,
    comparator: Comparator | None = None,
    cluster_unknowns: bool = False,
    cluster_min_similarity: float | None = None,
    index_unknowns_into: Gallery | None = None,
    max_templates_per_unknown: int = 10,
    backend: IndexBackend = "auto",
    faiss_min_templates: int = FAISS_MIN_TEMPLATES,
) -> list[IdentifiedFace]:
    """Identify faceprints against one or several galleries sharing one embedding contract.

    Args:
        faces: the probes, with their image and box.
        galleries: where to search (the templates of all are searched together).
        top_k: how many candidate persons to report per face.
        min_similarity: accept the best person at or above this cosine similarity …
        max_distance: … or at or below this distance (give at most one).
        probability: similarity → P(same person), e.g. ``pipeline.comparator.probability``.
        default_min_similarity: the cut-off when neither of the two is given, e.g.
            ``pipeline.comparator.threshold``; without it, the model's catalog default.
        comparator: judge each candidate by the quality-aware sigmoid of (probe quality, template quality),
            e.g. ``pipeline.comparator``: the cut-off then holds for the reference pair and moves with the
            pair's quality, and ``probability`` is not used (see the module docstring).
        cluster_unknowns: label unmatched faces ``Unknown #n`` by clustering them across all inputs.
        cluster_min_similarity: clustering cut-off (average linkage); defaults to the search cut-off.
        index_unknowns_into: store each cluster of unmatched faces there as a persistent unknown (implies
            clustering); their faces are labelled with the new person's id.
        max_templates_per_unknown: templates kept per stored cluster (its most central faces).
        backend: search index, ``auto``, ``numpy`` or ``faiss``.
        faiss_min_templates: gallery size above which ``auto`` uses FAISS.

    Returns:
        One :class:`IdentifiedFace` per probe, in order.

    Raises:
        ContractMismatchError: galleries or probes of different embedding contracts.
        UsageError: both cut-offs, ``top_k < 1``, or no cut-off for a model without a default.

    Example:
        >>> results = identify_faces(probes, [staff], min_similarity=0.9, cluster_unknowns=True)  # doctest: +SKIP
        >>> [r.label for r in results]  # doctest: +SKIP
        ['Jane Doe', 'Unknown #1', 'Unknown #1']
    """
    return _identify(
        faces,
        galleries,
        top_k=top_k,
        min_similarity=min_similarity,
        max_distance=max_distance,
        probability=probability,
        default_min_similarity=default_min_similarity,
        comparator=comparator,
        cluster_unknowns=cluster_unknowns,
        cluster_min_similarity=cluster_min_similarity,
        index_unknowns_into=index_unknowns_into,
        max_templates_per_unknown=max_templates_per_unknown,
        backend=backend,
        faiss_min_templates=faiss_min_templates,
    ).faces


def identification_min_similarity(spec: ModelSpec, comparator: Comparator) -> float:
    """The default search cut-off: the model's threshold for a 1e-3 false-accept rate per comparison.

    A probe is compared with every enrolled person, so the 1:1 operating threshold would let strangers
    through in proportion to the gallery size (docs/identification.md); without a FAR 1e-3 figure the
    1:1 threshold is used. It is the reference pair's (two frontal faces); with the pipeline's comparator
    each candidate gets the similarity that reaches the same probability for its own pair of qualities.

    Example:
        >>> from faceprint.models.catalog import builtin_specs
        >>> spec = builtin_specs()["dlib-resnet-v1"]
        >>> identification_min_similarity(spec, Comparator(spec)) > Comparator(spec).threshold
        True
    """
    return spec.far_thresholds.get("1e-3", comparator.threshold)


def identify_images(
    items: Iterable[AnalyzeItem],
    analyzer: Analyzer,
    galleries: Sequence[Gallery],
    *,
    face: FaceMode = "all",
    top_k: int = 3,
    min_similarity: float | None = None,
    max_distance: float | None = None,
    cluster_unknowns: bool = False,
    cluster_min_similarity: float | None = None,
    index_unknowns_into: Gallery | None = None,
    max_templates_per_unknown: int = 10,
    backend: IndexBackend = "auto",
    progress: Callable[[AnalyzeProgress], None] | None = None,
    cancel: threading.Event | None = None,
    total: int | None = None,
) -> IdentifyRun:
    """Analyse every image with the engine and identify all their faces together.

    Images that cannot be read are recorded in ``failures`` (with their error code) and the run goes on;
    images without a face are listed in ``images_without_faces``. The probability comes from the
    analyzer's calibration and the default cut-off from :func:`identification_min_similarity`; the
    other options are those of :func:`identify_faces`.

    Example:
        >>> with Analyzer() as analyzer:                                                 # doctest: +SKIP
        ...     run = identify_images([AnalyzeItem("team.jpg", Path("team.jpg"))], analyzer, [staff])
        >>> [(f.label, round(f.similarity, 2)) for f in run.faces]                      # doctest: +SKIP
        [('Jane Doe', 0.95), ('unknown', 0.81)]
    """
    pipeline = analyzer.head
    probes: list[ProbeFace] = []
    failures: list[ImageFailure] = []
    faceless: list[str] = []
    results = analyzer.analyze(
        items, options=AnalyzeOptions(face=face), progress=progress, cancel=cancel, total=total
    )
    for result in results:
        if result.error_code == NoFaceError.code:
            faceless.append(result.key)
            continue
        if result.error_code is not None or result.size_wh is None:
            failures.append(ImageFailure(result.key, str(result.error_code), str(result.error_message)))
            continue
        probes.extend(
            ProbeFace(
                faceprint=found.faceprint,
                image_id=result.key,
                face_index=index,
                bbox_xyxy=found.detection.bbox_xyxy,
                bbox_normalized=found.detection.normalized_bbox(result.size_wh),
            )
            for index, found in enumerate(result.faces)
            if found.faceprint is not None
        )
    outcome = _identify(
        probes,
        galleries,
        top_k=top_k,
        min_similarity=min_similarity,
        max_distance=max_distance,
        probability=pipeline.comparator.probability,
        default_min_similarity=identification_min_similarity(pipeline.spec, pipeline.comparator),
        comparator=pipeline.comparator,
        cluster_unknowns=cluster_unknowns,
        cluster_min_similarity=cluster_min_similarity,
        index_unknowns_into=index_unknowns_into,
        max_templates_per_unknown=max_templates_per_unknown,
        backend=backend,
        faiss_min_templates=FAISS_MIN_TEMPLATES,
    )
    return IdentifyRun(
        faces=tuple(outcome.faces),
        failures=tuple(failures),
        images_without_faces=tuple(faceless),
        min_similarity=outcome.min_similarity,
        contract_id=outcome.contract_id,
        model_id=outcome.model_id,
        galleries=outcome.galleries,
        new_unknowns=outcome.new_unknowns,
    )
