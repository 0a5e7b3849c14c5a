"""Every command walks the one engine: the same faces, the same selected face and the same vectors.

The real-model test runs ``detect``, ``embed``, ``compare`` and ``pairs`` on the shared group photo; the
fake-pipeline tests check that the one-shot commands take folders and archives like ``pairs`` does, and
that one bad input is that input's error, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.main import app
from faceprint.errors import EXIT_PARTIAL
from faceprint.settings import load_settings
from faceprint.testing import fake_pipeline_factory, make_face_png, make_two_face_png

runner = CliRunner()


def invoke(*args: str, fake: bool = True) -> tuple[int, str]:
    context = CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory if fake else None)
    result = runner.invoke(app, list(args), obj=context, env={"COLUMNS": "200"})
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout


# --- real models: the commands agree ------------------------------------------------------------------


@pytest.mark.integration
def test_detect_embed_compare_and_pairs_agree_on_a_group_photo(examples_dir: Path, tmp_path: Path) -> None:
    group = examples_dir / "two_people.jpg"
    portrait = examples_dir / "obama.jpg"
    for face in ("primary", "all"):
        code, out = invoke("detect", str(group), "--json", "--face", face, fake=False)
        assert code == 0
        detected = json.loads(out)[0]["faces"]
        code, _ = invoke("embed", str(group), "-o", str(tmp_path / f"{face}.jsonl"), "--face", face, "-q", fake=False)
        assert code == 0
        embedded = [json.loads(line) for line in (tmp_path / f"{face}.jsonl").read_text().splitlines()]
        # The same faces, in the same order (the selected one first) and at the same boxes.
        boxes = [f["bbox_xyxy"] for f in detected]
        assert [e["detection"]["bbox_xyxy"] for e in embedded] == (boxes if face == "all" else boxes[:1])
    assert len(detected) == 2

    code, out = invoke("compare", str(group), str(portrait), "--json", fake=False)
    assert code == 0
    compared = json.loads(out)

    dataset = tmp_path / "ds"
    dataset.mkdir()
    shutil.copy(group, dataset / "group.jpg")
    shutil.copy(portrait, dataset / "portrait.jpg")
    (dataset / "pairs.csv").write_text("group.jpg,portrait.jpg\n")
    code, _ = invoke("pairs", str(dataset), "-o", str(tmp_path / "r.tar.gz"), "--details", "-q", fake=False)
    assert code == 0
    with tarfile.open(tmp_path / "r.tar.gz") as tar:
        handle = tar.extractfile("input-0001/output.csv")
        assert handle is not None
        (row,) = list(csv.DictReader(io.StringIO(handle.read().decode())))
    assert float(row["similarity"]) == pytest.approx(compared["similarity"], abs=5e-5)  # output.csv: 4 decimals
    code, out = invoke("detect", str(group), "--json", "--face", "primary", fake=False)
    assert int(row["faces_a"]) == len(json.loads(out)[0]["faces"])

    # compare --face primary embeds the same face `embed --face primary` wrote.
    primary = json.loads((tmp_path / "primary.jsonl").read_text().splitlines()[0])["faceprint"]
    code, out = invoke("compare", str(tmp_path / "primary.jsonl"), str(portrait), "--json", fake=False)
    assert code == 0 and json.loads(out)["similarity"] == pytest.approx(compared["similarity"], abs=1e-6)
    assert primary["dim"] == 128


# --- the fake pipeline: inputs of every kind ------------------------------------------------------------


def photos(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "red.png").write_bytes(make_face_png((200, 30, 30)))
    (root / "sub").mkdir()
    (root / "sub" / "two.png").write_bytes(make_two_face_png((30, 200, 30), (30, 30, 200)))
    (root / "notes.txt").write_text("not a photo")
    return root


def test_embed_takes_folders_archives_and_files(tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos")
    archive = tmp_path / "photos.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")
    single = tmp_path / "single.png"
    single.write_bytes(make_face_png((90, 90, 30)))
    code, _ = invoke("embed", str(folder), str(archive), str(single), "-o", str(tmp_path / "out.jsonl"), "-q")
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    names = [(Path(r["image"]).name, r["face_index"]) for r in records]
    # Folders recursively and sorted, archive members the same, one faceprint per face by default.
    assert names == [("red.png", 0), ("two.png", 0), ("two.png", 1)] * 2 + [("single.png", 0)]
    assert all("quality" in r["faceprint"] for r in records)


def test_one_bad_input_is_its_own_error(tmp_path: Path) -> None:
    good = tmp_path / "red.png"
    good.write_bytes(make_face_png((200, 30, 30)))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    code, out = invoke("detect", str(good), str(fifo), str(broken), str(tmp_path / "missing.png"), "--json")
    assert code == EXIT_PARTIAL
    results = {Path(r["image"]).name: r for r in json.loads(out)}
    assert len(results["red.png"]["faces"]) == 1
    assert results["pipe.png"]["error"]["code"] == "not_regular_file"
    assert results["broken.png"]["error"]["code"] == "decode_error"
    assert results["missing.png"]["error"]["code"] == "missing_file"


def test_detect_prints_user_strings_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich markup in a file name must neither crash the table nor vanish from it.
    monkeypatch.chdir(tmp_path)
    for name in ("[red]X[red].png", "a[/]b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)  # "a[/]b.png" is the file "]b.png" in the folder "a["
        (tmp_path / name).write_bytes(make_face_png((200, 30, 30)))
        code, out = invoke("detect", name)
        assert code == 0 and name in out


def test_embed_refuses_an_output_that_is_an_input(tmp_path: Path) -> None:
    photo = tmp_path / "red.png"
    photo.write_bytes(make_face_png((200, 30, 30)))
    code, _ = invoke("embed", str(photo), "-o", str(photo))
    assert code != 0
    assert photo.read_bytes() == make_face_png((200, 30, 30))


def test_compare_gives_a_clear_error_for_a_malformed_faceprint_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    photo = tmp_path / "red.png"
    photo.write_bytes(make_face_png((200, 30, 30)))
    result = runner.invoke(
        app,
        ["compare", str(bad), str(photo)],
        obj=CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory),
    )
    assert result.exit_code == 3 and "faceprint_format" in result.output and "Traceback" not in result.output
