"""SqliteGallery: CRUD, the one-contract rule, migrations, export/import, several processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import ContractMismatchError, UsageError
from faceprint.gallery.base import (
    AmbiguousPersonError,
    GalleryExistsError,
    GalleryFormatError,
    GalleryNotFoundError,
    PersonNotFoundError,
    TemplateNotFoundError,
    resolve_person,
)
from faceprint.gallery.search import search
from faceprint.gallery.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteGallery
from faceprint.types import Faceprint

CONTRACT = "test-model:000000000001"


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


@pytest.fixture
def gallery(tmp_path: Path):  # type: ignore[no-untyped-def]
    with SqliteGallery.create(tmp_path / "g.sqlite") as g:
        yield g


def test_create_refuses_existing_and_open_refuses_missing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "g.sqlite"
    SqliteGallery.create(path).close()
    with pytest.raises(GalleryExistsError):
        SqliteGallery.create(path)
    with pytest.raises(GalleryNotFoundError):
        SqliteGallery.open(tmp_path / "missing.sqlite")
    with SqliteGallery.open(path) as g:
        assert g.name == "g"
        assert g.contract_id is None
        assert g.persons() == []


def test_wal_mode_and_busy_timeout(gallery: SqliteGallery) -> None:
    conn = sqlite3.connect(gallery.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_person_crud_and_template_counts(gallery: SqliteGallery) -> None:
    jane = gallery.add_person("  Jane Doe ")
    assert jane.name == "Jane Doe" and jane.person_id.startswith("p-") and not jane.is_unknown
    ids = gallery.enroll(jane.person_id, random_fps(3), sources=["a.jpg", "b.jpg", None])
    assert len(ids) == 3
    assert gallery.get_person(jane.person_id).template_count == 3
    assert gallery.template_count() == 3
    templates = gallery.templates(jane.person_id)
    assert [t.source for t in templates] == ["a.jpg", "b.jpg", None]
    assert templates[0].faceprint.same_as(random_fps(3)[0])

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


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 300])
def test_bad_names_are_refused(gallery: SqliteGallery, bad: str) -> None:
    with pytest.raises(UsageError):
        gallery.add_person(bad)


def test_duplicate_person_id_is_refused(gallery: SqliteGallery) -> None:
    gallery.add_person("A", person_id="same")
    with pytest.raises(UsageError):
        gallery.add_person("B", person_id="same")


def test_resolve_person_by_id_name_and_casefold(gallery: SqliteGallery) -> None:
    jane = gallery.add_person("Jane Doe")
    assert resolve_person(gallery, jane.person_id) == jane
    assert resolve_person(gallery, "Jane Doe") == jane
    assert resolve_person(gallery, "jane doe") == jane
    gallery.add_person("Jane Doe")
    with pytest.raises(AmbiguousPersonError):
        resolve_person(gallery, "Jane Doe")
    with pytest.raises(PersonNotFoundError):
        resolve_person(gallery, "Nobody")


def test_first_enrolment_binds_the_contract(gallery: SqliteGallery) -> None:
    person = gallery.add_person("A")
    gallery.enroll(person.person_id, [fp([1, 0, 0])])
    assert gallery.contract_id == CONTRACT
    assert gallery.model_id == "test-model"
    with pytest.raises(ContractMismatchError):
        gallery.enroll(person.person_id, [fp([1, 0, 0], contract="other:1")])
    with pytest.raises(ContractMismatchError):  # same contract id, different dimension
        gallery.enroll(person.person_id, [fp([1, 0, 0, 0])])
    assert gallery.template_count() == 1  # refused enrolments left nothing behind


def test_contract_given_at_creation(tmp_path: Path) -> None:
    with SqliteGallery.create(tmp_path / "g.sqlite", contract_id="other:1") as g:
        person = g.add_person("A")
        with pytest.raises(ContractMismatchError):
            g.enroll(person.person_id, [fp([1, 0])])
        assert g.contract_id == "other:1"


def test_a_failed_batch_enrolment_is_all_or_nothing(gallery: SqliteGallery) -> None:
    person = gallery.add_person("A")
    with pytest.raises(ContractMismatchError):
        gallery.enroll(person.person_id, [fp([1, 0]), fp([1, 0], contract="other:1")])
    assert gallery.template_count() == 0
    assert gallery.contract_id is None


def test_merge_moves_templates_and_names_unknowns(gallery: SqliteGallery) -> None:
    known = gallery.add_person("Jane")
    gallery.enroll(known.person_id, random_fps(2, seed=1))
    unknown = gallery.add_person("unknown-x", person_id="unknown-x", is_unknown=True)
    gallery.enroll(unknown.person_id, random_fps(3, seed=2))

    merged = gallery.merge_persons(unknown.person_id, [known.person_id])
    assert merged.person_id == "unknown-x"
    assert merged.template_count == 5
    assert merged.name == "Jane" and not merged.is_unknown  # a name given to one half names the whole
    assert [p.person_id for p in gallery.persons()] == ["unknown-x"]
    with pytest.raises(UsageError):
        gallery.merge_persons(merged.person_id, [merged.person_id])
    with pytest.raises(PersonNotFoundError):
        gallery.merge_persons(merged.person_id, ["nobody"])


def test_split_moves_chosen_templates_to_a_new_person(gallery: SqliteGallery) -> None:
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


def test_rename_makes_an_unknown_known(gallery: SqliteGallery) -> None:
    unknown = gallery.add_person("unknown-1", is_unknown=True)
    assert unknown.person_id.startswith("unknown-")
    renamed = gallery.rename_person(unknown.person_id, "Bob")
    assert (renamed.name, renamed.is_unknown, renamed.person_id) == ("Bob", False, unknown.person_id)


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    for _ in range(3):
        with SqliteGallery(path, create=True) as g:
            assert g.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        conn.close()
    assert versions == [version for version, _ in MIGRATIONS]


def test_an_old_gallery_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
    conn.execute("INSERT INTO persons VALUES ('p-1', 'Old', 0, 'then', 'then')")
    conn.commit()
    conn.close()
    with SqliteGallery.open(path) as g:
        assert g.schema_version() == SCHEMA_VERSION
        assert [p.name for p in g.persons()] == ["Old"]
    conn = sqlite3.connect(path)
    try:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()
    assert "persons_by_name" in indexes


def test_newer_or_foreign_files_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    SqliteGallery.create(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future')", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(GalleryFormatError, match="newer"):
        SqliteGallery.open(newer)

    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(GalleryFormatError):
        SqliteGallery.open(foreign)

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(GalleryFormatError):
        SqliteGallery.open(garbage)


def test_export_import_round_trip(tmp_path: Path, gallery: SqliteGallery) -> None:
    jane = gallery.add_person("Jane")
    gallery.enroll(jane.person_id, random_fps(2, seed=3), sources=["j1.jpg", "j2.jpg"])
    stranger = gallery.add_person("unknown-s", is_unknown=True)
    gallery.enroll(stranger.person_id, random_fps(1, seed=4))
    gallery.add_person("Nobody yet")
    export = tmp_path / "out" / "g.jsonl"
    assert gallery.export_jsonl(export) == 3

    header = json.loads(export.read_text().splitlines()[0])
    assert header["contract_id"] == CONTRACT and header["format"] == "faceprint-gallery/1"
    assert not list(export.parent.glob("*.tmp"))

    with SqliteGallery.create(tmp_path / "copy.sqlite") as copy:
        summary = copy.import_jsonl(export)
        assert (summary.persons_added, summary.templates_added, summary.templates_skipped) == (3, 3, 0)
        assert copy.contract_id == CONTRACT
        assert {(p.person_id, p.name, p.template_count, p.is_unknown) for p in copy.persons()} == {
            (p.person_id, p.name, p.template_count, p.is_unknown) for p in gallery.persons()
        }
        original = {(t.person_id, t.source): t.faceprint for t in gallery.templates()}
        for template in copy.templates():
            assert template.faceprint.same_as(original[(template.person_id, template.source)])
        again = copy.import_jsonl(export)
        assert (again.persons_added, again.templates_added, again.templates_skipped) == (0, 0, 3)


def test_import_refuses_another_contract_and_bad_files(tmp_path: Path, gallery: SqliteGallery) -> None:
    person = gallery.add_person("A")
    gallery.enroll(person.person_id, random_fps(1))
    export = tmp_path / "g.jsonl"
    gallery.export_jsonl(export)
    with SqliteGallery.create(tmp_path / "other.sqlite", contract_id="other:1") as other:
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


def test_snapshot_follows_writes_of_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    with SqliteGallery.create(path) as writer, SqliteGallery.open(path) as reader:
        assert reader.snapshot().template_count == 0
        person = writer.add_person("A")
        writer.enroll(person.person_id, random_fps(2))
        snapshot = reader.snapshot()
        assert snapshot.template_count == 2
        assert snapshot.contract_id == CONTRACT
        assert reader.snapshot() is snapshot  # cached while nothing changes
        writer.rename_person(person.person_id, "B")
        assert reader.snapshot().persons[0].name == "B"


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceprint.gallery.sqlite import SqliteGallery
    from faceprint.types import Faceprint

    path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(start)
    with SqliteGallery(path, create=True, busy_timeout_s=60) as gallery:
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


def _run_writer(path: Path, start: int, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(start), str(count)])


def test_persistence_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    first, second = _run_writer(path, 0, 10), _run_writer(path, 100, 10)
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    with SqliteGallery.open(path) as g:
        persons = g.persons()
        assert len(persons) == 20
        assert all(p.template_count == 2 for p in persons)
        assert g.contract_id == CONTRACT


def test_readers_search_while_another_process_enrols(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    SqliteGallery.create(path).close()
    writer = _run_writer(path, 0, 60)
    probe = fp(np.ones(8))
    seen: list[int] = []
    with SqliteGallery.open(path, busy_timeout_s=60) as reader:
        while writer.poll() is None:
            snapshot = reader.snapshot()
            # Each read is one transaction: a person is never seen with half of their templates.
            counts = np.bincount(snapshot.person_rows, minlength=len(snapshot.persons))
            assert all(count in (0, 2) for count in counts.tolist())
            if snapshot.template_count:
                results = search([probe], [reader], top_k=3, min_similarity=0.5)
                assert 1 <= len(results[0].matches) <= 3
            seen.append(len(snapshot.persons))
        assert writer.wait() == 0
        assert seen == sorted(seen)  # committed state only grows
        assert len(reader.persons()) == 60
