"""Gallery behaviour, the same on every backend: SQLite (embedded) and PostgreSQL + pgvector (real server)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.cluster import index_unknowns
from faceprint.errors import ContractMismatchError, UsageError
from faceprint.gallery.base import (
    AmbiguousPersonError,
    Gallery,
    GalleryFormatError,
    GalleryNotFoundError,
    PersonNotFoundError,
    TemplateNotFoundError,
    resolve_person,
)
from faceprint.gallery.search import MultiGalleryIndex, search
from faceprint.identify import ProbeFace, identify_faces
from faceprint.types import Faceprint

CONTRACT = "test-model:000000000001"
Backend = Any  # tests/gallery/conftest.py: Backend (create, reopen, kind, url)


def fp(values: list[float] | np.ndarray, contract: str = CONTRACT) -> Faceprint:
    return Faceprint(
        np.asarray(values, np.float32),
        model_id=contract.rsplit(":", 1)[0],
        contract_id=contract,
        package_version="0.0.test",
        model_options={"flip": True},
    )


def random_fps(count: int, dim: int = 8, seed: int = 0) -> list[Faceprint]:
    rng = np.random.default_rng(seed)
    return [fp(v) for v in rng.normal(size=(count, dim))]


def test_it_is_a_gallery(gallery: Any) -> None:
    assert isinstance(gallery, Gallery)
    assert gallery.contract_id is None and gallery.persons() == [] and gallery.template_count() == 0


def test_person_crud_and_template_counts(gallery: Any) -> None:
    jane = gallery.add_person("  Jane Doe ")
    assert jane.name == "Jane Doe" and jane.person_id.startswith("p-") and not jane.is_unknown
    ids = gallery.enroll(jane.person_id, random_fps(3), sources=["a.jpg", "b.jpg", None])
    assert len(ids) == 3 and len(set(ids)) == 3
    assert gallery.get_person(jane.person_id).template_count == 3
    assert gallery.template_count() == 3
    templates = gallery.templates(jane.person_id)
    assert [t.source for t in templates] == ["a.jpg", "b.jpg", None]
    assert [t.template_id for t in templates] == ids
    assert templates[0].faceprint.same_as(random_fps(3)[0])
    assert templates[0].faceprint.model_options == {"flip": True}
    assert templates[0].faceprint.package_version == "0.0.test"
    assert templates[0].created_at is not None

    gallery.remove_template(ids[1])
    assert gallery.get_person(jane.person_id).template_count == 2
    with pytest.raises(TemplateNotFoundError):
        gallery.remove_template(ids[1])

    renamed = gallery.rename_person(jane.person_id, "Jane Roe")
    assert renamed.name == "Jane Roe" and renamed.person_id == jane.person_id

    gallery.remove_person(jane.person_id)
    assert gallery.persons() == []
    assert gallery.template_count() == 0  # templates go with their person
    with pytest.raises(PersonNotFoundError):
        gallery.get_person(jane.person_id)
    with pytest.raises(PersonNotFoundError):
        gallery.enroll(jane.person_id, random_fps(1))
    with pytest.raises(PersonNotFoundError):
        gallery.templates(jane.person_id)


def test_vectors_come_back_bit_for_bit(gallery: Any) -> None:
    person = gallery.add_person("A")
    values = np.array([1e-38, -0.0, 3.4e38, 0.1, -1 / 3, 7.0, 2**-20, 123456.789], np.float32)
    gallery.enroll(person.person_id, [fp(values)])
    (template,) = gallery.templates()
    assert template.faceprint.vector.dtype == np.float32
    assert template.faceprint.vector.tobytes() == values.tobytes()


def test_persons_are_listed_by_name_then_id_in_byte_order(gallery: Any) -> None:
    for name, person_id in [("bob", "p-2"), ("Bob", "p-1"), ("alice", "p-3"), ("Bob", "p-0")]:
        gallery.add_person(name, person_id=person_id)
    assert [(p.name, p.person_id) for p in gallery.persons()] == [
        ("Bob", "p-0"),
        ("Bob", "p-1"),
        ("alice", "p-3"),
        ("bob", "p-2"),
    ]
    assert [p.person_id for p in gallery.find_persons("Bob")] == ["p-0", "p-1"]


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 300])
def test_bad_names_are_refused(gallery: Any, bad: str) -> None:
    with pytest.raises(UsageError):
        gallery.add_person(bad)
    assert gallery.persons() == []


def test_duplicate_person_id_is_refused(gallery: Any) -> None:
    gallery.add_person("A", person_id="same")
    with pytest.raises(UsageError):
        gallery.add_person("B", person_id="same")
    assert [p.name for p in gallery.persons()] == ["A"]


def test_resolve_person_by_id_name_and_casefold(gallery: Any) -> None:
    jane = gallery.add_person("Jane Doe")
    assert resolve_person(gallery, jane.person_id) == jane
    assert resolve_person(gallery, "Jane Doe") == jane
    assert resolve_person(gallery, "jane doe") == jane
    gallery.add_person("Jane Doe")
    with pytest.raises(AmbiguousPersonError):
        resolve_person(gallery, "Jane Doe")
    with pytest.raises(PersonNotFoundError):
        resolve_person(gallery, "Nobody")


def test_first_enrolment_binds_the_contract(gallery: Any) -> None:
    person = gallery.add_person("A")
    gallery.enroll(person.person_id, [fp([1, 0, 0])])
    assert gallery.contract_id == CONTRACT
    assert gallery.model_id == "test-model"
    with pytest.raises(ContractMismatchError):
        gallery.enroll(person.person_id, [fp([1, 0, 0], contract="other:1")])
    with pytest.raises(ContractMismatchError):  # same contract id, different dimension
        gallery.enroll(person.person_id, [fp([1, 0, 0, 0])])
    assert gallery.template_count() == 1  # refused enrolments left nothing behind


def test_contract_given_at_creation(backend: Backend) -> None:
    g = backend.create(contract_id="other:1")
    person = g.add_person("A")
    with pytest.raises(ContractMismatchError):
        g.enroll(person.person_id, [fp([1, 0])])
    assert g.contract_id == "other:1"


def test_a_failed_batch_enrolment_is_all_or_nothing(gallery: Any) -> None:
    person = gallery.add_person("A")
    with pytest.raises(ContractMismatchError):
        gallery.enroll(person.person_id, [fp([1, 0]), fp([1, 0], contract="other:1")])
    assert gallery.template_count() == 0
    assert gallery.contract_id is None
    # The dimension was not bound either: another one is accepted afterwards.
    gallery.enroll(person.person_id, [fp([1, 0, 0])])
    assert gallery.template_count() == 1


def test_merge_moves_templates_and_names_unknowns(gallery: Any) -> None:
    known = gallery.add_person("Jane")
    gallery.enroll(known.person_id, random_fps(2, seed=1))
    unknown = gallery.add_person("unknown-x", person_id="unknown-x", is_unknown=True)
    gallery.enroll(unknown.person_id, random_fps(3, seed=2))

    merged = gallery.merge_persons(unknown.person_id, [known.person_id])
    assert merged.person_id == "unknown-x"
    assert merged.template_count == 5
    assert merged.name == "Jane" and not merged.is_unknown
    assert [p.person_id for p in gallery.persons()] == ["unknown-x"]
    with pytest.raises(UsageError):
        gallery.merge_persons(merged.person_id, [merged.person_id])
    with pytest.raises(PersonNotFoundError):
        gallery.merge_persons(merged.person_id, ["nobody"])


def test_split_moves_chosen_templates_to_a_new_person(gallery: Any) -> None:
    person = gallery.add_person("Mixed")
    ids = gallery.enroll(person.person_id, random_fps(4))
    new = gallery.split_person(person.person_id, [ids[1], ids[3]], name="Other")
    assert new.template_count == 2 and new.name == "Other"
    assert gallery.get_person(person.person_id).template_count == 2
    assert [t.template_id for t in gallery.templates(new.person_id)] == [ids[1], ids[3]]
    with pytest.raises(TemplateNotFoundError):
        gallery.split_person(person.person_id, [ids[1]], name="Again")
    with pytest.raises(UsageError):
        gallery.split_person(person.person_id, [], name="Empty")


def test_rename_makes_an_unknown_known(gallery: Any) -> None:
    unknown = gallery.add_person("unknown-1", is_unknown=True)
    assert unknown.person_id.startswith("unknown-")
    renamed = gallery.rename_person(unknown.person_id, "Bob")
    assert (renamed.name, renamed.is_unknown, renamed.person_id) == ("Bob", False, unknown.person_id)


def test_export_import_round_trip(tmp_path: Path, backend: Backend) -> None:
    gallery = backend.create()
    jane = gallery.add_person("Jane")
    gallery.enroll(jane.person_id, random_fps(2, seed=3), sources=["j1.jpg", "j2.jpg"])
    stranger = gallery.add_person("unknown-s", is_unknown=True)
    gallery.enroll(stranger.person_id, random_fps(1, seed=4))
    gallery.add_person("Nobody yet")
    export = tmp_path / "out" / "g.jsonl"
    assert gallery.export_jsonl(export) == 3
    header = json.loads(export.read_text().splitlines()[0])
    assert header["contract_id"] == CONTRACT and header["format"] == "faceprint-gallery/1"

    copy = backend.create()
    summary = copy.import_jsonl(export)
    assert (summary.persons_added, summary.templates_added, summary.templates_skipped) == (3, 3, 0)
    assert copy.contract_id == CONTRACT
    assert {(p.person_id, p.name, p.template_count, p.is_unknown) for p in copy.persons()} == {
        (p.person_id, p.name, p.template_count, p.is_unknown) for p in gallery.persons()
    }
    original = {(t.person_id, t.source): t for t in gallery.templates()}
    for template in copy.templates():
        twin = original[(template.person_id, template.source)]
        assert template.faceprint.same_as(twin.faceprint)
        assert template.created_at == twin.created_at
    again = copy.import_jsonl(export)
    assert (again.persons_added, again.templates_added, again.templates_skipped) == (0, 0, 3)


def test_import_refuses_another_contract_and_bad_files(tmp_path: Path, backend: Backend) -> None:
    gallery = backend.create()
    person = gallery.add_person("A")
    gallery.enroll(person.person_id, random_fps(1))
    export = tmp_path / "g.jsonl"
    gallery.export_jsonl(export)
    other = backend.create(contract_id="other:1")
    with pytest.raises(ContractMismatchError):
        other.import_jsonl(export)
    assert other.persons() == []
    bad = tmp_path / "bad.jsonl"
    for text in ["", "not json\n", '{"format": "something-else"}\n', export.read_text() + "{broken\n"]:
        bad.write_text(text)
        with pytest.raises(GalleryFormatError):
            gallery.import_jsonl(bad)
    with pytest.raises(GalleryNotFoundError):
        gallery.import_jsonl(tmp_path / "missing.jsonl")


def test_snapshot_follows_writes_of_other_connections(backend: Backend) -> None:
    writer = backend.create()
    reader = backend.reopen(writer)
    assert reader.snapshot().template_count == 0
    person = writer.add_person("A")
    writer.enroll(person.person_id, random_fps(2))
    snapshot = reader.snapshot()
    assert snapshot.template_count == 2
    assert snapshot.contract_id == CONTRACT
    assert reader.snapshot() is snapshot  # cached while nothing changes
    writer.rename_person(person.person_id, "B")
    assert reader.snapshot().persons[0].name == "B"


def _people(gallery: Any, count: int, per_person: int, seed: int, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count * per_person, dim)).astype(np.float32)
    for i in range(count):
        person = gallery.add_person(f"person {seed}-{i:03d}", person_id=f"p-{seed}-{i:03d}")
        gallery.enroll(person.person_id, [fp(v) for v in vectors[i * per_person : (i + 1) * per_person]])
    return vectors


def _as_tuples(results: list[Any]) -> list[list[tuple[str, str, float]]]:
    return [[(h.gallery, h.person_id, round(h.similarity, 5)) for h in r.matches] for r in results]


def test_search_gives_the_same_answers_on_every_backend(tmp_path: Path, postgres_url: str) -> None:
    from faceprint.gallery.pgvector import PgvectorGallery
    from faceprint.gallery.sqlite import SqliteGallery

    rng = np.random.default_rng(7)
    with (
        SqliteGallery.create(tmp_path / "staff.sqlite") as lite,
        PgvectorGallery.create(postgres_url, f"staff-{rng.integers(1 << 30)}") as pg,
    ):
        vectors = _people(lite, 40, 3, seed=1)
        _people(pg, 40, 3, seed=1)
        probes = [fp(v + rng.normal(scale=0.3, size=v.shape)) for v in vectors[::7]]
        probes.append(fp(rng.normal(size=16)))  # a stranger
        want = lite.search(probes, top_k=5, min_similarity=0.8)
        got = pg.search(probes, top_k=5, min_similarity=0.8)
        assert [[(h.person_id, round(h.similarity, 5)) for h in r.matches] for r in got] == [
            [(h.person_id, round(h.similarity, 5)) for h in r.matches] for r in want
        ]
        assert [r.best is None for r in got] == [r.best is None for r in want]
        assert got[-1].best is None and got[0].best is not None
        assert {h.gallery for r in got for h in r.matches} == {pg.name}


def test_several_galleries_are_searched_at_once(backend: Backend) -> None:
    staff, visitors, empty = backend.create("staff"), backend.create("visitors"), backend.create("empty")
    staff_vectors = _people(staff, 10, 2, seed=2)
    visitor_vectors = _people(visitors, 10, 2, seed=3)
    index = MultiGalleryIndex([staff, visitors, empty])
    assert index.gallery_names == ("staff", "visitors", "empty")
    assert index.template_count == 40 and index.person_count == 20
    probes = [fp(staff_vectors[4]), fp(visitor_vectors[7])]
    results = index.search(probes, top_k=3, min_similarity=0.99)
    assert [(r.best.gallery, r.best.person_id) for r in results if r.best] == [
        ("staff", "p-2-002"),
        ("visitors", "p-3-003"),
    ]
    assert all(len(r.matches) == 3 for r in results)
    assert all(r.matches[0].similarity >= r.matches[1].similarity >= r.matches[2].similarity for r in results)
    # Every gallery counts: the same answers as searching a merged copy exhaustively.
    everything = np.concatenate([staff_vectors, visitor_vectors])
    unit = everything / np.linalg.norm(everything, axis=1, keepdims=True)
    for probe, result in zip(probes, results, strict=True):
        sims = unit @ (probe.vector / np.linalg.norm(probe.vector))
        per_person = sims.reshape(20, 2).max(axis=1)
        assert [round(h.similarity, 5) for h in result.matches] == [
            round(float(s), 5) for s in np.sort(per_person)[::-1][:3]
        ]


def test_galleries_of_different_contracts_are_not_searched_together(backend: Backend) -> None:
    one, two = backend.create(), backend.create(contract_id="other:1")
    person = one.add_person("A")
    one.enroll(person.person_id, [fp([1, 0])])
    two.enroll(two.add_person("B").person_id, [fp([1, 0], contract="other:1")])
    with pytest.raises(ContractMismatchError):
        MultiGalleryIndex([one, two])
    with pytest.raises(ContractMismatchError):
        one.search([fp([1, 0], contract="other:1")], top_k=1, min_similarity=0.5)


def test_a_person_with_many_templates_does_not_crowd_out_others(gallery: Any) -> None:
    crowd = gallery.add_person("Crowd")
    base = np.zeros(8, np.float32)
    base[0] = 1.0
    rng = np.random.default_rng(5)
    gallery.enroll(crowd.person_id, [fp(base + rng.normal(scale=0.01, size=8)) for _ in range(100)])
    for i in range(3):
        other = gallery.add_person(f"Other {i}")
        v = base.copy()
        v[1 + i] = 1.0 + i
        gallery.enroll(other.person_id, [fp(v)])
    (result,) = gallery.search([fp(base)], top_k=4, min_similarity=0.9)
    assert [h.name for h in result.matches] == ["Crowd", "Other 0", "Other 1", "Other 2"]


def test_empty_galleries_make_every_probe_unknown(gallery: Any) -> None:
    (result,) = gallery.search([fp([1, 0])], top_k=3, min_similarity=0.5)
    assert result.matches == () and result.is_unknown
    assert search([], [gallery], min_similarity=0.5) == []


def test_identify_indexes_unknowns_into_the_gallery(backend: Backend) -> None:
    staff = backend.create()
    vectors = _people(staff, 5, 1, seed=9)
    rng = np.random.default_rng(11)
    stranger = rng.normal(size=16).astype(np.float32)
    faces = [ProbeFace(faceprint=fp(vectors[2]), image_id="a.jpg")] + [
        ProbeFace(faceprint=fp(stranger + rng.normal(scale=0.01, size=16)), image_id=f"s{i}.jpg") for i in range(3)
    ]
    first = identify_faces(faces, [staff], min_similarity=0.95, index_unknowns_into=staff)
    assert first[0].label == "person 9-002"
    assert first[1].is_unknown and first[1].person_id is not None
    assert first[1].person_id == first[2].person_id == first[3].person_id
    again = identify_faces(faces[1:], [staff], min_similarity=0.95)
    assert {f.person_id for f in again} == {first[1].person_id}
    assert staff.get_person(first[1].person_id).is_unknown
    index_unknowns(staff, [[fp(-stranger)]])
    assert sum(p.is_unknown for p in staff.persons()) == 2


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceprint.types import Faceprint

    kind, where, name, start, count = sys.argv[1:6]
    start, count = int(start), int(count)
    if kind == "sqlite":
        from faceprint.gallery.sqlite import SqliteGallery
        gallery = SqliteGallery(where, create=True, busy_timeout_s=60)
    else:
        from faceprint.gallery.pgvector import PgvectorGallery
        gallery = PgvectorGallery(where, name, create=True)
    rng = np.random.default_rng(start)
    with gallery:
        for i in range(start, start + count):
            person = gallery.add_person(f"person {i}", person_id=f"p{i:04d}")
            prints = [
                Faceprint(v.astype(np.float32), model_id="test-model", contract_id="test-model:000000000001",
                          package_version="0")
                for v in rng.normal(size=(2, 8))
            ]
            gallery.enroll(person.person_id, prints)
    """
)


