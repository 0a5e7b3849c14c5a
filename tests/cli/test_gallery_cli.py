"""``faceprint gallery …`` and ``faceprint identify`` through typer's CliRunner, with the FakePipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.gallery import gallery_app, gallery_dir, gallery_path, identify
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL, EXIT_USAGE
from faceprint.settings import load_settings
from faceprint.testing import FakePipeline, fake_pipeline_factory, make_blank_png, make_face_png, make_two_face_png

runner = CliRunner()

RED, GREEN, BLUE, YELLOW = (200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(gallery_app, name="gallery")
    app.command(name="identify")(identify)
    return app


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path / "galleries"))


def run(*args: str) -> tuple[int, str]:
    # The CLI's factory seam: the weight-free fake instead of the real models.
    context = CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory)
    result = runner.invoke(_app(), list(args), obj=context)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def png(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_gallery_dir_and_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert gallery_dir() == tmp_path / "galleries"
    assert gallery_path("staff") == tmp_path / "galleries" / "staff.sqlite"
    assert gallery_path("elsewhere/g.sqlite") == Path("elsewhere/g.sqlite")
    monkeypatch.delenv("FACEPRINT_GALLERY_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert gallery_dir() == tmp_path / "home" / ".local" / "share" / "faceprint" / "galleries"
    code, output = run("gallery", "create", "../evil")
    assert code == EXIT_USAGE and "error" in output


def test_create_enroll_show_list(tmp_path: Path) -> None:
    assert run("gallery", "create", "staff")[0] == 0
    code, output = run("gallery", "create", "staff")
    assert code == EXIT_USAGE and "already exists" in output

    red = [
        png(tmp_path / "red1.png", make_face_png(RED)),
        png(tmp_path / "red2.png", make_face_png(RED, size_wh=(30, 30))),
    ]
    blank = png(tmp_path / "blank.png", make_blank_png())
    group = png(tmp_path / "group.png", make_two_face_png(RED, BLUE))
    broken = png(tmp_path / "broken.png", b"nope")
    code, output = run("gallery", "enroll", "staff", "--person", "Jane Doe", *map(str, [*red, blank, group, broken]))
    assert code == EXIT_PARTIAL, output
    assert "enrolled 2 face(s) of 1 person(s)" in output
    assert f"{blank}: no face found" in output
    assert f"{group}: 2 faces found" in output
    assert str(broken) in output

    people = tmp_path / "people"
    png(people / "Bob" / "b.png", make_face_png(BLUE))
    png(people / "Carol" / "c.png", make_face_png(GREEN))
    png(people / "Jane Doe" / "j.png", make_face_png(RED, size_wh=(20, 20)))
    code, output = run("gallery", "enroll", "staff", str(people), "--json")
    assert code == 0, output
    report = json.loads(output)
    assert [(e["name"], e["templates_added"]) for e in report["enrolled"]] == [
        ("Bob", 1),
        ("Carol", 1),
        ("Jane Doe", 1),
    ]

    code, output = run("gallery", "show", "staff", "--json")
    shown = json.loads(output)
    assert {p["name"]: p["template_count"] for p in shown["persons"]} == {"Bob": 1, "Carol": 1, "Jane Doe": 3}
    assert shown["contract_id"] == FakePipeline().spec.contract_id

    code, output = run("gallery", "show", "staff", "--person", "jane doe", "--json")
    assert code == 0 and len(json.loads(output)["templates"]) == 3

    code, output = run("gallery", "list", "--json")
    assert code == 0
    assert [(g["name"], g["persons"], g["templates"]) for g in json.loads(output)] == [("staff", 3, 5)]
    assert run("gallery", "list")[0] == 0 and run("gallery", "show", "staff")[0] == 0


def test_enroll_errors_are_one_line(tmp_path: Path) -> None:
    code, output = run("gallery", "enroll", "nothere", "--person", "X", str(tmp_path))
    assert code == EXIT_INPUT and "faceprint gallery create nothere" in output
    run("gallery", "create", "g")
    code, output = run("gallery", "enroll", "g", str(png(tmp_path / "a.png", make_face_png(RED))))
    assert code == EXIT_USAGE and "not a folder" in output
    code, output = run("gallery", "enroll", "g", "--person", "X", str(png(tmp_path / "b.png", make_blank_png())))
    assert code == EXIT_INPUT


def test_manage_persons_and_export_import(tmp_path: Path) -> None:
    run("gallery", "create", "g")
    for name, colour in (("Ann", RED), ("Ann Too", RED), ("Ben", BLUE)):
        run("gallery", "enroll", "g", "--person", name, str(png(tmp_path / f"{name}.png", make_face_png(colour))))
    assert run("gallery", "merge", "g", "Ann", "Ann Too")[0] == 0
    persons = json.loads(run("gallery", "show", "g", "--json")[1])["persons"]
    assert {p["name"]: p["template_count"] for p in persons} == {"Ann": 2, "Ben": 1}

    templates = json.loads(run("gallery", "show", "g", "--person", "Ann", "--json")[1])["templates"]
    code, output = run("gallery", "split", "g", "Ann", "--template", str(templates[1]["template_id"]), "--name", "Anna")
    assert code == 0, output
    assert run("gallery", "rename-person", "g", "Anna", "Hanna")[0] == 0
    code, output = run("gallery", "rename-person", "g", "Nobody", "X")
    assert code == EXIT_INPUT and "no person" in output

    export = tmp_path / "g.jsonl"
    assert run("gallery", "export", "g", str(export))[0] == 0
    code, output = run("gallery", "import", "copy", str(export))
    assert code == 0 and "imported 3 new person(s), 3 template(s)" in output
    code, output = run("gallery", "import", "copy", str(export))
    assert "3 already present" in output

    assert run("gallery", "remove-person", "g", "Ben")[0] == 0
    names = {p["name"] for p in json.loads(run("gallery", "show", "g", "--json")[1])["persons"]}
    assert names == {"Ann", "Hanna"}


def test_identify(tmp_path: Path) -> None:
    run("gallery", "create", "staff")
    run("gallery", "enroll", "staff", "--person", "Red", str(png(tmp_path / "r.png", make_face_png(RED))))
    run("gallery", "create", "visitors")
    run("gallery", "enroll", "visitors", "--person", "Blue", str(png(tmp_path / "b.png", make_face_png(BLUE))))
    photos = tmp_path / "photos"
    png(photos / "1.png", make_two_face_png(GREEN, RED))
    png(photos / "2.png", make_face_png(BLUE, size_wh=(40, 40)))
    png(photos / "3.png", make_face_png(GREEN, size_wh=(24, 24)))
    png(photos / "4.png", make_blank_png())

    code, output = run("identify", str(photos), "-g", "staff", "-g", "visitors", "--json", "--top-k", "2")
    assert code == 0, output
    document = json.loads(output)
    assert document["contract_id"] == FakePipeline().spec.contract_id
    assert document["min_similarity"] == FakePipeline().comparator.threshold
    labels = [(Path(f["image"]).name, f["label"]) for f in document["faces"]]
    assert labels == [("1.png", "Red"), ("1.png", "unknown"), ("2.png", "Blue"), ("3.png", "unknown")]
    assert document["faces"][0]["probability"] > 0.5
    assert len(document["faces"][0]["matches"]) == 2
    assert document["images_without_faces"] == [str(photos / "4.png")]

    code, output = run("identify", str(photos), "-g", "staff", "--cluster-unknowns", "--json")
    labels = [f["label"] for f in json.loads(output)["faces"]]
    assert labels == ["Red", "Unknown #1", "Unknown #2", "Unknown #1"]

    code, output = run("identify", str(photos), "-g", "staff", "--index-unknowns", "strangers", "--json")
    first = json.loads(output)
    assert len(first["new_unknowns"]) == 2
    code, output = run("identify", str(photos / "3.png"), "-g", "staff", "-g", "strangers", "--json")
    (face,) = json.loads(output)["faces"]
    assert face["label"].startswith("unknown-") and face["is_unknown"] and face["gallery"] == "strangers"

    code, output = run("identify", str(photos), "-g", "staff")
    assert code == 0 and "Red" in output and "no face" in output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--min-similarity", "0.5", "--max-distance", "0.5"], EXIT_USAGE, "not both"),
        ([], EXIT_USAGE, "--gallery"),
        (["-g", "missing"], EXIT_INPUT, "no gallery"),
    ],
)
def test_identify_user_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    image = png(tmp_path / "x.png", make_face_png(RED))
    exit_code, output = run("identify", str(image), *args)
    assert exit_code == code
    assert message in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1
