"""Search probes against one or several galleries at once.

All galleries (and the probes) must share one embedding contract. Each probe gets its top-k persons
(a person's similarity = max over their templates) and is *unknown* when the best one falls below the
cut-off. The cut-off is ``min_similarity`` or ``max_distance`` (never both); with neither, the model's
default operating threshold is used.

With a ``comparator`` (:class:`faceprint.compare.Comparator`) the decision is quality-aware per candidate:
the cut-off is a minimum similarity *for the reference pair* (two frontal faces), i.e. a probability level,
and each candidate must reach that level under the sigmoid of its own (probe quality, template quality)
pair: its cut-off is ``comparator.threshold_for(probe.quality, template.quality, min_similarity=cut_off)``
(:attr:`~faceprint.gallery.base.SearchHit.min_similarity`), its probability
``comparator.probability(similarity, probe.quality, template.quality)``, exactly what ``faceprint compare``
gives the same two faces. The template is the person's most similar one; a template or probe without
quality gets the reference sigmoid, i.e. the cut-off unchanged.

Example:
    >>> import numpy as np, pathlib, tempfile
    >>> from faceprint.gallery.sqlite import SqliteGallery
    >>> from faceprint.types import Faceprint
    >>> fp = Faceprint(np.array([1, 0], np.float32), model_id="m", contract_id="m:1", package_version="0")
    >>> gallery = SqliteGallery.create(pathlib.Path(tempfile.mkdtemp()) / "g.sqlite")
    >>> _ = gallery.enroll(gallery.add_person("Jane").person_id, [fp])
    >>> [r.best.name for r in search([fp], [gallery], min_similarity=0.9)]
    ['Jane']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faceprint.compare import Comparator, distance_from_similarity
from faceprint.errors import ContractMismatchError, UsageError
from faceprint.gallery.base import (
    DatabaseSearch,
    Gallery,
    GallerySnapshot,
    IdentifyResult,
    Person,
    PersonCandidate,
    SearchHit,
    check_same_contract,
)
from faceprint.gallery.index import FAISS_MIN_TEMPLATES, IndexBackend, PersonIndex, normalize_rows
from faceprint.types import Faceprint, FaceQuality

ProbabilityFn = Callable[[float], float]
"""Maps a similarity to a calibrated P(same person); supplied by the caller (see faceprint.compare)."""


def catalog_min_similarity(model_id: str | None) -> float | None:
    """The built-in operating threshold of a model (as a min similarity), or None when it has none.

    It is the shipped calibration's 1:1 threshold (DevTrain-fitted; ``faceprint models --thresholds``).

    Example:
        >>> from faceprint.models.catalog import builtin_specs
        >>> catalog_min_similarity("dlib-resnet-v1") == builtin_specs()["dlib-resnet-v1"].default_threshold
        True
        >>> round(catalog_min_similarity("dlib-resnet-v1"), 2)
        0.91
    """
    if model_id is None:
        return None
    from faceprint.models.catalog import builtin_specs

    spec = builtin_specs().get(model_id)
    return None if spec is None else spec.default_threshold


def resolve_min_similarity(
    *,
    min_similarity: float | None,
    max_distance: float | None,
    model_id: str | None,
    default_min_similarity: float | None = None,
) -> float:
    """One cut-off as a min similarity: from exactly one of the two forms, else ``default_min_similarity``
    (e.g. a pipeline's calibrated threshold), else the catalog default of ``model_id``.

    Raises:
        UsageError: both given, a value out of range, or no cut-off at all.

    Example:
        >>> round(resolve_min_similarity(min_similarity=None, max_distance=0.5, model_id=None), 3)
        0.875
    """
    if min_similarity is not None and max_distance is not None:
        raise UsageError("give min_similarity or max_distance, not both (they are the same cut-off)")
    if min_similarity is not None:
        if not -1.0 <= min_similarity <= 1.0:
            raise UsageError(f"min_similarity must lie in [-1, 1], got {min_similarity}")
        return float(min_similarity)
    if max_distance is not None:
        if not 0.0 <= max_distance <= 2.0:
            raise UsageError(f"max_distance must lie in [0, 2], got {max_distance}")
        return 1.0 - float(max_distance) ** 2 / 2.0
    default = default_min_similarity if default_min_similarity is not None else catalog_min_similarity(model_id)
    if default is None:
        raise UsageError(
            f"model {model_id!r} has no default threshold; pass min_similarity or max_distance",
            details={"model_id": model_id},
        )
    return float(default)


@dataclass(frozen=True, slots=True)
class _PersonKey:
    gallery: str
    person: Person


class MultiGalleryIndex:
    """One index over the templates of several galleries; build once, search many probes.

    In-process galleries (SQLite) are read once into one numpy/FAISS index; galleries that search in their
    own database (:class:`~faceprint.gallery.base.DatabaseSearch`, e.g. PostgreSQL + pgvector) are asked
    for their exact top-k persons at search time, one query per database, and the lists are merged by
    similarity. Either way a person's similarity is the max over their templates.

    Args:
        galleries: galleries sharing one embedding contract (empty, unbound ones are allowed; no gallery at
            all makes every probe unknown).
        backend: ``"auto"`` (FAISS above ``faiss_min_templates`` when installed), ``"numpy"`` or ``"faiss"``.
        faiss_min_templates: the automatic switch-over size.

    Raises:
        ContractMismatchError: two galleries hold different contracts.

    Example:
        >>> index = MultiGalleryIndex([staff, visitors])  # doctest: +SKIP
        >>> index.search(probes, top_k=5, max_distance=0.45)  # doctest: +SKIP
    """

    def __init__(
        self,
        galleries: Sequence[Gallery],
        *,
        backend: IndexBackend = "auto",
        faiss_min_templates: int = FAISS_MIN_TEMPLATES,
    ) -> None:
        names = [gallery.name for gallery in galleries]
        if len(set(names)) != len(names):
            raise UsageError(f"galleries must have distinct names, got {names}")
        in_database = [g for g in galleries if isinstance(g, DatabaseSearch) and g.searches_in_database]
        snapshots = [g.snapshot() for g in galleries if not (isinstance(g, DatabaseSearch) and g.searches_in_database)]
        self._contract_id = check_same_contract(
            [(f"gallery {s.name!r}", s.contract_id) for s in snapshots]
            + [(f"gallery {g.name!r}", g.contract_id) for g in in_database]
        )
        self._model_id = self._contract_id.rsplit(":", 1)[0] if self._contract_id is not None else None
        self._keys: list[_PersonKey] = []
        vectors: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        qualities: list[FaceQuality | None] = []
        dims = {s.vectors.shape[1] for s in snapshots if s.template_count}
        dims |= {dim for dim in (g.dim() for g in in_database) if dim is not None}
        # Galleries of one database are searched together, in one query per search.
        self._database_groups: list[list[DatabaseSearch]] = []
        for gallery in in_database:
            group = next((g for g in self._database_groups if g[0].engine_key == gallery.engine_key), None)
            if group is None:
                self._database_groups.append([gallery])
            else:
                group.append(gallery)
        self._in_database = tuple(in_database)
        self._names = tuple(names)
        if len(dims) > 1:
            raise ContractMismatchError(f"galleries hold templates of different dimensions: {sorted(dims)}")
        for snapshot in snapshots:
            offset = len(self._keys)
            self._keys.extend(_PersonKey(snapshot.name, person) for person in snapshot.persons)
            if snapshot.template_count:
                vectors.append(snapshot.vectors)
                rows.append(snapshot.person_rows + offset)
                qualities.extend(snapshot.qualities or (None,) * snapshot.template_count)
        self._snapshots: tuple[GallerySnapshot, ...] = tuple(snapshots)
        self._qualities: tuple[FaceQuality | None, ...] = tuple(qualities)
        self._index = PersonIndex(
            np.concatenate(vectors) if vectors else np.empty((0, 0), np.float32),
            np.concatenate(rows) if rows else np.empty(0, np.int64),
            backend=backend,
            faiss_min_templates=faiss_min_templates,
        )

    @property
    def contract_id(self) -> str | None:
        """The shared contract, None when every gallery is empty and unbound."""
        return self._contract_id

    @property
    def model_id(self) -> str | None:
        """The model part of the contract id (``<model id>:<digest>``)."""
        return self._model_id

    @property
    def backend(self) -> str:
        """``numpy`` or ``faiss`` (in process), ``database`` when every gallery searches in its database."""
        if self._database_groups and not self._snapshots:
            return "database"
        return self._index.backend

    @property
    def template_count(self) -> int:
        # Counted when asked (a full count in a large database is not free; searching never needs it).
        return self._index.template_count + sum(g.template_count() for g in self._in_database)

    @property
    def person_count(self) -> int:
        return len(self._keys) + sum(g.person_count() for g in self._in_database)

    @property
    def gallery_names(self) -> tuple[str, ...]:
        return self._names

    def resolve_min_similarity(
        self,
        *,
        min_similarity: float | None,
        max_distance: float | None,
        default_min_similarity: float | None = None,
    ) -> float:
        """The cut-off these galleries would use (see :func:`resolve_min_similarity`)."""
        return resolve_min_similarity(
            min_similarity=min_similarity,
            max_distance=max_distance,
            model_id=self._model_id,
            default_min_similarity=default_min_similarity,
        )

    def search(
        self,
        faceprints: Sequence[Faceprint],
        *,
        top_k: int = 3,
        min_similarity: float | None = None,
        max_distance: float | None = None,
        probability: ProbabilityFn | None = None,
        default_min_similarity: float | None = None,
        comparator: Comparator | None = None,
    ) -> list[IdentifyResult]:
        """Top-k persons and the accepted one (or unknown) for every probe, in order.

        With neither ``min_similarity`` nor ``max_distance`` the cut-off is ``default_min_similarity``
        (e.g. a pipeline's calibrated threshold), else the model's catalog default. With a ``comparator``
        each candidate is judged by the quality-aware sigmoid of (probe quality, template quality) and
        its probability comes from it (``probability`` is then not used): see the module docstring.

        Raises:
            ContractMismatchError: a probe's contract differs from the galleries'.
            UsageError: ``top_k < 1``, both cut-offs given, or no cut-off available.
        """
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        model_id = self._model_id
        if model_id is None and faceprints:
            model_id = faceprints[0].model_id
        cutoff = resolve_min_similarity(
            min_similarity=min_similarity,
            max_distance=max_distance,
            model_id=model_id,
            default_min_similarity=default_min_similarity,
        )
        if not faceprints:
            return []
        check_same_contract(
            [("the galleries", self._contract_id)] + [(f"probe {i}", fp.contract_id) for i, fp in enumerate(faceprints)]
        )
        queries = np.stack([fp.vector for fp in faceprints]).astype(np.float32)
        found = self._candidates(queries, top_k)
        results: list[IdentifyResult] = []
        for faceprint, hits in zip(faceprints, found, strict=True):
            if comparator is None:
                matches = tuple(self._hit(candidate, probability) for candidate in hits)
                best = matches[0] if matches and matches[0].similarity >= cutoff else None
            else:
                matches = tuple(_judged_hit(candidate, comparator, faceprint.quality, cutoff) for candidate in hits)
                best = _most_probable_passing(matches, comparator, faceprint.quality)
            results.append(IdentifyResult(matches=matches, best=best, min_similarity=cutoff))
        return results

    def _candidates(self, queries: np.ndarray, top_k: int) -> list[list[PersonCandidate]]:
        """The top-k persons of every source (in-process index, each database) merged, best first."""
        local = [
            [self._candidate(person, similarity, row) for person, similarity, row in hits]
            for hits in self._index.search_rows(queries, top_k=top_k)
        ]
        if not self._database_groups:
            return local
        unit = normalize_rows(queries)
        merged = local
        for group in self._database_groups:
            found = group[0].nearest_persons(unit, top_k=top_k, together=group[1:])
            # Each list is exact and sorted; a stable sort keeps in-process hits first on ties.
            merged = [
                sorted(mine + theirs, key=lambda c: -c.similarity)[:top_k]
                for mine, theirs in zip(merged, found, strict=True)
            ]
        return merged

    def _candidate(self, person_number: int, similarity: float, row: int) -> PersonCandidate:
        key = self._keys[person_number]
        return PersonCandidate(
            gallery=key.gallery,
            person_id=key.person.person_id,
            name=key.person.name,
            is_unknown=key.person.is_unknown,
            similarity=similarity,
            template_quality=self._qualities[row] if row < len(self._qualities) else None,
        )

    @staticmethod
    def _hit(candidate: PersonCandidate, probability: ProbabilityFn | None) -> SearchHit:
        similarity = candidate.similarity
        return SearchHit(
            person_id=candidate.person_id,
            name=candidate.name,
            similarity=similarity,
            distance=distance_from_similarity(similarity),
            probability=None if probability is None else float(probability(similarity)),
            is_unknown=candidate.is_unknown,
            gallery=candidate.gallery,
            template_quality=candidate.template_quality,
        )


def _judged_hit(
    candidate: PersonCandidate, comparator: Comparator, probe_quality: FaceQuality | None, cutoff: float
) -> SearchHit:
    """A candidate with its quality-aware probability and its own cut-off (see the module docstring)."""
    similarity = candidate.similarity
    template_quality = candidate.template_quality
    return SearchHit(
        person_id=candidate.person_id,
        name=candidate.name,
        similarity=similarity,
        distance=distance_from_similarity(similarity),
        probability=comparator.probability(similarity, probe_quality, template_quality),
        is_unknown=candidate.is_unknown,
        gallery=candidate.gallery,
        template_quality=template_quality,
        min_similarity=comparator.threshold_for(probe_quality, template_quality, min_similarity=cutoff),
    )


def _most_probable_passing(
    matches: Sequence[SearchHit], comparator: Comparator, probe_quality: FaceQuality | None
) -> SearchHit | None:
    """The candidate of the highest calibrated logit among those reaching their own cut-off (first on ties).

    The logit, not the probability: two sure matches both read 1.0 in floating point.
    """
    passing = [hit for hit in matches if hit.passes]
    if not passing:
        return None
    return max(passing, key=lambda hit: comparator.logit(hit.similarity, probe_quality, hit.template_quality))


def search(
    faceprints: Sequence[Faceprint],
    galleries: Sequence[Gallery],
    *,
    top_k: int = 3,
    min_similarity: float | None = None,
    max_distance: float | None = None,
    probability: ProbabilityFn | None = None,
    default_min_similarity: float | None = None,
    backend: IndexBackend = "auto",
    comparator: Comparator | None = None,
) -> list[IdentifyResult]:
    """Search probes against several galleries (one-shot form of :class:`MultiGalleryIndex`).

    Example:
        >>> results = search(probes, [staff, visitors], top_k=5, max_distance=0.45)  # doctest: +SKIP
        >>> [r.best.name if r.best else "unknown" for r in results]  # doctest: +SKIP
        ['Jane Doe', 'unknown']
    """
    index = MultiGalleryIndex(galleries, backend=backend)
    return index.search(
        faceprints,
        top_k=top_k,
        min_similarity=min_similarity,
        max_distance=max_distance,
        probability=probability,
        default_min_similarity=default_min_similarity,
        comparator=comparator,
    )