def test_several_processes_write_one_gallery(backend: Backend) -> None:
    gallery = backend.create()
    where = str(gallery.path) if backend.kind == "sqlite" else str(backend.url)
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, backend.kind, where, gallery.name, str(start), "10"])
        for start in (0, 100)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    persons = gallery.persons()
    assert len(persons) == 20
    assert all(p.template_count == 2 for p in persons)
    assert gallery.contract_id == CONTRACT
    snapshot = gallery.snapshot()
    assert np.bincount(snapshot.person_rows).tolist() == [2] * 20


def test_resolve_or_add_person_finds_or_creates_exactly_one(backend: Backend) -> None:
    gallery = backend.create()
    jane = gallery.resolve_or_add_person("Jane Doe")
    assert gallery.resolve_or_add_person("Jane Doe") == jane
    assert gallery.resolve_or_add_person("jane doe") == jane
    assert gallery.resolve_or_add_person(jane.person_id) == jane
    assert len(gallery.persons()) == 1
    gallery.add_person("Jane Doe")
    with pytest.raises(AmbiguousPersonError):
        gallery.resolve_or_add_person("JANE DOE")


_ENROLLER = textwrap.dedent(
    """
    import sys
    from faceprint.gallery.pgvector import PgvectorGallery
    from faceprint.gallery.sqlite import SqliteGallery

    kind, where, name = sys.argv[1:4]
    gallery = SqliteGallery(where, busy_timeout_s=60) if kind == "sqlite" else PgvectorGallery(where, name)
    with gallery:
        for _ in range(5):
            print(gallery.resolve_or_add_person("New Person").person_id)
    """
)


