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
    before = foreign.read_bytes()
    with pytest.raises(GalleryFormatError):
        SqliteGallery.open(foreign)
    with pytest.raises(GalleryFormatError):
        SqliteGallery(foreign, create=True)
    assert foreign.read_bytes() == before  # not even switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("foreign")) == ["foreign.sqlite"]

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


# --- hostile-probe regressions (issue 15) ---------------------------------------------------------------------


def _enrolled(tmp_path: Path, count: int = 2) -> Path:
    path = tmp_path / "g.sqlite"
    with SqliteGallery.create(path) as g:
        for index, faceprint in enumerate(random_fps(count)):
            g.enroll(g.add_person(f"P{index}").person_id, [faceprint])
    return path


def _tamper(path: Path, statement: str) -> None:
    conn = sqlite3.connect(path)
    nan_blob = np.array([np.nan] + [0.0] * 7, dtype="<f4").tobytes()
    try:
        conn.execute(statement, (nan_blob,) if "?" in statement else ())
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE templates SET vector = X'0102030405' WHERE template_id = 1",  # 5 bytes, not 32
        "UPDATE templates SET vector = zeroblob(64) WHERE template_id = 1",  # 16 values in an 8-d gallery
        "UPDATE templates SET vector = 'text' WHERE template_id = 1",
        "UPDATE templates SET vector = ? WHERE template_id = 1",  # a NaN
        "UPDATE templates SET dim = 7 WHERE template_id = 1",
        "UPDATE meta SET value = 'eight' WHERE key = 'dim'",
        "UPDATE meta SET value = '-8' WHERE key = 'dim'",
        "DELETE FROM meta WHERE key = 'dim'",
    ],
    ids=["short-blob", "long-blob", "text-blob", "nan", "row-dim", "dim-not-a-number", "dim-negative", "no-dim"],
)
def test_a_damaged_gallery_is_a_clear_error_not_a_traceback(tmp_path: Path, statement: str) -> None:
    # issue 15 #18: identify on a corrupted template blob or a bad dim meta gave a traceback
    from faceprint.gallery.sqlite import GalleryCorruptError

    path = _enrolled(tmp_path)
    _tamper(path, statement)
    with SqliteGallery.open(path) as g:
        for read in (g.snapshot, g.templates, lambda: g.export_jsonl(tmp_path / "out.jsonl")):
            with pytest.raises(GalleryCorruptError) as caught:
                read()
            assert caught.value.code == "gallery_corrupt" and "damaged" in caught.value.message
    assert not (tmp_path / "out.jsonl").exists()


def _export_with(tmp_path: Path, change: dict[str, object], *, header: dict[str, object] | None = None) -> Path:
    source = _enrolled(tmp_path / "src")
    export = tmp_path / "export.jsonl"
    with SqliteGallery.open(source) as g:
        g.export_jsonl(export)
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    lines[0].update(header or {})
    for key, value in change.items():
        if key in ("source", "created_at"):
            lines[1]["templates"][0][key] = value
        else:
            lines[1][key] = value
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return export


@pytest.mark.parametrize(
    ("change", "header"),
    [
        ({"source": {"an": "object"}}, None),
        ({"created_at": [2024, 1, 1]}, None),
        ({"name": ["Jane"]}, None),
        ({"person_id": 7}, None),
        ({"is_unknown": "yes"}, None),
        ({}, {"contract_id": None}),  # issue 15 #23: bound the gallery to contract "None"
        ({}, {"contract_id": 12}),
        ({}, {"contract_id": ""}),
    ],
    ids=[
        "source-object",
        "created-at-list",
        "name-list",
        "person-id-number",
        "is-unknown-text",
        "contract-null",
        "contract-number",
        "contract-empty",
    ],
)
def test_import_validates_every_field_and_rolls_back(
    tmp_path: Path, change: dict[str, object], header: dict[str, object] | None
) -> None:
    # issue 15 #19 and #23
    export = _export_with(tmp_path, change, header=header)
    target = tmp_path / "target.sqlite"
    with SqliteGallery.create(target) as g:
        g.add_person("Already here")
        before = (g.persons(), g.template_count(), g.contract_id, g.revision())
        with pytest.raises(GalleryFormatError) as caught:
            g.import_jsonl(export)
        assert caught.value.code == "gallery_format"
        assert (g.persons(), g.template_count(), g.contract_id, g.revision()) == before
        assert g.contract_id is None


def test_an_unbound_empty_gallery_still_round_trips(tmp_path: Path, gallery: SqliteGallery) -> None:
    gallery.add_person("No templates yet")
    gallery.export_jsonl(tmp_path / "e.jsonl")
    with SqliteGallery.create(tmp_path / "t.sqlite") as target:
        assert target.import_jsonl(tmp_path / "e.jsonl").persons_added == 1
        assert target.contract_id is None


def test_a_value_sqlite_cannot_bind_is_a_clear_error(gallery: SqliteGallery) -> None:
    person = gallery.add_person("A")
    with pytest.raises(GalleryFormatError):
        gallery.enroll(person.person_id, random_fps(1), sources=[{"an": "object"}])  # type: ignore[list-item]
    assert gallery.template_count() == 0


