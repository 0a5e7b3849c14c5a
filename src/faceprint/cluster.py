"""Cluster unknown faces across a run, with a cannot-link rule, and keep them as persistent unknowns.

**Algorithm: constrained average-linkage agglomerative clustering** on cosine similarity.
Every face starts alone; the two clusters with the highest *average* pairwise similarity are merged while
that average is at least ``min_similarity``, and two clusters that hold faces of the same image are never
merged (one photo cannot show the same person twice: the cannot-link rule).

Why this one:

- *Connected components / single linkage* (join any two faces above the cut-off) chains: in a crowd, one
  blurred face similar to two people glues their clusters together. Average linkage needs the whole
  groups to agree.
- *Complete linkage* lets one bad pair (profile vs frontal, an old photo) veto a merge and over-splits.
- *Chinese whispers* depends on a random visiting order (not reproducible run to run) and has no natural
  place for cannot-link.
- Average linkage's stopping rule means the same as the identification cut-off ("these faces are, on
  average, as alike as a match"), so one threshold serves both, and the result is deterministic.
- The cannot-link rule fits agglomeration exactly: once two clusters share an image they conflict
  forever, so a conflicting pair is stored as similarity ``-inf``, which the average-linkage update
  (Lance-Williams) carries into every later merge.

Cost: ``O(n^2)`` memory (a float32 n x n matrix: 100 MB at 5,000 faces) and about ``O(n^2)`` time with a
cached best neighbour per row. Runs hold at most :data:`MAX_FACES` unknown faces; beyond that a vector
database's clustering is the tool.

Example:
    >>> vectors = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.98, 0.12]], np.float32)
    >>> cluster_faces(vectors, image_ids=["a", "b", "c", "b"], min_similarity=0.9)
    [0, 0, 1, 2]
    >>> unknown_label(0)
    'Unknown #1'
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

from faceprint.errors import UsageError
from faceprint.gallery.base import Gallery, Person, check_same_contract, new_person_id
from faceprint.gallery.index import normalize_rows
from faceprint.types import Faceprint

MAX_FACES = 10_000
"""Most faces :func:`cluster_faces` accepts (the similarity matrix would take 400 MB)."""


def unknown_label(label: int) -> str:
    """The display name of cluster ``label`` (0-based): ``Unknown #1``, ``Unknown #2``, …

    Example:
        >>> unknown_label(4)
        'Unknown #5'
    """
    return f"Unknown #{label + 1}"


def cluster_faces(
    vectors: npt.ArrayLike,
    *,
    image_ids: Sequence[Hashable] | None = None,
    cannot_link: npt.NDArray[np.bool_] | None = None,
    min_similarity: float,
    max_faces: int = MAX_FACES,
) -> list[int]:
    """Cluster faces; labels are 0-based and numbered by first appearance (face 0 is in cluster 0).

    Args:
        vectors: ``(n, d)`` faceprint vectors (normalised here).
        image_ids: for each face, the image it comes from; faces of one image never share a cluster.
        cannot_link: or, more generally, an ``(n, n)`` matrix: ``True`` pairs never share a cluster (video
            tracks on screen at a common frame; overlap in time is not an equivalence, so it is not image ids).
        min_similarity: two clusters merge only if their average pairwise cosine similarity is at least this.
        max_faces: refuse larger inputs (quadratic memory).

    Returns:
        One label per face.

    Raises:
        UsageError: lengths differ, or more than ``max_faces`` faces.

    Example:
        >>> cluster_faces(np.eye(3, dtype=np.float32), image_ids=[1, 2, 3], min_similarity=0.5)
        [0, 1, 2]
        >>> v = np.array([[1, 0], [0.99, 0.1], [0.98, 0.12]], np.float32)
        >>> cluster_faces(v, cannot_link=np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], bool), min_similarity=0.9)
        [0, 1, 1]
    """
    matrix = normalize_rows(vectors) if np.asarray(vectors).size else np.empty((0, 0), np.float32)
    n = int(matrix.shape[0])
    if (image_ids is None) == (cannot_link is None):
        raise UsageError("give image_ids or cannot_link (exactly one)")
    if image_ids is not None and len(image_ids) != n:
        raise UsageError(f"{n} faces but {len(image_ids)} image ids")
    if cannot_link is not None and cannot_link.shape != (n, n):
        raise UsageError(f"cannot_link must be {n}x{n}, got {cannot_link.shape}")
    if n > max_faces:
        raise UsageError(f"cannot cluster {n} faces at once (limit {max_faces}); cluster fewer faces")
    if n == 0:
        return []

    if cannot_link is None:
        codes: dict[Hashable, int] = {}
        image_codes = np.array([codes.setdefault(i, len(codes)) for i in image_ids or ()], dtype=np.int64)
        forbidden = image_codes[:, None] == image_codes[None, :]
    else:
        forbidden = cannot_link | cannot_link.T
        np.fill_diagonal(forbidden, True)
    sims = matrix @ matrix.T
    sims[forbidden] = -np.inf  # cannot-link, and the diagonal
    sizes = np.ones(n, dtype=np.float64)
    active = np.ones(n, dtype=bool)
    parent = np.arange(n)
    best_idx = np.argmax(sims, axis=1)
    best_val = sims[np.arange(n), best_idx].astype(np.float64)

    while True:
        keep = int(np.argmax(best_val))
        if not best_val[keep] >= min_similarity:  # also stops on -inf (nothing left to merge)
            break
        gone = int(best_idx[keep])
        keep, gone = min(keep, gone), max(keep, gone)
        total = sizes[keep] + sizes[gone]
        # Lance-Williams update for average linkage; -inf (cannot-link) stays -inf.
        merged = ((sizes[keep] * sims[keep].astype(np.float64) + sizes[gone] * sims[gone]) / total).astype(np.float32)
        merged[~active] = -np.inf
        merged[keep] = merged[gone] = -np.inf
        sims[keep, :] = merged
        sims[:, keep] = merged
        sims[gone, :] = -np.inf
        sims[:, gone] = -np.inf
        sizes[keep] = total
        active[gone] = False
        parent[parent == gone] = keep
        best_val[gone] = -np.inf

        # Rows whose best neighbour was one of the merged pair must look again; the rest can only have
        # gained the merged cluster as a new best.
        stale = np.flatnonzero(active & ((best_idx == keep) | (best_idx == gone)))
        stale = np.union1d(stale, [keep])
        for row in stale.tolist():
            best_idx[row] = int(np.argmax(sims[row]))
            best_val[row] = float(sims[row, best_idx[row]])
        better = active & (merged.astype(np.float64) > best_val)
        better[keep] = False
        best_idx[better] = keep
        best_val[better] = merged[better]

    labels: dict[int, int] = {}
    return [labels.setdefault(int(root), len(labels)) for root in parent.tolist()]


def group_by_label(items: Sequence[Faceprint], labels: Sequence[int]) -> list[list[Faceprint]]:
    """The faceprints of each cluster, in label order.

    Example:
        >>> group_by_label(["a", "b", "c"], [0, 1, 0])  # doctest: +SKIP
        [['a', 'c'], ['b']]
    """
    if len(items) != len(labels):
        raise UsageError(f"{len(items)} faceprints but {len(labels)} labels")
    groups: list[list[Faceprint]] = [[] for _ in range(max(labels, default=-1) + 1)]
    for item, label in zip(items, labels, strict=True):
        groups[label].append(item)
    return groups


def _most_central(faceprints: Sequence[Faceprint], limit: int) -> list[int]:
    unit = normalize_rows(np.stack([fp.vector for fp in faceprints]))
    centre = unit.mean(axis=0)
    # The most typical faces of a cluster make the safest templates: an outlier may be a clustering error.
    order = np.argsort(-(unit @ centre), kind="stable")
    return sorted(int(i) for i in order[:limit])


def index_unknowns(
    gallery: Gallery,
    clusters: Sequence[Sequence[Faceprint]],
    *,
    max_templates: int = 10,
    sources: Sequence[Sequence[str | None]] | None = None,
) -> list[Person]:
    """Store each cluster as a persistent unknown person so that later runs recognise it.

    Each cluster becomes a person flagged ``is_unknown`` with a stable id ``unknown-<12 hex>`` (also
    its name until someone renames it, which makes it known). Up to ``max_templates`` of the cluster's
    most central faces become its templates. Persistent unknowns are ordinary persons otherwise: rename,
    merge and split them through the gallery API.

    Args:
        gallery: where to store them; its contract must match the faceprints'.
        clusters: the faceprints of each cluster (e.g. from :func:`group_by_label`); empty ones are skipped.
        max_templates: templates kept per cluster.
        sources: optional source text per faceprint, shaped like ``clusters``.

    Returns:
        The new persons, in cluster order (skipping empty clusters).

    Raises:
        ContractMismatchError: the faceprints do not share the gallery's contract.

    Example:
        >>> persons = index_unknowns(gallery, [[fp1, fp2], [fp3]])  # doctest: +SKIP
        >>> persons[0].person_id  # doctest: +SKIP
        'unknown-5b0c9d2e41af'
    """
    if max_templates < 1:
        raise UsageError(f"max_templates must be at least 1, got {max_templates}")
    if sources is not None and [len(s) for s in sources] != [len(c) for c in clusters]:
        raise UsageError("sources must have one entry per faceprint of each cluster")
    check_same_contract(
        [(f"gallery {gallery.name!r}", gallery.contract_id)]
        + [(f"cluster {i + 1}", fp.contract_id) for i, cluster in enumerate(clusters) for fp in cluster]
    )
    persons: list[Person] = []
    for number, cluster in enumerate(clusters):
        if not cluster:
            continue
        chosen = _most_central(cluster, max_templates)
        person_id = new_person_id(is_unknown=True)
        person = gallery.add_person(person_id, person_id=person_id, is_unknown=True)
        try:
            gallery.enroll(
                person.person_id,
                [cluster[i] for i in chosen],
                sources=None if sources is None else [sources[number][i] for i in chosen],
            )
        except BaseException:
            gallery.remove_person(person.person_id)
            raise
        persons.append(gallery.get_person(person.person_id))
    return persons