def test_concurrent_first_enrolments_of_a_name_make_one_person(backend: Backend) -> None:
    gallery = backend.create()
    where = str(gallery.path) if backend.kind == "sqlite" else str(backend.url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENROLLER, backend.kind, where, gallery.name], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    ids = {line for proc in procs for line in proc.communicate(timeout=120)[0].split()}
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    assert len(ids) == 1 and [p.person_id for p in gallery.persons()] == list(ids)


def test_enrol_and_identify_through_the_engine_answer_alike(tmp_path: Path, postgres_url: str) -> None:
    from faceprint.analyze import AnalyzeItem, Analyzer
    from faceprint.enroll import enroll, plan_for_person
    from faceprint.gallery.pgvector import PgvectorGallery
    from faceprint.gallery.sqlite import SqliteGallery
    from faceprint.identify import identify_images
    from faceprint.testing import fake_pipeline_factory, make_face_png

    people = {"Ruby": (200, 20, 20), "Bluebell": (20, 20, 200), "Fern": (20, 200, 20)}
    probes = [AnalyzeItem(f"{name}.png", make_face_png(rgb, size_wh=(40, 40))) for name, rgb in people.items()]
    probes.append(AnalyzeItem("stranger.png", make_face_png((120, 120, 120))))
    answers = []
    with Analyzer(workers=1, executor="local", pipeline_factory=fake_pipeline_factory) as analyzer:
        for gallery in (
            SqliteGallery.create(tmp_path / "staff.sqlite"),
            PgvectorGallery.create(postgres_url, f"staff-{uuid.uuid4().hex[:8]}"),
        ):
            with gallery:
                for name, rgb in people.items():
                    enroll(gallery, analyzer, plan_for_person(name, [AnalyzeItem(f"{name}-0", make_face_png(rgb))]))
                run = identify_images(probes, analyzer, [gallery], top_k=2)
                answers.append([(f.image_id, f.label, f.is_unknown, round(f.similarity or 0.0, 5)) for f in run.faces])
    assert answers[0] == answers[1]
    assert [label for _, label, _, _ in answers[0]][:3] == list(people)


