"""Opening galleries by path or URL, and moving them between SQLite and PostgreSQL losslessly."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.errors import UsageError
from faceprint.gallery.base import GalleryExistsError, GalleryNotFoundError
from faceprint.gallery.migrate import GalleryMigrationError, migrate_gallery, verify_same_gallery
from faceprint.gallery.open import (
    gallery_url,
    open_gallery_url,
    open_named_gallery,
    resolve_gallery_ref,
    split_gallery_url,
)
from faceprint.gallery.pgvector import PgvectorGallery, list_galleries
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.postgres import DATABASE_URL_ENV
from faceprint.types import Faceprint

CONTRACT = "test-model:000000000001"


def fp(values: Any) -> Faceprint:
    return Faceprint(
        np.asarray(values, np.float32),
        model_id="test-model",
        contract_id=CONTRACT,
        package_version="0.0.test",
        model_options={"flip": False, "upsample": 1},
    )


def _fill(gallery: Any) -> None:
    rng = np.random.default_rng(3)
    jane = gallery.add_person("Jane Doe")
    gallery.enroll(jane.person_id, [fp(v) for v in rng.normal(size=(3, 128))], sources=["a.jpg", None, "c.jpg"])
    unknown = gallery.add_person("unknown-x", person_id="unknown-0123456789ab", is_unknown=True)
    gallery.enroll(unknown.person_id, [fp(rng.normal(size=128))])
    gallery.add_person("No templates yet")
    twin = gallery.add_person("Jane Doe")  # names need not be unique
    gallery.enroll(twin.person_id, [fp(rng.normal(size=128))])


def _name() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def test_gallery_urls_carry_the_gallery_name() -> None:
    url = gallery_url("postgresql://app:pw@db:5432/faces?sslmode=disable", "staff")
    assert url == "postgresql://app:pw@db:5432/faces?sslmode=disable&gallery=staff"
    assert split_gallery_url(url) == ("postgresql://app:pw@db:5432/faces?sslmode=disable", "staff")
    assert split_gallery_url("postgresql://postgres:@/postgres?host=/tmp/x") == (
        "postgresql://postgres:@/postgres?host=/tmp/x",
        None,
    )
    with pytest.raises(UsageError):
        split_gallery_url("postgresql://db/faces?gallery=a&gallery=b")
    with pytest.raises(UsageError):
        gallery_url(url, "other")


def test_references_resolve_to_paths_or_urls(tmp_path: Path) -> None:
    assert resolve_gallery_ref("staff", gallery_dir=tmp_path) == str(tmp_path / "staff.sqlite")
    assert resolve_gallery_ref("x/y.sqlite", gallery_dir=tmp_path) == "x/y.sqlite"
    assert resolve_gallery_ref("postgres://db/f?gallery=s", gallery_dir=tmp_path) == "postgres://db/f?gallery=s"
    with pytest.raises(UsageError):
        resolve_gallery_ref("../etc/passwd", gallery_dir=tmp_path)


def test_open_gallery_url_picks_the_backend(tmp_path: Path, postgres_url: str) -> None:
    with open_gallery_url(tmp_path / "a.sqlite", create=True) as lite:
        assert isinstance(lite, SqliteGallery)
    with pytest.raises(GalleryNotFoundError):
        open_gallery_url(tmp_path / "missing.sqlite")
    name = _name()
    with open_gallery_url(gallery_url(postgres_url, name), create=True) as pg:
        assert isinstance(pg, PgvectorGallery) and pg.name == name
    with open_gallery_url(postgres_url, name=name) as again:
        assert again.name == name
    with pytest.raises(GalleryNotFoundError):
        open_gallery_url(gallery_url(postgres_url, _name()))
    with pytest.raises(UsageError, match="gallery=NAME"):
        open_gallery_url(postgres_url)


def test_an_external_server_is_reached_through_the_database_url(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pgserver URL is handed over exactly as an operator would export FACEPRINT_DATABASE_URL.
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    name = _name()
    with open_named_gallery(name, database_url=os.environ[DATABASE_URL_ENV], create=True) as gallery:
        gallery.enroll(gallery.add_person("Jane").person_id, [fp(np.ones(128))])
    assert name in list_galleries(os.environ[DATABASE_URL_ENV])
    with open_named_gallery(name, database_url=os.environ[DATABASE_URL_ENV]) as gallery:
        (result,) = gallery.search([fp(np.ones(128))], top_k=1, min_similarity=0.99)
        assert result.best is not None and result.best.name == "Jane"
    with pytest.raises(UsageError):
        open_named_gallery(name, database_url="sqlite:///x")
    with pytest.raises(UsageError):
        open_named_gallery(name, database_url=gallery_url(postgres_url, name))


def test_sqlite_to_postgres_and_back_is_lossless(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "staff.sqlite"
    with SqliteGallery.create(source) as gallery:
        _fill(gallery)
    target = gallery_url(postgres_url, _name())
    summary = migrate_gallery(source, target)
    assert (summary.persons, summary.unknowns, summary.templates) == (4, 1, 5)
    assert summary.contract_id == CONTRACT and "pw" not in summary.destination
    back = tmp_path / "back.sqlite"
    migrate_gallery(target, back)
    with SqliteGallery.open(source) as a, open_gallery_url(target) as b, SqliteGallery.open(back) as c:
        verify_same_gallery(a, b)
        verify_same_gallery(a, c)
        assert [(p.person_id, p.name, p.is_unknown, p.template_count) for p in a.persons()] == [
            (p.person_id, p.name, p.is_unknown, p.template_count) for p in b.persons()
        ]
        probes = [t.faceprint for t in a.templates()]
        want = [
            [(h.person_id, round(h.similarity, 5)) for h in r.matches]
            for r in a.search(probes, top_k=3, min_similarity=0.5)
        ]
        for other in (b, c):
            got = other.search(probes, top_k=3, min_similarity=0.5)
            assert [[(h.person_id, round(h.similarity, 5)) for h in r.matches] for r in got] == want


def test_a_contract_without_templates_moves_too(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "empty.sqlite"
    SqliteGallery.create(source, contract_id=CONTRACT).close()
    target = gallery_url(postgres_url, _name())
    assert migrate_gallery(source, target).templates == 0
    with open_gallery_url(target) as copy:
        assert copy.contract_id == CONTRACT and copy.persons() == []


def test_an_existing_destination_is_refused(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "s.sqlite"
    with SqliteGallery.create(source) as gallery:
        _fill(gallery)
    taken = tmp_path / "taken.sqlite"
    SqliteGallery.create(taken).close()
    with pytest.raises(GalleryExistsError):
        migrate_gallery(source, taken)
    name = _name()
    PgvectorGallery.create(postgres_url, name).close()
    with pytest.raises(GalleryExistsError):
        migrate_gallery(source, gallery_url(postgres_url, name))
    with SqliteGallery.create(tmp_path / "full.sqlite") as full, SqliteGallery.open(source) as src:
        full.add_person("Someone")
        with pytest.raises(GalleryExistsError):
            migrate_gallery(src, full)
    with pytest.raises(UsageError):
        migrate_gallery(source, source)


def test_a_copy_that_reads_back_differently_is_refused_and_removed(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "s.sqlite"
    with SqliteGallery.create(source) as gallery:
        _fill(gallery)
    original = PgvectorGallery.import_jsonl

    def lossy(self: PgvectorGallery, path: Any) -> Any:
        summary = original(self, path)
        self.remove_template(self.templates()[0].template_id)  # a template lost on the way
        return summary

    monkeypatch.setattr(PgvectorGallery, "import_jsonl", lossy)
    name = _name()
    with pytest.raises(GalleryMigrationError, match="1 template"):
        migrate_gallery(source, gallery_url(postgres_url, name))
    assert name not in list_galleries(postgres_url)


def test_the_migrate_command(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from faceprint.cli.gallery_migrate import migrate_command

    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path))
    with SqliteGallery.create(tmp_path / "staff.sqlite") as gallery:
        _fill(gallery)
    app = typer.Typer()
    app.command("migrate")(migrate_command)
    app.command("unused")(lambda: None)  # two commands: typer keeps "migrate" as a sub-command
    target = gallery_url(postgres_url, _name())
    result = CliRunner().invoke(app, ["migrate", "staff", target, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["persons"], report["templates"], report["verified"]) == (4, 5, True)
    again = CliRunner().invoke(app, ["migrate", "staff", target])
    assert again.exit_code == 2 and "already exists" in again.output


def test_the_registered_command(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from faceprint.cli.main import app

    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path))
    target = gallery_url(postgres_url, _name())
    with SqliteGallery.create(tmp_path / "staff.sqlite") as gallery:
        _fill(gallery)
    result = CliRunner().invoke(app, ["gallery", "migrate", "staff", target])
    assert result.exit_code == 0, result.output
    assert "copied 4 person(s) (1 unknown), 5 template(s)" in result.output
    back = CliRunner().invoke(app, ["gallery", "migrate", target, str(tmp_path / "back.sqlite"), "--json"])
    assert back.exit_code == 0 and json.loads(back.output)["templates"] == 5
