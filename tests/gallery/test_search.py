"""Searching one or several galleries: contracts, cut-offs, top-k, unknowns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import ContractMismatchError, UsageError
from faceprint.gallery.search import MultiGalleryIndex, catalog_min_similarity, resolve_min_similarity, search
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.types import Faceprint

CONTRACT = "test-model:000000000001"


def fp(values: list[float], contract: str = CONTRACT) -> Faceprint:
    return Faceprint(
        np.asarray(values, np.float32), model_id=contract.rsplit(":", 1)[0], contract_id=contract, package_version="0"
    )


def at_angle(degrees: float) -> Faceprint:
    """A 2-d faceprint whose cosine similarity with [1, 0] is cos(degrees)."""
    radians = np.deg2rad(degrees)
    return fp([float(np.cos(radians)), float(np.sin(radians))])


@pytest.fixture
def two_galleries(tmp_path: Path):  # type: ignore[no-untyped-def]
    staff = SqliteGallery.create(tmp_path / "staff.sqlite")
    visitors = SqliteGallery.create(tmp_path / "visitors.sqlite")
    jane = staff.add_person("Jane")
    staff.enroll(jane.person_id, [at_angle(0), at_angle(60)])
    bob = staff.add_person("Bob")
    staff.enroll(bob.person_id, [at_angle(90)])
    eve = visitors.add_person("Eve")
    visitors.enroll(eve.person_id, [at_angle(20)])
    yield staff, visitors
    staff.close()
    visitors.close()


def test_search_spans_several_galleries(two_galleries: tuple[SqliteGallery, SqliteGallery]) -> None:
    staff, visitors = two_galleries
    (result,) = search([at_angle(15)], [staff, visitors], top_k=3, min_similarity=0.9)
    assert [(hit.name, hit.gallery) for hit in result.matches] == [
        ("Eve", "visitors"),
        ("Jane", "staff"),
        ("Bob", "staff"),
    ]
    assert result.best is not None and result.best.name == "Eve"
    assert result.matches[0].similarity == pytest.approx(np.cos(np.deg2rad(5)), abs=1e-6)
    assert result.matches[0].distance == pytest.approx(np.sqrt(2 - 2 * np.cos(np.deg2rad(5))), abs=1e-6)
    assert result.matches[0].probability is None


def test_person_similarity_is_max_over_templates(two_galleries: tuple[SqliteGallery, SqliteGallery]) -> None:
    staff, _ = two_galleries
    (result,) = search([at_angle(55)], [staff], top_k=1, min_similarity=0.9)
    assert result.best is not None and result.best.name == "Jane"  # via her 60° template
    assert result.best.similarity == pytest.approx(np.cos(np.deg2rad(5)), abs=1e-6)


def test_below_the_cut_off_is_unknown_but_candidates_remain(two_galleries: tuple[SqliteGallery, SqliteGallery]) -> None:
    staff, visitors = two_galleries
    (result,) = search([at_angle(40)], [staff, visitors], top_k=2, min_similarity=0.99)
    assert result.is_unknown and result.best is None
    assert result.top is not None and result.top.name in ("Eve", "Jane")
    assert len(result.matches) == 2


@pytest.mark.parametrize(
    ("min_similarity", "max_distance", "accepted"),
    [
        (0.0, None, True),  # an explicit 0.0 is a real cut-off, not "use the default"
        (None, 0.0, False),
        (float(np.cos(np.deg2rad(30))) - 1e-6, None, True),
        (None, float(np.sqrt(2 - 2 * np.cos(np.deg2rad(30)))) + 1e-6, True),
        (float(np.cos(np.deg2rad(30))) + 1e-3, None, False),
    ],
)
def test_cut_offs(
    two_galleries: tuple[SqliteGallery, SqliteGallery],
    min_similarity: float | None,
    max_distance: float | None,
    accepted: bool,
) -> None:
    staff, _ = two_galleries
    (result,) = search([at_angle(30)], [staff], min_similarity=min_similarity, max_distance=max_distance)
    assert (result.best is not None) is accepted


def test_resolve_min_similarity() -> None:
    with pytest.raises(UsageError, match="not both"):
        resolve_min_similarity(min_similarity=0.5, max_distance=0.5, model_id=None)
    assert resolve_min_similarity(min_similarity=0.0, max_distance=None, model_id="dlib-resnet-v1") == 0.0
    assert resolve_min_similarity(min_similarity=None, max_distance=0.0, model_id=None) == 1.0
    assert resolve_min_similarity(min_similarity=None, max_distance=None, model_id="dlib-resnet-v1") == (
        catalog_min_similarity("dlib-resnet-v1")
    )
    with pytest.raises(UsageError, match="no default"):
        resolve_min_similarity(min_similarity=None, max_distance=None, model_id="test-model")
    for bad in ({"min_similarity": 1.5, "max_distance": None}, {"min_similarity": None, "max_distance": -0.1}):
        with pytest.raises(UsageError):
            resolve_min_similarity(model_id=None, **bad)  # type: ignore[arg-type]


def test_contracts_must_agree(tmp_path: Path, two_galleries: tuple[SqliteGallery, SqliteGallery]) -> None:
    staff, _ = two_galleries
    with SqliteGallery.create(tmp_path / "other.sqlite") as other:
        person = other.add_person("X")
        other.enroll(person.person_id, [fp([1, 0], contract="other:1")])
        with pytest.raises(ContractMismatchError):
            MultiGalleryIndex([staff, other])
    with pytest.raises(ContractMismatchError):
        search([fp([1, 0], contract="other:1")], [staff], min_similarity=0.5)


def test_top_k_probability_and_empty_galleries(
    tmp_path: Path, two_galleries: tuple[SqliteGallery, SqliteGallery]
) -> None:
    staff, visitors = two_galleries
    with SqliteGallery.create(tmp_path / "empty.sqlite") as empty:
        index = MultiGalleryIndex([staff, visitors, empty])
        assert (index.template_count, index.person_count, index.contract_id) == (4, 3, CONTRACT)
        (result,) = index.search([at_angle(0)], top_k=1, min_similarity=0.5, probability=lambda s: s / 2)
        assert len(result.matches) == 1
        assert result.matches[0].probability == pytest.approx(0.5)
        with pytest.raises(UsageError):
            index.search([at_angle(0)], top_k=0, min_similarity=0.5)
        (alone,) = search([at_angle(0)], [empty], min_similarity=0.5)
        assert alone.is_unknown and alone.matches == () and alone.top is None
    assert search([], [staff], min_similarity=0.5) == []


def test_gallery_names_must_be_distinct(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        SqliteGallery.create(tmp_path / "a" / "g.sqlite") as one,
        SqliteGallery.create(tmp_path / "b" / "g.sqlite") as two,
    ):
        with pytest.raises(UsageError, match="distinct"):
            MultiGalleryIndex([one, two])