# --- template quality ----------------------------------------------------------------------------------


def _quality(yaw_deg: float, stage: str = "hog@0") -> Any:
    from faceprint.types import FaceQuality

    return FaceQuality(48.0, 1.2, stage, yaw_deg, -3.5, 240.0, 0.45, 0.01)


def test_template_quality_is_stored_searched_exported_and_imported(backend: Backend, tmp_path: Path) -> None:
    from dataclasses import replace

    gallery = backend.create()
    profile = _quality(62.0, "mmod")
    jane = gallery.add_person("Jane")
    bob = gallery.add_person("Bob")
    gallery.enroll(jane.person_id, [replace(fp([1.0, 0.0, 0.0]), quality=profile), fp([0.0, 0.0, 1.0])])
    gallery.enroll(bob.person_id, [fp([0.0, 1.0, 0.0])])

    stored = {t.faceprint.vector.tobytes(): t.faceprint.quality for t in backend.reopen(gallery).templates()}
    assert stored[np.array([1, 0, 0], np.float32).tobytes()] == profile
    assert stored[np.array([0, 0, 1], np.float32).tobytes()] is None  # enrolled without quality
    assert sorted(q is None for q in gallery.snapshot().qualities) == [False, True, True]

    # The hit carries the quality of the person's most similar template, whichever template that is.
    (hit,) = gallery.search([fp([0.99, 0.0, 0.1])], top_k=1, min_similarity=0.5)[0].matches
    assert (hit.name, hit.template_quality) == ("Jane", profile)
    (hit,) = gallery.search([fp([0.1, 0.0, 0.99])], top_k=1, min_similarity=0.5)[0].matches
    assert (hit.name, hit.template_quality) == ("Jane", None)

    export = tmp_path / "g.jsonl"
    gallery.export_jsonl(export)
    copy = backend.create()
    copy.import_jsonl(export)
    assert sorted(str(t.faceprint.quality) for t in copy.templates()) == sorted(
        str(t.faceprint.quality) for t in gallery.templates()
    )