def test_resolve_or_add_person_finds_then_creates(gallery: SqliteGallery) -> None:
    jane = gallery.resolve_or_add_person("Jane Doe")
    assert gallery.resolve_or_add_person("Jane Doe") == jane
    assert gallery.resolve_or_add_person("  jane doe") == jane
    assert gallery.resolve_or_add_person(jane.person_id) == jane
    gallery.add_person("Twin")
    gallery.add_person("Twin")
    with pytest.raises(AmbiguousPersonError):
        gallery.resolve_or_add_person("Twin")
    assert len(gallery.persons()) == 3


def test_concurrent_first_enrolments_of_a_new_name_make_one_person(tmp_path: Path) -> None:
    # issue 15 #20: 6 concurrent calls made 4 persons named alike
    path = tmp_path / "g.sqlite"
    SqliteGallery.create(path).close()
    script = textwrap.dedent(
        f"""
        import sys, time
        from faceprint.gallery.sqlite import SqliteGallery
        start = float(sys.argv[1])
        with SqliteGallery.open({str(path)!r}, busy_timeout_s=60) as g:
            time.sleep(max(0.0, start - time.time()))  # all processes start the transaction together
            print(g.resolve_or_add_person("New Person").person_id)
        """
    )
    import time

    start = str(time.time() + 3.0)
    workers = [
        subprocess.Popen([sys.executable, "-c", script, start], stdout=subprocess.PIPE, text=True) for _ in range(6)
    ]
    ids = {worker.communicate(timeout=120)[0].strip() for worker in workers}
    assert all(worker.returncode == 0 for worker in workers)
    with SqliteGallery.open(path) as g:
        assert [p.name for p in g.persons()] == ["New Person"]
        assert ids == {g.persons()[0].person_id}


def test_an_empty_file_is_not_a_gallery(tmp_path: Path) -> None:
    # issue 15 #21: identify silently initialised it and found everyone unknown
    empty = tmp_path / "g.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(GalleryFormatError, match="empty file"):
        SqliteGallery.open(empty)
    assert empty.read_bytes() == b""  # not turned into a gallery
    blank = tmp_path / "blank.sqlite"
    sqlite3.connect(blank).execute("PRAGMA user_version = 1").connection.close()  # an SQLite file, no tables
    with pytest.raises(GalleryFormatError):
        SqliteGallery.open(blank)
    with SqliteGallery(empty, create=True) as created:  # asked to create: an empty file is a new gallery
        assert created.persons() == []


def test_read_only_open_reads_and_refuses_writes(tmp_path: Path) -> None:
    from faceprint.gallery.sqlite import GalleryReadOnlyError

    path = _enrolled(tmp_path)
    with SqliteGallery.open(path, read_only=True) as g:
        assert g.read_only and len(g.persons()) == 2 and g.snapshot().template_count == 2
        with pytest.raises(GalleryReadOnlyError) as caught:
            g.add_person("X")
        assert caught.value.code == "gallery_read_only"
    with pytest.raises(GalleryNotFoundError):
        SqliteGallery(tmp_path / "missing.sqlite", create=True, read_only=True)


@pytest.fixture
def read_only_mount(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real read-only file system (a tmpfs remounted ro); skips where mounting is not allowed."""
    import os
    import shutil

    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a real read-only file system")
    point = tmp_path / "ro"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point)], check=False).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_gallery_on_a_read_only_file_system_can_be_searched(read_only_mount: Path) -> None:
    # issue 15 #22: "not a faceprint gallery: attempt to write a readonly database"
    path = _enrolled(read_only_mount)
    assert subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=False).returncode == 0
    with SqliteGallery.open(path) as g:
        assert g.read_only
        assert len(g.persons()) == 2
        assert len(search([random_fps(1)[0]], [g], top_k=1, min_similarity=0.5)[0].matches) == 1
        with pytest.raises(Exception) as caught:
            g.add_person("X")
        assert getattr(caught.value, "code", None) == "gallery_read_only"


def test_a_read_only_gallery_from_before_template_quality_is_searched(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with SqliteGallery.create(path) as g:
        jane = g.add_person("Jane")
        g.enroll(
            jane.person_id, [Faceprint(np.ones(4, np.float32), model_id="m", contract_id="m:1", package_version="0")]
        )
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE templates DROP COLUMN quality")
    conn.execute("DELETE FROM schema_version WHERE version = 3")
    conn.commit()
    conn.close()
    with SqliteGallery(path, read_only=True) as old:
        assert old.schema_version() == 2
        assert [t.faceprint.quality for t in old.templates()] == [None]
        assert old.snapshot().qualities == (None,)
        probe = Faceprint(np.ones(4, np.float32), model_id="m", contract_id="m:1", package_version="0")
        (result,) = old.search([probe], min_similarity=0.9)
        assert result.best is not None and result.best.template_quality is None
