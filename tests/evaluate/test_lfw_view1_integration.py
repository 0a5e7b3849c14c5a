"""The real LFW View 1 pair lists parse into the documented counts and point at existing images."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceprint.evaluate.pairs_list import read_pairs_list

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("name", "count"), [("pairsDevTrain.txt", 2200), ("pairsDevTest.txt", 1000)])
def test_lfw_view1_pair_lists(data_dir: Path, name: str, count: int) -> None:
    lfw = data_dir / "lfw-view1"
    pairs = read_pairs_list(lfw / name)

    assert len(pairs) == count
    assert sum(p.is_same for p in pairs) == count // 2
    assert all(p.fold is None for p in pairs)
    assert len({(p.path_a, p.path_b) for p in pairs}) == count  # no pair listed twice
    for pair in pairs:
        name_a, name_b = pair.path_a.split("/")[0], pair.path_b.split("/")[0]
        assert (name_a == name_b) == pair.is_same
    missing = sorted({p for pair in pairs for p in (pair.path_a, pair.path_b) if not (lfw / "images" / p).is_file()})
    assert missing == []


def test_lfw_view1_train_and_test_share_no_person(data_dir: Path) -> None:
    lfw = data_dir / "lfw-view1"

    def people(name: str) -> set[str]:
        return {p.split("/")[0] for pair in read_pairs_list(lfw / name) for p in (pair.path_a, pair.path_b)}

    assert people("pairsDevTrain.txt").isdisjoint(people("pairsDevTest.txt"))