def _drop_quality_column(backend: Backend, gallery: Any) -> None:
    """Turn a gallery back into the schema before template quality (what a gallery made earlier has)."""
    if backend.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(gallery.path)
        conn.execute("ALTER TABLE templates DROP COLUMN quality")
        conn.execute("DELETE FROM schema_version WHERE version = 3")
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(backend.url, autocommit=True) as conn:
            # Migration 3 (sealed vectors) came later still: undone too.
            conn.execute(f"ALTER TABLE {gallery.schema}.templates DROP COLUMN quality")
            conn.execute(f"ALTER TABLE {gallery.schema}.templates DROP COLUMN sealed_vector")
            conn.execute(f"DELETE FROM {gallery.schema}.schema_version WHERE version >= 2")


def test_a_gallery_from_before_template_quality_opens_and_searches(backend: Backend) -> None:
    from faceprint.compare import Comparator
    from faceprint.models.catalog import builtin_specs

    gallery = backend.create()
    jane = gallery.add_person("Jane")
    gallery.enroll(jane.person_id, [fp([1.0, 0.0, 0.0])])
    _drop_quality_column(backend, gallery)
    gallery.close()

    old = backend.reopen(gallery)  # opening applies the missing migration
    assert [t.faceprint.quality for t in old.templates()] == [None]
    old.enroll(jane.person_id, [replace_quality(fp([0.0, 1.0, 0.0]), _quality(5.0))])
    assert sorted(str(t.faceprint.quality is None) for t in old.templates()) == ["False", "True"]
    # A template of unknown quality is judged by the reference sigmoid: its cut-off is the search's own.
    comparator = Comparator(builtin_specs()["dlib-resnet-v1"])
    probe = replace_quality(fp([0.95, 0.0, 0.31]), _quality(70.0, "mmod"))
    (result,) = old.search([probe], top_k=1, min_similarity=0.93, comparator=comparator)
    hit = result.matches[0]
    assert hit.template_quality is None and hit.min_similarity == pytest.approx(0.93)


def replace_quality(faceprint: Faceprint, quality: Any) -> Faceprint:
    from dataclasses import replace

    return replace(faceprint, quality=quality)


def test_an_export_template_that_is_not_a_faceprint_is_refused_alike_and_nothing_is_written(
    backend: Backend, tmp_path: Path
) -> None:
    gallery = backend.create()
    gallery.enroll(gallery.add_person("Jane").person_id, [fp([1.0, 0.0, 0.0])])
    export = tmp_path / "g.jsonl"
    gallery.export_jsonl(export)
    header, *lines = export.read_text().splitlines()
    record = json.loads(lines[0])
    record["templates"][0]["faceprint"]["vector"] = "not numbers"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(header + "\n" + json.dumps(record) + "\n")
    target = backend.create()
    with pytest.raises(GalleryFormatError, match="a template is not a faceprint"):
        target.import_jsonl(bad)
    assert target.persons() == [] and target.template_count() == 0
