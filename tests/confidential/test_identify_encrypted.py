"""Enrolment and identification through the engine give the same answers on an encrypted gallery; audit clean."""

from __future__ import annotations

from pathlib import Path

from faceprint.analyze import AnalyzeItem, Analyzer
from faceprint.audit import audit_data_dir
from faceprint.crypto import EncryptionKey, RecordCipher
from faceprint.enroll import enroll, plan_for_person
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.identify import identify_images
from faceprint.testing import fake_pipeline_factory, make_face_png, make_two_face_png

PEOPLE = {"Red": (200, 30, 30), "Green": (30, 200, 30), "Blue": (30, 30, 200)}


Answers = list[tuple[str, int, str, float | None, float | None]]


def _run(folder: Path, cipher: RecordCipher | None) -> tuple[Answers, list[bytes]]:
    folder.mkdir()
    photos = folder / "photos"
    photos.mkdir()
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:
        with SqliteGallery.create(folder / "g.sqlite", cipher=cipher) as gallery:
            for name, rgb in PEOPLE.items():
                path = photos / f"{name}.png"
                path.write_bytes(make_face_png(rgb, size_wh=(48, 40)))
                report = enroll(gallery, analyzer, plan_for_person(name, [AnalyzeItem(str(path), path)]))
                assert report.templates_added == 1, report.skipped
            probe = photos / "probe.png"
            probe.write_bytes(make_two_face_png(PEOPLE["Blue"], (120, 120, 20)))
            run = identify_images([AnalyzeItem("probe", probe)], analyzer, [gallery], top_k=2)
            vectors = [t.faceprint.vector.astype("<f4").tobytes() for t in gallery.templates()]
        for path in photos.iterdir():
            path.unlink()  # the inputs are the caller's: what stays is the gallery
        photos.rmdir()
    return [(f.image_id, f.face_index, f.label, f.similarity, f.probability) for f in run.faces], vectors


def test_identify_is_the_same_with_encryption_on_and_off(tmp_path: Path) -> None:
    clear, clear_vectors = _run(tmp_path / "clear", None)
    sealed, sealed_vectors = _run(tmp_path / "sealed", RecordCipher(EncryptionKey.generate()))
    assert sealed == clear
    assert sealed_vectors == clear_vectors
    assert sorted(label for _, _, label, _, _ in clear) == ["Blue", "unknown"]
    # The fake model's prints are 3-d, below what the audit looks for, so the raw bytes are checked here.
    clear_bytes = (tmp_path / "clear" / "g.sqlite").read_bytes()
    sealed_bytes = (tmp_path / "sealed" / "g.sqlite").read_bytes()
    assert all(vector in clear_bytes for vector in clear_vectors)
    assert not any(vector in sealed_bytes for vector in sealed_vectors)
    report = audit_data_dir(tmp_path / "sealed")
    assert report.clean, report.findings
